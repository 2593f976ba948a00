"""logpipe as a Docker logging plugin (``logpipe docker-plugin``): the LogDriver protocol
spoken over the plugin's unix socket, Docker's FIFO of length-prefixed protobuf ``LogEntry``
messages written into a real FIFO, what the storage driver stored, ``ReadLogs``' answer, a
``kill -9`` of the plugin; and, with a real dockerd 20.10 (conftest ``real_docker``),
``docker run --log-driver`` / ``docker logs`` through the legacy plugin socket.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import uuid

import pytest

from conftest import LOGPIPE, PluginClient, PluginProc, start_daemon, stop_daemon, wait_until

pytest.importorskip("google.protobuf", reason="the plugin needs protobuf (pip install protobuf)")

from logpipe.plugin.entry import log_entry_class  # noqa: E402

pytestmark = pytest.mark.e2e

CID = "c0ffee" + "0" * 58


@pytest.fixture
def plugin(tmp_path):
    p = PluginProc(str(tmp_path / "lp.sock"), str(tmp_path / "data"))
    yield p
    p.stop()


def frame(source: str, ts: int, line: bytes, partial: tuple[str, int, bool] | None = None) -> bytes:
    """One FIFO frame as Docker writes it: ``[u32 BE length][LogEntry]``."""
    entry = log_entry_class()(source=source, time_nano=ts, line=line)
    if partial is not None:
        entry.partial = True
        meta = entry.partial_log_metadata
        meta.id, meta.ordinal, meta.last = partial
    data = entry.SerializeToString()
    return struct.pack(">I", len(data)) + data


def info(**config: str) -> dict:
    return {"ContainerID": CID, "ContainerName": "/web", "Config": config,
            "ContainerImageName": "busybox", "ContainerLabels": {}, "ContainerEnv": []}


def decode_stream(data: bytes) -> list[tuple[str, int, bytes]]:
    """A ``ReadLogs`` stream, decoded with protobuf: (source, ts, line) per entry."""
    out, pos = [], 0
    while pos < len(data):
        (size,) = struct.unpack_from(">I", data, pos)
        entry = log_entry_class().FromString(data[pos + 4:pos + 4 + size])
        out.append((entry.source, entry.time_nano, entry.line))
        pos += 4 + size
    assert pos == len(data)
    return out


def read_entries(p: PluginClient, **config) -> list[tuple[str, int, bytes]]:
    """``ReadLogs``' answer: (source, ts, line with its newline) per entry."""
    status, data = p.post("/LogDriver.ReadLogs", {"Info": info(), "Config": {
        "Since": "0001-01-01T00:00:00Z", "Until": "0001-01-01T00:00:00Z", "Tail": -1,
        "Follow": False, **config}})
    assert status == 200
    return decode_stream(data)


def test_activate_and_capabilities(plugin):
    assert plugin.call("/Plugin.Activate", {}) == {"Implements": ["LogDriver"]}
    conn = http.client.HTTPConnection("localhost", timeout=10)
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.connect(plugin.sock)
    conn.request("POST", "/Plugin.Activate", b"{}")
    assert conn.getresponse().getheader("Content-Type") == \
        "application/vnd.docker.plugins.v1+json"
    conn.close()
    assert plugin.call("/LogDriver.Capabilities", {}) == {"Cap": {"ReadLogs": True}}


@pytest.mark.parametrize("driver", ["local", "json-file"])
def test_fifo_entries_are_stored_and_read_back(plugin, tmp_path, driver):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    assert plugin.call("/LogDriver.StartLogging",
                       {"File": fifo, "Info": info(**{"logpipe-driver": driver})}) == {"Err": ""}
    pid = "ab" * 32
    with open(fifo, "wb") as w:
        w.write(frame("stdout", 1_000, b"one") + frame("stderr", 2_000, b"two"))
        w.write(frame("stdout", 3_000, b"a" * 16384, (pid, 1, False)))
        w.write(frame("stdout", 3_001, b"b" * 10, (pid, 2, True)))
        big = b"".join(frame("stdout", 4_000 + i, b"line %d" % i) for i in range(3000))
        w.write(big[:-3])   # a frame cut in the middle of a write: the rest comes after
        w.flush()
        w.write(big[-3:])
    assert plugin.call("/LogDriver.StopLogging", {"File": fifo}) == {"Err": ""}
    got = read_entries(plugin)
    assert got[:2] == [("stdout", 1_000, b"one\n"), ("stderr", 2_000, b"two\n")]
    # The long line's pieces: Docker writes each entry's line as it is, so they join up.
    assert got[2][:2] == ("stdout", 3_000)
    assert b"".join(g[2] for g in got[2:4]) == b"a" * 16384 + b"b" * 10 + b"\n"
    assert [g[2] for g in got[4:]] == [b"line %d\n" % i for i in range(3000)]
    stored = tmp_path / "data" / "containers" / CID
    if driver == "json-file":
        lines = (stored / f"{CID}-json.log").read_text().splitlines()
        assert json.loads(lines[0]) == {"log": "one\n", "stream": "stdout",
                                        "time": "1970-01-01T00:00:00.000001Z"}
        assert len(lines) == 3004
    else:
        assert (stored / "local-logs" / "container.log").stat().st_size > 0
    assert [g[2] for g in read_entries(plugin, Tail=2)] == [b"line 2998\n", b"line 2999\n"]
    since = read_entries(plugin, Since="1970-01-01T00:00:00.000006999Z")
    assert since[0][2] == b"line 2999\n" and len(since) == 1


@pytest.mark.parametrize("opts, text", [
    ({"max-size": "lots"}, "invalid value for max-size: lots: invalid size: 'lots'"),
    ({"logpipe-driver": "bogus"},
     'error looking up logging plugin bogus: plugin "bogus" not found'),
    ({"labels-regx": "x"}, "unknown log opt 'labels-regx' for log driver local"),
])
def test_bad_options_are_refused_with_run_s_words(plugin, tmp_path, opts, text):
    """The same validation and texts as ``logpipe run``; Docker shows ``Err`` verbatim."""
    from logpipe.errors import LogpipeError
    from logpipe.plugin.store import split_opts
    from logpipe.registry import validate_log_config

    name, driver_opts = split_opts(opts)
    with pytest.raises(LogpipeError) as raised:
        validate_log_config(name, driver_opts)
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    err = plugin.call("/LogDriver.StartLogging", {"File": fifo, "Info": info(**opts)})["Err"]
    assert err == str(raised.value)
    assert text in err


def test_fluentd_through_the_spool_while_the_receiver_is_down(plugin, tmp_path):
    """``logpipe-driver=fluentd``: the FIFO is drained into the disk-first spool whatever the
    receiver does (StopLogging answers while it is down), and the shipper delivers every
    line, once and in order, when it comes back; ``ReadLogs`` reads the spool meanwhile."""
    from receivers.fluentd import FakeFluentd

    with FakeFluentd() as receiver:
        address = receiver.address
        receiver.stop()
        fifo = str(tmp_path / "fifo")
        os.mkfifo(fifo)
        assert plugin.call("/LogDriver.StartLogging", {"File": fifo, "Info": info(**{
            "logpipe-driver": "fluentd", "fluentd-address": address,
            "fluentd-async": "true", "tag": "{{.Name}}"})}) == {"Err": ""}
        with open(fifo, "wb") as w:
            w.write(b"".join(frame("stdout", 1 + i, b"r%d" % i) for i in range(2000)))
        assert plugin.call("/LogDriver.StopLogging", {"File": fifo}) == {"Err": ""}
        assert len(read_entries(plugin)) == 2000
        receiver.restart()
        events = receiver.wait_for(2000, timeout=30)
        assert [e.record["log"] for e in events] == ["r%d" % i for i in range(2000)]
        assert {e.tag for e in events} == {"web"}
        assert events[0].record["container_id"] == CID


def test_fluentd_receiver_refused_without_async(plugin, tmp_path):
    """As at ``logpipe run``: fluentd without ``fluentd-async`` probes its receiver."""
    err = plugin.call("/LogDriver.StartLogging", {"File": str(tmp_path / "f"), "Info": info(
        **{"logpipe-driver": "fluentd", "fluentd-address": "127.0.0.1:1"})})["Err"]
    assert err and "127.0.0.1:1" in err, err


@pytest.mark.parametrize("body", [b"{", b"[1]"])
def test_bad_bodies_are_errors_not_500(plugin, body):
    conn = http.client.HTTPConnection("localhost", timeout=10)
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.connect(plugin.sock)
    conn.request("POST", "/LogDriver.StartLogging", body)
    resp = conn.getresponse()
    assert resp.status == 200 and json.loads(resp.read())["Err"].startswith("invalid request body")
    conn.close()


def test_read_logs_of_unknown_container(plugin):
    status, data = plugin.post("/LogDriver.ReadLogs", {"Info": {"ContainerID": "f" * 64},
                                                       "Config": {}})
    assert json.loads(data) == {"Err": f"no logs stored for container {'f' * 64}"}


def test_follow_streams_until_the_fifo_closes(plugin, tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    plugin.call("/LogDriver.StartLogging", {"File": fifo, "Info": info()})
    w = open(fifo, "wb", buffering=0)
    w.write(frame("stdout", 1, b"first"))
    wait_until(lambda: len(read_entries(plugin)) == 1, what="the first line stored")
    conn = http.client.HTTPConnection("localhost", timeout=20)
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.settimeout(20)
    conn.sock.connect(plugin.sock)
    conn.request("POST", "/LogDriver.ReadLogs", json.dumps(
        {"Info": info(), "Config": {"Tail": -1, "Follow": True}}))
    resp = conn.getresponse()
    assert resp.getheader("Content-Type") == "application/x-json-stream"
    w.write(frame("stdout", 2, b"second"))
    w.close()
    plugin.call("/LogDriver.StopLogging", {"File": fifo})
    data = resp.read()   # ends: the writer closed the log
    conn.close()
    assert [e[2] for e in decode_stream(data)] == [b"first\n", b"second\n"]


def test_stop_logging_answers_while_docker_still_holds_the_fifo(plugin, tmp_path):
    """Docker calls StopLogging before it closes its end of the FIFO (moby's
    ``pluginAdapter.Close``): the answer comes once what is in the pipe is stored, not at an
    EOF that only follows the answer; ``ReadLogs`` right after has every line."""
    from logpipe.plugin.protocol import STOP_WAIT

    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    plugin.call("/LogDriver.StartLogging", {"File": fifo, "Info": info()})
    w = open(fifo, "wb", buffering=0)
    try:
        w.write(b"".join(frame("stdout", 1 + i, b"s%d" % i) for i in range(3000)))
        status, data = plugin.post("/LogDriver.StopLogging", {"File": fifo},
                                   timeout=STOP_WAIT / 2)
        assert (status, json.loads(data)) == (200, {"Err": ""})
        assert [e[2] for e in read_entries(plugin)] == [b"s%d\n" % i for i in range(3000)]
    finally:
        w.close()


def test_killed_plugin_is_restarted_and_adopts_the_fifo(tmp_path):
    """``kill -9`` of the plugin while a writer logs: what it had read is on disk; a writer
    that opened the FIFO write-only gets EPIPE while no one reads (Docker opens it
    read-write and does not: test_docker_plugin_real); the restarted plugin opens the same
    FIFO again and appends what comes after to the same log."""
    sock, root = str(tmp_path / "lp.sock"), str(tmp_path / "data")
    p = PluginProc(sock, root)
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    log = tmp_path / "data" / "containers" / CID / f"{CID}-json.log"
    try:
        p.call("/LogDriver.StartLogging", {"File": fifo, "Info": info(**{
            "logpipe-driver": "json-file"})})
        w = open(fifo, "wb", buffering=0)
        w.write(b"".join(frame("stdout", i + 1, b"l%d" % i) for i in range(100)))
        wait_until(lambda: log.exists() and log.read_text().count("\n") == 100,
                   what="100 lines stored")
        p.kill()
        with pytest.raises(BrokenPipeError):
            w.write(frame("stdout", 999, b"lost"))
        p = PluginProc(sock, root)
        w.write(b"".join(frame("stdout", 1000 + i, b"m%d" % i) for i in range(100)))
        w.close()
        wait_until(lambda: log.read_text().count("\n") == 200, what="200 lines stored")
        got = [e[2] for e in read_entries(p)]
        assert got == [b"l%d\n" % i for i in range(100)] + [b"m%d\n" % i for i in range(100)]
        p.call("/LogDriver.StopLogging", {"File": fifo})
    finally:
        p.stop()
    # Stopped: a later restart leaves it alone, and still serves it.
    p = PluginProc(sock, root)
    try:
        assert len(read_entries(p)) == 200
    finally:
        p.stop()


def test_adopted_fifo_starting_inside_a_frame_is_resynchronised(tmp_path):
    """What a killed plugin read of a frame is gone; the rest of that frame is skipped."""
    import threading

    from logpipe.plugin.store import drain

    class Sink:
        chunks: list = []

        def write(self, batch):
            self.chunks.extend(batch)

    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    cut = frame("stdout", 5, b"half read by the dead plugin")
    whole = b"".join(frame("stderr", 10 + i, b"x%d" % i) for i in range(50))
    sink = Sink()
    t = threading.Thread(target=lambda: drain(os.open(fifo, os.O_RDONLY), sink, None, True))
    t.start()
    with open(fifo, "wb") as w:
        w.write(cut[7:] + whole)
    t.join(10)
    assert not t.is_alive()
    assert [c.data for c in sink.chunks] == [b"x%d\n" % i for i in range(50)]


# -- "docker-plugin": true in daemon.json ----------------------------------------------------


@pytest.fixture
def plugin_daemon():
    """``logpipe daemon`` with ``"docker-plugin": true`` and a socket of its own (a short
    temporary path: unix socket paths are limited to 108 bytes)."""
    import shutil
    import tempfile

    base = tempfile.mkdtemp(prefix="lpdp-")
    sock = os.path.join(base, "lp.sock")
    d = start_daemon(base, os.path.join(base, "root"), {
        "default-runtime": "process", "docker-plugin": True, "docker-plugin-socket": sock})
    try:
        yield d, PluginClient(sock)
    finally:
        stop_daemon(d)
        shutil.rmtree(base, ignore_errors=True)


def test_daemon_json_docker_plugin_serves_the_protocol(plugin_daemon, tmp_path):
    """The daemon answers Activate, StartLogging and ReadLogs on the plugin's socket, stores
    under ``<data-root>/docker-plugin``, and still serves its Engine API; the socket goes
    with the daemon."""
    from runtime.cli.client import Client

    d, p = plugin_daemon
    assert p.call("/Plugin.Activate", {}) == {"Implements": ["LogDriver"]}
    assert Client(d.host, autostart=False).json("GET", "/containers/json") == []
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    assert p.call("/LogDriver.StartLogging", {"File": fifo, "Info": info()}) == {"Err": ""}
    with open(fifo, "wb") as w:
        w.write(b"".join(frame("stdout", 1 + i, b"d%d" % i) for i in range(500)))
    assert p.call("/LogDriver.StopLogging", {"File": fifo}) == {"Err": ""}
    assert [e[2] for e in read_entries(p)] == [b"d%d\n" % i for i in range(500)]
    assert os.path.isfile(os.path.join(d.root, "docker-plugin", "containers", CID,
                                       "plugin.json"))
    stop_daemon(d)
    assert not os.path.exists(p.sock)


@pytest.mark.parametrize("config, text", [
    ({"docker-plugin": "yes"}, '"docker-plugin" must be true or false'),
    ({"docker-plugin-socket": "/run/docker/plugins/x.sock"},
     '"docker-plugin-socket" is set but "docker-plugin" is not true'),
    ({"docker-plugin": True, "docker-plugin-socket": "lp.sock"}, "must be an absolute path"),
    ({"docker-plugin": True, "docker-plugin-socket": "/run/docker/plugins/lp"},
     "ending in .sock"),
    ({"docker-plugin": True, "docker-plugin-socket": "/" + "a" * 120 + ".sock"},
     "at most 107 bytes"),
])
def test_daemon_json_docker_plugin_bad_values_are_refused(tmp_path, config, text):
    from runtime.config import ConfigError, load_config

    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="unable to configure the daemon") as raised:
        load_config(config_file=str(path), data_root=str(tmp_path / "root"))
    assert text in str(raised.value)


def test_daemon_json_docker_plugin_defaults_and_no_protobuf_at_import(tmp_path):
    """``true`` alone: Docker's ``logpipe`` driver socket, logs under the data root; and
    neither the config nor the daemon module loads protobuf."""
    script = (
        "import json, sys\n"
        "from runtime.config import load_config\n"
        "import runtime.daemon\n"
        f"open({str(tmp_path / 'd.json')!r}, 'w').write(json.dumps({{'docker-plugin': True}}))\n"
        f"c = load_config(config_file={str(tmp_path / 'd.json')!r}, data_root='/x')\n"
        "print(c.docker_plugin_socket, c.docker_plugin_root, 'google.protobuf' in sys.modules)\n")
    out = subprocess.run([LOGPIPE[0], "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["/run/docker/plugins/logpipe.sock", "/x/docker-plugin", "False"]


def _fill_small_spool(plugin, tmp_path, receiver, local_id: str, remote_id: str) -> None:
    """3000 lines into a local container, and into a fluentd one whose receiver is down,
    with a spool of 2 × 8 KiB in non-blocking mode."""
    for cid, opts in ((local_id, {}), (remote_id, {
            "logpipe-driver": "fluentd", "fluentd-address": receiver.address,
            "fluentd-async": "true", "mode": "non-blocking", "cache-max-size": "8k",
            "cache-max-file": "2", "cache-compress": "false"})):
        fifo = str(tmp_path / cid[:4])
        os.mkfifo(fifo)
        assert plugin.call("/LogDriver.StartLogging", {"File": fifo, "Info": {
            **info(**opts), "ContainerID": cid}}) == {"Err": ""}
        with open(fifo, "wb") as w:
            w.write(b"".join(frame("stdout", 1 + i, b"%05d" % i) for i in range(3000)))
        assert plugin.call("/LogDriver.StopLogging", {"File": fifo}) == {"Err": ""}


def test_metrics_count_captured_stored_and_spool_drops(plugin, tmp_path):
    """``GET /metrics`` on the plugin's socket, in the daemon's series: a local container's
    lines captured and stored; a fluentd container whose receiver is down, with a small
    spool in non-blocking mode, drops and counts, and holds the rest as backlog."""
    from receivers.fluentd import FakeFluentd

    local_id, remote_id = "a" * 64, "b" * 64
    with FakeFluentd() as receiver:
        receiver.stop()
        _fill_small_spool(plugin, tmp_path, receiver, local_id, remote_id)
        m = plugin.metrics()
    assert m["logpipe_captured_lines_total", local_id] == 3000
    assert m["logpipe_stored_lines_total", local_id] == 3000
    assert m["logpipe_captured_bytes_total", local_id] == 3000 * 6
    assert m["logpipe_dropped_lines_total", local_id] == 0
    assert ("logpipe_shipped_lines_total", local_id) not in m    # not a shipping driver
    dropped = m["logpipe_dropped_lines_total", remote_id]
    assert 0 < dropped < 3000
    assert m["logpipe_captured_lines_total", remote_id] == 3000
    assert m["logpipe_shipped_lines_total", remote_id] == 0
    assert m["logpipe_rejected_lines_total", remote_id] == 0
    assert m["logpipe_possible_duplicates_total", remote_id] == 0
    assert 0 < m["logpipe_backlog_lines", remote_id] <= 3000 - dropped
    assert 0 < m["logpipe_backlog_bytes", remote_id] <= 2 * 8192


def test_every_line_of_a_full_spool_is_delivered_or_counted_dropped(plugin, tmp_path):
    """Once the receiver is back, every line is either delivered or counted as dropped."""
    from receivers.fluentd import FakeFluentd

    local_id, remote_id = "a" * 64, "b" * 64
    with FakeFluentd() as receiver:
        receiver.stop()
        _fill_small_spool(plugin, tmp_path, receiver, local_id, remote_id)
        dropped = plugin.metrics()["logpipe_dropped_lines_total", remote_id]
        receiver.start()
        wait_until(lambda: plugin.metrics()["logpipe_backlog_lines", remote_id] == 0,
                   timeout=30, what="the spool delivered")
        m = plugin.metrics()
        assert m["logpipe_dropped_lines_total", remote_id] == dropped
        assert m["logpipe_shipped_lines_total", remote_id] + dropped == 3000
        assert receiver.received == 3000 - dropped


# -- a real dockerd --------------------------------------------------------------------------


def test_docker_run_and_logs_through_the_plugin(real_docker, real_busybox, docker_plugin):
    name = f"lp-plugin-{uuid.uuid4().hex[:6]}"
    run = real_docker.cli("run", "--name", name, "--network", "none", "--log-driver",
                          docker_plugin.name, "--log-opt", "logpipe-driver=local",
                          real_busybox, "sh", "-c", "seq 1 5000", limit=120)
    try:
        assert run.returncode == 0, run.stderr
        logs = real_docker.cli("logs", name)
        assert logs.returncode == 0, logs.stderr
        assert logs.stdout.decode().split() == [str(i) for i in range(1, 5001)]
        tail = real_docker.cli("logs", "--tail", "2", name)
        assert tail.stdout == b"4999\n5000\n", tail.stderr
    finally:
        real_docker.cli("rm", "-f", name)


def test_docker_run_shows_the_plugin_s_error(real_docker, real_busybox, docker_plugin):
    run = real_docker.cli("run", "--rm", "--network", "none", "--log-driver",
                          docker_plugin.name, "--log-opt", "max-size=lots", real_busybox, "true")
    assert run.returncode != 0
    assert b"invalid value for max-size: lots: invalid size: 'lots'" in run.stderr, run.stderr


def test_plugin_killed_and_restarted_while_a_container_runs(real_docker, real_busybox,
                                                            docker_plugin, tmp_path):
    """``kill -9`` of the plugin between two bursts of a running container: the restarted
    plugin re-opens Docker's FIFO and ``docker logs`` has both bursts."""
    name = f"lp-plugin-{uuid.uuid4().hex[:6]}"
    gate = tmp_path / "gate"
    gate.mkdir()
    script = ("seq 1 1000; while [ ! -e /gate/go ]; do sleep 0.05; done; seq 1001 2000")
    run = real_docker.cli("run", "-d", "--name", name, "--network", "none", "-v",
                          f"{gate}:/gate", "--log-driver", docker_plugin.name, real_busybox,
                          "sh", "-c", script)
    assert run.returncode == 0, run.stderr
    try:
        def lines() -> list[str]:
            return real_docker.cli("logs", name).stdout.decode().split()

        wait_until(lambda: len(lines()) == 1000, timeout=30, what="the first burst stored")
        docker_plugin.kill()
        docker_plugin.restart()
        (gate / "go").touch()
        assert real_docker.cli("wait", name).stdout.strip() == b"0"
        assert lines() == [str(i) for i in range(1, 2001)]
    finally:
        real_docker.cli("rm", "-f", name)


def test_docker_run_into_fluentd_through_the_plugin(real_docker, real_busybox, docker_plugin):
    """``logpipe-driver=fluentd`` on a real Docker: every line delivered once, in order,
    with Docker's record keys, and ``docker logs`` reads the spool."""
    from receivers.fluentd import FakeFluentd

    name = f"lp-plugin-{uuid.uuid4().hex[:6]}"
    with FakeFluentd() as receiver:
        run = real_docker.cli("run", "--name", name, "--network", "none", "--log-driver",
                              docker_plugin.name, "--log-opt", "logpipe-driver=fluentd",
                              "--log-opt", f"fluentd-address={receiver.address}",
                              real_busybox, "sh", "-c", "seq 1 5000", limit=120)
        try:
            assert run.returncode == 0, run.stderr
            events = receiver.wait_for(5000, timeout=30)
            assert [e.record["log"] for e in events] == [str(i) for i in range(1, 5001)]
            assert events[0].record["container_name"] == f"/{name}"
            assert events[0].record["source"] == "stdout"
            assert real_docker.cli("logs", "--tail", "1", name).stdout == b"5000\n"
        finally:
            real_docker.cli("rm", "-f", name)


def test_docker_run_through_the_daemon_s_plugin(real_docker, real_busybox):
    """A real Docker's container logs through ``logpipe daemon``'s ``"docker-plugin": true``
    socket, and ``docker logs`` reads it back."""
    import shutil
    import tempfile

    name = f"logpipe-test-{uuid.uuid4().hex[:8]}"
    os.makedirs("/run/docker/plugins", exist_ok=True)
    sock = f"/run/docker/plugins/{name}.sock"
    base = tempfile.mkdtemp(prefix="lpdp-")
    d = start_daemon(base, os.path.join(base, "root"), {
        "default-runtime": "process", "docker-plugin": True, "docker-plugin-socket": sock})
    container = f"lp-plugin-{uuid.uuid4().hex[:6]}"
    try:
        run = real_docker.cli("run", "--name", container, "--network", "none", "--log-driver",
                              name, real_busybox, "sh", "-c", "seq 1 3000", limit=120)
        assert run.returncode == 0, run.stderr
        logs = real_docker.cli("logs", "--tail", "3", container)
        assert logs.stdout == b"2998\n2999\n3000\n", logs.stderr
    finally:
        real_docker.cli("rm", "-f", container)
        stop_daemon(d)
        shutil.rmtree(base, ignore_errors=True)


def test_managed_plugin_built_offline_logs_and_reads(real_docker, real_busybox, tmp_path):
    """``conf/docker-plugin/build.sh`` (the host's Python and a pip install of logpipe as
    the rootfs) makes a managed plugin that Docker enables, logs a container through into
    the ``data`` mount, and answers ``docker logs`` from."""
    import shutil

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    name = f"lp-managed-{uuid.uuid4().hex[:6]}:latest"
    env = dict(os.environ, DOCKER_HOST=real_docker.host, DOCKER_API_VERSION="1.41",
               DOCKER_CONFIG=os.path.join(real_docker.base, "cli"),
               PYTHON=sys.executable)
    work, data = tmp_path / "plugin", tmp_path / "data"
    data.mkdir()
    build = subprocess.run([os.path.join(repo, "conf", "docker-plugin", "build.sh"), name,
                            str(work)], env=env, capture_output=True, timeout=600)
    container = f"lp-managed-{uuid.uuid4().hex[:6]}"
    try:
        assert build.returncode == 0, build.stderr[-3000:]
        assert real_docker.cli("plugin", "set", name, f"data.source={data}").returncode == 0
        enable = real_docker.cli("plugin", "enable", name, limit=120)
        assert enable.returncode == 0, enable.stderr
        run = real_docker.cli("run", "--name", container, "--network", "none", "--log-driver",
                              name, real_busybox, "sh", "-c", "seq 1 2000", limit=120)
        assert run.returncode == 0, run.stderr
        logs = real_docker.cli("logs", "--tail", "2", container)
        assert logs.stdout == b"1999\n2000\n", logs.stderr
        assert any(data.glob("containers/*/plugin.json"))
    finally:
        real_docker.cli("rm", "-f", container)
        real_docker.cli("plugin", "disable", "-f", name)
        real_docker.cli("plugin", "rm", "-f", name)
        shutil.rmtree(work, ignore_errors=True)
