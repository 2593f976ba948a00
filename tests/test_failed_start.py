"""A container whose command cannot be run: Docker's texts, exit codes and ``--rm``.

Docker answers such a start with 400 and the runtime's message, records exit code 127 (not
found) or 126 (cannot be invoked) with the message in ``State.Error``, removes an
``AutoRemove`` container before it answers (so ``run --rm``'s ``wait?condition=removed``
returns), and the docker CLI exits with that code. Driven through the real docker CLI and
logpipe's CLI against a real daemon: the ``runc`` runtime on the busybox image when root,
runc and busybox-static are there (else that case is skipped), and the ``process`` runtime.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess

import pytest

from conftest import RestartableDaemon
from conftest import cli_errors as errors
from conftest import docker_cli, image_of

pytestmark = pytest.mark.e2e

DOCKER = shutil.which("docker")
#: What each runtime says before the part that names the command.
PREFIX = {"runc": "failed to create shim task: OCI runtime create failed: runc create failed: "
                  "unable to start container process: ",
          "process": "failed to create task for container: "}
SUFFIX = {"runc": ": unknown", "process": ""}
CASES = {  # command → (exit code, what the runtime says about it)
    "/no/such/binary": (127, 'exec: "/no/such/binary": stat /no/such/binary: '
                             "no such file or directory"),
    "/etc": (126, 'exec: "/etc": permission denied'),
    "no-such-command": (127, 'exec: "no-such-command": executable file not found in $PATH'),
}


def message(runtime: str, command: str) -> str:
    return PREFIX[runtime] + CASES[command][1] + SUFFIX[runtime]


@pytest.fixture
def daemon(daemon_per_runtime):
    """This module's tests run on each runtime: ``daemon_per_runtime`` (conftest.py)."""
    return daemon_per_runtime


def docker(d: RestartableDaemon, *args: str) -> subprocess.CompletedProcess:
    return docker_cli(d, *args, limit=30)


def no_containers(d: RestartableDaemon) -> bool:
    return d.ok("ps", "-aq") == b"" and d.container_dirs() == []


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
@pytest.mark.parametrize("command", list(CASES))
def test_docker_run_rm_of_a_command_that_cannot_run_exits_like_docker_and_removes_it(
        daemon, command):
    res = docker(daemon, "run", "--rm", image_of(daemon), command)
    code = CASES[command][0]
    assert (res.returncode, errors(res)) == (
        code, f"docker: Error response from daemon: {message(daemon.runtime, command)}\n\n"
              "Run 'docker run --help' for more information\n")
    assert res.stdout == b""
    assert no_containers(daemon)


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
def test_docker_run_detached_without_rm_keeps_the_created_container_with_its_exit_code(daemon):
    res = docker(daemon, "run", "-d", "--name", "nocmd", image_of(daemon), "/no/such/binary")
    assert res.returncode == 127, res.stderr
    text = message(daemon.runtime, "/no/such/binary")
    assert text in res.stderr.decode()
    try:
        state = json.loads(daemon.inspect("nocmd", "{{json .State}}"))
        # Docker: a container that never started stays "created", with the code and error.
        assert (state["Status"], state["Running"], state["ExitCode"], state["Error"]) == \
            ("created", False, 127, text)
        # Starting it again fails the same way, as a 400 (Docker's startInvalidConfigError).
        status, body = post(daemon, "/v1.41/containers/nocmd/start")
        assert (status, body) == (400, {"message": text})
    finally:
        daemon.ok("rm", "nocmd")


@pytest.mark.parametrize(("mode", "command"), [("attached", "/no/such/binary"),
                                               ("detached", "/etc")])
def test_logpipe_run_rm_of_a_command_that_cannot_run_exits_127_or_126(daemon, mode, command):
    res = daemon.lp("run", "--rm", *(["-d"] if mode == "detached" else []),
                    image_of(daemon), command, timeout=30)
    assert (res.returncode, errors(res)) == (
        CASES[command][0], f"Error response from daemon: {message(daemon.runtime, command)}\n")
    assert no_containers(daemon)


def post(d: RestartableDaemon, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("localhost", timeout=30)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.connect(d.host.removeprefix("unix://"))
    try:
        conn.request("POST", path)
        resp = conn.getresponse()
        assert resp.getheader("Content-Type") == "application/json"
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()
