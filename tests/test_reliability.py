"""Reliability end to end: what must hold when things die or pile up.

Every test drives a real ``logpipe daemon`` (temporary data root and socket) with the real
CLI, as a user would. Containers are real: the ``runc`` runtime on a busybox image built
from Debian's busybox-static (``tests/busybox.py``) when the tests run as root with runc
and busybox-static installed; otherwise the ``process`` runtime with the host's ``sh``,
``seq`` and ``awk`` (no isolation), which the test ids say (``[runc-busybox]`` or
``[process-host-sh]``). Whatever a test leaves running — daemons, shims, containers, runc
state, overlay mounts — is removed at teardown, also when the test fails.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import pytest

from conftest import IMAGE, clean_daemon, raw_create, wait_until
from runtime.shimclient import _is_shim
from runtime.state import read_state

pytestmark = pytest.mark.e2e


@pytest.fixture
def daemon(engine_module_daemon):
    """The module's daemon (``engine_module_daemon``, conftest.py), emptied after each test."""
    yield engine_module_daemon
    clean_daemon(engine_module_daemon)


@pytest.fixture
def killable(engine_daemon):
    """A daemon of the test's own (``engine_daemon``): for the tests that SIGKILL it."""
    return engine_daemon


def gate_dir(d) -> str:
    """A fresh host directory for a test's gate files (mounted at the same path)."""
    return tempfile.mkdtemp(prefix="gate-", dir=d.base)


def file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def numbered(first: int, last: int, prefix: str = "") -> bytes:
    return "".join(f"{prefix}{i}\n" for i in range(first, last + 1)).encode()


def assert_lines(got: bytes, expected: bytes, what: str) -> None:
    """``got == expected``, explained in a few lines rather than a diff of megabytes."""
    if got == expected:
        return
    have, want = got.split(b"\n"), expected.split(b"\n")
    first = next((i for i, (a, b) in enumerate(zip(have, want)) if a != b),
                 min(len(have), len(want)))
    seen = set(have)
    missing = sum(1 for line in want if line not in seen)
    repeated = len(have) - len(set(have))
    pytest.fail(f"{what}: {len(have) - 1} lines, expected {len(want) - 1}; {missing} missing, "
                f"{repeated} repeated; first difference at line {first + 1}: "
                f"{have[first:first + 3]!r} instead of {want[first:first + 3]!r}")


# -- the daemon dies, the container does not ----------------------------------------------------

LINES = 500_000
# 500 bursts of 1,000 lines, each burst at full speed, with a short pause between bursts: the
# daemon's death then falls in the middle of the stream by construction, not by the luck of
# timing against a writer that would be done in half a second.
PACED_WRITER = ("i=0; while [ $i -lt 500 ]; do seq $((i*1000+1)) $((i*1000+1000)); "
                "sleep 0.004; i=$((i+1)); done")


@pytest.mark.slow
@pytest.mark.parametrize("restart", ["while-it-writes", "after-it-finished"])
def test_daemon_sigkill_while_a_container_writes_500k_lines_loses_and_repeats_nothing(killable,
                                                                                      restart):
    daemon = killable
    cid = daemon.ok("run", "-d", "--name", "writer", IMAGE, "sh", "-c", PACED_WRITER) \
        .decode().strip()
    log = daemon.inspect("writer", "{{.LogPath}}")
    started_at = daemon.inspect("writer", "{{.State.StartedAt}}")
    wait_until(lambda: file_size(log) > 4 << 20, timeout=60, what="4 MiB of log (~50 k lines)")

    daemon.sigkill()
    at_death = file_size(log)
    assert at_death < 30 << 20, "the writer was nearly done: the kill was not mid-way"
    wait_until(lambda: file_size(log) > at_death + (1 << 20), timeout=60,
               what="the log to grow by 1 MiB with no daemon running")
    if restart == "after-it-finished":
        # No daemon to ask: the shim's own record (state.json) says when it is done.
        directory = os.path.join(daemon.root, "containers", cid)
        wait_until(lambda: read_state(directory).status == "exited"
                   and not _is_shim(read_state(directory).shim_pid, directory),
                   timeout=120, what="the writer and its shim to finish with no daemon")

    daemon.start()  # a new daemon, same data root: it re-adopts the shim or reads its record
    state, status = daemon.ok("ps", "-a", "--format", "{{.State}}|{{.Status}}").decode() \
        .strip().split("|")
    if restart == "after-it-finished":
        assert state == "exited" and status.startswith("Exited (0) "), status
    else:  # it may finish between the new daemon's start and this ps: both are right
        assert state == "running" or status.startswith("Exited (0) "), status
    assert daemon.inspect("writer", "{{.State.Error}}|{{.State.StartedAt}}|{{.RestartCount}}") \
        == f"|{started_at}|0"  # the same run: not restarted, not "shim died"
    assert daemon.ok("wait", "writer") == b"0\n"
    assert_lines(daemon.ok("logs", "writer"), numbered(1, LINES), "logs after a daemon SIGKILL")


def test_logs_follow_cut_off_by_a_daemon_sigkill_fails_with_a_message_not_a_traceback(killable):
    daemon = killable
    daemon.ok("run", "-d", "--name", "talker", IMAGE, "sh", "-c", "echo first; exec sleep 300")
    follower = daemon.follow("talker")
    assert follower.stdout.readline() == b"first\n"  # streaming: its request is in flight
    daemon.sigkill()
    _, err = follower.communicate(timeout=30)
    # The stream did not end because the container stopped: a script must be able to tell.
    assert follower.returncode == 1
    assert b"Traceback" not in err and len(err.splitlines()) == 1, err.decode()
    assert b"daemon closed the connection" in err


# -- the container's process dies ----------------------------------------------------------------


@pytest.mark.parametrize("last", ["line", "unterminated-line"])
@pytest.mark.parametrize("kill", ["cli-kill-s-KILL", "os-kill-of-State.Pid"])
def test_sigkill_of_the_containers_process_keeps_its_last_line(daemon, kill, last):
    # The container says (a file in a mounted directory) when its last line has been written
    # to its stdout; the kill follows at once, while the shim may still have lines in the
    # pipe to read: they were written before the death, so they are the container's log.
    # Unterminated, the last line is kept as Docker keeps it: as written, with no newline.
    gate = gate_dir(daemon)
    written = os.path.join(gate, "written")
    last_words = "last words before SIGKILL" + ("\n" if last == "line" else "")
    daemon.ok("run", "-d", "--name", "victim", "-v", f"{gate}:{gate}", IMAGE, "sh", "-c",
              f"seq 1 200000; printf %s '{last_words}'; touch {written}; exec sleep 300")
    follower = daemon.follow("victim")
    pid = int(daemon.inspect("victim", "{{.State.Pid}}"))
    wait_until(lambda: os.path.exists(written), timeout=60, what="the last line to be written")

    if kill == "cli-kill-s-KILL":
        assert daemon.ok("kill", "-s", "KILL", "victim") == b"victim\n"
    else:
        os.kill(pid, signal.SIGKILL)

    assert daemon.ok("wait", "victim") == b"137\n"
    assert daemon.inspect("victim", "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}") \
        == "exited 137 false"
    expected = numbered(1, 200000) + last_words.encode()
    assert_lines(daemon.ok("logs", "victim"), expected, "logs of the killed container")
    out, err = follower.communicate(timeout=60)  # the follower ends with the container
    assert follower.returncode == 0, err
    assert_lines(out, expected, "logs -f of the killed container")


# -- refused creates -------------------------------------------------------------------------------


class Refusal(NamedTuple):
    cli: list[str]  # ``run -d`` arguments; ``{image}`` stands for the test image
    body: dict  # the same request as a Docker client sends it
    status: int
    message: str  # Docker's; ``{keeper}`` stands for the id of the container named keeper


REFUSALS = {
    "name-in-use": Refusal(
        ["--name", "keeper", "{image}", "true"], {"Image": "{image}"}, 409,
        'Conflict. The container name "/keeper" is already in use by container "{keeper}". '
        "You have to remove (or rename) that container to be able to reuse that name."),
    "unknown-image": Refusal(  # --pull never: no pull from Docker Hub in the tests
        ["--pull", "never", "nosuch:latest", "true"], {"Image": "nosuch:latest"}, 404,
        "No such image: nosuch:latest"),
    "unknown-log-driver": Refusal(
        ["--log-driver", "bogus", "{image}", "true"],
        {"Image": "{image}", "HostConfig": {"LogConfig": {"Type": "bogus", "Config": {}}}}, 400,
        'error looking up logging plugin bogus: plugin "bogus" not found'),
    "bad-max-size": Refusal(
        ["--log-opt", "max-size=abc", "{image}", "true"],
        {"Image": "{image}", "HostConfig": {"LogConfig": {"Type": "", "Config":
                                                          {"max-size": "abc"}}}}, 400,
        "failed to initialize logging driver: invalid size: 'abc'"),
    "unknown-log-opt": Refusal(
        ["--log-opt", "foo=bar", "{image}", "true"],
        {"Image": "{image}", "HostConfig": {"LogConfig": {"Type": "", "Config":
                                                          {"foo": "bar"}}}}, 400,
        "unknown log opt 'foo' for json-file log driver"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_creates_leave_nothing_behind(daemon, case):
    refusal = REFUSALS[case]
    keeper = daemon.ok("run", "-d", "--name", "keeper", IMAGE, "sleep", "300").decode().strip()
    message = refusal.message.format(keeper=keeper)
    named = refusal.cli[0] == "--name"  # the others try a fresh name, which must stay free
    args = [a.format(image=IMAGE) for a in refusal.cli]

    for command in (["run", "-d"], ["create"]):
        res = daemon.lp(*command, *([] if named else ["--name", "refused"]), *args)
        assert (res.returncode, res.stderr.decode()) == \
            (125, f"Error response from daemon: {message}\n"), command
        assert res.stdout == b""

    body = json.loads(json.dumps(refusal.body).replace("{image}", IMAGE))
    body.setdefault("Cmd", ["true"])
    assert raw_create(daemon.host, "keeper" if named else "refused", body) == \
        (refusal.status, {"message": message})

    assert daemon.ok("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.State}}") \
        == f"{keeper} keeper running\n".encode()
    assert daemon.container_dirs() == [keeper]


# -- many containers at once -----------------------------------------------------------------------

CONTAINERS = 50
LINES_EACH = 2_000


@pytest.mark.slow
def test_fifty_containers_logging_at_once_store_every_line(daemon):
    # All of them wait at a gate (a FIFO in a host directory mounted at the same path, so the
    # command reads the same under runc and under the process runtime) until the last one
    # runs: each takes one byte of it, blocked in the kernel meanwhile, not polling.
    gate = gate_dir(daemon)
    opened = os.path.join(gate, "open")
    os.mkfifo(opened)

    def start(k: int) -> str:
        script = (f"dd if={opened} of=/dev/null bs=1 count=1 2>/dev/null; "
                  f"awk 'BEGIN {{ for (i = 1; i <= {LINES_EACH}; i++) print \"c{k} line \" i }}'")
        return daemon.ok("run", "-d", "--name", f"c{k}", "-v", f"{gate}:{gate}:ro",
                         IMAGE, "sh", "-c", script).decode().strip()

    names = [f"c{k}" for k in range(CONTAINERS)]
    with ThreadPoolExecutor(CONTAINERS) as pool:  # 50 users at once
        ids = list(pool.map(start, range(CONTAINERS)))
    assert len(set(ids)) == CONTAINERS
    assert sorted(daemon.ok("ps", "--format", "{{.Names}}").decode().split()) == sorted(names)

    fifo = os.open(opened, os.O_RDWR)  # a writer: none of them sees the end of it
    try:
        os.write(fifo, b"x" * CONTAINERS)
        assert daemon.ok("wait", *names) == b"0\n" * CONTAINERS
    finally:
        os.close(fifo)

    def logs(k: int) -> tuple[int, bytes]:
        return k, daemon.ok("logs", f"c{k}")

    with ThreadPoolExecutor(4) as pool:
        for k, out in pool.map(logs, range(CONTAINERS)):
            assert_lines(out, numbered(1, LINES_EACH, prefix=f"c{k} line "), f"logs of c{k}")


def test_runc_pause_freezes_every_process_of_the_container_and_unpause_thaws_it(daemon):
    if daemon.runtime != "runc":
        pytest.skip("the cgroup freezer needs the runc runtime (root, runc installed)")
    daemon.ok("run", "-d", "--name", "frozen", IMAGE, "sh", "-c",
              "i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done")
    count = lambda: len(daemon.ok("logs", "frozen").splitlines())  # noqa: E731
    wait_until(lambda: count() >= 3, what="the ticker to tick")
    daemon.ok("pause", "frozen")
    assert daemon.inspect("frozen", "{{.State.Status}} {{.State.Paused}}") == "paused true"
    frozen = count()
    time.sleep(0.4)  # that nothing happens can only be observed over time: 20 ticks' worth
    assert count() == frozen
    daemon.ok("unpause", "frozen")
    wait_until(lambda: count() > frozen + 2, what="the ticker to go on after unpause")
    daemon.ok("pause", "frozen")
    daemon.ok("rm", "-f", "frozen")  # a frozen container is still killed and removed
    assert daemon.ok("ps", "-aq") == b""
