"""``run -t``: a container's terminal, owned by its shim, through logpipe's CLI, the docker
CLI and docker-py, and what a daemon restart, a dead shim and a flood of output do to it.

Every test runs on both runtimes (``daemon_per_runtime``): under runc the pty is made in the
container and its master sent over runc's console socket; under ``process`` the shim opens
it. Interactive sessions are driven through a real pty with pexpect.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess

import pytest

from conftest import LOGPIPE, image_of

pytestmark = pytest.mark.e2e

pexpect = pytest.importorskip("pexpect")
docker = pytest.importorskip("docker")

#: A prompt: busybox's ash and the host's sh (``process``) both end theirs in "# " as root.
PROMPT = r"# "


@pytest.fixture
def d(emptied_daemon_per_runtime):
    return emptied_daemon_per_runtime


@pytest.fixture
def dpy(d):
    client = docker.DockerClient(base_url=d.host, version="auto", timeout=60)
    yield client
    client.close()


def _spawn(d, argv: list[str]):
    env = dict(os.environ, LOGPIPE_HOST=d.host, LOGPIPE_NO_AUTOSTART="1")
    return pexpect.spawn(argv[0], argv[1:], env=env, timeout=30, dimensions=(24, 80))


def _session(child) -> None:
    """The shell answers, sees the window's new size (SIGWINCH → resize) and exits 3."""
    child.expect(PROMPT)
    child.sendline("echo $((6*7))")
    child.expect("42")
    child.setwinsize(33, 101)
    child.sendline("stty size")
    child.expect("33 101")
    child.sendline("exit 3")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3


def test_logpipe_run_it_computes_follows_a_resize_and_exits_with_the_shells_code(d):
    child = _spawn(d, [*LOGPIPE, "run", "-it", "--name", "it", image_of(d), "sh"])
    try:
        _session(child)
    finally:
        child.close(force=True)
    logged = d.ok("logs", "it")
    assert b"42\r\n" in logged and b"33 101\r\n" in logged  # the terminal's output, CR LF kept


def test_killing_the_client_of_run_it_leaves_the_container_running(d):
    """``run -it`` sets StdinOnce, but Docker never closes a terminal's stdin: the client's
    death ends its attach only, and the shell is still there for the next one."""
    child = _spawn(d, [*LOGPIPE, "run", "-it", "--name", "orphan", image_of(d), "sh"])
    try:
        child.expect(PROMPT)
        child.sendline("echo $((5*5))")
        child.expect("25")
        os.kill(child.pid, signal.SIGKILL)
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert d.inspect("orphan", "{{.State.Running}} {{.Config.StdinOnce}}") == "true true"
    cid = d.inspect("orphan", "{{.Id}}")
    _type(d, cid, b"echo again$((3*3))\n", b"again9")


def test_docker_cli_run_it_and_attach_then_detach_with_ctrl_p_ctrl_q(d):
    docker_bin = shutil.which("docker")
    if docker_bin is None:
        pytest.skip("needs the docker CLI")
    child = _spawn(d, [docker_bin, "-H", d.host, "run", "-it", image_of(d), "sh"])
    try:
        _session(child)
    finally:
        child.close(force=True)
    d.ok("run", "-dit", "--name", "bg", image_of(d), "sh")
    child = _spawn(d, [docker_bin, "-H", d.host, "attach", "bg"])
    try:
        child.sendline("echo $((7*6))x")
        child.expect("42x")
        child.send("\x10\x11")  # Docker's detach keys: the attach ends, the shell runs on
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert d.inspect("bg", "{{.State.Running}} {{.Config.Tty}} {{.Config.OpenStdin}}") == \
        "true true true"


def test_docker_py_reads_a_terminals_logs_raw_without_frame_headers(d, dpy):
    out = dpy.containers.run(image_of(d), ["sh", "-c", "echo out; echo err >&2"], tty=True,
                             name="rawtty")
    assert out == b"out\r\nerr\r\n"  # one stream, the pty's CR LF: Docker's bytes
    c = dpy.containers.get("rawtty")
    assert c.attrs["Config"]["Tty"] is True
    assert c.logs(stdout=True, stderr=False) == b"out\r\nerr\r\n"
    raw = dpy.api.logs(c.id, stdout=True, stderr=True)
    assert raw == b"out\r\nerr\r\n"  # docker-py decides on Config.Tty; no header either way
    entries = [json.loads(line) for line in
               open(c.attrs["LogPath"], "rb").read().splitlines()] if c.attrs["LogPath"] else []
    assert all(e["stream"] == "stdout" for e in entries)


def test_resize_answers_as_docker_for_bad_sizes_stopped_and_non_terminal_containers(d, dpy):
    c = dpy.containers.run(image_of(d), ["sleep", "300"], detach=True)
    t = dpy.containers.run(image_of(d), ["sh"], detach=True, tty=True, stdin_open=True)
    try:
        for query, status, text in (("h=x&w=80", 400, 'strconv.Atoi: parsing "x": invalid syntax'),
                                    ("h=24", 400, 'strconv.Atoi: parsing "": invalid syntax'),
                                    ("h=70000&w=1", 400, "between 0 and 65535")):
            code, body = _post(d, f"/containers/{t.id}/resize?{query}")
            assert code == status and text in body["message"]
        c.resize(30, 90)  # no terminal: accepted, nothing happens (containerd's Resize)
        t.resize(30, 90)
        c.kill()
        code, body = _post(d, f"/containers/{c.id}/resize?h=1&w=1")
        assert code == 409 and body["message"] == f"Container {c.id} is not running"
    finally:
        t.remove(force=True)


def test_a_terminal_is_drained_with_nobody_attached_and_stays_readable_after_exit(d, dpy):
    """2 MB through the pty and no client: the shim reads it all, the container ends."""
    c = dpy.containers.run(image_of(d), ["sh", "-c", "yes 0123456789 | head -c 2000000; "
                                         "echo; echo done"], detach=True, tty=True)
    assert c.wait(timeout=60)["StatusCode"] == 0
    logs = c.logs()
    assert logs.endswith(b"done\r\n") and logs.count(b"0123456789") >= 180_000


def test_a_terminal_survives_a_daemon_sigkill_with_its_output_and_stdin(d, dpy):
    c = dpy.containers.run(image_of(d), ["sh"], detach=True, tty=True, stdin_open=True,
                           name="survivor")
    _type(d, c.id, b"echo before$((1+1))\n", b"before2")
    d.sigkill()
    d.start()
    assert d.inspect("survivor", "{{.State.Running}}") == "true"
    _type(d, c.id, b"echo after$((2+2))\n", b"after4")  # attach again: stdin still reaches it
    logs = dpy.containers.get("survivor").logs()
    assert b"before2\r\n" in logs and b"after4\r\n" in logs


def test_a_terminal_containers_shim_killed_with_sigkill_is_reported_exited(d, dpy):
    c = dpy.containers.run(image_of(d), ["sh"], detach=True, tty=True, stdin_open=True)
    with open(os.path.join(d.root, "containers", c.id, "state.json")) as f:
        shim_pid = json.load(f)["ShimPid"]
    os.kill(shim_pid, signal.SIGKILL)
    assert c.wait(timeout=30)["StatusCode"] in (137, 255)
    c.reload()
    assert c.status == "exited" and "shim died" in c.attrs["State"]["Error"]


def _type(d, cid: str, line: bytes, expected: bytes) -> None:
    """Attach with stdin (hijacked, as docker-py's ``attach_socket``), type ``line``, read
    until ``expected`` comes back, then leave (the client's EOF ends a terminal's attach)."""
    client = docker.APIClient(base_url=d.host, version="1.41")
    sock = client.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stream": 1})
    raw = sock._sock
    raw.settimeout(20)
    try:
        raw.sendall(line)
        seen = b""
        while expected not in seen:
            data = raw.recv(4096)
            assert data, f"attach ended before {expected!r}: {seen!r}"
            seen += data
    finally:
        raw.close()
        client.close()


def _post(d, path: str) -> tuple[int, dict]:
    import http.client

    conn = http.client.HTTPConnection("localhost", timeout=30)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.connect(d.host.removeprefix("unix://"))
    try:
        conn.request("POST", "/v1.41" + path)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else {}
    finally:
        conn.close()


def test_run_it_from_a_pipe_is_refused_as_docker_does(d):
    env = dict(os.environ, LOGPIPE_HOST=d.host, LOGPIPE_NO_AUTOSTART="1")
    res = subprocess.run([*LOGPIPE, "run", "-it", image_of(d), "cat"], env=env, input=b"x",
                         capture_output=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr == b"the input device is not a TTY\n"
