"""Shared fixtures: run the real ``logpipe`` CLI in subprocesses, as a user would."""

import os
import subprocess
import sys

import pytest

LOGPIPE = [sys.executable, "-m", "logpipe.cli"]


def logpipe(*args: str, **kw) -> subprocess.CompletedProcess:
    """Run ``logpipe ARGS`` to completion, capturing bytes."""
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 120)
    return subprocess.run(LOGPIPE + list(args), **kw)


@pytest.fixture
def procs():
    """Processes started by a test; killed at teardown even if the test failed."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


def spawn(procs, *args: str, **kw) -> subprocess.Popen:
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    p = subprocess.Popen(LOGPIPE + list(args), **kw)
    procs.append(p)
    return p


def wait_for_path(path: str, proc: subprocess.Popen, timeout: float = 20) -> None:
    """Wait (with inotify-free short sleeps, bounded) until ``path`` exists or ``proc`` died."""
    import time
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)
