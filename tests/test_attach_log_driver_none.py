"""``run --log-driver none`` attached shows the output, as Docker's does; ``logs`` refuses.

Docker's attach copies the container's streams and needs no log; logpipe's follows what the
shim stored, so for ``none`` the shim keeps a bounded buffer for attach only
(``drivers/none.py``). Through the docker CLI and logpipe's, against a real daemon: runc on
busybox when root, runc and busybox-static are there, and the ``process`` runtime.
"""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import cli_errors as errors
from conftest import docker_cli as docker
from conftest import image_of

pytestmark = pytest.mark.e2e

DOCKER = shutil.which("docker")
LINES = 400_000  # 2.8 MB: more than the buffer keeps (two files of 1 MiB)
NOT_READABLE = "Error response from daemon: configured logging driver does not support reading\n"


@pytest.fixture
def daemon(daemon_per_runtime):
    """This module's tests run on each runtime: ``daemon_per_runtime`` (conftest.py)."""
    return daemon_per_runtime


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
def test_docker_run_attached_with_log_driver_none_prints_both_streams_and_logs_refuses(daemon):
    res = docker(daemon, "run", "--name", "silent", "--log-driver", "none", image_of(daemon),
                 "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (res.returncode, res.stdout, errors(res)) == (3, b"out\n", "err\n")
    logs = docker(daemon, "logs", "silent")
    assert (logs.returncode, logs.stdout, logs.stderr.decode()) == (1, b"", NOT_READABLE)
    assert daemon.inspect("silent", "{{.HostConfig.LogConfig.Type}} {{.LogPath}}") == "none "
    assert docker(daemon, "rm", "silent").returncode == 0

    res = docker(daemon, "run", "--rm", "--log-driver", "none", image_of(daemon), "echo", "hi")
    assert (res.returncode, res.stdout) == (0, b"hi\n")
    assert daemon.ok("ps", "-aq") == b""


def test_logpipe_run_attached_with_log_driver_none_gets_every_line_in_bounded_space(daemon):
    res = daemon.lp("run", "--name", "many", "--log-driver", "none", image_of(daemon),
                    "seq", "1", str(LINES), timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "".join(f"{i}\n" for i in range(1, LINES + 1)).encode()
    cid = daemon.inspect("many", "{{.Id}}")
    buffer = os.path.join(daemon.root, "containers", cid, "attach-buffer")
    kept = sum(os.path.getsize(os.path.join(top, f)) for top, _, files in os.walk(buffer)
               for f in files)
    assert 0 < kept <= 2 << 20  # two files of 1 MiB at most: the output was larger
    logs = daemon.lp("logs", "many")
    assert (logs.returncode, logs.stdout, logs.stderr.decode()) == (1, b"", NOT_READABLE)
    daemon.ok("rm", "many")

    res = daemon.lp("run", "--rm", "--log-driver", "none", image_of(daemon), "echo", "hi")
    assert (res.returncode, res.stdout) == (0, b"hi\n")
