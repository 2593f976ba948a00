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


def test_damage_in_a_log_reaches_the_client_after_the_records_never_the_daemon_log(docker, daemon):  # noqa: F811
    assert docker("run", "--name", "dmg", IMAGE, "sh", "-c", "echo before; echo after").returncode == 0
    path = docker("inspect", "-f", "{{.LogPath}}", "dmg").stdout.decode().strip()
    with open(path, "rb") as f:
        first, second = f.read().splitlines(keepends=True)
    with open(path, "wb") as f:  # a crash left a hole of NULs and a torn line of content
        f.write(first + b"\0" * 3_000_000 + b'{"log":"secret-token\n' + second)
    res = docker("logs", "dmg")
    assert res.stdout == b"before\nafter\n"  # every record, the one after the damage too
    # Docker's in-band error (stream 3): the docker CLI prints it last and exits 1
    assert res.stderr.startswith(b"error from daemon in stream: Error grabbing logs: "), res.stderr
    assert b"damaged data" in res.stderr and res.returncode == 1
    with open(daemon.log, "rb") as f:
        assert b"secret-token" not in f.read() and b"secret-token" not in res.stderr
