"""Docker logging-plugin benchmark: a real dockerd's container → ``logpipe docker-plugin`` →
``local``, against Docker's own ``json-file`` on the same run. Not part of the test suite.

    .venv/bin/python tests/perf/bench_plugin.py                 # 1 M lines, 3 rounds (~2 min)
    .venv/bin/python tests/perf/bench_plugin.py --lines 200000 --rounds 1
    .venv/bin/python tests/perf/bench_plugin.py --side-only     # no dockerd: logpipe's side

Needs root, Debian's docker.io (dockerd 20.10) and busybox-static (``tests/busybox.py``).

- End to end: a private dockerd (``--iptables=false --bridge=none``, its own socket, data and
  exec roots under a temporary directory; it starts its containerd beside it) with busybox
  imported. A container ``cat``s a pre-generated, bind-mounted file of N lines of 100 bytes
  (99 characters and the newline), once with ``--log-driver <plugin> --log-opt
  logpipe-driver=local`` and once with Docker's ``json-file``, alternately for each round.
  The clock runs from the container's ``StartedAt`` (Docker's inspect) to ``docker wait``
  returning, which Docker answers only after the container's logger is closed: for
  json-file after its file is written, for the plugin after StopLogging, which returns once
  the plugin has drained the FIFO into its store. Every line is then checked to be stored
  (the plugin's store read back; json-file's lines counted). lines/s, MB/s of line data, and
  the ratio plugin/json-file (median of the rounds); the plugin process's CPU seconds per GB
  (``/proc/<pid>/stat``) and its RSS after the run and at its peak (VmRSS, VmHWM).
- logpipe's side alone: the same plugin process, StartLogging on a FIFO of our own, and a
  Python writer writing Docker's exact frames (``[u32 length][LogEntry]``, encoded with the
  ``protobuf`` package) as fast as the FIFO takes them; the clock runs from the first write
  to StopLogging's answer (everything drained). Into ``local`` and ``json-file``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import struct
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(REPO, "tests"), REPO]

from busybox import build_tarball  # noqa: E402
from conftest import DOCKERD_BINARY, PluginProc, RealDocker, _stop_dockerd  # noqa: E402

LINE = 100
TICKS = os.sysconf("SC_CLK_TCK")
LOGPIPE = [sys.executable, "-m", "runtime.cli"]


class Plugin(PluginProc):
    """A ``logpipe docker-plugin`` process (as the tests start one), its CPU time, memory
    and store."""

    def cpu(self) -> float:
        """User + system CPU seconds of the plugin process so far (all its threads)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def memory(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in KiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            status = dict(line.split(":", 1) for line in f)
        return int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])

    def stored(self, container_id: str) -> int:
        """Lines of a container in the plugin's store, read back with the driver's reader."""
        from logpipe.plugin.readlogs import open_reader
        from logpipe.plugin.store import load_meta

        reader = open_reader(load_meta(self.data_root, container_id), {})
        try:
            return sum(chunk.count for chunk in reader)
        finally:
            reader.close()


def docker_frames(n: int) -> bytes:
    """n frames exactly as Docker's plugin adapter writes them: stdout, increasing
    nanosecond timestamps, 99 bytes of text (the newline is not sent)."""
    from logpipe.plugin.entry import log_entry_class

    cls, pack, t0 = log_entry_class(), struct.Struct(">I").pack, time.time_ns()
    text = b"x" * (LINE - 1)
    out = bytearray()
    for i in range(n):
        data = cls(source="stdout", time_nano=t0 + i, line=text).SerializeToString()
        out += pack(len(data)) + data
    return bytes(out)


def side(plugin: Plugin, base: str, n: int, driver: str) -> dict:
    """logpipe's side alone: FIFO → decode → ``driver``."""
    data = docker_frames(n)
    fifo = os.path.join(base, f"fifo-{uuid.uuid4().hex[:8]}")
    os.mkfifo(fifo)
    cid = uuid.uuid4().hex * 2
    info = {"ContainerID": cid, "ContainerName": "/bench", "Config": {"logpipe-driver": driver}}
    assert plugin.call("/LogDriver.StartLogging", {"File": fifo, "Info": info}) == {"Err": ""}
    cpu0 = plugin.cpu()
    fd = os.open(fifo, os.O_WRONLY)
    start = time.perf_counter()
    with memoryview(data) as view:
        while view:
            view = view[os.write(fd, view[:1 << 20]):]
    os.close(fd)
    assert plugin.call("/LogDriver.StopLogging", {"File": fifo}) == {"Err": ""}
    elapsed = time.perf_counter() - start
    cpu = plugin.cpu() - cpu0
    assert plugin.stored(cid) == n, "lines missing from the plugin's store"
    return {"lines/s": n / elapsed, "cpu s/GB": cpu / (n * LINE / 1e9)}


def start_dockerd(base: str) -> RealDocker:
    """dockerd as ``tests/conftest.py``'s ``real_docker`` starts it."""
    docker = RealDocker(base)
    docker.start()
    return docker


def container_run(docker: RealDocker, image: str, lines_file: str, log: list[str]) -> tuple:
    """Run ``cat`` of the lines file with the log options ``log``; (id, seconds)."""
    run = docker.cli("run", "-d", "--network", "none", "-v", f"{lines_file}:/lines:ro",
                     *log, image, "cat", "/lines")
    assert run.returncode == 0, run.stderr
    cid = run.stdout.decode().strip()
    wait = docker.cli("wait", cid, limit=600)
    end = time.time_ns()
    assert wait.stdout.strip() == b"0", wait
    started = json.loads(docker.cli("inspect", cid).stdout)[0]["State"]["StartedAt"]
    from logpipe.timespec import parse_rfc3339

    return cid, (end - parse_rfc3339(started)) / 1e9


def json_file_lines(docker: RealDocker, cid: str) -> int:
    path = os.path.join(docker.base, "data", "containers", cid, f"{cid}-json.log")
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def end_to_end(docker: RealDocker, plugin: Plugin, name: str, image: str, lines_file: str,
               n: int, rounds: int) -> None:
    """Both drivers alternately, ``rounds`` times; medians printed."""
    rates: dict[str, list[float]] = {"plugin → local": [], "json-file": []}
    cpu_per_gb = []
    for _ in range(rounds):
        cpu0 = plugin.cpu()
        cid, secs = container_run(docker, image, lines_file,
                                  ["--log-driver", name, "--log-opt", "logpipe-driver=local"])
        cpu_per_gb.append((plugin.cpu() - cpu0) / (n * LINE / 1e9))
        assert plugin.stored(cid) == n, "lines missing from the plugin's store"
        rates["plugin → local"].append(n / secs)
        docker.cli("rm", cid)
        cid, secs = container_run(docker, image, lines_file, ["--log-driver", "json-file"])
        assert json_file_lines(docker, cid) == n, "lines missing from json-file's log"
        rates["json-file"].append(n / secs)
        docker.cli("rm", cid)
    for label, values in rates.items():
        rate = statistics.median(values)
        print(f"  {label:15} {rate:>10,.0f} lines/s  {rate * LINE / 1e6:6.1f} MB/s   "
              f"(rounds: {', '.join(f'{v:,.0f}' for v in values)})")
    ratio = statistics.median(rates["plugin → local"]) / statistics.median(rates["json-file"])
    rss, hwm = plugin.memory()
    print(f"  ratio plugin/json-file {ratio:.2f}; plugin CPU "
          f"{statistics.median(cpu_per_gb):.1f} s/GB, RSS {rss / 1024:.0f} MiB "
          f"(peak {hwm / 1024:.0f} MiB)")


def lines_file(path: str, n: int) -> str:
    with open(path, "wb") as f:
        line = b"x" * (LINE - 1) + b"\n"
        for _ in range(0, n, 10_000):
            f.write(line * min(10_000, n - _))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--side-only", action="store_true", help="logpipe's side alone, no dockerd")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, "
          f"{args.lines:,} lines of {LINE} bytes")
    base = tempfile.mkdtemp(prefix="lpbp-")  # short: unix socket paths ≤ 108 bytes
    name = f"logpipe-bench-{uuid.uuid4().hex[:8]}"
    os.makedirs("/run/docker/plugins", exist_ok=True)
    plugin = Plugin(f"/run/docker/plugins/{name}.sock", os.path.join(base, "plugin"))
    docker = None
    try:
        print("logpipe's side alone (Python writer of Docker's frames → FIFO → plugin):")
        for driver in ("local", "json-file"):
            got = side(plugin, base, args.lines, driver)
            print(f"  → {driver:10} {got['lines/s']:>10,.0f} lines/s  "
                  f"{got['lines/s'] * LINE / 1e6:6.1f} MB/s  CPU {got['cpu s/GB']:.1f} s/GB")
        if args.side_only:
            return
        if os.geteuid() != 0 or DOCKERD_BINARY is None:
            sys.exit("end to end needs root and dockerd (apt-get install docker.io)")
        docker = start_dockerd(base)
        tar = build_tarball(os.path.join(base, "busybox.tar"))
        assert docker.cli("import", tar, "lp-busybox:bench").returncode == 0
        print("end to end (container → dockerd → FIFO → plugin → store):")
        end_to_end(docker, plugin, name, "lp-busybox:bench",
                   lines_file(os.path.join(base, "lines"), args.lines), args.lines, args.rounds)
    finally:
        if docker is not None:
            _stop_dockerd(docker.proc, base)
        plugin.stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(plugin.sock)
        if docker is None:
            import shutil

            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
