"""The daemon's own end and start: streams end on SIGTERM, hang-ups are quiet, leftovers go.

A real ``logpipe daemon`` (``engine_daemon`` of ``tests/conftest.py``: runc on busybox
when possible, else the ``process`` runtime) with real clients: logpipe's CLI, the docker CLI
and raw HTTP on the unix socket.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import IMAGE, LOGPIPE, RestartableDaemon, wait_until

DOCKER = shutil.which("docker")
#: SIGTERM to exit, with every stream still attached: "a few seconds".
EXIT_BUDGET = 5.0


pytestmark = pytest.mark.e2e


@pytest.fixture
def daemon(engine_daemon):
    """This module's tests run on ``engine_daemon`` (conftest.py)."""
    return engine_daemon


def background(d: RestartableDaemon, *args: str) -> subprocess.Popen:
    """``logpipe ARGS`` (or ``docker ARGS`` when args[0] is "docker") left running; killed at
    teardown with the daemon's followers."""
    env = dict(os.environ, LOGPIPE_HOST=d.host, LOGPIPE_NO_AUTOSTART="1")
    argv = [DOCKER, "-H", d.host, *args[1:]] if args[0] == "docker" else \
        LOGPIPE + list(args)
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    d.followers.append(proc)
    return proc


def daemon_log(d: RestartableDaemon) -> str:
    with open(d.current.log, errors="replace") as f:
        return f.read()


def test_sigterm_ends_every_stream_and_a_new_daemon_starts_on_the_same_root(daemon):
    daemon.ok("run", "-d", "--name", "quiet", IMAGE, "sh", "-c", "echo first; exec sleep 300")
    streams = [background(daemon, "logs", "-f", "quiet"), background(daemon, "logs", "-f", "quiet"),
               background(daemon, "wait", "quiet")]
    if DOCKER is not None:  # the docker CLI's follow, and its hijacked attach
        streams += [background(daemon, "docker", "logs", "-f", "quiet"),
                    background(daemon, "docker", "attach", "--no-stdin", "quiet")]
    for proc in streams[:2] + streams[3:4]:
        assert proc.stdout.readline() == b"first\n"  # its request is in flight
    wait_until(lambda: len(open_connections(daemon)) >= len(streams), timeout=10,
               what="every client to be connected")

    began = time.monotonic()
    daemon.current.proc.send_signal(signal.SIGTERM)
    assert daemon.current.proc.wait(EXIT_BUDGET + 5) == 0
    took = time.monotonic() - began
    assert took < EXIT_BUDGET, f"the daemon took {took:.1f} s to exit"
    for proc in streams:
        proc.communicate(timeout=10)  # ended with the daemon, none waits on

    daemon.start()  # the data root's lock is free: a new daemon starts at once
    assert daemon.inspect("quiet", "{{.State.Status}}") == "running"  # containers live on
    log = daemon_log(daemon)
    assert "Traceback" not in log and "Error handling request" not in log, log


def open_connections(d: RestartableDaemon) -> list[str]:
    """Connected sockets of the daemon's API socket (``/proc/net/unix``: state 03, named after
    the listening socket they were accepted on)."""
    path = d.host.removeprefix("unix://")
    with open("/proc/net/unix") as f:
        rows = [line.split() for line in f.read().splitlines()[1:]]
    return [row[-1] for row in rows if len(row) == 8 and row[-1] == path and row[5] == "03"]


def test_clients_that_hang_up_mid_stream_leave_no_traceback(daemon):
    daemon.ok("run", "-d", "--name", "ticker", IMAGE, "sh", "-c",
              "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done")
    follower = background(daemon, "logs", "-f", "ticker")
    waiter = background(daemon, "wait", "ticker")
    assert follower.stdout.readline().startswith(b"tick ")
    wait_until(lambda: len(open_connections(daemon)) >= 2, timeout=10,
               what="both clients to be connected")
    for proc in (follower, waiter):
        proc.kill()
        proc.communicate()
    # The daemon notices the follower's hang-up at its next write; the waiter's at the exit.
    daemon.ok("stop", "-t", "1", "ticker")
    wait_until(lambda: daemon_log(daemon).count('/logs?') >= 1
               and daemon_log(daemon).count('/wait') >= 1, timeout=20,
               what="the daemon to finish both requests")
    log = daemon_log(daemon)
    assert "Traceback" not in log and "ConnectionResetError" not in log, log
    assert daemon.ok("logs", "--tail", "1", "ticker").startswith(b"tick ")


def test_an_image_upload_cut_by_a_daemon_kill_leaves_no_temporary_file(daemon):
    tmp = os.path.join(daemon.root, "images", "tmp")
    # A slow upload: the request's first megabytes, then nothing more while the daemon dies.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(daemon.host.removeprefix("unix://"))
    try:
        sock.sendall(b"POST /v1.41/images/create?fromSrc=-&repo=cut HTTP/1.1\r\n"
                     b"Host: localhost\r\nContent-Type: application/x-tar\r\n"
                     b"Content-Length: 104857600\r\n\r\n" + b"\0" * (4 << 20))
        wait_until(lambda: any(os.path.getsize(os.path.join(tmp, f)) >= 1 << 20
                               for f in os.listdir(tmp)), timeout=20,
                   what="the upload to be spooled to the image store's tmp directory")
        daemon.sigkill()
    finally:
        sock.close()
    assert os.listdir(tmp) != []  # what the killed daemon left

    daemon.start()
    assert os.listdir(tmp) == []
    assert "removed 1 temporary image files" in daemon_log(daemon)
