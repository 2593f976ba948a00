"""The docker CLI itself (``docker -H unix://…``) against logpipe's daemon, unchanged.

Needs the ``docker`` client binary (no Docker daemon); skipped with the reason when it is not
installed. The daemon is the ``test_api`` one (``process`` runtime, host commands).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from test_api import IMAGE, api, daemon  # noqa: F401 - fixtures

DOCKER = shutil.which("docker")
pytestmark = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")


@pytest.fixture
def docker(daemon, api):  # noqa: F811
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, "-H", daemon.host, *args], capture_output=True,
                              timeout=60, stdin=subprocess.DEVNULL)
    return run


def test_docker_run_attached_gets_both_streams_over_the_hijacked_connection(docker):
    # The CLI half-closes its side of the 101-upgraded connection at once (no stdin): the
    # output must still arrive, demultiplexed, and the exit code be the container's.
    res = docker("run", "--name", "cli1", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert res.returncode == 3
    assert res.stdout == b"out\n"
    assert b"err\n" in res.stderr
    logs = docker("logs", "cli1")
    assert (logs.stdout, logs.stderr) == (b"out\n", b"err\n")
    assert docker("inspect", "-f", "{{.State.ExitCode}} {{.HostConfig.LogConfig.Type}}",
                  "cli1").stdout == b"3 json-file\n"


def test_docker_run_rm_with_a_log_driver_and_logs_follow(docker):
    res = docker("run", "--rm", "--log-driver", "local", IMAGE, "sh", "-c", "seq 1 500")
    assert res.returncode == 0
    assert res.stdout == "".join(f"{i}\n" for i in range(1, 501)).encode()
    assert docker("ps", "-aq").stdout == b""
    assert docker("run", "-d", "--name", "cli2", IMAGE, "sh", "-c", "echo a; echo b").returncode == 0
    follow = docker("logs", "-f", "cli2")
    assert follow.stdout == b"a\nb\n"
    assert docker("rm", "-f", "cli2").stdout == b"cli2\n"
