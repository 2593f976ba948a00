"""The docker CLI itself (``docker -H unix://…``) against logpipe's daemon, unchanged.

Needs the ``docker`` client binary (no Docker daemon); skipped with the reason when it is not
installed. The daemon is ``conftest.py``'s ``daemon`` (``process`` runtime, host commands).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import EMPTY_IMAGE as IMAGE

DOCKER = shutil.which("docker")
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")]


@pytest.fixture
def docker(daemon, api):
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


def test_damage_in_a_log_reaches_the_client_after_the_records_never_the_daemon_log(docker, daemon):
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


RUN_HELP = "\n\nRun 'docker run --help' for more information\n"


def test_common_mistakes_print_exactly_what_docker_prints(docker, api):
    """Docker 20.10's stderr for the usual mistakes (docker-runtime-facts.md, "What the CLI
    prints"), through the real CLI: it shows the daemon's message only when the error body
    is ``application/json`` exactly, and adds ``docker: `` and the help line itself.
    Values Docker's driver constructors refuse at start (``max-size=abc``, fluentd's port)
    are refused at create here, in Docker's words."""
    running = docker("run", "-d", "--name", "taken", IMAGE, "sleep", "30")
    assert running.returncode == 0, running.stderr
    taken = running.stdout.decode().strip()
    assert docker("run", "-d", "--name", "stopped", IMAGE, "true").returncode == 0
    mistakes: list[tuple[list[str], str]] = [
        (["run", "-d", "--log-opt", "foo=bar", IMAGE, "true"],
         "docker: Error response from daemon: unknown log opt 'foo' for json-file log driver"
         + RUN_HELP),
        (["run", "-d", "--log-driver", "nosuchdriver", IMAGE, "true"],
         "docker: Error response from daemon: error looking up logging plugin nosuchdriver: "
         'plugin "nosuchdriver" not found' + RUN_HELP),
        (["run", "-d", "--log-opt", "max-size=abc", IMAGE, "true"],
         "docker: Error response from daemon: failed to initialize logging driver: "
         "invalid size: 'abc'" + RUN_HELP),
        (["run", "-d", "--log-opt", "max-file=0", "--log-opt", "max-size=1m", IMAGE, "true"],
         "docker: Error response from daemon: failed to initialize logging driver: "
         "max-file cannot be less than 1" + RUN_HELP),
        (["run", "-d", "--log-opt", "mode=sometimes", IMAGE, "true"],
         "docker: Error response from daemon: logger: logging mode not supported: sometimes"
         + RUN_HELP),
        (["run", "-d", "--log-driver", "syslog", "--log-opt", "syslog-address=foo://x", IMAGE,
          "true"],
         "docker: Error response from daemon: syslog-address should be in form "
         "proto://address, got foo://x" + RUN_HELP),
        (["run", "-d", "--log-driver", "fluentd", "--log-opt",
          "fluentd-address=tcp://1.2.3.4:99999", IMAGE, "true"],
         "docker: Error response from daemon: failed to initialize logging driver: "
         "dial tcp: address 99999: invalid port" + RUN_HELP),
        (["run", "-d", "--name", "taken", IMAGE, "true"],
         'docker: Error response from daemon: Conflict. The container name "/taken" is already '
         f'in use by container "{taken}". You have to remove (or rename) that container to be '
         "able to reuse that name." + RUN_HELP),
        (["run", "-d", "-w", "relative", IMAGE, "true"],
         "docker: Error response from daemon: the working directory 'relative' is invalid, it "
         "needs to be an absolute path" + RUN_HELP),
        (["run", "-d", "--memory", "1k", IMAGE, "true"],
         "docker: Error response from daemon: Minimum memory limit allowed is 6MB" + RUN_HELP),
        (["logs", "nosuch"], "Error response from daemon: No such container: nosuch\n"),
        (["rm", "nosuch"], "Error response from daemon: No such container: nosuch\n"),
        (["stop", "nosuch"], "Error response from daemon: No such container: nosuch\n"),
        (["wait", "nosuch"], "Error response from daemon: No such container: nosuch\n"),
        (["start", "nosuch"], "Error response from daemon: No such container: nosuch\n"
                              "Error: failed to start containers: nosuch\n"),
        (["inspect", "nosuch"], "Error: No such object: nosuch\n"),
        (["logs", "--since", "notatime", "stopped"],
         'invalid value for "since": failed to parse value as time or duration: "notatime"\n'),
        (["rm", "taken"],
         f"Error response from daemon: You cannot remove a running container {taken}. Stop the "
         "container before attempting removal or force remove\n"),
    ]
    printed = {" ".join(args): docker(*args).stderr.decode() for args, _ in mistakes}
    assert printed == {" ".join(args): want for args, want in mistakes}
    # Refused at create: nothing was left behind by any of them.
    names = {c["Names"][0] for c in api.json("GET", "/containers/json", {"all": 1})}
    assert names == {"/taken", "/stopped"}
