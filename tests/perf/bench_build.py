"""Build benchmark: a generated 20-step Dockerfile built by logpipe's classic builder and, when
Debian's ``dockerd`` (docker.io) is installed, by Docker 20.10's classic builder, cold
(``--no-cache``) and cached. Not part of the test suite; needs root, runc and busybox-static.

    .venv/bin/python tests/perf/bench_build.py              # 3 runs of each, medians
    .venv/bin/python tests/perf/bench_build.py --runs 5

The Dockerfile is ``FROM busybox`` and 20 steps: 8 RUN (small shell work writing files),
5 COPY (files of 1-64 KiB and a directory), 4 ENV and 3 WORKDIR. Both daemons get the same
context through the same docker CLI (``DOCKER_BUILDKIT=0 docker build --network none``) and
the same base image: busybox imported into logpipe, then ``logpipe save`` | ``docker load``
into dockerd. dockerd runs on a private socket, data root and exec root under a temporary
directory (``--iptables=false --bridge=none``), as the tests' ``real_docker`` fixture; all of
it, and logpipe's daemon, is removed at the end. Figures: wall-clock seconds of the whole
``docker build`` (context upload to ``Successfully tagged``), and logpipe's over Docker's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, ".."))

from busybox import build_tarball  # noqa: E402
from conftest import RealDocker, _stop_dockerd, start_daemon, stop_daemon  # noqa: E402

LOGPIPE = [sys.executable, "-m", "runtime.cli"]
DOCKER = shutil.which("docker") or "docker"


def dockerfile() -> str:
    """20 steps after FROM, in an order that keeps every kind spread through the file."""
    steps = ["ENV APP=/srv/app STEP=0", "WORKDIR /srv/app", "COPY small.txt ./",
             "RUN echo one > one.txt && ls -l > listing.txt",
             "ENV MODE=bench", "COPY medium.bin data/", "RUN cat small.txt data/medium.bin | wc -c > size.txt",
             "RUN mkdir -p logs && for i in 1 2 3 4 5; do echo $i >> logs/n.txt; done",
             "WORKDIR /srv/app/logs", "RUN sha256sum n.txt > n.sum", "COPY dir/ /srv/app/dir/",
             "ENV STEP=12", "RUN find /srv/app -type f | sort > /srv/files.txt",
             "COPY large.bin /opt/", "RUN md5sum /opt/large.bin > /opt/large.md5",
             "WORKDIR /", "RUN echo $APP $MODE $STEP > /env.txt", "ENV DONE=yes",
             "COPY small.txt /etc/bench.txt", "RUN rm -f /srv/app/one.txt && touch /ready"]
    assert len(steps) == 20
    return "FROM busybox\n" + "\n".join(steps) + '\nCMD ["cat", "/env.txt"]\n'


def make_context(path: str) -> None:
    with open(os.path.join(path, "Dockerfile"), "w") as f:
        f.write(dockerfile())
    with open(os.path.join(path, "small.txt"), "w") as f:
        f.write("small\n" * 170)  # ~1 KiB
    for name, size in (("medium.bin", 16 << 10), ("large.bin", 64 << 10)):
        with open(os.path.join(path, name), "wb") as f:
            f.write(os.urandom(size))
    os.mkdir(os.path.join(path, "dir"))
    for i in range(10):
        with open(os.path.join(path, "dir", f"f{i}.txt"), "w") as f:
            f.write(f"file {i}\n" * 100)


@contextlib.contextmanager
def logpipe_daemon(base: str):
    """logpipe's daemon on runc, as the tests start one (``conftest.start_daemon``)."""
    d = start_daemon(base, os.path.join(base, "lproot"), {"default-runtime": "runc"})
    try:
        yield d.host
    finally:
        stop_daemon(d)


@contextlib.contextmanager
def real_dockerd(base: str):
    """Docker 20.10 on private paths (never /var/lib/docker nor /run/docker.sock), as the
    tests start it (``conftest.RealDocker``)."""
    docker = RealDocker(os.path.join(base, "dk"))
    os.mkdir(docker.base)
    try:
        docker.start()
        yield docker.host
    finally:
        if docker.proc is not None:
            _stop_dockerd(docker.proc, docker.base)


def cli(host: str, *args: str, stdin: bytes | None = None, base: str = "") -> bytes:
    env = dict(os.environ, DOCKER_BUILDKIT="0", DOCKER_API_VERSION="1.41",
               DOCKER_CONFIG=os.path.join(base, "cli"))
    res = subprocess.run([DOCKER, "-H", host, *args], input=stdin, capture_output=True,
                         env=env, timeout=600)
    if res.returncode != 0:
        sys.exit(f"docker {' '.join(args)} failed: {res.stderr.decode()[-2000:]}")
    return res.stdout


def timed_build(host: str, ctx: str, base: str, *extra: str) -> float:
    start = time.perf_counter()
    cli(host, "build", "-q", "--network", "none", *extra, "-t", "bench:latest", ctx, base=base)
    return time.perf_counter() - start


def bench(host: str, ctx: str, base: str, runs: int) -> tuple[float, float]:
    """Median seconds of a cold build (``--no-cache``) and of a fully cached one."""
    cold = [timed_build(host, ctx, base, "--no-cache") for _ in range(runs)]
    cached = [timed_build(host, ctx, base) for _ in range(runs)]
    return statistics.median(cold), statistics.median(cached)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    opts = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("runc"):
        sys.exit("needs root and runc")
    base = tempfile.mkdtemp(prefix="lpbb-")
    try:
        ctx = os.path.join(base, "ctx")
        os.mkdir(ctx)
        make_context(ctx)
        tar = build_tarball(os.path.join(base, "busybox.tar"))
        rows = []
        with logpipe_daemon(base) as lp:
            env = dict(os.environ, LOGPIPE_HOST=lp, LOGPIPE_NO_AUTOSTART="1")
            subprocess.run(LOGPIPE + ["import", tar, "busybox:latest"], env=env, check=True,
                           capture_output=True)
            saved = subprocess.run(LOGPIPE + ["save", "busybox:latest"], env=env, check=True,
                                   capture_output=True).stdout
            rows.append(("logpipe", *bench(lp, ctx, base, opts.runs)))
        if shutil.which("dockerd"):
            with real_dockerd(base) as dk:
                cli(dk, "load", stdin=saved, base=base)
                rows.append(("docker 20.10", *bench(dk, ctx, base, opts.runs)))
        print(f"20-step Dockerfile, median of {opts.runs} runs (seconds)")
        print(f"{'daemon':<14}{'cold':>8}{'cached':>9}")
        for name, cold, cached in rows:
            print(f"{name:<14}{cold:>8.2f}{cached:>9.2f}")
        if len(rows) == 2:
            (_, lc, lh), (_, dc, dh) = rows
            print(f"{'ratio lp/dk':<14}{lc / dc:>8.2f}{lh / dh:>9.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
