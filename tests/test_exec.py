"""``exec``: docker-py's ``exec_run``, the docker CLI's ``docker exec`` (``-i``, ``-it``,
``-d``), python-on-whales and testcontainers against logpipe's daemon, on runc with busybox;
and what a killed client, a killed container and a killed daemon do to an exec.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess

import pytest

from conftest import LOGPIPE, RUNC, docker_cli, wait_until

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not RUNC, reason="needs root, runc and busybox-static")]

docker = pytest.importorskip("docker")
IMAGE = "busybox:latest"
DOCKER = shutil.which("docker")


@pytest.fixture(scope="module")
def d(runc_module_daemon):
    return runc_module_daemon


@pytest.fixture
def client(d):
    c = docker.DockerClient(base_url=d.host, version="1.41", timeout=60)
    yield c
    for ctr in c.containers.list(all=True):
        ctr.remove(force=True)
    c.close()


@pytest.fixture
def ctr(client):
    """A running busybox container that sleeps."""
    return client.containers.run(IMAGE, ["sleep", "300"], detach=True)


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """Docker's multiplexed frames: ``[stream, 0, 0, 0, length u32 BE]`` + payload."""
    out = []
    while data:
        stream, length = struct.unpack(">BxxxL", data[:8])
        out.append((stream, data[8:8 + length]))
        data = data[8 + length:]
    return out


def _logpipe() -> list[str]:
    return list(LOGPIPE)


def _processes(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read().replace(b"\0", b" "):
                    found.append(int(pid))
        except OSError:
            pass
    return found


# -- docker-py ---------------------------------------------------------------------------------


def test_exec_run_gets_env_workdir_user_output_and_exit_code(ctr):
    res = ctr.exec_run("sh -c 'echo $X; pwd; id -u; id -g'", environment={"X": "ex"},
                       workdir="/tmp", user="nobody")
    assert res.exit_code == 0
    assert res.output == b"ex\n/tmp\n65534\n65534\n"
    res = ctr.exec_run(["sh", "-c", "id -u; id -g; echo out; echo err >&2; exit 3"],
                       user="12:34")
    assert res.exit_code == 3
    assert sorted(res.output.splitlines()) == [b"12", b"34", b"err", b"out"]
    assert ctr.exec_run("sh -c 'echo $HOSTNAME'").output.strip() == ctr.id[:12].encode()


def test_exec_run_streams_and_demuxes(ctr):
    res = ctr.exec_run(["sh", "-c", "echo a; sleep 0.2; echo b >&2; echo c"], stream=True)
    assert b"".join(res.output) in (b"a\nb\nc\n", b"a\nc\nb\n")
    res = ctr.exec_run(["sh", "-c", "echo out; echo err >&2; exit 5"], demux=True)
    assert res.output == (b"out\n", b"err\n")
    assert res.exit_code == 5


def test_exec_socket_carries_stdin_and_its_eof(client, ctr):
    api = client.api
    eid = api.exec_create(ctr.id, ["sh", "-c", "tr a-z A-Z; echo done"], stdin=True)["Id"]
    sock = api.exec_start(eid, socket=True)
    raw = sock._sock
    raw.sendall(b"hello\n")
    raw.shutdown(socket.SHUT_WR)  # the client's EOF is the exec's
    data = b""
    raw.settimeout(20)
    while chunk := raw.recv(4096):
        data += chunk
    sock.close()
    assert b"".join(p for _, p in _frames(data)) == b"HELLO\ndone\n"
    assert {n for n, _ in _frames(data)} == {1}
    assert api.exec_inspect(eid)["ExitCode"] == 0


def test_a_start_without_upgrade_is_a_plain_200_stream(d, client, ctr):
    """Docker answers a start that does not ask to upgrade with ``200`` and the raw stream
    until the connection closes."""
    import http.client

    eid = client.api.exec_create(ctr.id, ["sh", "-c", "echo plain; echo e >&2"])["Id"]
    conn = http.client.HTTPConnection("localhost", timeout=60)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.connect(d.host.removeprefix("unix://"))
    try:
        conn.request("POST", f"/v1.41/exec/{eid}/start", b'{"Detach": false}',
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "application/vnd.docker.raw-stream"
        body = resp.read()
    finally:
        conn.close()
    assert sorted(_frames(body)) == [(1, b"plain\n"), (2, b"e\n")]
    assert client.api.exec_inspect(eid)["ExitCode"] == 0


def test_exec_inspect_and_container_exec_ids_and_dockers_refusals(client, ctr):
    api = client.api
    eid = api.exec_create(ctr.id, ["echo", "x"], privileged=True, user="nobody",
                          environment=["A=1"])["Id"]
    info = api.exec_inspect(eid)
    assert info["Running"] is False and info["ExitCode"] is None
    assert info["ContainerID"] == ctr.id and info["CanRemove"] is False
    assert info["ProcessConfig"] == {"tty": False, "entrypoint": "echo", "arguments": ["x"],
                                     "privileged": True, "user": "nobody"}
    assert api.inspect_container(ctr.id)["ExecIDs"] == [eid]
    assert api.exec_start(eid) == b"x\n"
    info = api.exec_inspect(eid)
    assert (info["Running"], info["ExitCode"], info["CanRemove"]) == (False, 0, True)
    assert info["Pid"] > 0
    assert api.inspect_container(ctr.id)["ExecIDs"] is None  # Docker lists unfinished ones
    with pytest.raises(docker.errors.APIError) as err:
        api.exec_start(eid)
    assert err.value.status_code == 409
    assert err.value.explanation == f"Error: Exec command {eid} has already run"
    busy = api.exec_create(ctr.id, ["sleep", "30"])["Id"]
    api.exec_start(busy, detach=True)
    with pytest.raises(docker.errors.APIError) as err:
        api.exec_start(busy)
    assert (err.value.status_code, err.value.explanation) == (
        409, f"Error: Exec command {busy} is already running")
    with pytest.raises(docker.errors.NotFound) as err:
        api.exec_inspect("nope")
    assert err.value.explanation == "No such exec instance: nope"
    with pytest.raises(docker.errors.APIError) as err:
        api.exec_create(ctr.id, [])
    assert (err.value.status_code, err.value.explanation) == (400, "No exec command specified")
    with pytest.raises(docker.errors.NotFound) as err:
        api.exec_create("nosuch", ["true"])
    assert err.value.explanation == "No such container: nosuch"


def test_bad_exec_bodies_and_queries_are_400s_with_gos_words(client, ctr):
    api = client.api
    res = api._post_json(api._url("/containers/{0}/exec", ctr.id), data={"Cmd": "echo"})
    assert res.status_code == 400
    assert res.json()["message"] == ("json: cannot unmarshal string into Go struct field "
                                     "ExecConfig.Cmd of type []string")
    eid = api.exec_create(ctr.id, ["true"])["Id"]
    res = api._post_json(api._url("/exec/{0}/start", eid), data={"Detach": "yes"})
    assert res.status_code == 400 and "ExecStartCheck.Detach of type bool" in res.text
    res = api._post(api._url("/exec/{0}/resize", eid), params={"h": "x", "w": "1"})
    assert res.status_code == 400
    assert res.json()["message"] == 'strconv.Atoi: parsing "x": invalid syntax'
    assert api.exec_inspect(eid)["Running"] is False  # none of it started the exec


def test_exec_in_a_paused_or_stopped_container_gets_dockers_409(client, ctr):
    ctr.pause()
    with pytest.raises(docker.errors.APIError) as err:
        ctr.exec_run("true")
    assert err.value.status_code == 409
    assert err.value.explanation == (f"Container {ctr.id} is paused, unpause the container "
                                     "before exec")
    ctr.unpause()
    eid = client.api.exec_create(ctr.id, ["true"])["Id"]
    ctr.kill()
    for call in (lambda: ctr.exec_run("true"), lambda: client.api.exec_start(eid)):
        with pytest.raises(docker.errors.APIError) as err:
            call()
        assert err.value.status_code == 409
        assert err.value.explanation == f"Container {ctr.id} is not running"


# -- the docker CLI ---------------------------------------------------------------------------


def test_docker_exec_exit_codes_and_texts_for_commands_that_cannot_run(d, ctr):
    res = docker_cli(d, "exec", ctr.id, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (res.returncode, res.stdout, res.stderr) == (7, b"out\n", b"err\n")
    res = docker_cli(d, "exec", ctr.id, "nope")
    assert res.returncode == 127
    assert res.stdout.decode() == (
        'OCI runtime exec failed: exec failed: unable to start container process: exec: '
        '"nope": executable file not found in $PATH: unknown\r\n')
    res = docker_cli(d, "exec", ctr.id, "/etc")
    assert res.returncode == 126
    assert b'exec: "/etc": permission denied: unknown' in res.stdout
    res = docker_cli(d, "exec", "-u", "ghost", ctr.id, "true")
    assert res.returncode == 126
    assert b"unable to find user ghost: no matching entries in passwd file" in res.stdout


def test_docker_exec_i_pipes_stdin_and_exec_output_stays_out_of_the_log(d, client, ctr):
    res = subprocess.run([DOCKER, "-H", d.host, "exec", "-i", ctr.id, "sh", "-c",
                          "wc -l; echo secret-exec-output"],
                         input=b"1\n2\n3\n", capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [b"3", b"secret-exec-output"]
    assert b"secret-exec-output" not in ctr.logs()  # Docker does not log exec output


def test_docker_exec_detached_runs_to_its_end_without_a_client(d, ctr):
    res = docker_cli(d, "exec", "-d", ctr.id, "sh", "-c", "sleep 0.3; echo done > /tmp/flag")
    assert res.returncode == 0 and res.stdout == b"", res.stderr
    wait_until(lambda: docker_cli(d, "exec", ctr.id, "cat", "/tmp/flag").stdout == b"done\n",
               what="the detached exec's file")
    res = docker_cli(d, "exec", "-d", ctr.id, "nope")
    assert res.returncode == 1
    assert b'exec: "nope": executable file not found in $PATH' in res.stderr


def test_docker_exec_it_runs_a_shell_on_a_terminal(d, ctr):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(DOCKER, ["-H", d.host, "exec", "-it", ctr.id, "sh"], timeout=30)
    try:
        child.setwinsize(30, 100)
        child.expect(r"# ")
        child.sendline("echo $((6*7)); stty size; tty")
        child.expect(r"42\r\n")
        child.expect(r"(\d+) (\d+)\r\n")
        assert child.match.groups() == (b"30", b"100")
        child.expect(r"/dev/pts/\d+")
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 3


# -- other clients ------------------------------------------------------------------------------


def test_python_on_whales_execute(d, ctr):
    pow_ = pytest.importorskip("python_on_whales")
    whales = pow_.DockerClient(host=d.host)
    assert whales.execute(ctr.id, ["echo", "hi"]) == "hi"
    with pytest.raises(pow_.exceptions.DockerException) as err:
        whales.execute(ctr.id, ["sh", "-c", "exit 4"])
    assert err.value.return_code == 4


def test_testcontainers_starts_a_container_and_execs_in_it(d, monkeypatch):
    pytest.importorskip("testcontainers")
    from testcontainers.core.container import DockerContainer

    monkeypatch.setenv("DOCKER_HOST", d.host)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")  # no reaper container
    with DockerContainer(IMAGE).with_command("sleep 60") as box:
        code, out = box.exec(["sh", "-c", "echo from-testcontainers"])
        assert (code, out) == (0, b"from-testcontainers\n")


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="needs docker-compose (apt-get install docker-compose)")
def test_docker_compose_exec(d, tmp_path):
    (tmp_path / "docker-compose.yml").write_text(
        "version: '2.4'\nservices:\n  box:\n    image: busybox:latest\n"
        "    command: sleep 300\n    network_mode: none\n")
    env = dict(os.environ, DOCKER_HOST=d.host)

    def compose(*args: str, no_cli: str = "", **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["docker-compose", "-p", "lpexec", *args], cwd=tmp_path,
                              env=dict(env, COMPOSE_INTERACTIVE_NO_CLI=no_cli),
                              capture_output=True, timeout=120, **kw)

    try:
        res = compose("up", "-d")
        assert res.returncode == 0, res.stderr
        # Through docker-py (compose's own exec; it forwards no stdin with -T)...
        res = compose("exec", "-T", "-e", "X=composed", "box", "sh", "-c", "echo $X; exit 3",
                      no_cli="1", stdin=subprocess.DEVNULL)
        assert (res.returncode, res.stdout) == (3, b"composed\n")
        # ...and through the docker CLI, compose's default, stdin included.
        res = compose("exec", "-T", "box", "cat", input=b"through stdin\n")
        assert (res.returncode, res.stdout) == (0, b"through stdin\n"), res.stderr
    finally:
        res = compose("down", "-t", "1")
    assert res.returncode == 0, res.stderr


# -- faults --------------------------------------------------------------------------------------


def _daemon_threads(d) -> int:
    return len(os.listdir(f"/proc/{d.current.proc.pid}/task"))


def test_a_killed_client_hangs_up_its_exec_and_leaves_no_thread(d, client, ctr):
    ctr.exec_run("true")  # the daemon's worker threads exist from now on
    before = _daemon_threads(d)
    proc = subprocess.Popen([DOCKER, "-H", d.host, "exec", ctr.id, "sh", "-c",
                             "echo started; exec sleep 4242"], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"started\n"
        eid, = client.api.inspect_container(ctr.id)["ExecIDs"]
        proc.kill()
    finally:
        proc.wait()
    wait_until(lambda: not client.api.exec_inspect(eid)["Running"], what="the exec's end")
    assert client.api.exec_inspect(eid)["ExitCode"] == 128 + signal.SIGHUP
    assert not _processes("sleep 4242")
    wait_until(lambda: _daemon_threads(d) <= before, what="the exec's threads to end")


def test_killing_the_container_ends_an_exec_stream_with_its_exit_code(client, ctr):
    eid = client.api.exec_create(ctr.id, ["sh", "-c", "echo up; exec sleep 300"])["Id"]
    stream = client.api.exec_start(eid, stream=True)
    assert next(stream) == b"up\n"
    ctr.kill()
    assert list(stream) == []  # the stream ends
    info = client.api.exec_inspect(eid)
    assert info["Running"] is False and info["ExitCode"] == 128 + signal.SIGKILL


def test_sigkill_of_runc_ends_the_exec_stream_and_records_137(client, ctr):
    eid = client.api.exec_create(ctr.id, ["sh", "-c", "echo up; exec sleep 4646"])["Id"]
    stream = client.api.exec_start(eid, stream=True)
    assert next(stream) == b"up\n"
    wait_until(lambda: client.api.exec_inspect(eid)["Pid"], what="runc's pid file")
    pid = client.api.exec_inspect(eid)["Pid"]
    with open(f"/proc/{pid}/stat") as f:
        runc = int(f.read().rsplit(")", 1)[1].split()[1])  # the exec's parent: runc
    os.kill(runc, signal.SIGKILL)
    assert list(stream) == []  # the client is not left hanging
    info = client.api.exec_inspect(eid)
    assert info["Running"] is False and info["ExitCode"] == 128 + signal.SIGKILL
    ctr.kill()  # the orphaned command dies with the container's pid namespace
    wait_until(lambda: not _processes("sleep 4646"), what="the orphaned exec to end")


def test_daemon_sigkill_during_an_exec_ends_it_and_the_container_lives_on(d, ctr):
    proc = subprocess.Popen([DOCKER, "-H", d.host, "exec", ctr.id, "sh", "-c",
                             "echo started; exec sleep 4343"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"started\n"
        eid = d.inspect(ctr.id, "{{index .ExecIDs 0}}")
        d.sigkill()
        proc.wait(30)  # the client is not left hanging
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    wait_until(lambda: not _processes("sleep 4343"), what="the exec's process to end")
    d.start()
    assert d.inspect(ctr.id, "{{.State.Running}}") == "true"
    res = docker_cli(d, "exec", ctr.id, "echo", "again")
    assert res.stdout == b"again\n"
    c = docker.APIClient(base_url=d.host, version="1.41")
    with pytest.raises(docker.errors.NotFound):
        c.exec_inspect(eid)
    c.close()


# -- logpipe's own CLI ---------------------------------------------------------------------------


def test_logpipe_exec_flags_stdin_exit_codes_and_detach(d, ctr, tmp_path):
    envs = tmp_path / "env"
    envs.write_text("# a comment\nFROM_FILE=f\n\n")
    out = d.lp("exec", "-e", "X=1", "--env-file", str(envs), "-w", "/tmp", "-u", "nobody",
               ctr.id, "sh", "-c", "echo $X $FROM_FILE; pwd; id -u; echo err >&2; exit 6")
    assert (out.returncode, out.stdout, out.stderr) == (6, b"1 f\n/tmp\n65534\n", b"err\n")
    env = dict(os.environ, LOGPIPE_HOST=d.host, LOGPIPE_NO_AUTOSTART="1")
    piped = subprocess.run([*_logpipe(), "exec", "-i", ctr.id, "tr", "a-z", "A-Z"],
                           input=b"abc\n", capture_output=True, env=env, timeout=60)
    assert (piped.returncode, piped.stdout) == (0, b"ABC\n")
    out = d.lp("exec", ctr.id, "nope")
    assert out.returncode == 127 and b"executable file not found in $PATH" in out.stdout
    assert d.lp("exec", "-d", ctr.id, "touch", "/tmp/by-logpipe").returncode == 0
    wait_until(lambda: d.lp("exec", ctr.id, "test", "-f", "/tmp/by-logpipe").returncode == 0,
               what="the detached exec's file")
    out = d.lp("exec", "nosuch", "true")
    assert (out.returncode, out.stderr) == (1, b"Error response from daemon: No such "
                                               b"container: nosuch\n")


def test_logpipe_exec_it_on_a_terminal(d, ctr):
    pexpect = pytest.importorskip("pexpect")
    env = dict(os.environ, LOGPIPE_HOST=d.host, LOGPIPE_NO_AUTOSTART="1")
    cmd = _logpipe()
    child = pexpect.spawn(cmd[0], [*cmd[1:], "exec", "-it", ctr.id, "sh"], env=env,
                          timeout=30)
    try:
        child.setwinsize(25, 90)
        child.expect(r"# ")
        child.sendline("echo $((6*7)); stty size")
        child.expect(r"42\r\n")
        child.expect(r"25 90\r\n")
        child.sendline("exit 2")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 2
