"""``GET /events`` through real clients (the docker CLI, docker-py, docker-compose's log
printer, ``logpipe events``) against a runc daemon running busybox containers: Docker's
sequence of actions and attributes, streaming while things happen, ``since`` across a
daemon SIGKILL, a subscriber that never reads, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import clean_daemon, docker_cli, wait_until
from runtime.events import QUEUE_LIMIT

pytestmark = pytest.mark.e2e

docker = pytest.importorskip("docker")


@pytest.fixture
def runc_daemon(runc_module_daemon):
    """The module's runc daemon, emptied after each test (one daemon: seconds saved each)."""
    yield runc_module_daemon
    clean_daemon(runc_module_daemon)


def now() -> str:
    return f"{time.time():.9f}"


def events(d, since: str, *args: str) -> list[dict]:
    """``docker events --since … --until now --format '{{json .}}'``, decoded."""
    res = docker_cli(d, "events", "--since", since, "--until", now(), "--format", "{{json .}}",
                     *args)
    assert res.returncode == 0, res.stderr.decode()
    return [json.loads(line) for line in res.stdout.decode().splitlines()]


def actions(evs: list[dict]) -> list[str]:
    return [e["Action"] for e in evs]


def ok(d, *args: str) -> str:
    res = docker_cli(d, *args)
    assert res.returncode == 0, (args, res.stderr.decode())
    return res.stdout.decode().strip()


def test_docker_events_show_dockers_sequence_for_run_stop_and_rm(runc_daemon):
    d = runc_daemon
    since = now()
    # Attached, as docker run is: it attaches before it starts.
    res = docker_cli(d, "run", "--name", "ev-run", "--label", "team=logs", "busybox",
                     "sh", "-c", "echo hi; exit 3")
    assert res.returncode == 3, res.stderr.decode()
    ok(d, "rm", "ev-run")
    evs = events(d, since, "--filter", "container=ev-run")
    assert actions(evs) == ["create", "attach", "start", "die", "destroy"]
    cid = evs[0]["Actor"]["ID"]
    die = evs[3]
    assert die["Actor"]["Attributes"] == {"exitCode": "3", "image": "busybox",
                                          "name": "ev-run", "team": "logs"}
    assert (die["Type"], die["status"], die["id"], die["from"], die["scope"]) == (
        "container", "die", cid, "busybox", "local")
    assert die["time"] == die["timeNano"] // 10**9
    assert [e["timeNano"] for e in evs] == sorted(e["timeNano"] for e in evs)

    # stop: SIGTERM (kill, signal=15), the exit, then stop; a detached run has no attach.
    since = now()
    ok(d, "run", "-d", "--name", "ev-stop", "busybox", "sh", "-c",
       "trap 'exit 0' TERM; while true; do sleep 0.1; done")
    ok(d, "stop", "-t", "5", "ev-stop")
    ok(d, "rm", "ev-stop")
    evs = events(d, since, "--filter", "container=ev-stop")
    assert actions(evs) == ["create", "start", "kill", "die", "stop", "destroy"]
    assert evs[2]["Actor"]["Attributes"]["signal"] == "15"
    assert evs[3]["Actor"]["Attributes"]["exitCode"] == "0"

    # Filters combine as Docker's: type and event, label, a name prefix never matching.
    both = events(d, since, "--filter", "type=container", "--filter", "event=die")
    assert [e["Actor"]["Attributes"]["name"] for e in both] == ["ev-stop"]
    assert events(d, since, "--filter", "label=team=logs") == []
    assert events(d, since, "--filter", "container=nosuch") == []

    # logpipe events prints Docker's default line.
    res = d.lp("events", "--since", since, "--until", now(), "--filter", "event=kill")
    line = res.stdout.decode().strip()
    assert res.returncode == 0 and line.endswith(
        f" container kill {evs[2]['Actor']['ID']} (image=busybox, name=ev-stop, signal=15)"), line
    assert line[:30].endswith("Z") or "+" in line[:40] or "-" in line[20:40]


def test_docker_py_streams_events_while_a_container_starts(runc_daemon):
    d = runc_daemon
    client = docker.DockerClient(base_url=d.host)
    stream = client.events(decode=True, filters={"container": "ev-py"})
    seen: list[dict] = []

    def read() -> None:
        try:
            for ev in stream:
                seen.append(ev)
        except Exception:  # noqa: BLE001 - the stream is closed by the test
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        c = client.containers.run("busybox", ["sh", "-c", "exit 7"], name="ev-py", detach=True)
        wait_until(lambda: "die" in actions(seen), timeout=20, what="the die event streamed")
        assert actions(seen)[:3] == ["create", "start", "die"]
        assert seen[2]["Actor"]["Attributes"]["exitCode"] == "7"
        c.remove()
        wait_until(lambda: "destroy" in actions(seen), timeout=20, what="destroy streamed")
    finally:
        stream.close()
        reader.join(10)
        client.close()
    assert not reader.is_alive()


def test_an_until_in_the_future_ends_the_stream_then(runc_daemon):
    d = runc_daemon
    client = docker.APIClient(base_url=d.host, timeout=30)
    try:
        until = time.time() + 2
        stream = client.events(until=until, decode=True, filters={"type": "volume"})
        client.create_volume("ev-until")
        got = list(stream)  # ends by itself at until
        assert time.time() >= until - 0.05
        assert [(e["Action"], e["Actor"]["ID"]) for e in got] == [("create", "ev-until")]
    finally:
        client.close()


def test_events_since_survive_a_daemon_sigkill_and_restart(runc_daemon):
    d = runc_daemon
    since = now()
    ok(d, "run", "--name", "ev-kept", "busybox", "true")
    ok(d, "volume", "create", "ev-vol")
    ok(d, "rm", "ev-kept")
    ok(d, "volume", "rm", "ev-vol")
    until = now()
    d.sigkill()
    # A write torn by the kill: the line is skipped, the rest read.
    with open(os.path.join(d.root, "events", "events.log"), "ab") as f:
        f.write(b'{"status":"torn","id":"')
    d.start()
    res = docker_cli(d, "events", "--since", since, "--until", until, "--format",
                     "{{.Type}} {{.Action}} {{.Actor.ID}}")
    assert res.returncode == 0, res.stderr.decode()
    lines = res.stdout.decode().splitlines()
    assert [" ".join(x.split()[:2]) for x in lines] == [
        "container create", "container attach", "network connect", "container start",
        "network disconnect", "container die", "volume create", "container destroy",
        "volume destroy"], lines
    # The restarted daemon goes on appending.
    since = now()
    ok(d, "volume", "create", "ev-vol2")
    assert actions(events(d, since, "--filter", "volume=ev-vol2")) == ["create"]


def pipelined(d, request: bytes, count: int) -> None:
    """``count`` copies of one request on one connection, sent at once (HTTP pipelining):
    the cheapest way to make the daemon emit many events. Returns once all are answered."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(d.host.removeprefix("unix://"))
        conn.settimeout(60)
        sender = threading.Thread(target=conn.sendall, args=(request * count,), daemon=True)
        sender.start()
        answered, tail = 0, b""
        while answered < count:
            data = conn.recv(1 << 16)
            assert data, f"the daemon closed the connection after {answered} answers"
            tail += data
            answered += tail.count(b"HTTP/1.1 201")
            tail = tail[tail.rfind(b"HTTP/1.1 201") + 1:] if b"HTTP/1.1 201" in tail else tail[-16:]
        sender.join(10)


def test_a_subscriber_that_never_reads_is_cut_off_and_blocks_nothing(runc_daemon):
    d = runc_daemon
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(d.host.removeprefix("unix://"))
    try:
        sock.sendall(b"GET /v1.41/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        started = time.monotonic()
        ok(d, "run", "--rm", "--name", "ev-slow", "busybox", "true")
        assert time.monotonic() - started < 30
        # Enough events to fill the socket's buffers and the subscriber's queue: the daemon
        # ends that stream instead of keeping them (volume create is the cheapest event).
        # Long names make big events: the socket's buffers fill after a few hundred.
        body = json.dumps({"Name": "ev-many-" + "x" * 240}).encode()
        pipelined(d, b"POST /v1.41/volumes/create HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body), QUEUE_LIMIT + 800)
        sock.settimeout(30)
        received = b""
        while chunk := sock.recv(1 << 16):
            received += chunk  # the queued part, then the end of the stream
        assert b"200 OK" in received and b'"Action":"create"' in received
        assert received.count(b'"Action":"create"') < QUEUE_LIMIT + 800
        assert not received.endswith(b"0\r\n\r\n")  # broken off, not a clean end
        log = open(d.current.log).read()
        assert "events client fell 1024 events behind" in log
    finally:
        sock.close()
    # The daemon still answers and streams to a reader that reads.
    assert actions(events(d, "0", "--filter", "volume=ev-many-"))[-1] == "create"


def test_events_refuse_bad_input(runc_daemon):
    d = runc_daemon
    api = docker.APIClient(base_url=d.host)
    try:
        for query, text in ((("since", "abc"), "failed to parse"),
                            (("filters", '{"nosuch":{"x":true}}'), "invalid filter 'nosuch'"),
                            (("filters", "{"), "invalid JSON")):
            resp = api.get(api._url("/events"), params=dict([query]))
            assert resp.status_code == 400, (query, resp.text)
            assert text in resp.json()["message"]
        resp = api.get(api._url("/events"), params={"since": "200", "until": "100"})
        assert resp.status_code == 400
        assert resp.json()["message"] == "`since` time (200) cannot be after `until` time (100)"
    finally:
        api.close()


COMPOSE_FILE = """\
version: "3.7"
services:
  first:
    image: busybox:latest
    command: sh -c "echo hello-from-first; sleep 1; echo bye-from-first"
  second:
    image: busybox:latest
    command: sh -c "echo hello-from-second; exit 4"
"""


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="needs docker-compose (apt-get install docker-compose)")
def test_docker_compose_up_prints_the_logs_and_exits_when_the_services_exit(runc_daemon, tmp_path):
    d = runc_daemon
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE)
    env = dict(os.environ, DOCKER_HOST=d.host, COMPOSE_INTERACTIVE_NO_CLI="1")

    def compose(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["docker-compose", "-p", "lpev", "--no-ansi", *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    try:
        res = compose("up", timeout=90)  # the log printer ends once both have died
        out = res.stdout
        assert res.returncode == 0, (out, res.stderr)
        assert "first_1   | hello-from-first" in out and "bye-from-first" in out, out
        assert "second_1  | hello-from-second" in out, out
        assert "lpev_second_1 exited with code 4" in out, out
        assert "lpev_first_1 exited with code 0" in out, out
    finally:
        res = compose("down")
    assert res.returncode == 0, res.stderr


def test_network_volume_and_image_events(runc_daemon, busybox_tar):
    d = runc_daemon
    since = now()
    cid = ok(d, "create", "--name", "ev-net", "--network", "none", "-v", "ev-data:/data",
             "busybox", "true")
    net = ok(d, "network", "create", "ev-net1")
    ok(d, "network", "connect", "ev-net1", "ev-net")
    ok(d, "network", "disconnect", "ev-net1", "ev-net")
    ok(d, "network", "rm", "ev-net1")
    ok(d, "start", "-a", "ev-net")
    ok(d, "rm", "-v", "ev-net")  # a named volume stays
    ok(d, "volume", "rm", "ev-data")
    image = ok(d, "import", busybox_tar, "ev-image:1")
    ok(d, "rmi", "ev-image:1")
    evs = events(d, since, "--filter", "type=network")
    assert [(e["Action"], e["Actor"]["ID"]) for e in evs] == [
        ("create", net), ("connect", net), ("disconnect", net), ("destroy", net)]
    assert evs[1]["Actor"]["Attributes"] == {"container": cid, "name": "ev-net1",
                                             "type": "bridge"}
    evs = events(d, since, "--filter", "volume=ev-data")
    assert actions(evs) == ["create", "mount", "unmount", "destroy"]
    assert evs[1]["Actor"]["Attributes"] == {
        "container": cid, "destination": "/data", "driver": "local", "propagation": "",
        "read/write": "true"}
    evs = events(d, since, "--filter", "type=image")
    # The same files as busybox: the same image, so only the name goes.
    assert [(e["Action"], e["Actor"]["ID"]) for e in evs] == [("import", image), ("untag", image)]
    assert evs[0]["status"] == "import" and "from" not in evs[0]


def test_an_oom_kill_is_reported_before_the_die(runc_daemon):
    d = runc_daemon
    since = now()
    res = docker_cli(d, "run", "--name", "ev-oom", "--memory", "8m", "--memory-swap", "8m",
                     "busybox", "sh", "-c", "a=$(head -c 100000000 /dev/zero | tr '\\0' x)")
    if res.returncode != 137 or ok(d, "inspect", "-f", "{{.State.OOMKilled}}", "ev-oom") != "true":
        pytest.skip(f"no OOM kill on this host (exit {res.returncode}): no memory cgroup?")
    evs = events(d, since, "--filter", "container=ev-oom")
    assert actions(evs)[-2:] == ["oom", "die"]
    assert evs[-1]["Actor"]["Attributes"]["exitCode"] == "137"


def test_exec_events_name_the_command_and_its_exit_code(runc_daemon):
    d = runc_daemon
    ok(d, "run", "-d", "--name", "ev-exec", "busybox", "sleep", "60")
    since = now()
    assert docker_cli(d, "exec", "ev-exec", "sh", "-c", "exit 4").returncode == 4
    evs = events(d, since, "--filter", "container=ev-exec", "--filter", "event=exec_start")
    assert actions(evs) == ["exec_start: sh -c exit 4"]
    evs = events(d, since, "--filter", "container=ev-exec")
    assert actions(evs) == ["exec_create: sh -c exit 4", "exec_start: sh -c exit 4", "exec_die"]
    die = evs[-1]["Actor"]["Attributes"]
    assert die["exitCode"] == "4" and die["execID"] == evs[0]["Actor"]["Attributes"]["execID"]
    assert die["name"] == "ev-exec"
