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

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, NamedTuple

import pytest

from busybox import build_tarball, find_busybox
from test_api import Daemon, _empty_image_tar, start_daemon, stop_daemon
from test_shim import wait_until

from runtime.cli.client import Client
from runtime.shimclient import _is_shim
from runtime.state import read_state

RUNC = os.geteuid() == 0 and shutil.which("runc") is not None and find_busybox() is not None
IMAGE = "busybox:latest" if RUNC else "empty:latest"
ENGINE = pytest.param("runc" if RUNC else "process",
                      id="runc-busybox" if RUNC else "process-host-sh")


class RestartableDaemon:
    """A logpipe daemon on a fixed socket and data root that a test may SIGKILL and start
    again; ``lp`` runs the CLI against whichever daemon currently serves the socket."""

    def __init__(self, runtime: str) -> None:
        self.runtime = runtime
        self.base = tempfile.mkdtemp(prefix="lpr-")  # short: unix socket paths ≤ 108 bytes
        self.root = os.path.join(self.base, "root")
        # No max-size: a rotated-away file would lose lines by design, not by accident.
        self.config = {"default-runtime": runtime}
        self.current: Daemon | None = None
        self.followers: list[subprocess.Popen] = []

    @property
    def host(self) -> str:
        return "unix://" + os.path.join(self.base, "d.sock")

    def start(self) -> None:
        self.current = start_daemon(self.base, self.root, self.config)

    def sigkill(self) -> None:
        """Kill the daemon the hard way: no shutdown code of its own runs."""
        os.kill(self.current.proc.pid, signal.SIGKILL)
        assert self.current.proc.wait(10) == -signal.SIGKILL

    def lp(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """``logpipe ARGS`` as a user runs it; never autostarts a daemon of its own."""
        env = dict(os.environ, LOGPIPE_HOST=self.host, LOGPIPE_NO_AUTOSTART="1")
        return subprocess.run([sys.executable, "-m", "runtime.cli", *args], env=env,
                              capture_output=True, timeout=timeout)

    def ok(self, *args: str) -> bytes:
        """``logpipe ARGS`` that must succeed; its stdout."""
        res = self.lp(*args)
        assert res.returncode == 0, (args, res.stderr.decode(errors="replace"))
        return res.stdout

    def inspect(self, container: str, template: str) -> str:
        return self.ok("inspect", "-f", template, container).decode().rstrip("\n")

    def follow(self, container: str) -> subprocess.Popen:
        """``logpipe logs -f CONTAINER`` in the background, stopped at teardown."""
        env = dict(os.environ, LOGPIPE_HOST=self.host, LOGPIPE_NO_AUTOSTART="1")
        proc = subprocess.Popen([sys.executable, "-m", "runtime.cli", "logs", "-f", container],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.followers.append(proc)
        return proc

    def container_dirs(self) -> list[str]:
        return sorted(os.listdir(os.path.join(self.root, "containers")))

    def close(self) -> None:
        for proc in self.followers:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        if self.current is not None:
            # A live daemon removes its containers (runc state, mounts); then the shims and
            # containers of any daemon killed mid-test are killed from their state.json.
            stop_daemon(self.current)
        cdir = os.path.join(self.root, "containers")
        for cid in os.listdir(cdir) if os.path.isdir(cdir) else []:
            if self.runtime != "process":
                # runc's init may not lead a process group: its own delete kills it for sure.
                subprocess.run([self.runtime, "--root", os.path.join(self.root, self.runtime),
                                "delete", "--force", cid], capture_output=True)
            rootfs = os.path.join(cdir, cid, "rootfs")
            if os.path.ismount(rootfs):
                subprocess.run(["umount", "-l", rootfs], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory) -> str | None:
    """The busybox rootfs tarball, built once for the module (None with ``process``)."""
    if not RUNC:
        return None
    return build_tarball(str(tmp_path_factory.mktemp("image") / "busybox.tar"))


@contextlib.contextmanager
def running_daemon(runtime: str, busybox_tar: str | None) -> Iterator[RestartableDaemon]:
    """A running daemon with ``IMAGE`` imported; everything it started is gone afterwards."""
    d = RestartableDaemon(runtime)
    try:
        d.start()
        if busybox_tar:
            d.ok("import", busybox_tar, IMAGE)
        else:  # the process runtime runs host commands: any rootfs will do
            Client(d.host, autostart=False).request(
                "POST", "/images/create", {"fromSrc": "-", "repo": "empty", "tag": "latest"},
                body=_empty_image_tar()).read()
        yield d
    finally:
        d.close()


@pytest.fixture(params=[ENGINE])
def daemon(request, busybox_tar):
    with running_daemon(request.param, busybox_tar) as d:
        yield d


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


def raw_create(host: str, name: str, body: dict) -> tuple[int, dict]:
    """``POST /containers/create`` over plain HTTP on the unix socket, as any Docker client
    sends it: the status code and the decoded JSON answer."""
    conn = http.client.HTTPConnection("localhost", timeout=60)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.connect(host.removeprefix("unix://"))
    try:
        conn.request("POST", f"/v1.41/containers/create?name={name}", json.dumps(body),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


# -- the daemon dies, the container does not ----------------------------------------------------

LINES = 500_000
# 500 bursts of 1,000 lines, each burst at full speed, with a short pause between bursts: the
# daemon's death then falls in the middle of the stream by construction, not by the luck of
# timing against a writer that would be done in half a second.
PACED_WRITER = ("i=0; while [ $i -lt 500 ]; do seq $((i*1000+1)) $((i*1000+1000)); "
                "sleep 0.004; i=$((i+1)); done")


@pytest.mark.slow
@pytest.mark.parametrize("restart", ["while-it-writes", "after-it-finished"])
def test_daemon_sigkill_while_a_container_writes_500k_lines_loses_and_repeats_nothing(daemon,
                                                                                      restart):
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


def test_logs_follow_cut_off_by_a_daemon_sigkill_fails_with_a_message_not_a_traceback(daemon):
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
    gate = os.path.join(daemon.base, "gate")
    os.mkdir(gate)
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
    "unknown-image": Refusal(
        ["nosuch:latest", "true"], {"Image": "nosuch:latest"}, 404,
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
    # All of them wait at a gate (a host directory mounted at the same path, so the command
    # reads the same under runc and under the process runtime) until the last one runs.
    gate = os.path.join(daemon.base, "gate")
    os.mkdir(gate)
    opened = os.path.join(gate, "open")

    def start(k: int) -> str:
        script = (f"while [ ! -e {opened} ]; do sleep 0.05; done; "
                  f"awk 'BEGIN {{ for (i = 1; i <= {LINES_EACH}; i++) print \"c{k} line \" i }}'")
        return daemon.ok("run", "-d", "--name", f"c{k}", "-v", f"{gate}:{gate}:ro",
                         IMAGE, "sh", "-c", script).decode().strip()

    names = [f"c{k}" for k in range(CONTAINERS)]
    with ThreadPoolExecutor(CONTAINERS) as pool:  # 50 users at once
        ids = list(pool.map(start, range(CONTAINERS)))
    assert len(set(ids)) == CONTAINERS
    assert sorted(daemon.ok("ps", "--format", "{{.Names}}").decode().split()) == sorted(names)

    with open(opened, "w"):
        pass
    assert daemon.ok("wait", *names) == b"0\n" * CONTAINERS

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
