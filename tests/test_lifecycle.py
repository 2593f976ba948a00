"""Container lifecycle off the happy path: a shim that dies, stops that must not hang, and
``kill``/``restart`` as Docker's clients see them.

Every test drives a real ``logpipe daemon`` (``runc_daemon`` of ``conftest.py``) with
real runc containers on the busybox image, through the CLI, raw HTTP or docker-py; they skip
when not root or when runc or busybox-static is missing. Timings are asserted with generous
bounds; waits poll a condition with a deadline.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import IMAGE, LOGPIPE, RUNC, wait_until
from runtime.shimclient import _is_shim

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not RUNC, reason="needs root, runc and busybox-static")]


@pytest.fixture
def daemon(runc_daemon):
    """This module's tests run on ``runc_daemon`` (conftest.py)."""
    return runc_daemon


def raw(host: str, method: str, path: str, timeout: float = 30) -> tuple[int, bytes]:
    """One request over the daemon's socket as any Docker client sends it: status, body."""
    conn = http.client.HTTPConnection("localhost", timeout=timeout)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.settimeout(timeout)
    conn.sock.connect(host.removeprefix("unix://"))
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def timed(d, *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    res = d.lp(*args, timeout=timeout)
    return res, time.monotonic() - started


def process_gone(pid: int) -> bool:
    """Dead or a zombie (its parent, init since the shim died, has not reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return True
    return stat[stat.rfind(b")") + 2:][:1] in (b"Z", b"X")


def mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path``, from /proc/self/mountinfo."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]


def runc_knows(d, cid: str) -> bool:
    res = subprocess.run(["runc", "--root", os.path.join(d.root, "runc"), "state", cid],
                         capture_output=True)
    return res.returncode == 0


def assert_nothing_left(d, cid: str, pid: int) -> None:
    cdir = os.path.join(d.root, "containers", cid)
    wait_until(lambda: process_gone(pid), timeout=10, what=f"container process {pid} to die")
    assert mounts_under(cdir) == []
    assert not runc_knows(d, cid)


# -- a shim that dies ---------------------------------------------------------------------------


@pytest.mark.parametrize("daemon_was", ["watching", "down"])
def test_a_shim_killed_with_sigkill_leaves_its_container_exited_137_and_nothing_behind(
        daemon, daemon_was):
    cid = daemon.ok("run", "-d", "--name", "orphan", IMAGE, "sh", "-c",
                    "echo before; exec sleep 300").decode().strip()
    cdir = os.path.join(daemon.root, "containers", cid)
    wait_until(lambda: daemon.ok("logs", "orphan") == b"before\n", what="the first line")
    with open(os.path.join(cdir, "state.json")) as f:
        state = json.load(f)
    pid, shim = state["Pid"], state["ShimPid"]
    if daemon_was == "down":
        daemon.sigkill()
    os.kill(shim, signal.SIGKILL)
    wait_until(lambda: not _is_shim(shim, cdir), what="the shim to die")
    if daemon_was == "down":
        assert not process_gone(pid), "the container must outlive its shim until cleaned up"
        daemon.start()  # adoption finds the dead shim and cleans up after it

    wait_until(lambda: daemon.inspect("orphan", "{{.State.Status}}") == "exited",
               what="the daemon to record the exit")
    assert daemon.inspect("orphan", "{{.State.ExitCode}}|{{.State.Error}}") == \
        "137|shim died; its container was killed"
    assert daemon.ok("wait", "orphan") == b"137\n"
    assert_nothing_left(daemon, cid, pid)
    assert daemon.ok("logs", "orphan") == b"before\n"  # the logs stay until rm

    res = daemon.lp("rm", "orphan")
    assert (res.returncode, res.stdout, res.stderr) == (0, b"orphan\n", b"")
    assert daemon.container_dirs() == []


def test_rm_f_at_once_after_the_shim_died_cleans_up_completely(daemon):
    cid = daemon.ok("run", "-d", "--name", "orphan", IMAGE, "sleep", "300").decode().strip()
    cdir = os.path.join(daemon.root, "containers", cid)
    with open(os.path.join(cdir, "state.json")) as f:
        state = json.load(f)
    os.kill(state["ShimPid"], signal.SIGKILL)
    res, took = timed(daemon, "rm", "-f", "orphan", timeout=30)  # racing the watcher
    assert (res.returncode, res.stdout, res.stderr) == (0, b"orphan\n", b"")
    assert took < 10
    assert_nothing_left(daemon, cid, state["Pid"])
    assert daemon.container_dirs() == [] and daemon.ok("ps", "-aq") == b""


# -- nothing waits forever ----------------------------------------------------------------------


@pytest.mark.parametrize("preempt", [pytest.param(["rm", "-f"], id="rm-f"),
                                     pytest.param(["kill"], id="kill")])
def test_rm_f_and_kill_preempt_a_pending_stop_t_300(daemon, preempt):
    gate = os.path.join(daemon.base, "gate")
    os.mkdir(gate)
    termed = os.path.join(gate, "term")
    # It notes SIGTERM and goes on: only a SIGKILL ends it.
    daemon.ok("run", "-d", "--name", "stubborn", "-v", f"{gate}:{gate}", IMAGE, "sh", "-c",
              f"trap 'touch {termed}' TERM; while :; do sleep 0.1; done")
    env = dict(os.environ, LOGPIPE_HOST=daemon.host, LOGPIPE_NO_AUTOSTART="1")
    stopper = subprocess.Popen(LOGPIPE + ["stop", "-t", "300", "stubborn"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    daemon.followers.append(stopper)  # killed at teardown if it is still waiting
    wait_until(lambda: os.path.exists(termed), timeout=30, what="the stop's SIGTERM")

    res, took = timed(daemon, *preempt, "stubborn", timeout=30)
    assert (res.returncode, res.stdout, res.stderr) == (0, b"stubborn\n", b"")
    assert took < 10, f"{preempt} waited {took:.1f} s behind the pending stop"
    out, err = stopper.communicate(timeout=15)  # the stop ends with the container
    assert (stopper.returncode, out) == (0, b"stubborn\n"), err
    if preempt == ["kill"]:
        assert daemon.inspect("stubborn", "{{.State.Status}} {{.State.ExitCode}}") == \
            "exited 137"
    else:
        assert daemon.ok("ps", "-aq") == b""


def test_a_container_blocked_on_a_full_spool_stops_kills_and_is_removed_in_time(daemon):
    closed = socket.socket()  # bound, never listening: Loki is unreachable
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    try:
        cid = daemon.ok("run", "-d", "--name", "blocked", "--log-driver", "loki",
                        "--log-opt", f"loki-url=http://127.0.0.1:{port}/loki/api/v1/push",
                        "--log-opt", "cache-max-size=100k", "--log-opt", "mode=blocking",
                        IMAGE, "sh", "-c", "while :; do echo " + "x" * 100 + "; done") \
            .decode().strip()
        spool = os.path.join(daemon.root, "containers", cid, "local-logs", "container.log")

        def full() -> bool:  # every generation of the budget written, none shipped
            try:
                return os.path.exists(spool + ".4") and os.stat(spool).st_size >= 100_000
            except FileNotFoundError:
                return False

        wait_until(full, timeout=60, what="the spool to fill up")
        res, took = timed(daemon, "stop", "-t", "1", "blocked", timeout=40)
        assert (res.returncode, res.stdout) == (0, b"blocked\n"), res.stderr
        assert took < 1 + 8, f"stop -t 1 took {took:.1f} s"
        assert daemon.inspect("blocked", "{{.State.Status}} {{.State.ExitCode}}") == \
            "exited 137"  # sh as pid 1 ignores SIGTERM: the SIGKILL after 1 s ended it
        assert daemon.ok("logs", "--tail", "1", "blocked") == b"x" * 100 + b"\n"

        daemon.ok("start", "blocked")  # the spool is still full: it blocks at once
        res, took = timed(daemon, "kill", "blocked", timeout=40)
        assert (res.returncode, res.stdout) == (0, b"blocked\n"), res.stderr
        assert took < 10, f"kill took {took:.1f} s"
        assert daemon.inspect("blocked", "{{.State.Running}}") == "false"

        daemon.ok("start", "blocked")
        pid = int(daemon.inspect("blocked", "{{.State.Pid}}"))
        res, took = timed(daemon, "rm", "-f", "blocked", timeout=40)
        assert (res.returncode, res.stdout) == (0, b"blocked\n"), res.stderr
        assert took < 10, f"rm -f took {took:.1f} s"
        assert daemon.ok("ps", "-aq") == b""
        assert_nothing_left(daemon, cid, pid)
    finally:
        closed.close()


def test_out_of_range_integers_in_the_query_are_refused_with_gos_text(daemon):
    daemon.ok("run", "-d", "--name", "steady", IMAGE, "sh", "-c",
              "echo one; echo two; exec sleep 300")
    wait_until(lambda: daemon.ok("logs", "steady") == b"one\ntwo\n", what="two lines")
    huge = "99999999999999999999"
    for path in (f"/v1.41/containers/steady/stop?t={huge}",
                 f"/v1.41/containers/steady/restart?t={huge}",
                 f"/v1.41/containers/nosuch/stop?t={huge}"):  # checked before the name
        assert raw(daemon.host, "POST", path, timeout=10) == (400, json.dumps(
            {"message": f'strconv.Atoi: parsing "{huge}": value out of range'}).encode()), path
    assert raw(daemon.host, "POST", "/v1.41/containers/steady/stop?t=1%205") == (400, json.dumps(
        {"message": 'strconv.Atoi: parsing "1 5": invalid syntax'}).encode())
    assert raw(daemon.host, "POST", f"/v1.41/containers/steady/kill?signal={huge}") == \
        (400, json.dumps({"message": f"Invalid signal: {huge}"}).encode())
    status, body = raw(daemon.host, "GET", f"/v1.41/containers/steady/logs?stdout=1&since={huge}")
    assert status >= 400 and json.loads(body) == \
        {"message": f'strconv.ParseInt: parsing "{huge}": value out of range'}
    # Docker's logs: a tail that does not parse (out of range, "all") means every line.
    for tail in (huge, "all"):
        status, body = raw(daemon.host, "GET",
                           f"/v1.41/containers/steady/logs?stdout=1&tail={tail}")
        assert (status, body[8:]) == (200, b"one\n\x01\x00\x00\x00\x00\x00\x00\x04two\n")
    assert daemon.inspect("steady", "{{.State.Status}} {{.RestartCount}}") == "running 0"


# -- kill and restart as docker-py sees them ----------------------------------------------------


@pytest.fixture
def dclient(daemon):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=daemon.host, version="auto", timeout=60)
    yield client
    client.close()


def test_dockerpy_kill_returns_once_the_container_is_dead(daemon, dclient):
    # A busy writer: after SIGKILL the shim still has a full pipe to store before the exit
    # is recorded, which a kill that does not wait would return before.
    c = dclient.containers.run(IMAGE, ["yes", "y" * 200], detach=True, name="busy",
                               log_config={"type": "json-file",
                                           "config": {"max-size": "1m", "max-file": "2"}})
    wait_until(lambda: c.logs(tail=1) != b"", what="the writer to write")
    c.kill()
    c.reload()
    assert (c.attrs["State"]["Running"], c.attrs["State"]["Status"],
            c.attrs["State"]["ExitCode"]) == (False, "exited", 137)


def test_dockerpy_manual_restart_and_stop_do_not_trigger_the_restart_policy(daemon, dclient):
    c = dclient.containers.run(IMAGE, ["sh", "-c", "echo started; exec sleep 300"],
                               detach=True, name="policy", restart_policy={"Name": "always"})
    wait_until(lambda: c.logs() == b"started\n", what="the first run")
    c.restart(timeout=1)
    wait_until(lambda: c.logs() == b"started\n" * 2, what="the restarted run")
    # A policy restart would follow the exit after Docker's 100 ms backoff: that none comes
    # can only be observed over time (ten backoffs' worth).
    time.sleep(1.0)
    c.reload()
    assert (c.attrs["RestartCount"], c.attrs["State"]["Status"]) == (0, "running")
    assert c.logs() == b"started\n" * 2
    started_at = c.attrs["State"]["StartedAt"]

    c.stop(timeout=1)
    time.sleep(1.0)  # as above: no policy restart after a manual stop either
    c.reload()
    assert (c.attrs["RestartCount"], c.attrs["State"]["Status"],
            c.attrs["State"]["StartedAt"]) == (0, "exited", started_at)
    assert c.logs() == b"started\n" * 2
