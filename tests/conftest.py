"""Shared fixtures: run the real ``logpipe`` CLI in subprocesses, as a user would."""

import os
import random
import subprocess
import sys

import pytest
from hypothesis import settings

# A failing property test prints ``@reproduce_failure(...)``, which replays that exact input.
settings.register_profile("logpipe", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "logpipe"))

LOGPIPE = [sys.executable, "-m", "runtime.cli"]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Each run draws a fresh seed for the property tests (they stay random from run to run)
    and names it at the end when anything failed, so the run can be repeated exactly with
    ``--hypothesis-seed=N``. Runs before Hypothesis' own plugin reads the option."""
    if config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = str(random.SystemRandom().randrange(1 << 32))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if terminalreporter.stats.get("failed") or terminalreporter.stats.get("error"):
        terminalreporter.write_line(f"hypothesis seed of this run: {config.option.hypothesis_seed} "
                                    f"(repeat with --hypothesis-seed="
                                    f"{config.option.hypothesis_seed})")


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
