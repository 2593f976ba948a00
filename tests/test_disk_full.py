"""A full disk: the capture survives it, counts what it could not store, and resumes by itself.

Real tmpfs mounts of a few megabytes (``mount -t tmpfs -o size=…``, so root is needed),
filled with ``fallocate``; the end-to-end test runs a real daemon whose data root is such a
tmpfs and a real runc container logging in a loop. Every mount is unmounted at teardown, also
when a test fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time

import pytest

from conftest import IMAGE, RUNC, RestartableDaemon, fill, tmpfs, wait_until
from drivers.json_file import JSONFileDriver
from drivers.json_file.reader import JSONFileFormat
from drivers.local import LocalDriver
from drivers.local.reader import LocalFormat
from drivers.spool import SpoolWriter
from runtime.cli.client import Client
from logpipe.driver import LogInfo
from logpipe.errors import PartlyStored
from logpipe.message import STDERR, STDOUT, Chunk
from logpipe.reading import ReadConfig, read_logs
from logpipe.storage_guard import NOTICE_PREFIX, StorageGuard

# Real tmpfs mounts; the tests that also run a daemon are e2e.
pytestmark = pytest.mark.integration

ROOT = os.geteuid() == 0 and shutil.which("mount") is not None
needs_root = pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root")

DRIVERS = {"json-file": (JSONFileDriver, JSONFileFormat), "local": (LocalDriver, LocalFormat),
           "spool": (LocalDriver, LocalFormat)}  # a remote driver's spool: local's format


def writer_for(driver: str, info: LogInfo):
    """The shim's storage for ``driver`` (``spool``: the writer a remote driver's shim uses)."""
    if driver == "spool":
        config = {"cache-compress": info.config.get("compress", "true")}
        return SpoolWriter(info._replace(config=config), "fluentd")
    return DRIVERS[driver][0](info)


def numbered(first: int, count: int, width: int = 100) -> bytes:
    return b"".join(b"%d %s\n" % (i, b"x" * width) for i in range(first, first + count))


def read_back(driver: str, info: LogInfo) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Every record of the log (source, line) and every warning the reader gave."""
    cls, fmt = DRIVERS[driver]
    warnings: list[str] = []
    out = []
    for chunk in read_logs(cls.log_path(info), fmt(), ReadConfig(), warn=warnings.append):
        out += [(m.source, m.line) for m in chunk.messages()]
    return out, warnings


def lines_of(data: bytes) -> list[tuple[str, bytes]]:
    return [(STDOUT, line) for line in data.split(b"\n")[:-1]]


# -- storage drivers on a full disk -------------------------------------------------------------

@needs_root
@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_a_write_that_fills_the_disk_leaves_whole_records_and_says_how_many(tmp_path, driver):
    """A batch larger than the space left: the log keeps the records that fit, whole, the
    error says how many, and once space returns the next write appends cleanly."""
    with tmpfs(str(tmp_path / "disk"), "4m") as disk:
        info = LogInfo(container_id="c" * 64, log_dir=disk, config={"compress": "false"}
                       if driver != "json-file" else {})
        writer = writer_for(driver, info)
        try:
            filler = fill(disk, leave=1536 << 10)
            batch = numbered(0, 20_000)  # ~2 MiB, several blocks: cannot fit
            with pytest.raises(OSError) as failed:
                writer.write([Chunk(STDOUT, 1, batch)])
            stored = failed.value.records if isinstance(failed.value, PartlyStored) else 0
            assert failed.value.errno == 28 and 0 < stored < 20_000
            got, warnings = read_back(driver, info)
            assert got == lines_of(batch)[:stored] and not warnings

            os.unlink(filler)
            writer.write([Chunk(STDOUT, 2, numbered(20_000, 100))])
        finally:
            writer.close()
        got, warnings = read_back(driver, info)
        assert got == lines_of(batch)[:stored] + lines_of(numbered(20_000, 100))
        assert not warnings


@needs_root
def test_a_rotation_that_cannot_create_the_next_file_is_tried_again_by_the_next_write(tmp_path):
    """Out of inodes at rotation: the write fails, the writer holds no stale descriptor, and
    the next write once an inode is free creates the file and stores the batch."""
    with tmpfs(str(tmp_path / "disk"), "4m", "nr_inodes=16") as disk:
        info = LogInfo(container_id="c" * 64, log_dir=disk,
                       config={"max-size": "10k", "max-file": "2"})
        writer = JSONFileDriver(info)
        fillers = []
        try:
            writer.write([Chunk(STDOUT, 1, numbered(0, 30))])  # ~5 KB: half of max-size
            for i in range(64):  # use up the inodes
                try:
                    fillers.append(os.open(os.path.join(disk, f"f{i}"), os.O_CREAT | os.O_WRONLY))
                except OSError:
                    break
            with pytest.raises(OSError) as failed:  # ~10 KB: rotates half-way
                writer.write([Chunk(STDOUT, 2, numbered(30, 60))])
            stored = failed.value.records
            assert 0 < stored < 60
            with pytest.raises(OSError) as failed:  # still no inode: fails again, cleanly
                writer.write([Chunk(STDOUT, 3, numbered(90, 10))])
            assert not isinstance(failed.value, PartlyStored)
            os.close(fillers.pop())
            os.unlink(os.path.join(disk, f"f{len(fillers)}"))
            writer.write([Chunk(STDOUT, 4, numbered(100, 10))])
        finally:
            for fd in fillers:
                os.close(fd)
            writer.close()
        got, warnings = read_back("json-file", info)
        assert got == lines_of(numbered(0, 30 + stored) + numbered(100, 10)) and not warnings


@needs_root
@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_storage_guard_counts_what_it_could_not_store_and_notes_the_gap_when_space_returns(
        tmp_path, driver):
    with tmpfs(str(tmp_path / "disk"), "2m") as disk:
        info = LogInfo(container_id="c" * 64, log_dir=disk)
        reports: list[str] = []
        guard = StorageGuard(writer_for(driver, info), report=reports.append,
                             retry_interval=0.2)
        try:
            guard.write([Chunk(STDOUT, 10, numbered(0, 100))])
            filler = fill(disk)
            for i in range(5):  # every one fails or is only counted: never raises
                guard.write([Chunk(STDOUT, 20 + i, numbered(100 + 1000 * i, 1000)),
                             Chunk(STDERR, 20 + i, b"err %d\n" % i)])
            assert guard.failing and "No space left on device" in guard.last_error
            assert (guard.lines_dropped, guard.bytes_dropped) == (5 * 1001, sum(
                len(numbered(100 + 1000 * i, 1000)) + len(b"err %d\n" % i) for i in range(5)))
            assert len(reports) == 1 and "No space left" in reports[0]

            os.unlink(filler)
            # Retried at most every retry_interval: right after a failure, only counted.
            next_try = guard.next_try
            guard.write([Chunk(STDOUT, 30, b"counted only\n")])
            assert guard.failing and guard.lines_dropped == 5 * 1001 + 1
            assert guard.next_try == next_try  # a steady stream does not push the retry away
            wait_until(lambda: time.monotonic() >= guard.next_try, 2, "the retry time")
            guard.write([Chunk(STDOUT, 40, b"back\n")])
            assert not guard.failing
        finally:
            guard.close()
        got, warnings = read_back(driver, info)
        assert not warnings
        assert got[:100] == lines_of(numbered(0, 100))
        source, notice = got[100]
        assert source == STDERR and notice.startswith(NOTICE_PREFIX)
        assert re.match(rb"logpipe: 5006 lines \(\d+ bytes\) of output were not stored between "
                        rb"1970-01-01T00:00:00.00000002Z and 1970-01-01T00:00:00.00000003Z: "
                        rb"\[Errno 28\] No space left on device$", notice), notice
        assert got[101:] == [(STDOUT, b"back")]


# -- a container whose data root fills up -------------------------------------------------------

@pytest.fixture
def tmpfs_daemon(busybox_tar):
    """A daemon whose data root is a 96 MB tmpfs, with the busybox image imported."""
    if not RUNC:
        pytest.skip("needs root, runc and busybox-static (a real container on a real tmpfs)")
    d = RestartableDaemon("runc")
    try:
        with tmpfs(d.root, "96m"):
            try:
                d.start()
                d.ok("import", busybox_tar, IMAGE)
                yield d
            finally:
                d.close()  # removes containers and mounts; the tmpfs itself stays mounted
    finally:
        shutil.rmtree(d.base, ignore_errors=True)


LOOP = "i=0; while true; do echo line $i; i=$((i+1)); done"


def _storage(d: RestartableDaemon, name: str) -> dict:
    return json.loads(d.inspect(name, "{{json .LogStorage}}"))


def _metric(text: str, name: str, container: str) -> int:
    for line in text.splitlines():
        if line.startswith(name + "{") and f'container_name="{container}"' in line:
            return int(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} of {container} not in /metrics")


@pytest.mark.e2e
@pytest.mark.parametrize("driver", ["json-file", "local"])
def test_shim_survives_enospc_and_resumes(tmpfs_daemon, driver):
    """The data root fills up under a container logging in a loop: the shim lives on and keeps
    draining the pipes, the gap is counted (inspect, /metrics) while the daemon answers, and
    once space returns new lines arrive by themselves after one ``logpipe:`` notice on stderr
    that names exactly the lines missing from the log."""
    d = tmpfs_daemon
    d.ok("run", "-d", "--name", "filler", "--log-driver", driver, IMAGE, "sh", "-c", LOOP)
    wait_until(lambda: _storage(d, "filler")["StoredLines"] > 1000, 30, "the first lines")

    filler = fill(d.root)
    wait_until(lambda: _storage(d, "filler")["DroppedLines"] > 10_000, 30, "lines dropped")
    failing = _storage(d, "filler")
    assert failing["Failing"] and "No space left on device" in failing["LastError"]
    assert failing["LastDropAt"] != "0001-01-01T00:00:00Z"
    # The daemon answers; the shim and the container live on, and the pipes are drained.
    assert d.inspect("filler", "{{.State.Status}} {{.State.Running}}") == "running true"
    metrics = Client(d.host, autostart=False).request("GET", "/metrics").read().decode()
    assert _metric(metrics, "logpipe_storage_failing", "filler") == 1
    assert _metric(metrics, "logpipe_dropped_lines_total", "filler") >= failing["DroppedLines"]
    assert _metric(metrics, "logpipe_captured_lines_total", "filler") >= failing["CapturedLines"]
    wait_until(lambda: _storage(d, "filler")["CapturedLines"] > failing["CapturedLines"] + 10_000,
               30, "the pipes to be drained while the disk is full")

    os.unlink(filler)
    wait_until(lambda: not _storage(d, "filler")["Failing"], 30, "storage to resume")
    resumed = _storage(d, "filler")["StoredLines"]
    wait_until(lambda: _storage(d, "filler")["StoredLines"] > resumed + 10_000, 30,
               "new lines after the gap")
    d.ok("stop", "-t", "1", "filler")
    final = _storage(d, "filler")
    assert final["DroppedLines"] >= failing["DroppedLines"] and not final["Failing"]
    assert final["CapturedLines"] == final["StoredLines"] + final["DroppedLines"]

    res = d.lp("logs", "filler")
    assert res.returncode == 0, res.stderr[-2000:]
    numbers = [int(line.split()[1]) for line in res.stdout.splitlines()]
    assert numbers[0] == 0 and numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    notices = [line for line in res.stderr.splitlines() if line.startswith(b"logpipe: ")]
    assert notices and all(re.match(rb"logpipe: \d+ lines \(\d+ bytes\) of output were not "
                                     rb"stored between \S+Z and \S+Z: \[Errno 28\] No space "
                                     rb"left on device$", n) for n in notices), notices
    missing = numbers[-1] + 1 - len(numbers)
    said = sum(int(n.split()[1]) for n in notices)
    assert missing == said == final["DroppedLines"], (missing, said, final)


@needs_root
def test_state_json_is_written_over_the_old_file_when_the_disk_is_full(tmp_path):
    from runtime.state import EXITED, RUNNING, State, read_state, write_state

    with tmpfs(str(tmp_path / "disk"), "1m") as disk:
        write_state(disk, State(status=RUNNING, running=True, pid=42))
        fill(disk)
        with pytest.raises(OSError):  # no room for a new file indeed
            with open(os.path.join(disk, "probe"), "wb") as f:
                f.write(b"x" * 8192)
        final = State(status=EXITED, exit_code=143, finished_at="2026-12-07T14:00:00.123456789Z",
                      lines_dropped=5, storage_error="[Errno 28] No space left on device")
        write_state(disk, final)
        assert read_state(disk) == final
        assert [n for n in os.listdir(disk) if n.startswith("state.json.tmp")] == []


#: About 5,000 lines a second: what a receiver in the test can take without piling up.
PACED_LOOP = ("i=0; while true; do echo line $i; i=$((i+1)); "
              "if [ $((i % 50)) = 0 ]; then usleep 10000; fi; done")


@pytest.mark.e2e
def test_a_remote_driver_ships_on_across_a_full_disk(tmpfs_daemon):
    """The spool and the shipper's checkpoint share the full disk: the shim counts what it
    cannot spool, the shipper goes on delivering what was spooled (its checkpoint cannot be
    saved meanwhile), and after the disk is freed the receiver gets the notice and new lines."""
    from receivers.fluentd import FakeFluentd

    d = tmpfs_daemon
    with FakeFluentd() as rx:
        d.ok("run", "-d", "--name", "remote", "--log-driver", "fluentd", "--log-opt",
             f"fluentd-address={rx.address}", IMAGE, "sh", "-c", PACED_LOOP)
        wait_until(lambda: _storage(d, "remote")["StoredLines"] > 200, 30, "the first lines")
        filler = fill(d.root)
        wait_until(lambda: _storage(d, "remote")["DroppedLines"] > 500, 30, "lines dropped")
        assert _storage(d, "remote")["Failing"]
        os.unlink(filler)
        wait_until(lambda: not _storage(d, "remote")["Failing"], 30, "storage to resume")
        resumed = _storage(d, "remote")["StoredLines"]
        wait_until(lambda: _storage(d, "remote")["StoredLines"] > resumed + 500, 30, "new lines")
        d.ok("stop", "-t", "1", "remote")
        final = _storage(d, "remote")

        def shipped() -> dict:
            return json.loads(d.inspect("remote", "{{json .LogShipping}}"))
        wait_until(lambda: shipped()["BacklogLines"] == 0, 30, "the spool to be shipped")
        events = rx.wait_for(final["StoredLines"], 30)
    logs = [(e.record["source"], e.record["log"]) for e in events]
    numbers = [int(text.split()[1]) for source, text in logs if source == "stdout"]
    assert numbers[0] == 0 and numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    notices = [text for source, text in logs if source == "stderr"]
    assert notices and all(n.startswith("logpipe: ") for n in notices), notices
    missing = numbers[-1] + 1 - len(numbers)
    said = sum(int(n.split()[1]) for n in notices)
    assert missing == said == final["DroppedLines"], (missing, said, final)


@pytest.mark.e2e
def test_stop_and_rm_work_while_the_disk_is_full(tmpfs_daemon):
    d = tmpfs_daemon
    d.ok("run", "-d", "--name", "full", IMAGE, "sh", "-c", LOOP)
    wait_until(lambda: _storage(d, "full")["StoredLines"] > 1000, 30, "the first lines")
    fill(d.root)
    wait_until(lambda: _storage(d, "full")["Failing"], 30, "storage to fail")
    d.ok("stop", "-t", "1", "full")
    assert d.inspect("full", "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"  # sh as pid 1 ignores SIGTERM
    assert _storage(d, "full")["DroppedLines"] > 0
    d.ok("rm", "full")
    assert d.ok("ps", "-aq") == b""
