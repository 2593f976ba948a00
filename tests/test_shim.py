"""The per-container shim: real shims, real processes (the ``process`` executor, no root),
real pipes, files and control sockets. Every shim and container started here is killed at
teardown, even when a test fails."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import wait_until
from logpipe.reading import ReadConfig
from logpipe.registry import LogPlan, get_driver
from runtime import shim as shim_module
from runtime.shimclient import ShimClient, ShimError, _is_shim, recover_state, spawn_shim
from runtime.spec import SHIM_SOCKET, ContainerSpec
from runtime.state import ZERO_TIME, read_state

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def python():
    """The interpreter the shim runs with: the one running the tests."""
    return sys.executable


@pytest.fixture
def containers(tmp_path, python):
    """``make(argv, ...)`` creates a container directory; ``start(spec)`` spawns its shim.
    Teardown kills every shim, container and recorded stray process still alive."""
    made: list[ContainerSpec] = []
    strays: list[int] = []

    class Containers:
        def make(self, script, log_type="json-file", opts=None, argv=None, parent=None):
            d = (parent or tmp_path) / f"c{len(made)}"
            d.mkdir()
            spec = ContainerSpec(
                id=os.urandom(32).hex(), name=f"/c{len(made)}", dir=str(d),
                created="2024-01-01T00:00:00Z", image="none", image_id="sha256:" + "0" * 64,
                rootfs="", entrypoint=(), cmd=tuple(argv or ("sh", "-c", script)), env=(),
                working_dir=str(d), user="", hostname="", labels={}, log_type=log_type,
                log_opts=opts or {}, runtime="process")
            spec.save()
            made.append(spec)
            return spec

        def start(self, spec):
            return spawn_shim(spec.dir, python=python)

        def stray(self, pid):
            strays.append(pid)

    yield Containers()
    for spec in made:
        state = read_state(spec.dir)
        if state is None:
            continue
        if _is_shim(state.shim_pid, spec.dir):
            os.kill(state.shim_pid, signal.SIGKILL)
        if state.pid:
            strays.append(state.pid)
    for pid in strays:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def log_lines(spec):
    """Every record of the container's log, read back by its driver, as (stream, text)."""
    out = []
    for chunk in get_driver(spec.log_type).read(spec.log_info(), ReadConfig()):
        out += [(m.source, m.line.decode()) for m in chunk.messages()]
    return out


@pytest.mark.parametrize("driver", ["json-file", "local"])
def test_output_lands_in_the_log_and_state_records_the_exit_code(containers, driver):
    spec = containers.make("echo out; echo err >&2; exit 3", log_type=driver)
    pid = containers.start(spec)
    state = ShimClient(spec.dir).wait(timeout=10)
    assert state.status == "exited" and not state.running and state.exit_code == 3
    assert state.shim_pid == pid and state.pid == 0 and state.error == ""
    assert state.started_at != ZERO_TIME and state.finished_at >= state.started_at
    assert state.lines_logged == 2 and state.bytes_logged == 8 and state.lines_dropped == 0
    assert sorted(log_lines(spec)) == [("stderr", "err"), ("stdout", "out")]
    wait_until(lambda: not _is_shim(pid, spec.dir), what="the shim to exit")
    assert read_state(spec.dir) == state
    assert not os.path.exists(os.path.join(spec.dir, SHIM_SOCKET))


def test_status_while_running_shows_running_pid_and_live_counters(containers):
    spec = containers.make("echo hello; exec sleep 30")
    containers.start(spec)
    client = ShimClient(spec.dir)
    wait_until(lambda: client.status().lines_logged == 1, what="the first line")
    state = client.status()
    assert state.status == "running" and state.running and state.exit_code == 0
    assert state.finished_at == ZERO_TIME
    with open(f"/proc/{state.pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0] == b"sleep"
    assert read_state(spec.dir).pid == state.pid  # state.json agrees
    sock_mode = os.stat(os.path.join(spec.dir, SHIM_SOCKET)).st_mode & 0o777
    assert sock_mode == 0o600
    client.signal(signal.SIGTERM)
    assert client.wait(timeout=10).exit_code == 128 + signal.SIGTERM


def test_sigkill_through_the_socket_gives_137_and_keeps_the_last_line(containers):
    spec = containers.make("for i in 1 2 3; do echo line $i; done; echo last words; exec sleep 30")
    containers.start(spec)
    client = ShimClient(spec.dir)
    wait_until(lambda: client.status().lines_logged == 4, what="four lines")
    client.signal(signal.SIGKILL)
    state = client.wait(timeout=10)
    assert state.exit_code == 137 and not state.oom_killed
    assert log_lines(spec)[-1] == ("stdout", "last words")
    with pytest.raises(ShimError):  # the shim is gone with its socket
        client.signal(signal.SIGKILL)


def test_container_that_closes_its_output_runs_until_its_process_exits(containers):
    spec = containers.make("exec >&- 2>&-; sleep 0.5; exit 4")
    containers.start(spec)
    client = ShimClient(spec.dir)
    time.sleep(0.2)  # its pipes are closed, it still runs: so is the container
    assert client.status().running
    assert client.wait(timeout=10).exit_code == 4


def test_shim_survives_the_death_of_the_process_that_spawned_it(containers, python):
    spec = containers.make("i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.02; done")
    spawner = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from runtime.shimclient import spawn_shim; "
         "print(spawn_shim(sys.argv[1], python=sys.argv[2]), flush=True); time.sleep(60)",
         spec.dir, python], stdout=subprocess.PIPE, start_new_session=True)
    try:
        shim_pid = int(spawner.stdout.readline())
    finally:
        os.killpg(spawner.pid, signal.SIGKILL)  # the "daemon" and its whole session die
        spawner.wait()
    client = ShimClient(spec.dir)
    before = client.status().lines_logged
    wait_until(lambda: client.status().lines_logged > before + 5, what="more lines")
    assert client.alive() and _is_shim(shim_pid, spec.dir)
    client.signal(signal.SIGTERM)
    state = client.wait(timeout=10)
    assert state.exit_code == 143
    lines = [text for _, text in log_lines(spec)]
    assert lines == [f"tick {i}" for i in range(len(lines))]  # none lost, none repeated


def test_start_failure_of_a_missing_program_records_exit_code_127_and_the_error(containers):
    spec = containers.make("", argv=["/nonexistent/program"])
    pid = containers.start(spec)
    state = read_state(spec.dir)
    # Docker: 127 for a command not found (128 for other start failures, below).
    assert state.status == "exited" and state.exit_code == 127 and not state.running
    assert 'exec: "/nonexistent/program": stat /nonexistent/program: no such file or ' \
        "directory" in state.error and state.pid == 0
    assert state.shim_pid == pid
    wait_until(lambda: not _is_shim(pid, spec.dir), what="the shim to exit")
    assert not os.path.exists(os.path.join(spec.dir, SHIM_SOCKET))


def test_unknown_log_driver_is_a_start_failure_with_dockers_wording(containers):
    spec = containers.make("echo never", log_type="nosuch")
    containers.start(spec)
    state = read_state(spec.dir)
    assert state.exit_code == 128
    assert state.error == ('failed to initialize logging driver: error looking up logging '
                           'plugin nosuch: plugin "nosuch" not found')


def test_shim_writes_a_spool_for_a_remote_driver_without_loading_the_driver(tmp_path):
    spec = ContainerSpec("a" * 64, "/x", str(tmp_path), "", "", "", "", (), ("true",), (), "",
                         "", "", {}, "gelf", {"gelf-address": "udp://127.0.0.1:1"})
    before = set(sys.modules)
    writer = shim_module._open_driver(spec, LogPlan("gelf", "remote", "drivers.gelf:GelfDriver", True))
    try:
        assert type(writer).__name__ == "SpoolWriter"
        assert "drivers.gelf" not in set(sys.modules) - before
        assert writer.path == os.path.join(str(tmp_path), "local-logs", "container.log")
    finally:
        writer.close()


def test_grandchild_keeping_stdout_open_does_not_hang_the_shim(containers):
    spec = containers.make("sleep 30 & echo $! > stray.pid; echo main done; exit 5")
    containers.start(spec)
    wait_until(lambda: os.path.exists(os.path.join(spec.dir, "stray.pid")), what="stray.pid")
    with open(os.path.join(spec.dir, "stray.pid")) as f:
        containers.stray(int(f.read()))
    t0 = time.monotonic()
    state = ShimClient(spec.dir).wait(timeout=10)
    assert time.monotonic() - t0 < 5
    assert state.exit_code == 5 and state.pipes_open_at_exit
    assert ("stdout", "main done") in log_lines(spec)


def test_grandchild_output_within_two_seconds_of_exit_is_still_logged(containers):
    spec = containers.make("(sleep 0.3; echo late) & exit 0")
    containers.start(spec)
    state = ShimClient(spec.dir).wait(timeout=10)
    assert not state.pipes_open_at_exit
    assert log_lines(spec) == [("stdout", "late")]


def test_non_blocking_mode_counts_drops_in_state(containers):
    n = 200_000
    spec = containers.make(f"seq 1 {n}; seq 1 {n} >&2",
                           opts={"mode": "non-blocking", "max-buffer-size": "4k"})
    containers.start(spec)
    state = ShimClient(spec.dir).wait(timeout=20)
    assert state.exit_code == 0
    total_bytes = 2 * sum(len(str(i)) + 1 for i in range(1, n + 1))
    assert state.lines_logged + state.lines_dropped == 2 * n
    assert state.bytes_logged + state.bytes_dropped == total_bytes
    assert len(log_lines(spec)) == state.lines_logged


def test_control_socket_survives_bad_requests_and_clients_that_vanish(containers):
    spec = containers.make("exec sleep 30")
    containers.start(spec)
    path = os.path.join(spec.dir, SHIM_SOCKET)
    for junk in (b'{"op":"sta', b"\xff" * 70000):  # cut mid-request; oversized: dropped
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            try:
                s.sendall(junk)
            except BrokenPipeError:
                pass
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(b'not json\n{"op":"nope"}\n{"op":"signal","signal":"x"}\n{"op":"status"}\n')
        f = s.makefile("rb")
        replies = [json.loads(f.readline()) for _ in range(4)]
    assert [r.get("error", "")[:11] for r in replies[:3]] == ["bad request"] * 3
    assert replies[3]["Status"] == "running"
    client = ShimClient(spec.dir)
    client.signal(signal.SIGKILL)
    assert client.wait(timeout=10).exit_code == 137


def test_state_of_a_container_whose_shim_died_is_exited_with_shim_died(containers):
    spec = containers.make("exec sleep 30")
    shim_pid = containers.start(spec)
    assert recover_state(spec.dir).status == "running"
    os.kill(shim_pid, signal.SIGKILL)
    wait_until(lambda: not _is_shim(shim_pid, spec.dir), what="the shim to die")
    state = recover_state(spec.dir)
    assert state.status == "exited" and state.error == "shim died" and state.exit_code == 255
    assert not ShimClient(spec.dir).alive()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_shim_outlives_a_full_disk_and_still_records_the_exit(containers, tmp_path):
    """Its log, shim.log and state.json on a full tmpfs: the shim counts what it cannot store,
    answers status, and records the container's exit in state.json all the same."""
    from conftest import fill, tmpfs

    with tmpfs(str(tmp_path / "disk"), "4m") as disk:
        import pathlib

        spec = containers.make("i=0; while true; do echo line $i; i=$((i+1)); done",
                               parent=pathlib.Path(disk))
        containers.start(spec)
        client = ShimClient(spec.dir)
        wait_until(lambda: client.status().lines_logged > 100, 10, "the first lines")
        fill(disk)
        wait_until(lambda: client.status().lines_dropped > 1000, 10, "lines dropped")
        assert client.status().storage_failing
        client.signal(signal.SIGTERM)
        state = client.wait(timeout=10)
        assert state.status == "exited" and state.exit_code == 143
        recorded = read_state(spec.dir)  # written over the old file: no room for a new one
        assert recorded.status == "exited" and recorded.exit_code == 143
        assert recorded.lines_dropped == state.lines_dropped > 1000
        assert "No space left on device" in recorded.storage_error
