"""``run -i``: a container's stdin, held by its shim and fed from hijacked attaches, with
Docker's rules for its end (``StdinOnce``), the detach keys, and clients that vanish or
send nothing. Both runtimes (``daemon_per_runtime``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading

import pytest

from conftest import LOGPIPE, docker_cli, image_of, wait_until

pytestmark = pytest.mark.e2e

docker = pytest.importorskip("docker")


@pytest.fixture
def d(emptied_daemon_per_runtime):
    return emptied_daemon_per_runtime


@pytest.fixture
def api(d):
    client = docker.APIClient(base_url=d.host, version="1.41", timeout=60)
    yield client
    client.close()


def _env(d) -> dict:
    return dict(os.environ, LOGPIPE_HOST=d.host, LOGPIPE_NO_AUTOSTART="1")


def test_echo_piped_into_run_i_cat_comes_out_and_exits_0(d):
    res = subprocess.run([*LOGPIPE, "run", "-i", "--rm", image_of(d), "cat"], env=_env(d),
                         input=b"hello\n", capture_output=True, timeout=60)
    assert (res.returncode, res.stdout) == (0, b"hello\n"), res.stderr


def test_docker_cli_run_i_pipes_stdin_and_exits_with_the_containers_code(d):
    if shutil.which("docker") is None:
        pytest.skip("needs the docker CLI")
    res = subprocess.run(["timeout", "-s", "KILL", "60", "docker", "-H", d.host, "run", "-i",
                          image_of(d), "sh", "-c", "cat; exit 5"],
                         input=b"hello\nworld\n", capture_output=True)
    assert (res.returncode, res.stdout) == (5, b"hello\nworld\n"), res.stderr
    assert docker_cli(d, "ps", "-a", "--format", "{{.Status}}").stdout.startswith(b"Exited (5)")


def test_docker_py_attach_socket_sends_bytes_and_the_container_outlives_the_socket(d, api):
    # detach=True: docker-py's create otherwise sets AttachStdin and StdinOnce with stdin_open
    cid = api.create_container(image_of(d), ["cat"], stdin_open=True, detach=True)["Id"]
    api.start(cid)
    sock = api.attach_socket(cid, params={"stdin": 1, "stream": 1})
    sock._sock.sendall(b"one\ntwo\n")
    wait_until(lambda: api.logs(cid) == b"one\ntwo\n", timeout=20)
    sock._sock.close()  # no StdinOnce: the end of the attach leaves the stdin open
    sock = api.attach_socket(cid, params={"stdin": 1, "stream": 1})
    sock._sock.sendall(b"three\n")
    wait_until(lambda: api.logs(cid).endswith(b"three\n"), timeout=20)
    sock._sock.close()
    assert api.inspect_container(cid)["State"]["Running"] is True


def test_stdin_once_closes_stdin_when_the_attached_client_is_killed(d):
    """``run -i`` sets StdinOnce: the client's death ends the first attach, which closes the
    container's stdin, so ``cat`` ends with 0 (Docker's ``CloseStdin``)."""
    proc = subprocess.Popen([*LOGPIPE, "run", "-i", "--name", "once", image_of(d), "cat"],
                            env=_env(d), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"first\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"first\n"
        proc.kill()
    finally:
        proc.communicate(timeout=30)
    wait_until(lambda: d.inspect("once", "{{.State.Status}}") == "exited", timeout=30)
    assert d.inspect("once", "{{.State.ExitCode}}") == "0"
    assert d.ok("logs", "once") == b"first\n"


def test_detach_keys_end_the_attach_and_the_container_runs_on(d, api):
    cid = api.create_container(image_of(d), ["cat"], stdin_open=True, detach=True)["Id"]
    api.start(cid)
    sock = api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stream": 1,
                                          "detachKeys": "ctrl-x,x"})
    raw = sock._sock
    raw.settimeout(20)
    raw.sendall(b"kept\n")
    seen = b""
    while b"kept\n" not in seen:
        seen += raw.recv(4096)
    raw.sendall(b"\x18y\n\x18x")  # ctrl-x then y is no sequence: passed on
    while raw.recv(4096):  # the daemon ends the attach after ctrl-x x
        pass
    raw.close()
    wait_until(lambda: api.logs(cid) == b"kept\n\x18y\n", timeout=20)
    assert api.inspect_container(cid)["State"]["Running"] is True


def test_bad_detach_keys_are_refused_with_dockers_400(d, api):
    cid = api.create_container(image_of(d), ["cat"], stdin_open=True, detach=True)["Id"]
    api.start(cid)
    with pytest.raises(docker.errors.APIError) as err:
        api.attach_socket(cid, params={"stdin": 1, "stream": 1, "detachKeys": "ctrl-1"})
    assert err.value.status_code == 400
    assert "Invalid detach keys (ctrl-1) provided" in str(err.value)


def test_a_client_that_floods_a_container_not_reading_stdin_never_blocks_the_shim(d, api):
    """``sleep`` never reads its stdin: the client's writes wait, while the shim still
    answers (inspect, stop) and a client that sends nothing costs nothing."""
    cid = api.create_container(image_of(d), ["sleep", "300"], stdin_open=True,
                               detach=True)["Id"]
    api.start(cid)
    idle = api.attach_socket(cid, params={"stdin": 1, "stream": 1})
    flood = api.attach_socket(cid, params={"stdin": 1, "stream": 1})
    flood._sock.settimeout(60)

    def send() -> None:
        try:
            flood._sock.sendall(b"x" * (16 << 20))
        except OSError:
            pass  # the container stopped: the attach ended

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sender.join(1)
    assert sender.is_alive()  # the writes wait: nothing reads them
    assert api.inspect_container(cid)["State"]["Running"] is True  # the shim answers
    api.stop(cid, timeout=1)
    sender.join(60)
    assert not sender.is_alive()
    assert api.inspect_container(cid)["State"]["Running"] is False
    for s in (idle, flood):
        s._sock.close()


def test_the_shim_keeps_stdin_open_across_a_daemon_sigkill(d, api):
    cid = api.create_container(image_of(d), ["cat"], stdin_open=True, detach=True)["Id"]
    api.start(cid)
    sock = api.attach_socket(cid, params={"stdin": 1, "stream": 1})
    sock._sock.sendall(b"before\n")
    wait_until(lambda: api.logs(cid) == b"before\n", timeout=20)
    shim = _shim_pid(d, cid)
    d.sigkill()
    sock._sock.close()
    d.start()
    os.kill(shim, 0)  # the shim lives on, with the container's stdin
    again = docker.APIClient(base_url=d.host, version="1.41", timeout=60)
    try:
        sock = again.attach_socket(cid, params={"stdin": 1, "stream": 1})
        sock._sock.sendall(b"after\n")
        wait_until(lambda: again.logs(cid) == b"before\nafter\n", timeout=20)
        sock._sock.close()
        assert again.inspect_container(cid)["State"]["Running"] is True
    finally:
        again.close()


def _shim_pid(d, cid: str) -> int:
    with open(os.path.join(d.root, "containers", cid, "state.json")) as f:
        return json.load(f)["ShimPid"]


def test_killing_the_client_of_a_container_without_stdin_once_leaves_it_running(d, api):
    cid = api.create_container(image_of(d), ["cat"], stdin_open=True, detach=True)["Id"]
    api.start(cid)
    proc = subprocess.Popen([*LOGPIPE, "attach", cid], env=_env(d), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"via attach\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"via attach\n"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate(timeout=30)
    assert d.inspect(cid, "{{.State.Running}}") == "true"
