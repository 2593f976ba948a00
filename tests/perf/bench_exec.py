"""Exec latency through logpipe's daemon. Not part of the test suite.

    .venv/bin/python tests/perf/bench_exec.py                # 200 execs (about 30 s)
    .venv/bin/python tests/perf/bench_exec.py -n 50          # fewer
    .venv/bin/python tests/perf/bench_exec.py --runtime process

It starts its own daemon (``bench_runtime.Daemon``: a temporary data root and socket),
imports the busybox image, runs one ``sleep`` container, and measures ``exec true`` as a
client sees it, through docker-py's low-level API: ``POST /containers/{id}/exec``, ``POST
/exec/{id}/start`` on a hijacked connection read to its end, then ``GET /exec/{id}/json``
(the exit code, as the docker CLI asks for it). p50/p99 of each step and of the whole; then
the docker CLI's ``docker exec CTR true`` wall time (its own start-up included), if the
docker CLI is installed. Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_runtime import IMAGE, LOGPIPE, Daemon, build_image, pick_runtime  # noqa: E402


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms"


def bench_api(host: str, cid: str, n: int) -> dict[str, list[float]]:
    import docker

    api = docker.APIClient(base_url=host, version="1.41", timeout=60)
    steps: dict[str, list[float]] = {"create": [], "start": [], "inspect": [], "total": []}
    for _ in range(n):
        t0 = time.perf_counter()
        eid = api.exec_create(cid, ["true"])["Id"]
        t1 = time.perf_counter()
        api.exec_start(eid)
        t2 = time.perf_counter()
        code = api.exec_inspect(eid)["ExitCode"]
        t3 = time.perf_counter()
        assert code == 0, code
        for key, value in (("create", t1 - t0), ("start", t2 - t1), ("inspect", t3 - t2),
                           ("total", t3 - t0)):
            steps[key].append(value)
    api.close()
    return steps


def bench_cli(host: str, cid: str, n: int) -> list[float]:
    docker_cli = shutil.which("docker")
    if not docker_cli:
        return []
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([docker_cli, "-H", host, "exec", cid, "true"], check=True)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--runtime", default="")
    args = parser.parse_args()
    runtime = pick_runtime(args.runtime)
    base = tempfile.mkdtemp(prefix="lpx-")
    print(f"runtime: {runtime}, {args.n} execs, load average {os.getloadavg()[0]:.1f}")
    daemon = Daemon(base, runtime)
    try:
        image = build_image(os.path.join(base, "busybox.tar"))
        subprocess.run(LOGPIPE + ["-H", daemon.host, "import", image, IMAGE], check=True,
                       capture_output=True)
        cid = daemon.create(["sleep", "3600"])
        daemon.start(cid)
        bench_api(daemon.host, cid, 5)  # warm-up: imports, the daemon's worker threads
        steps = bench_api(daemon.host, cid, args.n)
        for key, samples in steps.items():
            print(f"exec true via the API, {key:8}: {percentiles(samples)}")
        cli = bench_cli(daemon.host, cid, max(10, args.n // 10))
        if cli:
            print(f"docker exec CTR true (docker CLI 28): {percentiles(cli)}")
        daemon.client.request("DELETE", f"/containers/{cid}", {"force": 1}).read()
    finally:
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
