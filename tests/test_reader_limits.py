"""Readers that stall or meet damage cost bounded disk and memory, and are told what they
missed: a ``logs -f`` whose reader stops reading cannot make rotation keep files without end,
and a run of NULs in a log is skipped, not buffered, and reported — through the real CLI."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import LOGPIPE, logpipe, spawn, wait_for_path, wait_until_following
from logpipe.fileset import KEEP_FLOOR

# CLI processes on local files; the API follower's test starts a daemon.
pytestmark = pytest.mark.integration

MB = 1_000_000


def dir_size(path) -> int:
    total = 0
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False):
            try:
                total += entry.stat().st_size
            except FileNotFoundError:
                pass
    return total


def test_stalled_follower_pins_bounded_files_and_reports_exactly_what_it_missed(tmp_path, procs):
    log_dir = tmp_path / "log"
    gate = tmp_path / "go"
    n = 1_000_000  # ~70 MB of json-file lines: 35 times the 2 MB budget, twice the keep floor
    cap = spawn(procs, "capture", "--log-dir", str(log_dir), "--log-opt", "max-size=1m",
                "--log-opt", "max-file=2", "--", "sh", "-c",
                f"while [ ! -e {gate} ]; do sleep 0.005; done; seq 1 {n}",
                stdout=subprocess.DEVNULL)
    wait_for_path(str(log_dir / "capture.json"), cap)
    current = log_dir / (json.loads((log_dir / "capture.json").read_text())["id"] + "-json.log")
    wait_for_path(str(current), cap)
    # stdout is a pipe nobody reads until the writer is done: the follower stalls when the
    # pipe is full, holding its place in the log
    follower = spawn(procs, "logs", "--log-dir", str(log_dir), "-f")
    wait_until_following(current, follower)
    gate.touch()
    bound = 2 * MB + KEEP_FLOOR + 2 * MB  # the log's files, the kept ones, one file of slack
    biggest = 0
    deadline = time.monotonic() + 120
    while cap.poll() is None:
        biggest = max(biggest, dir_size(log_dir))
        assert time.monotonic() < deadline, "the writer never finished"
        time.sleep(0.02)
    assert cap.returncode == 0, cap.stderr.read().decode()
    assert max(biggest, dir_size(log_dir)) <= bound

    out, err = follower.communicate(timeout=120)  # the reader comes back and reads it all
    assert follower.returncode == 0, err.decode()
    got = [int(x) for x in out.split(b"\n")[:-1]]
    assert got == sorted(set(got)) and got[-1] == n  # in order, each once, to the end
    reported = [int(m) for m in re.findall(rb"this reader fell behind: (\d+) records", err)]
    assert reported, err.decode()
    assert sum(reported) == n - len(got)  # every missing line is accounted for, exactly
    holes = sum(b - a - 1 for a, b in zip([0] + got, got))
    assert holes == n - len(got)
    assert not list(log_dir.glob(".*.keep.*"))  # both gone: nothing stays pinned


def _peak_rss_of(argv: list[str]) -> tuple[subprocess.CompletedProcess, int]:
    """Run a command; its peak RSS in bytes (the largest of any child waited for so far is
    reported, so measure in a fresh interpreter)."""
    probe = ("import resource, subprocess, sys\n"
             "r = subprocess.run(sys.argv[1:], capture_output=True)\n"
             "sys.stdout.buffer.write(repr((r.returncode, r.stdout, r.stderr, "
             "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)).encode())\n")
    res = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, timeout=120)
    code, out, err, maxrss_kib = eval(res.stdout)  # noqa: S307 - our own repr
    return subprocess.CompletedProcess(argv, code, out, err), maxrss_kib * 1024


def _damaged_log(tmp_path, driver: str, nuls: int):
    """A captured log (``before``), a run of NULs (a crash left a hole), more lines (``after``)."""
    log_dir = tmp_path / driver
    no_rotation = ["--log-opt", "max-size=1g"]  # local rotates at 20 MB by default
    r = logpipe("capture", "--log-driver", driver, "--log-dir", str(log_dir), *no_rotation, "--",
                "sh", "-c", "echo before")
    assert r.returncode == 0, r.stderr
    path = (log_dir / "local-logs" / "container.log" if driver == "local"
            else log_dir / (json.loads((log_dir / "capture.json").read_text())["id"] + "-json.log"))
    with open(path, "ab") as f:
        for _ in range(nuls // MB):
            f.write(b"\0" * MB)
    r = logpipe("capture", "--log-driver", driver, "--log-dir", str(log_dir), *no_rotation, "--",
                "sh", "-c", "echo after; echo end")
    assert r.returncode == 0, r.stderr
    return log_dir


def test_a_run_of_nuls_is_skipped_in_bounded_memory_and_reported(tmp_path):
    nuls = 40 * MB
    for driver in ("json-file", "local"):
        log_dir = _damaged_log(tmp_path, driver, nuls)
        small_dir = _damaged_log(tmp_path / "small", driver, MB)
        base, base_peak = _peak_rss_of(LOGPIPE + ["logs", "--log-dir", str(small_dir)])
        assert base.returncode == 0, base.stderr
        res, peak = _peak_rss_of(LOGPIPE + ["logs", "--log-dir", str(log_dir)])
        assert res.returncode == 0, res.stderr
        assert res.stdout == b"before\nafter\nend\n", driver  # the lines after the damage too
        assert b"damaged" in res.stderr and b"before" not in res.stderr, (driver, res.stderr)
        sizes = re.findall(rb"skipped (\d+) (?:unreadable )?bytes", res.stderr)
        sizes += re.findall(rb"damaged data \((\d+) bytes\)", res.stderr)
        skipped = sum(map(int, sizes))
        assert nuls - 64 <= skipped <= nuls + 64, (driver, res.stderr)
        # 40 MB of damage costs no more memory than 1 MB does (the pieces are 1 MiB)
        assert peak - base_peak < 12 * MB, (driver, peak, base_peak)
        # seeking (--since bisects and reads the last line's time, --tail counts back) too
        for flags, want in ((["--since", "2000-01-01T00:00:00Z"], b"before\nafter\nend\n"),
                            (["--tail", "2"], b"after\nend\n")):
            res, peak = _peak_rss_of(LOGPIPE + ["logs", *flags, "--log-dir", str(log_dir)])
            assert (res.returncode, res.stdout) == (0, want), (driver, flags, res.stderr)
            assert peak - base_peak < 12 * MB, (driver, flags, peak, base_peak)


def test_paused_follower_generator_is_moved_forward_and_told_the_exact_gap(tmp_path):
    from drivers.json_file import JSONFileDriver
    from logpipe.driver import LogInfo
    from logpipe.message import Chunk
    from logpipe.reading import ReadConfig

    info = LogInfo(container_id="c" * 64, log_dir=str(tmp_path),
                   config={"max-size": "1m", "max-file": "2"})
    writer = JSONFileDriver(info)
    line = b"x" * 90

    def write(first: int, count: int) -> None:
        writer.write([Chunk("stdout", 1, b"".join(b"%09d %s\n" % (i, line)
                                                  for i in range(first, first + count)))])

    write(0, 50_000)  # ~7 MB before anyone follows: nothing is counted for it
    reports: list[str] = []
    reader = JSONFileDriver.read(info, ReadConfig(tail=1, follow=True, warn=reports.append))
    got = [next(reader).data]  # registered, then paused: it reads nothing more for a while
    n = 400_000  # ~55 MB while it is paused
    for first in range(50_000, 50_000 + n, 50_000):
        write(first, 50_000)
    assert dir_size(tmp_path) <= 2 * MB + KEEP_FLOOR + 2 * MB
    writer.close()
    got += [c.data for c in reader]  # resumed: reads to the end (the writer is gone)
    numbers = [int(x[:9]) for x in b"".join(got).splitlines()]
    assert numbers[0] == 49_999 and numbers[-1] == 50_000 + n - 1
    assert numbers == sorted(set(numbers))
    missed = [int(m) for m in re.findall(r"fell behind: (\d+) records", " ".join(reports))]
    assert len(missed) == 1 and missed[0] == 50_000 + n - 49_999 - len(numbers), reports


@pytest.mark.e2e
def test_api_follower_that_stops_reading_is_told_on_stream_3_how_many_lines_it_missed(
        api, tmp_path):
    from conftest import create, wait
    from runtime.cli.client import read_frames

    gate = tmp_path / "go"
    n = 1_000_000  # ~80 MB of json-file lines: 40 times the 2 MB budget
    cid = create(api, ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.01; done; seq 1 {n}"],
                 HostConfig={"LogConfig": {"Type": "json-file",
                                           "Config": {"max-size": "1m", "max-file": "2"}}})
    api.post(f"/containers/{cid}/start")
    log_path = api.json("GET", f"/containers/{cid}/json")["LogPath"]
    resp = api.request("GET", f"/containers/{cid}/logs",
                       {"follow": 1, "stdout": 1, "stderr": 1}, timeout=120)
    marker = f".{os.path.basename(log_path)}.follow."
    deadline = time.monotonic() + 20
    while not any(name.startswith(marker) for name in os.listdir(os.path.dirname(log_path))):
        assert time.monotonic() < deadline, "the daemon's follower never registered"
        time.sleep(0.01)
    gate.touch()  # the client reads nothing until the container is done
    assert wait(api, cid) == 0
    assert dir_size(os.path.dirname(log_path)) <= 2 * MB + KEEP_FLOOR + 2 * MB
    frames = list(read_frames(resp))
    got = [int(x) for x in b"".join(p for s, p in frames if s == 1).split(b"\n")[:-1]]
    reports = b"".join(p for s, p in frames if s == 3)
    assert got == sorted(set(got)) and got[-1] == n
    missed = [int(m) for m in re.findall(rb"^Error grabbing logs: .*fell behind: (\d+) records",
                                         reports, re.M)]
    assert missed and sum(missed) == n - len(got), (len(got), reports)
