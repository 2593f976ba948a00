"""The Docker logging plugin against a real dockerd 20.10 (conftest ``real_docker``): volume
into a fluentd receiver, a receiver outage compared with Docker's own ``fluentd`` driver,
dockerd restarts with and without live-restore, the plugin gone while a container writes,
``docker logs --until/-t/-f`` across rotation, the plugin's ``/metrics``, and the removal of
removed containers' logs. Measured figures are printed (``-s``) and recorded in
docs/docker-plugin.md."""

from __future__ import annotations

import fcntl
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
        real_docker, real_busybox, docker_plugin, capsys):
    """The receiver is down for 30 s while a container writes 20 000 lines and exits: through
    the plugin the container exits about as fast as with the receiver up, ``docker rm`` is
    prompt, the counters show the backlog, the directory stays until the spool is delivered,
    and every line arrives once the receiver is back. Docker's ``fluentd`` driver on the same
    workload is measured beside it (its losses are printed, not promised)."""
    lines = 20000
    plugin_opts = ["--log-driver", docker_plugin.name, "--log-opt", "logpipe-driver=fluentd",
                   "--log-opt", "fluentd-async=true", "--network", "none"]
    names = {k: unique(f"lp-out-{k}") for k in ("base", "plugin", "local", "docker", "block")}
    receiver = FakeFluentd().start()
    address = receiver.address
    figures = {}
    try:
        # Baseline: the receiver up.
        _, figures["plugin_up_s"] = timed_run(
            real_docker, "--name", names["base"], *plugin_opts, "--log-opt",
            f"fluentd-address={address}", "--log-opt", "tag=base", real_busybox,
            "seq", "1", str(lines))
        receiver.stop()
        down_at = time.monotonic()
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
        time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))  # the outage's length
        receiver.start()
        wait_until(lambda: len(records_of(receiver, "plugin")) >= lines, timeout=30,
                   what="the plugin's lines delivered")
        got = records_of(receiver, "plugin")
        assert [r["log"] for r in got] == [str(i) for i in range(1, lines + 1)]
        wait_until(lambda: not os.path.exists(container_dir(docker_plugin, cid)),
                   timeout=15, what="the delivered, removed container's directory gone")
        # Docker's driver: give it as long again as the plugin took, at least 3 s.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and len(records_of(receiver, "docker")) < lines:
            time.sleep(0.1)  # measuring what arrives in a bounded time, not awaiting an event
        figures["docker_async_delivered"] = len(records_of(receiver, "docker"))
        figures["docker_async_lost"] = lines - figures["docker_async_delivered"]
        figures["plugin_delivered"] = len(got)
        with capsys.disabled():
            print(f"\nreceiver down 30 s, {lines} lines: {figures}")
    finally:
        receiver.stop()
        for name in names.values():
            real_docker.cli("rm", "-f", name, limit=20)
