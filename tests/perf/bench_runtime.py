"""Runtime benchmarks: real containers through logpipe's daemon. Not part of the test suite.

    .venv/bin/python tests/perf/bench_runtime.py              # everything (about 2 minutes)
    .venv/bin/python tests/perf/bench_runtime.py --quick      # smaller volumes, same cases
    .venv/bin/python tests/perf/bench_runtime.py --runtime process   # force an executor

It starts its own daemon (``logpipe daemon`` on a temporary data root and socket, an empty
``daemon.json``), imports a busybox image built by ``tests/busybox.py``, and stops the daemon
and removes everything at the end. The executor is runc when running as root with runc on
PATH, else ``process`` (no isolation); the first line printed says which.

- create+start latency: ~50 ``POST /containers/create`` + ``POST /containers/{id}/start``
  through the Engine API (``start`` answers once the shim has recorded the container as
  running); p50/p99; also 10 probes (each removed again) with 1, 10 and 50 containers already
  running. Also ``logpipe run -d`` from the CLI, interpreter start-up included.
- shim memory per container: RSS, PSS and USS (Private_Clean + Private_Dirty) from
  ``/proc/<ShimPid>/smaps_rollup`` (ShimPid from ``state.json``), median and max, and the
  shim parent's PSS shared out over them: for the 50 idle ones (``sleep``); again after a
  daemon restart (SIGTERM, a new daemon adopts them); and for a few containers that have each
  logged 100 MB (1 KiB lines from ``yes``, then ``sleep``), once their shims report it stored.
- daemon memory: the daemon's VmRSS (and Pss) with no container, then with the 50 idle ones.
- end-to-end throughput container → driver → disk: a container ``cat``s a pre-generated file
  of SIZE-byte lines (the storage benchmark's ``producer.py`` text), bind-mounted read-only
  with ``-v``; the clock runs from ``POST start`` to ``POST wait`` returning, and every line
  is checked to be stored (``LinesLogged`` in state.json). ``--log-driver none`` on the same
  file is the ceiling (same container, same pipes, nothing stored); an empty container
  (``true``) gives the fixed start/exit cost included in every figure. With runc, ``wait``
  returns after the shim has unmounted the container's overlayfs (mounted ``volatile``, so
  the unmount does not sync the data root's filesystem).
- the Podman peer (skipped, saying why, without podman and conmon or when not root): the same
  busybox rootfs imported into a Podman storage root of the benchmark's own; ``run -d`` from
  each CLI of ``sh -c 'yes <line> | head -n N'`` (2 M and 8 M lines of 100 B, 0.5 M of 1 KiB,
  stdout only or half on each stream) into logpipe's json-file and local and Podman's
  k8s-file (conmon); the clock runs from the ``run -d`` command to the last write of the log
  file (its mtime once the container has exited and the file stopped growing), every line
  is checked to be stored; runs are interleaved (conmon, json-file, local, again), medians of
  3, and the logpipe/conmon ratios come from the same run. Then conmon's RSS, PSS and USS
  per idle container. ``--only-peer`` runs just this; Podman is configured by
  ``/etc/containers/containers.conf`` (runc, cgroupfs, file events, ``nofile``/``nproc``
  ulimits of 1024) and runs with ``--network none``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [HERE, os.path.join(REPO, "tests"), REPO]

from runtime.cli.client import Client, DaemonUnavailable  # noqa: E402

LOGPIPE = [sys.executable, "-m", "runtime.cli"]
IMAGE = "busybox:latest"

# Docker on the same kind of machine (from the project's issue): containerd-shim per idle
# container, and Docker 20.10 json-file end to end (container start → last line on disk).
DOCKER = {"shim RSS MiB": 12.9, "shim PSS MiB": 2.9,
          "json-file lines/s @16B": 559_000, "json-file lines/s @100B": 438_000,
          "json-file MB/s @1KiB": 101}
TARGET = {"shim RSS MiB": 12}
SIZES = (16, 100, 1024, 20480)


# -- set-up ----------------------------------------------------------------------------------------


def pick_runtime(asked: str) -> str:
    if asked:
        return asked
    return "runc" if os.geteuid() == 0 and shutil.which("runc") else "process"


def build_image(path: str) -> str:
    """The busybox rootfs tarball; with the process runtime any image will do (the command
    runs on the host), so a machine without busybox-static gets a near-empty one."""
    import busybox  # tests/busybox.py

    try:
        return busybox.build_tarball(path)
    except RuntimeError:
        import tarfile

        with tarfile.open(path, "w") as tar:
            ti = tarfile.TarInfo("tmp")
            ti.type, ti.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(ti)
        return path


class Daemon:
    """``logpipe daemon`` on a temporary data root and socket, stopped by ``stop``."""

    def __init__(self, base: str, runtime: str) -> None:
        self.data_root = os.path.join(base, "data")
        self.socket = os.path.join(base, "logpipe.sock")
        self.host = "unix://" + self.socket
        config = os.path.join(base, "daemon.json")
        with open(config, "w") as f:
            f.write("{}\n")
        self.log_path = os.path.join(base, "daemon.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            LOGPIPE + ["daemon", "--data-root", self.data_root, "-H", self.host,
                       "--config-file", config, "--default-runtime", runtime],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, start_new_session=True)
        self.client = Client(self.host, autostart=False)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"the daemon exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                self.client.request("GET", "/_ping").read()
                break
            except (OSError, DaemonUnavailable):
                if time.monotonic() > deadline:
                    raise SystemExit(f"the daemon did not answer within 30 s:\n{self.tail()}")
                time.sleep(0.05)

    def tail(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read()[-3000:].decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    # -- API helpers --

    def create(self, cmd: list[str], driver: str = "json-file", binds: list[str] | None = None,
               name: str = "") -> str:
        body = {"Image": IMAGE, "Cmd": cmd,
                "HostConfig": {"LogConfig": {"Type": driver, "Config": {}}, "Binds": binds}}
        return self.client.json("POST", "/containers/create", {"name": name} if name else None,
                                body)["Id"]

    def start(self, cid: str) -> None:
        self.client.post(f"/containers/{cid}/start")

    def wait(self, cid: str) -> int:
        return self.client.json("POST", f"/containers/{cid}/wait")["StatusCode"]

    def remove(self, cid: str) -> None:
        self.client.request("DELETE", f"/containers/{cid}", {"force": 1}).read()

    def state(self, cid: str) -> dict:
        with open(os.path.join(self.data_root, "containers", cid, "state.json")) as f:
            return json.load(f)


def proc_memory(pid: int, anon: bool = False) -> tuple[float, ...]:
    """(VmRSS, Pss[, Pss_Anon]) of a process, in MiB."""
    rss = pss = pss_anon = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
            elif line.startswith("Pss_Anon:"):
                pss_anon = int(line.split()[1]) / 1024
    return (rss, pss, pss_anon) if anon else (rss, pss)


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))]


# -- the benchmarks ----------------------------------------------------------------------------------


def shim_memory(pid: int) -> tuple[float, float, float]:
    """(RSS, PSS, USS) of a process in MiB, from ``smaps_rollup``; USS is what only it holds
    (Private_Clean + Private_Dirty): what killing it would give back."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                fields[key] = int(rest.split()[0]) / 1024
    return (fields.get("Rss", 0.0), fields.get("Pss", 0.0),
            fields.get("Private_Clean", 0.0) + fields.get("Private_Dirty", 0.0))


def shim_parent_pid(d: Daemon) -> int:
    """The pre-forked shim parent of the data root (0: none, shims are exec'd)."""
    try:
        with open(os.path.join(d.data_root, "shim-parent.pid")) as f:
            pid = int(f.read())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return 0


def report_shims(d: Daemon, ids: list[str], what: str) -> dict:
    """RSS, PSS and USS per shim (median and max), and the shim parent's PSS shared out."""
    mem = [shim_memory(d.state(cid)["ShimPid"]) for cid in ids]
    out: dict = {}
    print(f"== shim memory, {what} ({len(ids)} shims)")
    for i, name in enumerate(("RSS", "PSS", "USS")):
        values = [m[i] for m in mem]
        out[name] = {"median": statistics.median(values), "max": max(values)}
        print(f"  {name}  median {statistics.median(values):5.2f} MiB  max {max(values):5.2f} MiB")
    parent = shim_parent_pid(d)
    if parent:
        p_pss = shim_memory(parent)[1]
        out["parent_PSS"] = p_pss
        out["PSS+parent_share"] = out["PSS"]["median"] + p_pss / len(ids)
        print(f"  shim parent {parent}: PSS {p_pss:.2f} MiB = {p_pss / len(ids):.3f} MiB per shim; "
              f"PSS median + that share {out['PSS+parent_share']:5.2f} MiB")
    return out


def timed_starts(d: Daemon, probes: int, running: int) -> dict:
    """create+start of ``probes`` containers with ``running`` already running; each probe is
    removed before the next, so the count stays the same."""
    times = []
    for _ in range(probes):
        t0 = time.perf_counter()
        cid = d.create(["sleep", "3600"])
        d.start(cid)
        times.append(time.perf_counter() - t0)
        d.remove(cid)
    p50, p99 = pct(times, .5) * 1e3, pct(times, .99) * 1e3
    print(f"  create+start with {running:2d} running: p50 {p50:6.1f} ms  p99 {p99:6.1f} ms "
          f"({probes} probes)")
    return {"p50": p50, "p99": p99}


def wait_logged(d: Daemon, cids: list[str], size: int, timeout: float = 600) -> None:
    from runtime.shimclient import ShimClient

    deadline = time.monotonic() + timeout
    for cid in cids:
        client = ShimClient(os.path.join(d.data_root, "containers", cid))
        while client.status().bytes_logged < size:
            if time.monotonic() > deadline:
                raise SystemExit(f"{cid[:12]} did not log {size} bytes in {timeout:g} s")
            time.sleep(0.2)


def restart_daemon(d: Daemon, runtime: str) -> None:
    """SIGTERM, then a new daemon on the same data root: it adopts the running shims."""
    d.stop()
    d.__init__(os.path.dirname(d.data_root), runtime)


def bench_latency_and_memory(d: Daemon, n: int, cli_runs: int, runtime: str = "",
                             loggers: int = 5) -> dict:
    print(f"== create+start latency, {n} containers (API: POST create + POST start → running)")
    d0_rss, d0_pss = proc_memory(d.proc.pid)
    create_t, start_t, total_t, ids = [], [], [], []
    results: dict = {"load_before": _load(), "create+start_ms_with_running": {}}
    for i in range(n):
        if i in (1, 10):
            results["create+start_ms_with_running"][i] = timed_starts(d, 10, i)
        t0 = time.perf_counter()
        cid = d.create(["sleep", "3600"])
        t1 = time.perf_counter()
        d.start(cid)
        t2 = time.perf_counter()
        create_t.append(t1 - t0)
        start_t.append(t2 - t1)
        total_t.append(t2 - t0)
        ids.append(cid)
        assert d.state(cid)["Status"] == "running", d.state(cid)
    results["create+start_ms_with_running"][n] = timed_starts(d, 10, n)
    ms = lambda v: v * 1e3  # noqa: E731
    print(f"  create        p50 {ms(pct(create_t, .5)):6.1f} ms  p99 {ms(pct(create_t, .99)):6.1f} ms")
    print(f"  start         p50 {ms(pct(start_t, .5)):6.1f} ms  p99 {ms(pct(start_t, .99)):6.1f} ms")
    print(f"  create+start  p50 {ms(pct(total_t, .5)):6.1f} ms  p99 {ms(pct(total_t, .99)):6.1f} ms"
          f"  max {ms(max(total_t)):6.1f} ms")
    results.update({"create_ms": {"p50": ms(pct(create_t, .5)), "p99": ms(pct(create_t, .99))},
                    "start_ms": {"p50": ms(pct(start_t, .5)), "p99": ms(pct(start_t, .99))},
                    "create+start_ms": {"p50": ms(pct(total_t, .5)), "p99": ms(pct(total_t, .99)),
                                        "max": ms(max(total_t))}})

    time.sleep(2)  # let every shim settle into its idle loop
    results["shims_idle"] = report_shims(d, ids, f"{n} idle containers (sleep 3600)")
    d1_rss, d1_pss = proc_memory(d.proc.pid)
    print(f"  daemon: RSS {d0_rss:5.1f} MiB with no container → {d1_rss:5.1f} MiB with {n} running"
          f"  (PSS {d0_pss:.1f} → {d1_pss:.1f} MiB)")
    results.update({"daemon_rss_mib": {"idle": d0_rss, f"with {n}": d1_rss},
                    "daemon_pss_mib": {"idle": d0_pss, f"with {n}": d1_pss}})

    if runtime:
        restart_daemon(d, runtime)
        assert all(d.client.json("GET", f"/containers/{cid}/json")["State"]["Running"]
                   for cid in ids), "a container did not survive the daemon's restart"
        results["shims_after_restart"] = report_shims(d, ids, "after a daemon restart (adopted)")
        results["create+start_ms_after_restart"] = timed_starts(d, 10, n)

    if loggers:
        size = 100 * 10**6
        line = "x" * 1023  # 1 KiB lines: 100 MB is ~100,000 of them
        busy = []
        for _ in range(loggers):
            cid = d.create(["sh", "-c", f"yes {line} | head -c {size}; exec sleep 3600"])
            d.start(cid)
            busy.append(cid)
        wait_logged(d, busy, size)
        time.sleep(2)
        results["shims_after_100MB"] = report_shims(d, busy, "each after logging 100 MB")
        ids += busy

    if cli_runs:
        env = dict(os.environ, LOGPIPE_HOST=d.host, LOGPIPE_NO_AUTOSTART="1")
        cli = []
        for _ in range(cli_runs):
            t0 = time.perf_counter()
            out = subprocess.run(LOGPIPE + ["run", "-d", IMAGE, "sleep", "3600"], env=env,
                                 capture_output=True, text=True, check=True).stdout
            cli.append(time.perf_counter() - t0)
            ids.append(out.strip())
        start_up = min(_timed(LOGPIPE + ["version"], env) for _ in range(3))
        print(f"  CLI `logpipe run -d` ({cli_runs} runs, {n}+ containers running): "
              f"p50 {ms(statistics.median(cli)):6.1f} ms  max {ms(max(cli)):6.1f} ms "
              f"(CLI start-up alone: `logpipe version` {ms(start_up):.0f} ms)")
        results["cli_run_d_ms"] = {"p50": ms(statistics.median(cli)), "max": ms(max(cli)),
                                   "cli_startup": ms(start_up)}

    t0 = time.perf_counter()
    threads = [threading.Thread(target=d.remove, args=(cid,)) for cid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"  rm -f of all {len(ids)} containers (in parallel): {time.perf_counter() - t0:.2f} s")
    results["load_after"] = _load()
    return results


def _timed(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def make_input(directory: str, size: int, total: int) -> tuple[str, int]:
    """A file of ``total`` bytes of ``size``-byte lines, made of ``producer.py``'s text."""
    from producer import block_for

    block = block_for(size)  # whole lines, so cutting it at a multiple of size is too
    total -= total % size
    path = os.path.join(directory, f"lines-{size}.txt")
    written = 0
    with open(path, "wb") as f:
        while written < total:
            data = block[: total - written] if total - written < len(block) else block
            f.write(data)
            written += len(data)
    return path, written // size


def run_to_exit(d: Daemon, cmd: list[str], driver: str, binds: list[str]) -> tuple[float, dict]:
    cid = d.create(cmd, driver, binds)
    try:
        t0 = time.perf_counter()
        d.start(cid)
        code = d.wait(cid)
        wall = time.perf_counter() - t0
        st = d.state(cid)
        assert code == 0, (code, st)
        return wall, st
    finally:
        d.remove(cid)


def bench_throughput(d: Daemon, total: int, runs: int) -> dict:
    print(f"== end to end: container cat → pipes → shim → driver → disk "
          f"({total / 1e6:.0f} MB per case, best of {runs})")
    inputs = tempfile.mkdtemp(prefix="lp-bench-in-", dir=os.environ.get("BENCH_DIR"))
    os.chmod(inputs, 0o755)
    binds = [f"{inputs}:{inputs}:ro"]
    results = {}
    try:
        empty = min(run_to_exit(d, ["true"], "json-file", binds)[0] for _ in range(5))
        print(f"  empty container (`true`), start → wait returned: {empty * 1e3:.0f} ms "
              f"(included in every figure below)")
        results["empty_container_s"] = empty
        for size in SIZES:
            path, lines = make_input(inputs, size, total)
            for driver in ("none", "json-file", "local"):
                best, st = float("inf"), {}
                for _ in range(runs):
                    wall, st = run_to_exit(d, ["cat", path], driver, binds)
                    best = min(best, wall)
                    if driver != "none":  # every byte stored (lines over 16 KiB are
                        # stored as several partial records, as Docker splits them)
                        assert st["BytesLogged"] == lines * size, (st, lines * size)
                        assert size > 16384 or st["LinesLogged"] == lines, (st, lines)
                rate_l, rate_b = lines / best, lines * size / best
                note = ""
                docker = {16: "json-file lines/s @16B", 100: "json-file lines/s @100B"}.get(size)
                if driver == "json-file" and docker:
                    note = f"  (Docker {DOCKER[docker] / 1e3:.0f} k lines/s)"
                if driver == "json-file" and size == 1024:
                    note = f"  (Docker {DOCKER['json-file MB/s @1KiB']} MB/s)"
                label = "none (ceiling)" if driver == "none" else driver
                net = lines * size / max(best - empty, 1e-3)
                print(f"  {size:>6} B  {label:<15} {best:6.2f} s  {rate_l / 1e3:7.0f} k lines/s"
                      f"  {rate_b / 1e6:7.1f} MB/s  ({net / 1e6:6.1f} MB/s without the start/exit"
                      f" cost){note}")
                results[f"{driver} {size}"] = {"wall": best, "lines": lines,
                                               "lines_per_s": rate_l, "mb_per_s": rate_b / 1e6,
                                               "mb_per_s_net": net / 1e6}
            os.unlink(path)
    finally:
        shutil.rmtree(inputs)
    return results


# -- the Podman peer: `yes | head` in a container, logpipe against conmon -------------------------

#: (lines, line size incl. the newline, streams): Podman 4.3's conmon on this machine did
#: 2 M lines of 100 B in 1.4-1.7 s and 8 M in 5.4 s; Docker 20.10's json-file ~0.28 M lines/s.
PEER_CASES = ((2_000_000, 100, "stdout"), (8_000_000, 100, "stdout"), (2_000_000, 100, "both"),
              (8_000_000, 100, "both"), (500_000, 1024, "stdout"), (500_000, 1024, "both"))
PEER_DOCKER = {100: 280_000}


def yes_head(lines: int, size: int, streams: str) -> list[str]:
    """The container's command: ``lines`` lines of ``size`` bytes (newline included) from
    ``yes | head``, on stdout, or half on each stream."""
    text = "x" * (size - 1)
    if streams == "stdout":
        script = f"yes {text} | head -n {lines}"
    else:
        half = lines // 2
        script = (f"yes {text} | head -n {half} & yes {text} | head -n {lines - half} >&2; "
                  "wait")
    return ["sh", "-c", script]


class Podman:
    """``podman`` on a storage root of its own (the bench's temporary directory), with the
    busybox rootfs imported; ``None`` from ``find`` says why it cannot run."""

    def __init__(self, base: str, image_tar: str) -> None:
        # podman refuses a runroot longer than 50 characters: a short one of its own
        self.runroot = tempfile.mkdtemp(prefix="lp-podman-", dir="/run")
        self.root = os.path.join(base, "podman")
        self.argv = ["podman", "--root", self.root, "--runroot", self.runroot]
        self.cmd("import", image_tar, "localhost/" + IMAGE)

    @staticmethod
    def missing() -> str:
        """Why the peer cannot run here, or "" when it can."""
        if not shutil.which("podman") or not shutil.which("conmon"):
            return "podman or conmon is not installed (apt-get install podman conmon)"
        if os.geteuid() != 0:
            return "not root (the comparison runs rootful Podman with runc, as logpipe)"
        return ""

    def cmd(self, *args: str) -> str:
        done = subprocess.run(self.argv + list(args), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"podman {' '.join(args[:2])} exited {done.returncode}: "
                               f"{done.stderr.strip()}")
        return done.stdout.strip()

    def run_logged(self, cmd: list[str]) -> tuple[float, str]:
        """``run -d`` with k8s-file; (seconds from the command to the log's last write,
        log path)."""
        t0 = time.time()
        cid = self.cmd("run", "-d", "--network", "none", "--log-driver", "k8s-file",
                       "localhost/" + IMAGE, *cmd)
        try:
            self.cmd("wait", cid)
            path = self.cmd("inspect", "--format", "{{.HostConfig.LogConfig.Path}}", cid)
            return _settled_mtime([path]) - t0, _count_k8s_lines(path)
        finally:
            self.cmd("rm", "-f", cid)

    def run_empty(self) -> float:
        """Seconds from ``run -d true`` to ``wait`` returning: the fixed cost of a run."""
        t0 = time.time()
        cid = self.cmd("run", "-d", "--network", "none", "localhost/" + IMAGE, "true")
        self.cmd("wait", cid)
        wall = time.time() - t0
        self.cmd("rm", "-f", cid)
        return wall

    def close(self) -> None:
        try:
            self.cmd("rm", "-af")
            self.cmd("rmi", "-af")
        except RuntimeError as err:
            print(f"warning: podman clean-up failed: {err}")
        # the overlay driver bind-mounts its directory onto itself; left mounted, the
        # benchmark's directory could not be removed
        overlay = os.path.join(self.root, "overlay")
        if os.path.ismount(overlay):
            subprocess.run(["umount", overlay], check=False)
        shutil.rmtree(self.runroot, ignore_errors=True)


def _settled_mtime(paths: list[str]) -> float:
    """The last write to any of ``paths``, once they have stopped growing (a logger may
    still be writing when the container's exit is reported)."""
    sizes = None
    while True:
        now = [(os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths if os.path.exists(p)]
        if now == sizes:
            return max(m for _, m in now) / 1e9
        sizes = now
        time.sleep(0.05)


def _count_k8s_lines(path: str) -> int:
    """Complete lines in a k8s-file log (``<time> <stream> F <text>``; conmon writes a line
    cut by its 8 KiB buffer as ``P`` pieces followed by an ``F`` one)."""
    count, tail = 0, b""
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            block = tail + block
            cut = block.rfind(b"\n") + 1
            count += block.count(b" F ", 0, cut)
            tail = block[cut:]
    return count


def logpipe_run_logged(d: Daemon, cmd: list[str], driver: str) -> tuple[float, int]:
    """``logpipe run -d`` from the CLI; (seconds from the command to the log's last write,
    lines the shim counted as stored)."""
    env = dict(os.environ, LOGPIPE_HOST=d.host, LOGPIPE_NO_AUTOSTART="1")
    t0 = time.time()
    cid = subprocess.run(LOGPIPE + ["run", "-d", "--log-driver", driver, IMAGE, *cmd], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        d.wait(cid)
        cdir = os.path.join(d.data_root, "containers", cid)
        if driver == "json-file":
            paths = [os.path.join(cdir, f"{cid}-json.log")]
        else:
            local = os.path.join(cdir, "local-logs")
            paths = [os.path.join(local, name) for name in os.listdir(local)]
        return _settled_mtime(paths) - t0, d.state(cid)["LinesLogged"]
    finally:
        d.remove(cid)


def logpipe_run_empty(d: Daemon) -> float:
    """Seconds from ``logpipe run -d true`` to ``POST wait`` returning."""
    env = dict(os.environ, LOGPIPE_HOST=d.host, LOGPIPE_NO_AUTOSTART="1")
    t0 = time.time()
    cid = subprocess.run(LOGPIPE + ["run", "-d", IMAGE, "true"], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    d.wait(cid)
    wall = time.time() - t0
    d.remove(cid)
    return wall


def bench_podman_peer(d: Daemon, image_tar: str, base: str, runs: int, quick: bool) -> dict:
    """The same ``yes | head`` containers through Podman 4.3's conmon (k8s-file) and through
    logpipe (json-file, local), interleaved run by run so that both see the same load."""
    why = Podman.missing()
    if why:
        print(f"== Podman peer skipped: {why}")
        return {"skipped": why}
    print(f"== `run -d` of `yes | head` → last line in the log file: logpipe vs Podman's "
          f"conmon (k8s-file), median of {runs}, load {_load()}")
    podman = Podman(base, image_tar)
    results: dict = {}
    try:
        empty = {"conmon": statistics.median(podman.run_empty() for _ in range(runs)),
                 "logpipe": statistics.median(logpipe_run_empty(d) for _ in range(runs))}
        print(f"  empty container (`run -d true` → exit seen by `wait`, in every figure below):"
              f" conmon {empty['conmon']:.2f} s  logpipe {empty['logpipe']:.2f} s")
        results["empty_container_s"] = empty
        for lines, size, streams in PEER_CASES:
            if quick:
                lines //= 4
            cmd = yes_head(lines, size, streams)
            walls: dict[str, list[float]] = {"conmon": [], "json-file": [], "local": []}
            for _ in range(runs):
                wall, stored = podman.run_logged(cmd)
                assert stored == lines, ("conmon", stored, lines)
                walls["conmon"].append(wall)
                for driver in ("json-file", "local"):
                    wall, stored = logpipe_run_logged(d, cmd, driver)
                    assert stored == lines, (driver, stored, lines)
                    walls[driver].append(wall)
            med = {k: statistics.median(v) for k, v in walls.items()}
            case = f"{lines / 1e6:g} M × {size} B {streams}"
            row = "  ".join(f"{k} {med[k]:5.2f} s ({lines / med[k] / 1e6:4.2f} M/s)"
                            for k in walls)
            ratios = "  ".join(f"{k}/conmon {med['conmon'] / med[k]:4.2f}×"
                               for k in ("json-file", "local"))
            print(f"  {case:<22} {row}  │ {ratios}")
            results[case] = {"seconds": walls, "median_s": med, "lines": lines,
                             "lines_per_s": {k: lines / med[k] for k in med},
                             "logpipe_over_conmon": {k: med["conmon"] / med[k]
                                                     for k in ("json-file", "local")}}
        results["conmon_idle_memory"] = conmon_idle_memory(podman, 5 if quick else 10)
    finally:
        podman.close()
    print(f"  load after: {_load()}")
    return results


def conmon_idle_memory(podman: Podman, n: int) -> dict:
    """RSS, PSS and USS (private pages) of conmon for ``n`` idle containers (``sleep``)."""
    ids = [podman.cmd("run", "-d", "--network", "none", "localhost/" + IMAGE, "sleep", "3600")
           for _ in range(n)]
    try:
        time.sleep(1)
        pids = [int(podman.cmd("inspect", "--format", "{{.State.ConmonPid}}", cid))
                for cid in ids]
        mem = [_rss_pss_uss(pid) for pid in pids]
    finally:
        podman.cmd("rm", "-f", "-t", "0", *ids)
    out = {k: statistics.median(m[i] for m in mem) for i, k in enumerate(("rss", "pss", "uss"))}
    print(f"  conmon per idle container ({n}): RSS {out['rss']:.1f} MiB  PSS {out['pss']:.1f} MiB"
          f"  USS {out['uss']:.1f} MiB (medians)")
    return {f"{k}_mib": v for k, v in out.items()}


def _rss_pss_uss(pid: int) -> tuple[float, float, float]:
    """(Rss, Pss, Private_Clean + Private_Dirty) of a process from ``smaps_rollup``, MiB."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) / 1024
    return (fields["Rss"], fields["Pss"],
            fields["Private_Clean"] + fields["Private_Dirty"])


def main() -> None:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # measure compiled bytecode, as installed
    subprocess.run([sys.executable, "-m", "compileall", "-q"] +
                   [os.path.join(REPO, p) for p in ("logpipe", "drivers", "runtime")],
                   stdout=subprocess.DEVNULL)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller volumes")
    ap.add_argument("--runtime", default="", choices=["", "runc", "crun", "process"],
                    help="executor (default: runc as root when installed, else process)")
    ap.add_argument("--containers", type=int, default=50)
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-peer", action="store_true", help="no Podman comparison")
    ap.add_argument("--only-peer", action="store_true",
                    help="only the Podman comparison (implies --skip-latency --skip-throughput)")
    args = ap.parse_args()
    if args.only_peer:
        args.skip_latency = args.skip_throughput = True
    runtime = pick_runtime(args.runtime)
    why = ("root and runc on PATH" if runtime == "runc" and not args.runtime
           else "asked with --runtime" if args.runtime
           else "not root" if os.geteuid() != 0 else "runc not installed")
    print(f"load average before: {_load()} (other work on the machine skews every figure)")
    print(f"runtime: {runtime} ({why})"
          + ("  -- no isolation: commands run on the host" if runtime == "process" else ""))
    total = 32 * 10**6 if args.quick else 160 * 10**6
    base = tempfile.mkdtemp(prefix="lp-bench-rt-", dir=os.environ.get("BENCH_DIR"))
    os.chmod(base, 0o755)
    d = None
    results: dict = {"runtime": runtime, "docker": DOCKER, "target": TARGET}
    try:
        image = build_image(os.path.join(base, "busybox.tar"))
        d = Daemon(base, runtime)
        subprocess.run(LOGPIPE + ["-H", d.host, "import", image, IMAGE], check=True,
                       stdout=subprocess.DEVNULL)
        print(f"daemon pid {d.proc.pid}, data root {d.data_root}")
        if not args.skip_latency:
            results["latency+memory"] = bench_latency_and_memory(
                d, args.containers, 5 if args.quick else 10, runtime, 2 if args.quick else 5)
        if not args.skip_throughput:
            results["throughput"] = bench_throughput(d, total, 1 if args.quick else 3)
        if not args.skip_peer:
            results["podman"] = bench_podman_peer(d, image, base, 3, args.quick)
    finally:
        if d is not None:
            try:  # after a failure: no container (shim, sleep) may outlive the benchmark
                for c in d.client.json("GET", "/containers/json", {"all": 1}):
                    d.remove(c["Id"])
            except Exception as err:  # noqa: BLE001
                print(f"warning: could not remove the containers: {err}")
            d.stop()
            leftover = [c for c in os.listdir(os.path.join(d.data_root, "containers"))] \
                if os.path.isdir(os.path.join(d.data_root, "containers")) else []
            if leftover:
                print(f"warning: {len(leftover)} containers left in {d.data_root}; kept for a look")
            else:
                shutil.rmtree(base, ignore_errors=True)
        else:
            shutil.rmtree(base, ignore_errors=True)
    print(f"load average after: {_load()}")
    out = os.path.join(tempfile.gettempdir(), "logpipe-bench-runtime.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"(raw figures in {out})")


if __name__ == "__main__":
    main()
