"""The daemon's Engine API: status codes, Docker's messages, the logs stream, lifecycle.

Every test talks to a real ``logpipe daemon`` (temporary data root, temporary socket,
``process`` runtime so no root is needed), started by the ``daemon`` fixture (conftest.py) and
killed at teardown together with every container it still has.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import time
from typing import Any

import pytest

from conftest import EMPTY_IMAGE as IMAGE
from conftest import Daemon, create, start_daemon, stop_daemon, wait
from runtime.cli.client import APIError, Client, read_frames

pytest.importorskip("aiohttp")

pytestmark = pytest.mark.e2e


def run(api: Client, cmd: list[str], **kw: Any) -> str:
    cid = create(api, cmd, **kw)
    api.post(f"/containers/{cid}/start")
    return cid


def logs(api: Client, cid: str, **query: Any) -> list[tuple[int, bytes]]:
    query.setdefault("stdout", 1)
    query.setdefault("stderr", 1)
    return list(read_frames(api.request("GET", f"/containers/{cid}/logs", query)))


def status_of(call) -> tuple[int, str]:
    with pytest.raises(APIError) as info:
        call()
    return info.value.status, str(info.value)


def container_dirs(d: Daemon) -> list[str]:
    return sorted(os.listdir(os.path.join(d.root, "containers")))


# -- system ---------------------------------------------------------------------------------


def test_version_and_ping_speak_api_1_41_under_any_version_prefix(api):
    v = api.json("GET", "/version")
    assert (v["ApiVersion"], v["MinAPIVersion"], v["Os"]) == ("1.41", "1.12", "linux")
    assert v["Version"].startswith("logpipe-")
    resp = api._send("GET", "/_ping", None, None, None, 5)
    assert (resp.status, resp.read(), resp.getheader("Api-Version")) == (200, b"OK", "1.41")


def test_info_lists_registered_log_drivers_default_driver_and_root(api, daemon):
    info = api.json("GET", "/info")
    assert {"json-file", "local", "none"} <= set(info["Plugins"]["Log"])
    assert info["LoggingDriver"] == "json-file"
    assert info["DockerRootDir"] == daemon.root
    assert info["Containers"] == 0


# -- create: validation, nothing half-created -------------------------------------------------


def test_create_with_a_taken_name_is_409_with_dockers_message(api, daemon):
    cid = create(api, ["true"], name="web")
    code, msg = status_of(lambda: create(api, ["true"], name="web"))
    assert code == 409
    assert msg == (f'Conflict. The container name "/web" is already in use by container "{cid}". '
                   "You have to remove (or rename) that container to be able to reuse that name.")
    assert container_dirs(daemon) == [cid]


@pytest.mark.parametrize("body, status, message", [
    ({"Image": "nope"}, 404, "No such image: nope:latest"),
    ({"HostConfig": {"LogConfig": {"Type": "json-file", "Config": {"foo": "bar"}}}}, 400,
     "unknown log opt 'foo' for json-file log driver"),
    ({"HostConfig": {"LogConfig": {"Type": "bogus"}}}, 400,
     'error looking up logging plugin bogus: plugin "bogus" not found'),
    ({"HostConfig": {"LogConfig": {"Type": "json-file", "Config": {"max-size": "abc"}}}}, 400, None),
    ({"HostConfig": {"Runtime": "nosuch"}}, 400, None),
    ({"HostConfig": {"Binds": ["./relative:/x"]}}, 400, None),  # "relative" is a volume
    ({"HostConfig": {"RestartPolicy": {"Name": "always"}, "AutoRemove": True}}, 400, None),
])
def test_create_refuses_bad_input_and_leaves_no_container_behind(api, daemon, body, status, message):
    full = {"Image": IMAGE, "Cmd": ["true"], **body}
    code, msg = status_of(lambda: api.json("POST", "/containers/create", {"name": "bad"}, full))
    assert code == status
    if message:
        assert msg == message
    assert container_dirs(daemon) == []
    assert api.json("GET", "/containers/json", {"all": 1}) == []
    create(api, ["true"], name="bad")  # the name was not taken either


def test_create_rejects_invalid_names_with_dockers_rule(api):
    code, msg = status_of(lambda: create(api, ["true"], name="../etc"))
    assert code == 400
    assert msg == "Invalid container name (../etc), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"


def test_daemon_log_opts_merge_only_into_containers_of_the_default_driver(api):
    default = create(api, ["true"])
    with_own = create(api, ["true"], HostConfig={"LogConfig": {"Config": {"max-file": "2"}}})
    local = create(api, ["true"], HostConfig={"LogConfig": {"Type": "local"}})
    cfg = {c: api.container(c)["HostConfig"]["LogConfig"] for c in (default, with_own, local)}
    assert cfg[default] == {"Type": "json-file", "Config": {"max-size": "10m"}}
    assert cfg[with_own] == {"Type": "json-file", "Config": {"max-file": "2", "max-size": "10m"}}
    assert cfg[local] == {"Type": "local", "Config": {}}


def test_containers_are_found_by_id_unique_prefix_or_name(api):
    cid = create(api, ["true"], name="finder")
    for ref in (cid, cid[:5], "finder", "/finder"):
        assert api.container(ref)["Id"] == cid
    code, msg = status_of(lambda: api.container("missing"))
    assert (code, msg) == (404, "No such container: missing")


# -- lifecycle --------------------------------------------------------------------------------


def test_start_stop_wait_report_docker_states_and_codes(api):
    cid = run(api, ["sh", "-c", "echo up; exec sleep 30"])
    state = api.container(cid)["State"]
    assert state["Status"] == "running" and state["Running"] and state["Pid"] > 0
    resp = api._send("POST", f"/containers/{cid}/start", None, None, None, 5)
    assert resp.status == 304
    api.post(f"/containers/{cid}/stop", {"t": 5})
    state = api.container(cid)["State"]
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 143, False)
    assert wait(api, cid) == 143
    resp = api._send("POST", f"/containers/{cid}/stop", None, None, None, 5)
    assert resp.status == 304


def test_stop_kills_after_the_timeout_when_sigterm_is_ignored(api):
    cid = run(api, ["sh", "-c", "trap '' TERM; echo ready; sleep 30 & wait"])
    started = time.monotonic()
    api.post(f"/containers/{cid}/stop", {"t": 1})
    assert time.monotonic() - started >= 1
    assert api.container(cid)["State"]["ExitCode"] == 137


def test_wait_answers_with_the_exit_code_when_the_container_exits(api):
    cid = create(api, ["sh", "-c", "exit 5"])
    resp = api.request("POST", f"/containers/{cid}/wait", {"condition": "next-exit"})
    api.post(f"/containers/{cid}/start")  # the wait was registered before the start
    assert json.loads(resp.read()) == {"StatusCode": 5, "Error": None}


def test_kill_sends_the_named_signal(api):
    cid = run(api, ["sleep", "30"])
    api.post(f"/containers/{cid}/kill", {"signal": "SIGUSR1"})
    assert wait(api, cid) == 128 + signal.SIGUSR1
    code, msg = status_of(lambda: api.post(f"/containers/{cid}/kill"))
    assert (code, msg) == (409, f"Container {cid} is not running")


def test_a_process_whose_shim_was_sigkilled_is_killed_and_recorded_exited_137(api, daemon):
    # The process runtime: the container is a plain process group the shim no longer reaps.
    cid = run(api, ["sh", "-c", "echo before; exec sleep 300"])
    with open(os.path.join(daemon.root, "containers", cid, "state.json")) as f:
        state = json.load(f)
    os.kill(state["ShimPid"], signal.SIGKILL)
    assert wait(api, cid) == 137
    info = api.container(cid)["State"]
    assert (info["Status"], info["ExitCode"], info["Error"]) == \
        ("exited", 137, "shim died; its container was killed")
    try:
        os.kill(state["Pid"], 0)  # a zombie until init reaps it: dead either way
        with open(f"/proc/{state['Pid']}/stat") as f:
            assert f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (ProcessLookupError, FileNotFoundError):
        pass
    assert [p for _, p in logs(api, cid)] == [b"before\n"]  # kept until rm
    api.request("DELETE", f"/containers/{cid}").read()
    assert container_dirs(daemon) == []


def test_remove_running_needs_force_and_deletes_the_logs(api, daemon):
    cid = run(api, ["sh", "-c", "echo hello; exec sleep 30"])
    code, msg = status_of(lambda: api.request("DELETE", f"/containers/{cid}").read())
    assert code == 409
    assert msg == (f"You cannot remove a running container {cid}. Stop the container before "
                   "attempting removal or force remove")
    api.request("DELETE", f"/containers/{cid}", {"force": 1}).read()
    assert container_dirs(daemon) == []
    assert status_of(lambda: api.container(cid))[0] == 404


def test_auto_remove_deletes_the_container_once_it_exits(api, daemon):
    cid = create(api, ["sh", "-c", "exit 3"], HostConfig={"AutoRemove": True})
    resp = api.request("POST", f"/containers/{cid}/wait", {"condition": "removed"})
    api.post(f"/containers/{cid}/start")
    assert json.loads(resp.read())["StatusCode"] == 3
    assert container_dirs(daemon) == []


def test_on_failure_policy_restarts_up_to_the_limit_and_appends_to_the_same_log(api):
    cid = run(api, ["sh", "-c", "echo run; exit 1"],
              HostConfig={"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}})
    deadline = time.monotonic() + 30
    while True:  # three runs: the first and two restarts, with Docker's 100/200 ms backoff
        info = api.container(cid)
        if info["RestartCount"] == 2 and info["State"]["Status"] == "exited":
            break
        assert time.monotonic() < deadline, info["State"]
        wait(api, cid)
    assert [p for _, p in logs(api, cid)] == [b"run\n"] * 3


def test_restarted_daemon_readopts_a_running_container_and_its_log(daemon, tmp_path):
    api = Client(daemon.host, autostart=False)
    go = tmp_path / "go"  # the container runs on until the test has seen it adopted
    cid = run(api, ["sh", "-c",
                    f"echo before; until [ -e {go} ]; do sleep 0.01; done; echo after"])
    os.kill(daemon.proc.pid, signal.SIGKILL)
    daemon.proc.wait()
    base = os.path.dirname(daemon.root)
    with open(daemon.config) as f:
        again = start_daemon(base, daemon.root, json.load(f))
    try:
        info = api.container(cid)
        assert info["State"]["Status"] == "running"
        go.touch()
        assert wait(api, cid) == 0
        assert [p for _, p in logs(api, cid)] == [b"before\n", b"after\n"]
    finally:
        stop_daemon(again)


# -- logs (reference §5) ----------------------------------------------------------------------


def test_logs_are_one_multiplexed_frame_per_record_with_the_stream_id(api):
    cid = run(api, ["sh", "-c", "printf 'a\\nb\\n'; echo e >&2; printf tail"])
    wait(api, cid)
    resp = api.request("GET", f"/containers/{cid}/logs", {"stdout": 1, "stderr": 1})
    assert resp.getheader("Transfer-Encoding") == "chunked"
    # API 1.41's headers: no Content-Type on logs, Docker's own on every response.
    assert resp.getheader("Content-Type") is None
    assert resp.getheader("Api-Version") == "1.41" and resp.getheader("Ostype") == "linux"
    raw = resp.read()
    frames = []
    while raw:
        stream, n = struct.unpack(">BxxxL", raw[:8])
        frames.append((stream, raw[8:8 + n]))
        raw = raw[8 + n:]
    assert sorted(frames) == sorted([(1, b"a\n"), (1, b"b\n"), (2, b"e\n"), (1, b"tail")])


def test_logs_filters_streams_and_needs_at_least_one(api):
    cid = run(api, ["sh", "-c", "echo out; echo err >&2"])
    wait(api, cid)
    assert logs(api, cid, stdout=1, stderr=0) == [(1, b"out\n")]
    assert logs(api, cid, stdout=0, stderr="true") == [(2, b"err\n")]
    code, msg = status_of(lambda: logs(api, cid, stdout=0, stderr="no"))
    assert (code, msg) == (400, "Bad parameters: you must choose at least one stream")


def test_logs_tail_timestamps_and_since_follow_dockers_semantics(api):
    cid = run(api, ["sh", "-c", "for i in 1 2 3 4; do echo l$i; done"])
    wait(api, cid)
    assert [p for _, p in logs(api, cid, tail=2)] == [b"l3\n", b"l4\n"]
    assert logs(api, cid, tail=0) == []
    assert len(logs(api, cid, tail="all")) == 4
    stamped = [p for _, p in logs(api, cid, timestamps=1, tail=1)]
    ts, _, line = stamped[0].partition(b" ")
    assert line == b"l4\n" and len(ts) == 30 and ts.endswith(b"Z")  # 9 fraction digits
    assert logs(api, cid, since=int(time.time()) + 10) == []
    assert len(logs(api, cid, since="1.5")) == 4
    code, msg = status_of(lambda: logs(api, cid, since="abc"))
    assert (code, msg) == (500, 'strconv.ParseInt: parsing "abc": invalid syntax')


def test_logs_follow_streams_new_lines_and_ends_when_the_container_stops(api):
    cid = run(api, ["sh", "-c", "echo first; read x < /dev/null; sleep 0.5; echo second"])
    resp = api.request("GET", f"/containers/{cid}/logs", {"stdout": 1, "follow": 1})
    got = [p for _, p in read_frames(resp)]  # returns only because the stream ends
    assert got == [b"first\n", b"second\n"]


def test_logs_of_a_none_driver_container_are_501(api):
    cid = run(api, ["echo", "x"], HostConfig={"LogConfig": {"Type": "none"}})
    wait(api, cid)
    code, msg = status_of(lambda: logs(api, cid))
    assert (code, msg) == (501, "configured logging driver does not support reading")


def test_attach_before_start_streams_that_runs_output(api):
    cid = create(api, ["sh", "-c", "echo hi; echo ho >&2"])
    resp = api.request("POST", f"/containers/{cid}/attach",
                       {"stream": 1, "stdout": 1, "stderr": 1})
    api.post(f"/containers/{cid}/start")
    assert sorted(read_frames(resp)) == [(1, b"hi\n"), (2, b"ho\n")]


def test_list_filters_by_status_name_and_label(api):
    a = run(api, ["sleep", "30"], name="alpha", Labels={"team": "x"})
    b = create(api, ["true"], name="beta")
    ids = lambda **q: [c["Id"] for c in api.json("GET", "/containers/json", q)]  # noqa: E731
    assert ids() == [a]
    assert set(ids(all=1)) == {a, b}
    assert ids(all=1, filters=json.dumps({"status": ["created"]})) == [b]
    assert ids(all=1, filters=json.dumps({"name": ["alp"]})) == [a]
    assert ids(all=1, filters=json.dumps({"label": ["team=x"]})) == [a]
    item = api.json("GET", "/containers/json")[0]
    assert item["Names"] == ["/alpha"] and item["State"] == "running"
    assert item["Status"].startswith("Up ")
