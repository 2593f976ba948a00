"""The Docker logging plugin against a real dockerd 20.10 (conftest ``real_docker``): volume
into a fluentd receiver, a receiver outage compared with Docker's own ``fluentd`` driver,
dockerd restarts with and without live-restore, the plugin gone while a container writes,
``docker logs --until/-t/-f`` across rotation, the plugin's ``/metrics``, and the removal of
removed containers' logs. Measured figures are printed (``-s``) and recorded in
docs/docker-plugin.md."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import struct
import subprocess
import termios
import time
import uuid

import pytest

from conftest import PluginProc, wait_until

pytest.importorskip("google.protobuf", reason="the plugin needs protobuf (pip install protobuf)")

from receivers.fluentd import FakeFluentd  # noqa: E402

pytestmark = pytest.mark.e2e

#: Numbered lines until /gate/stop exists (a short pause every 50 lines); on SIGTERM or at
#: the end, the last number goes to /gate/last.
WRITER = ("trap 'echo $i > /gate/last; exit 0' TERM; i=0; "
          "while [ ! -e /gate/stop ]; do i=$((i+1)); echo $i; "
          "[ $((i % 50)) = 0 ] && sleep 0.01; done; echo $i > /gate/last")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def run_detached(docker, plugin, image: str, name: str, *args: str, opts=(), volume=None):
    """``docker run -d`` through the plugin; returns the container's full id."""
    extra = ["-v", f"{volume}:/gate"] if volume else []
    log_opts = [x for opt in opts for x in ("--log-opt", opt)]
    res = docker.cli("run", "-d", "--name", name, "--network", "none", *extra,
                     "--log-driver", plugin.name, *log_opts, image, *args)
    assert res.returncode == 0, res.stderr
    return res.stdout.decode().strip()


def timed_run(docker, *args: str, limit: int = 60) -> tuple[subprocess.CompletedProcess, float]:
    """``docker run -d ...`` then ``docker wait``: the seconds from start to exit."""
    start = time.monotonic()
    res = docker.cli("run", "-d", *args, limit=limit)
    assert res.returncode == 0, res.stderr
    waited = docker.cli("wait", res.stdout.decode().strip(), limit=limit)
    assert waited.returncode == 0, waited.stderr
    return res, time.monotonic() - start


def numbers(docker, name: str, *flags: str) -> list[int]:
    res = docker.cli("logs", *flags, name, limit=60)
    assert res.returncode == 0, res.stderr
    return [int(x) for x in res.stdout.split()]


def container_dir(plugin: PluginProc, cid: str) -> str:
    return os.path.join(plugin.data_root, "containers", cid)


def records_of(receiver: FakeFluentd, tag: str) -> list[dict]:
    with receiver._cond:
        return [e.record for e in receiver.events if e.tag == tag]


# -- 1. volume ---------------------------------------------------------------------------------


def test_fifty_thousand_lines_into_fluentd_exactly_once(real_docker, real_busybox, docker_plugin):
    """50 000 lines through ``logpipe-driver=fluentd``: each delivered once, in order, with
    Docker's record keys and the tag; ``docker logs`` reads all of them from the spool; the
    plugin's counters say the same."""
    name = unique("lp-50k")
    with FakeFluentd() as receiver:
        res, _ = timed_run(real_docker, "--name", name, "--network", "none", "--log-driver",
                           docker_plugin.name, "--log-opt", "logpipe-driver=fluentd",
                           "--log-opt", f"fluentd-address={receiver.address}",
                           "--log-opt", "tag=docker.{{.Name}}", real_busybox, "seq", "1", "50000",
                           limit=120)
        cid = res.stdout.decode().strip()
        try:
            events = receiver.wait_for(50000, timeout=60)
            wait_until(lambda: docker_plugin.metrics()["logpipe_backlog_lines", cid] == 0,
                       timeout=30, what="the spool delivered")
            assert receiver.received == 50000
            assert [e.record["log"] for e in events] == [str(i) for i in range(1, 50001)]
            assert {e.tag for e in events} == {f"docker.{name}"}
            assert {frozenset(e.record) for e in events} == \
                {frozenset({"container_id", "container_name", "source", "log"})}
            assert events[0].record["container_id"] == cid
            assert events[0].record["container_name"] == f"/{name}"
            assert {e.record["source"] for e in events} == {"stdout"}
            assert numbers(real_docker, name) == list(range(1, 50001))
            m = docker_plugin.metrics()
            assert m["logpipe_captured_lines_total", cid] == 50000
            assert m["logpipe_stored_lines_total", cid] == 50000
            assert m["logpipe_shipped_lines_total", cid] == 50000
            assert m["logpipe_dropped_lines_total", cid] == 0
            assert m["logpipe_possible_duplicates_total", cid] == 0
            assert m["logpipe_backlog_bytes", cid] == 0
        finally:
            real_docker.cli("rm", "-f", name)


# -- 2. a receiver outage, and Docker's own driver -------------------------------------------


def test_receiver_down_30s_plugin_keeps_everything_docker_fluentd_does_not(
        real_docker, real_busybox, docker_plugin, tmp_path, capsys):
    """The receiver is down for 30 s while a container writes 20 000 lines and exits: through
    the plugin the container exits about as fast as with the receiver up, ``docker rm`` is
    prompt, the counters show the backlog, the directory stays until the spool is delivered,
    and every line arrives once the receiver is back. Docker's ``fluentd`` driver on the same
    workload is measured beside it (its losses are printed, not promised)."""
    lines = 20000
    plugin_opts = ["--log-driver", docker_plugin.name, "--log-opt", "logpipe-driver=fluentd",
                   "--log-opt", "fluentd-async=true", "--network", "none"]
    names = {k: unique(f"lp-out-{k}")
             for k in ("base", "plugin", "local", "docker", "block", "block2")}
    receiver = FakeFluentd().start()
    address = receiver.address
    figures = {}
    try:
        # Baseline: the receiver up.
        _, figures["plugin_up_s"] = timed_run(
            real_docker, "--name", names["base"], *plugin_opts, "--log-opt",
            f"fluentd-address={address}", "--log-opt", "tag=base", real_busybox,
            "seq", "1", str(lines))
        # Docker's driver in its default (blocking) mode, connected while the receiver is up,
        # writes its lines once the receiver is down.
        gate = tmp_path / "gate"
        gate.mkdir()
        run_block2 = real_docker.cli(
            "run", "-d", "--name", names["block2"], "--network", "none", "-v", f"{gate}:/gate",
            "--log-driver", "fluentd", "--log-opt", f"fluentd-address={address}",
            "--log-opt", "tag=block2", real_busybox, "sh", "-c",
            f"while [ ! -e /gate/go ]; do sleep 0.02; done; seq 1 {lines}")
        assert run_block2.returncode == 0, run_block2.stderr
        receiver.stop()
        down_at = time.monotonic()
        (gate / "go").touch()

        # Docker's own driver, asynchronous: the container does not wait for the receiver.
        _, figures["docker_async_down_s"] = timed_run(
            real_docker, "--name", names["docker"], "--network", "none", "--log-driver",
            "fluentd", "--log-opt", f"fluentd-address={address}", "--log-opt",
            "fluentd-async=true", "--log-opt", "tag=docker", real_busybox,
            "seq", "1", str(lines))
        # ... and in its default (blocking) mode: what does docker run do?
        start = time.monotonic()
        block = real_docker.cli("run", "--name", names["block"], "--network", "none",
                                "--log-driver", "fluentd", "--log-opt",
                                f"fluentd-address={address}", "--log-opt", "tag=block",
                                real_busybox, "seq", "1", str(lines), limit=25)
        figures["docker_blocking_run_s"] = round(time.monotonic() - start, 2)
        figures["docker_blocking_rc"] = block.returncode
        figures["docker_blocking_err"] = block.stderr.decode().strip()[-200:]
        # Connected before the outage: is its container held (still running 15 s on)?
        figures["docker_blocking_connected_held"] = real_docker.cli(
            "wait", names["block2"], limit=15).returncode != 0

        # The plugin's container, late in the outage: the shipper's backoff (fluentd's, 1 s
        # doubling up to 60 s, as fluent-logger's) then waits a few seconds at most when the
        # receiver returns, which keeps the test short; it starts from the first failure.
        time.sleep(max(0.0, 20 - (time.monotonic() - down_at)))  # within the outage
        res, figures["plugin_down_s"] = timed_run(
            real_docker, "--name", names["plugin"], *plugin_opts, "--log-opt",
            f"fluentd-address={address}", "--log-opt", "tag=plugin", real_busybox,
            "seq", "1", str(lines))
        cid = res.stdout.decode().strip()
        assert figures["plugin_down_s"] < 3 * figures["plugin_up_s"] + 5, figures
        wait_until(lambda: docker_plugin.metrics()["logpipe_backlog_lines", cid] == lines,
                   timeout=20, what="the backlog counted")
        m = docker_plugin.metrics()
        assert m["logpipe_shipped_lines_total", cid] == 0
        assert m["logpipe_backlog_bytes", cid] > 0

        # docker stop / rm of the plugin's container are bounded while the receiver is down;
        # its directory stays (the spool is not delivered), a local container's goes.
        local = run_detached(real_docker, docker_plugin, real_busybox, names["local"],
                             "true", opts=["logpipe-driver=local"])
        assert real_docker.cli("wait", local).returncode == 0
        for verb in ("stop", "rm"):
            start = time.monotonic()
            done = real_docker.cli(verb, names["plugin"], names["local"], limit=20)
            figures[f"plugin_{verb}_s"] = round(time.monotonic() - start, 2)
            assert done.returncode == 0, done.stderr
            assert figures[f"plugin_{verb}_s"] < 15
        wait_until(lambda: not os.path.exists(container_dir(docker_plugin, local)),
                   timeout=15, what="the removed local container's directory gone")
        assert os.path.isdir(container_dir(docker_plugin, cid))   # a sweep ran: kept

        # The receiver comes back after 30 s on the same port.
        assert time.monotonic() - down_at < 30, "the outage's steps took too long"
        time.sleep(30 - (time.monotonic() - down_at))  # the outage's length
        receiver.start()
        back_at = time.monotonic()
        wait_until(lambda: len(records_of(receiver, "plugin")) >= lines, timeout=40,
                   what="the plugin's lines delivered")
        figures["plugin_delivered_after_return_s"] = round(time.monotonic() - back_at, 2)
        got = records_of(receiver, "plugin")
        assert [r["log"] for r in got] == [str(i) for i in range(1, lines + 1)]
        wait_until(lambda: not os.path.exists(container_dir(docker_plugin, cid)),
                   timeout=15, what="the delivered, removed container's directory gone")
        # Docker's driver: whatever it still sends arrives within 3 s more.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            time.sleep(0.1)  # measuring what arrives in a bounded time, not awaiting an event
        for tag in ("docker", "block2"):
            figures[f"{tag}_delivered"] = len(records_of(receiver, tag))
        figures["docker_blocking_connected_running_at_end"] = real_docker.cli(
            "inspect", "-f", "{{.State.Running}}", names["block2"]).stdout.strip() == b"true"
        figures["plugin_delivered"] = len(got)
        with capsys.disabled():
            print(f"\nreceiver down 30 s, {lines} lines: {figures}")
    finally:
        receiver.stop()
        for name in names.values():
            real_docker.cli("rm", "-f", name, limit=20)


# -- 3. dockerd restarts -----------------------------------------------------------------------


def _gap_check(got: list[int], before: int, last: int | None) -> dict:
    """What a restart cost, and what it must not: the lines are in order with none twice,
    everything the plugin had taken before the restart is there, and nothing is missing
    except (Docker's loss) one run of lines at the restart."""
    assert got == sorted(set(got)), "a line twice or out of order"
    assert got[:before] == list(range(1, before + 1)), "a line taken before the restart lost"
    missing = sorted(set(range(1, (last or got[-1]) + 1)) - set(got))
    if missing:
        assert missing == list(range(missing[0], missing[-1] + 1)), f"holes: {missing[:20]}"
    return {"written": last, "stored": len(got), "lost": len(missing)}


@pytest.mark.parametrize("live_restore", [False, True], ids=["no-live-restore", "live-restore"])
def test_dockerd_restarts_while_a_plugin_container_writes(real_docker, real_busybox,
                                                          docker_plugin, tmp_path, live_restore,
                                                          capsys):
    """SIGTERM, then ``kill -9``, of dockerd while a container writes numbered lines through
    the plugin: nothing the plugin took is lost or doubled; live-restore keeps the container
    (and its FIFO, given anew by the restarted dockerd) writing into the same log."""
    figures = {}
    try:
        if live_restore != real_docker.live_restore:
            real_docker.restart(live_restore=live_restore)
        for kill in (False, True):
            gate = tmp_path / f"gate-{kill}"
            gate.mkdir()
            name = unique("lp-restart")
            cid = run_detached(real_docker, docker_plugin, real_busybox, name, "sh", "-c",
                               WRITER, volume=gate, opts=["logpipe-driver=local"])
            wait_until(lambda: docker_plugin.metrics().get(
                ("logpipe_captured_lines_total", cid), 0) >= 2000, timeout=30,
                what="2000 lines taken")
            before = int(docker_plugin.metrics()["logpipe_captured_lines_total", cid])
            real_docker.restart(kill=kill)
            if live_restore:
                running = real_docker.cli("inspect", "-f", "{{.State.Running}}", name)
                assert running.stdout.strip() == b"true", running.stderr
                n = docker_plugin.metrics()["logpipe_captured_lines_total", cid]
                wait_until(lambda: docker_plugin.metrics()[
                    "logpipe_captured_lines_total", cid] > n + 500, timeout=30,
                    what="lines after the restart")
                (gate / "stop").touch()
            assert real_docker.cli("wait", name, limit=30).returncode == 0
            last = int((gate / "last").read_text()) if (gate / "last").exists() else None
            got = numbers(real_docker, name)
            figures["kill -9" if kill else "SIGTERM"] = _gap_check(got, before, last)
            if live_restore:
                assert got[-1] == last       # the log goes on after the restart
            if not kill and not live_restore:
                assert got == list(range(1, last + 1))  # dockerd stopped it: all stored
            real_docker.cli("rm", "-f", name)
    finally:
        if real_docker.live_restore:
            real_docker.restart(live_restore=False)
    with capsys.disabled():
        print(f"\ndockerd restarts, live-restore={live_restore}: {figures}")


# -- 4. the plugin gone while a container writes -----------------------------------------------


def _pipe_bytes(fifo: str) -> int:
    """Bytes waiting in a FIFO (``FIONREAD``), from a read end opened and closed without
    reading: what Docker's writes put in the pipe that no one has read yet."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    finally:
        os.close(fd)


def test_plugin_gone_while_a_container_writes(real_docker, real_busybox, docker_plugin,
                                              tmp_path, capsys):
    """What Docker does while the plugin is gone (measured, printed), and what the plugin
    promises: Docker's writes do not fail while no one reads, they fill the pipe (and the
    container is measured: held or not); the restarted plugin re-adopts the FIFO and reads
    what the pipe buffered, so not one line is lost. A ``docker run`` meanwhile waits for
    the plugin (Docker's plugin client retries) and goes on once it is back."""
    gate = tmp_path / "gate"
    gate.mkdir()
    name, probe_name = unique("lp-gone"), unique("lp-probe")
    many = 100000   # ~3 MB of frames: more than the pipe holds
    script = ("seq 1 1000; while [ ! -e /gate/1 ]; do sleep 0.02; done; seq 1001 1100; "
              "touch /gate/b; while [ ! -e /gate/2 ]; do sleep 0.02; done; "
              f"seq 1101 {1100 + many}; touch /gate/c; "
              f"while [ ! -e /gate/3 ]; do sleep 0.02; done; seq {1101 + many} {2100 + many}")
    cid = run_detached(real_docker, docker_plugin, real_busybox, name, "sh", "-c", script,
                       volume=gate, opts=["logpipe-driver=json-file"])
    figures = {}
    probe = None
    try:
        wait_until(lambda: docker_plugin.metrics().get(
            ("logpipe_captured_lines_total", cid), 0) == 1000, timeout=30, what="burst A")
        with open(os.path.join(container_dir(docker_plugin, cid), "plugin.json")) as f:
            fifo = json.load(f)["Fifo"]
        os.kill(docker_plugin.proc.pid, signal.SIGSTOP)     # alive, but not reading
        (gate / "1").touch()
        wait_until(lambda: (gate / "b").exists(), timeout=20, what="burst B written")
        # Burst B (100 lines of 4 digits, 28 bytes a frame) is in the pipe, unread.
        wait_until(lambda: _pipe_bytes(fifo) == 2800, timeout=20, what="burst B in the pipe")
        docker_plugin.kill()
        (gate / "2").touch()
        start = time.monotonic()
        while time.monotonic() - start < 3 and not (gate / "c").exists():
            time.sleep(0.05)   # measuring whether the container is held, for 3 s
        figures["container_blocked"] = not (gate / "c").exists()
        figures["pipe_bytes_while_gone"] = _pipe_bytes(fifo)
        probe_start = time.monotonic()
        probe = subprocess.Popen(
            ["timeout", "-s", "KILL", "60", "docker", "-H", real_docker.host, "run", "--name",
             probe_name, "--network", "none", "--log-driver", docker_plugin.name,
             real_busybox, "echo", "probe"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=real_docker.cli_env())
        time.sleep(2)   # the plugin stays away 2 s more, while docker run asks for it
        figures["docker_run_waits"] = probe.poll() is None
        docker_plugin.restart()
        out, err = probe.communicate(timeout=60)
        assert probe.returncode == 0 and out == b"probe\n", err
        figures["docker_run_rc"] = probe.returncode
        figures["docker_run_s"] = round(time.monotonic() - probe_start, 2)
        figures["docker_run_err"] = err.decode().strip()[:160]
        (gate / "3").touch()
        assert real_docker.cli("wait", name, limit=60).returncode == 0
        got = numbers(real_docker, name)
        figures["lost"] = 2100 + many - len(got)
        with capsys.disabled():
            print(f"\nplugin gone: {figures}")
        assert got == list(range(1, 2101 + many))
    finally:
        if probe is not None and probe.poll() is None:
            probe.kill()
        real_docker.cli("rm", "-f", name, probe_name)


# -- 5. docker logs --until, -t, -f across rotation ----------------------------------------------


@pytest.mark.parametrize("driver", ["local", "json-file", "fluentd"])
def test_docker_logs_follow_until_timestamps_across_rotation(real_docker, real_busybox,
                                                             docker_plugin, tmp_path, driver):
    """``docker logs -f`` started before the container writes follows every rotation and
    ends when it exits, exactly; ``-t`` gives each line's time; ``--until`` a line's time
    ends there. For fluentd, the spool (``cache-*``) is what rotates and what is read."""
    with FakeFluentd() as receiver:
        opts = {"local": ["max-size=16k", "max-file=30"],
                "json-file": ["max-size=16k", "max-file=30"],
                "fluentd": ["cache-max-size=16k", "cache-max-file=30", "cache-compress=false",
                            f"fluentd-address={receiver.address}"]}[driver]
        gate = tmp_path / "gate"
        gate.mkdir()
        name = unique("lp-follow")
        cid = run_detached(real_docker, docker_plugin, real_busybox, name, "sh", "-c",
                           "while [ ! -e /gate/go ]; do sleep 0.02; done; seq 1 3000",
                           volume=gate, opts=[f"logpipe-driver={driver}", *opts])
        try:
            follower = subprocess.Popen(
                ["timeout", "-s", "KILL", "60", "docker", "-H", real_docker.host, "logs",
                 "-f", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=real_docker.cli_env())
            (gate / "go").touch()
            out, err = follower.communicate(timeout=70)
            assert follower.returncode == 0, err
            assert out.split() == [b"%d" % i for i in range(1, 3001)]
            rotated = [f for _, _, files in os.walk(container_dir(docker_plugin, cid))
                       for f in files if f.endswith(".1") or ".1." in f]
            assert rotated, "no rotation happened"
            stamped = real_docker.cli("logs", "-t", name).stdout.decode().splitlines()
            assert [line.split(" ", 1)[1] for line in stamped] == \
                [str(i) for i in range(1, 3001)]
            stamps = [line.split(" ", 1)[0] for line in stamped]
            assert all(s.endswith("Z") and "T" in s for s in stamps)
            until = stamps[1499]
            upto = numbers(real_docker, name, "--until", until)
            assert upto == [i for i, s in enumerate(stamps, 1) if _ns(s) <= _ns(until)]
            assert upto[-1] >= 1500 and len(upto) < 3000
        finally:
            real_docker.cli("rm", "-f", name)


def _ns(stamp: str) -> int:
    """An RFC 3339 time with up to 9 fractional digits, as nanoseconds."""
    from logpipe.timespec import parse_rfc3339

    return parse_rfc3339(stamp)


# -- 7. removal --------------------------------------------------------------------------------


def test_removed_container_s_log_goes_a_stopped_one_s_stays(real_docker, real_busybox,
                                                           docker_plugin):
    """``docker rm`` → the directory goes (the plugin asks Docker which containers exist);
    a stopped container's log stays, ``docker logs`` still reads it."""
    kept, gone = unique("lp-kept"), unique("lp-gone")
    ids = {}
    for name in (kept, gone):
        ids[name] = run_detached(real_docker, docker_plugin, real_busybox, name, "echo", name,
                                 opts=["logpipe-driver=json-file"])
        assert real_docker.cli("wait", name).returncode == 0
        assert os.path.isdir(container_dir(docker_plugin, ids[name]))
    try:
        assert real_docker.cli("rm", gone).returncode == 0
        wait_until(lambda: not os.path.exists(container_dir(docker_plugin, ids[gone])),
                   timeout=15, what="the removed container's directory gone")
        assert os.path.isdir(container_dir(docker_plugin, ids[kept]))
        assert real_docker.cli("logs", kept).stdout == f"{kept}\n".encode()
        assert ("logpipe_captured_lines_total", ids[gone]) not in docker_plugin.metrics()
    finally:
        real_docker.cli("rm", "-f", kept, gone)
