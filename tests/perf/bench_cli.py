"""CLI start-up: the wall time of the common ``logpipe`` commands. Not part of the test suite.

    .venv/bin/python tests/perf/bench_cli.py               # 50 runs of each (about 1 minute)
    .venv/bin/python tests/perf/bench_cli.py -n 100        # more runs
    .venv/bin/python tests/perf/bench_cli.py --source DIR  # another checkout's CLI (a baseline)

What a user types is what is timed: the package is installed as a user installs it, not
editable (``pip install SOURCE`` into a fresh temporary venv, dependencies included, so every
``.pth`` file a real install has is read at start-up), and its ``logpipe`` console script is
run. A daemon (this checkout's, ``bench_runtime.Daemon``: temporary data root and socket,
``process`` runtime) runs one container, ``bench``, that has logged 1,000 lines and stays
running. Then, interleaved so that a burst of other work on the machine hits every command
alike, after 3 warm-up rounds, each of

    logpipe ps
    logpipe logs --tail 100 bench
    logpipe inspect bench
    logpipe --version
    python -c pass            (the venv's interpreter: the floor of any Python CLI)

is run N times (stdout to a pipe that is read, as a terminal or ``| grep`` would); the median
and p90 of the wall time, measured around ``subprocess.run``, are printed with the target
(40 ms) and the median's ratio to it, and the median CPU time (user + system) of the
process, which other work on the machine disturbs less. Last, the daemon's share: the same
requests sent N times from the benchmark's own warm process. The docker CLI's figure on this
machine is 18 ms.
Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [HERE, os.path.join(REPO, "tests"), REPO]

from bench_runtime import Daemon, build_image  # noqa: E402
from logpipe.errors import LogpipeError  # noqa: E402

TARGET_MS = 40.0
LINES = 1000
NAME = "bench"


def install(source: str, base: str) -> str:
    """``pip install SOURCE`` (not editable) into a new venv under ``base``; its bin dir.
    The source is copied first: an in-tree build would leave ``build/`` in the checkout."""
    src = os.path.join(base, "src")
    shutil.copytree(source, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".hypothesis"))
    venv = os.path.join(base, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    bin_dir = os.path.join(venv, "bin")
    subprocess.run([os.path.join(bin_dir, "pip"), "install", "-q", src], check=True,
                   stderr=subprocess.DEVNULL)
    return bin_dir


def start_container(d: Daemon, image: str) -> None:
    """``bench``: logs ``LINES`` lines, then sleeps; returns once the last line is stored."""
    subprocess.run([sys.executable, "-m", "runtime.cli", "-H", d.host, "import", image,
                    "busybox:latest"], check=True, stdout=subprocess.DEVNULL)
    cid = d.create(["sh", "-c", f"seq 1 {LINES}; exec sleep 3600"], name=NAME)
    d.start(cid)
    deadline = time.monotonic() + 30
    while True:
        resp = d.client.request("GET", f"/containers/{cid}/logs",
                                {"stdout": 1, "tail": 1})
        if resp.read().endswith(f"{LINES}\n".encode()):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the container did not log {LINES} lines:\n{d.tail()}")
        time.sleep(0.05)


def time_commands(commands: dict[str, list[str]], env: dict[str, str],
                  n: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each command ``n`` times, round-robin: the wall time of each run, and the CPU time
    (user + system) of its process, in ms. The CPU time is what a loaded machine disturbs
    least: it tells changes apart when the wall time is mostly waiting for a core."""
    samples: dict[str, list[float]] = {label: [] for label in commands}
    cpu: dict[str, list[float]] = {label: [] for label in commands}
    failed: dict[str, int] = {}
    for i in range(3 + n):
        for label, argv in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            res = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            elapsed = (time.perf_counter() - t0) * 1000
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if res.returncode and label not in failed:
                failed[label] = res.returncode  # still timed: a baseline may lack a command
                print(f"{label}: exit {res.returncode}: {res.stderr.decode()[-300:]}")
            if i >= 3:
                samples[label].append(elapsed)
                cpu[label].append((after.ru_utime + after.ru_stime - before.ru_utime
                                   - before.ru_stime) * 1000)
    return samples, cpu


def daemon_share(d: Daemon, n: int) -> dict[str, float]:
    """The daemon's part of each command: the median ms of its requests sent from this warm
    process (``ps``: one; ``logs``: the container's inspect, then its log; ``inspect``: one)."""
    logs_query = {"stdout": 1, "stderr": 1, "follow": 0, "timestamps": 0, "details": 0,
                  "tail": "100"}
    requests = {
        "ps": lambda: d.client.json("GET", "/containers/json", {"all": 0}),
        "logs": lambda: (d.client.json("GET", f"/containers/{NAME}/json"),
                         d.client.stream("GET", f"/containers/{NAME}/logs", logs_query).read()),
        "inspect": lambda: d.client.json("GET", f"/containers/{NAME}/json")}
    share = {}
    for label, send in requests.items():
        ms = []
        for _ in range(n):
            t0 = time.perf_counter()
            send()
            ms.append((time.perf_counter() - t0) * 1000)
        share[label] = statistics.median(ms)
    return share


def report(samples: dict[str, list[float]], cpu: dict[str, list[float]]) -> None:
    print("| command | median | p90 | target | median / target | CPU median |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, ms in samples.items():
        ms = sorted(ms)
        p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
        med = statistics.median(ms)
        print(f"| `{label}` | {med:.1f} ms | {p90:.1f} ms | {TARGET_MS:.0f} ms "
              f"| {med / TARGET_MS:.2f} | {statistics.median(cpu[label]):.1f} ms |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=50, help="runs of each command (default 50)")
    ap.add_argument("--source", default=REPO, help="the checkout to install (default: this one)")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="lpcli-")
    daemon = None
    try:
        print(f"installing {args.source} (not editable) into a temporary venv...", flush=True)
        bin_dir = install(os.path.abspath(args.source), base)
        daemon = Daemon(base, "process")
        start_container(daemon, build_image(os.path.join(base, "image.tar")))
        logpipe = os.path.join(bin_dir, "logpipe")
        commands = {"logpipe ps": [logpipe, "ps"],
                    f"logpipe logs --tail 100 {NAME}": [logpipe, "logs", "--tail", "100", NAME],
                    f"logpipe inspect {NAME}": [logpipe, "inspect", NAME],
                    "logpipe --version": [logpipe, "--version"],
                    "python -c pass": [os.path.join(bin_dir, "python"), "-c", "pass"]}
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LOGPIPE_HOST": daemon.host,
               "LOGPIPE_NO_AUTOSTART": "1", "LANG": os.environ.get("LANG", "C.UTF-8")}
        print(f"{args.n} runs of each; load average before: {os.getloadavg()}", flush=True)
        samples, cpu = time_commands(commands, env, args.n)
        share = daemon_share(daemon, args.n)
        print(f"load average after: {os.getloadavg()}")
        report(samples, cpu)
        print("the daemon's answers, from a warm client (median): " +
              ", ".join(f"{label} {ms:.1f} ms" for label, ms in share.items()))
    finally:
        if daemon is not None:
            try:
                daemon.client.request("DELETE", f"/containers/{NAME}", {"force": 1}).read()
            except (OSError, LogpipeError) as err:  # say what was left behind
                print(f"could not remove {NAME}: {err}", file=sys.stderr)
            daemon.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
