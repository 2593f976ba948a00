"""What logpipe writes, read by a real Docker: images ``save``d from our daemon (pulled-in
busybox, a ``commit``, a classic ``build``) are ``docker load``ed into Debian's dockerd 20.10
and run there; and the other way, a real ``docker save`` is ``load``ed and run here.

The real dockerd (conftest ``real_docker``) has a private socket and data root, runs with
``--bridge=none`` and gets only what these tests save: its containers run ``--network none``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess

import pytest

from conftest import LOGPIPE, clean_daemon, docker_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def d(runc_module_daemon):
    return runc_module_daemon


@pytest.fixture
def ours(d):
    """Our daemon, cleaned after each test."""
    yield d
    clean_daemon(d)


def save_to_real(d, real_docker, *images: str) -> None:
    """``logpipe save IMAGES | docker load`` (our CLI, then the docker CLI on dockerd)."""
    env = dict(os.environ, LOGPIPE_HOST=d.host, LOGPIPE_NO_AUTOSTART="1")
    saved = subprocess.run(LOGPIPE + ["save", *images], env=env, capture_output=True,
                           timeout=60)
    assert saved.returncode == 0, saved.stderr
    loaded = real_docker.cli("load", stdin=saved.stdout)
    assert loaded.returncode == 0, (loaded.stdout, loaded.stderr)
    for image in images:
        assert f"Loaded image: {image}".encode() in loaded.stdout, loaded.stdout


def real_run(real_docker, *args: str) -> bytes:
    res = real_docker.cli("run", "--rm", "--network", "none", *args)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res.stdout


def test_saved_busybox_runs_on_real_docker(ours, real_docker):
    save_to_real(ours, real_docker, "busybox:latest")
    assert real_run(real_docker, "busybox", "echo", "hi") == b"hi\n"


def test_committed_image_runs_on_real_docker_with_its_history(ours, real_docker):
    ours.ok("run", "--name", "writer", "busybox", "sh", "-c", "echo committed > /hello")
    ours.ok("commit", "-m", "wrote hello", "-c", 'CMD ["cat","/hello"]', "writer",
            "rd-commit:v1")
    save_to_real(ours, real_docker, "rd-commit:v1")
    assert real_run(real_docker, "rd-commit:v1") == b"committed\n"
    theirs = real_docker.cli("image", "inspect", "-f", "{{.Id}}", "rd-commit:v1")
    assert theirs.stdout.decode().strip() == ours.inspect("rd-commit:v1", "{{.Id}}")
    hist = real_docker.cli("history", "--no-trunc", "--format", "{{json .}}", "rd-commit:v1")
    assert hist.returncode == 0, hist.stderr
    top = json.loads(hist.stdout.splitlines()[0])
    assert top["Comment"] == "wrote hello", top
    real_docker.cli("rmi", "rd-commit:v1")


DOCKERFILE = """\
FROM busybox
ENV GREETING=hello WHO=world
WORKDIR /app
COPY msg.txt ./
RUN echo "$GREETING" > built.txt
CMD ["sh", "-c", "cat msg.txt built.txt; echo \\"$WHO in $(pwd)\\""]
"""


def test_built_image_runs_on_real_docker_with_env_and_workdir(ours, real_docker, tmp_path):
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "msg.txt").write_text("copied\n")
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    built = subprocess.run(["timeout", "-s", "KILL", "60", shutil.which("docker") or "docker",
                            "-H", ours.host, "build", "-t", "rd-build:v1", str(tmp_path)],
                           capture_output=True, stdin=subprocess.DEVNULL, env=env)
    assert built.returncode == 0, (built.stdout, built.stderr)
    save_to_real(ours, real_docker, "rd-build:v1")
    assert real_run(real_docker, "rd-build:v1") == b"copied\nhello\nworld in /app\n"
    cfg = json.loads(real_docker.cli("image", "inspect", "-f", "{{json .Config}}",
                                     "rd-build:v1").stdout)
    assert cfg["WorkingDir"] == "/app" and "GREETING=hello" in cfg["Env"]
    real_docker.cli("rmi", "rd-build:v1")


def test_real_docker_save_loads_and_runs_here(ours, real_docker):
    """A commit made on real Docker (its own layer writer), saved by it, runs here."""
    save_to_real(ours, real_docker, "busybox:latest")
    made = real_docker.cli("run", "--network", "none", "--name", "rd-maker", "busybox", "sh",
                           "-c", "echo from-docker > /origin")
    assert made.returncode == 0, made.stderr
    assert real_docker.cli("commit", "-c", 'CMD ["cat","/origin"]', "rd-maker",
                           "rd-theirs:v1").returncode == 0
    real_docker.cli("rm", "rd-maker")
    saved = real_docker.cli("save", "rd-theirs:v1")
    assert saved.returncode == 0, saved.stderr
    env = dict(os.environ, LOGPIPE_HOST=ours.host, LOGPIPE_NO_AUTOSTART="1")
    loaded = subprocess.run(LOGPIPE + ["load"], input=saved.stdout, env=env,
                            capture_output=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    assert b"Loaded image: rd-theirs:v1" in loaded.stdout
    assert ours.ok("run", "--rm", "rd-theirs:v1") == b"from-docker\n"
    res = docker_cli(ours, "run", "--rm", "rd-theirs:v1", "cat", "/bin/busybox")
    assert res.returncode == 0 and len(res.stdout) > 100_000
    real_docker.cli("rmi", "rd-theirs:v1")
    ours.ok("rmi", "rd-theirs:v1")


def test_cut_archives_either_way_are_refused_and_leave_nothing(ours, real_docker):
    """A client that goes away mid-``save`` leaves our daemon serving whole archives; half
    a real ``docker save`` is refused by our ``load`` and leaves no image behind."""
    conn = http.client.HTTPConnection("localhost", timeout=30)
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.connect(ours.host[len("unix://"):])
    conn.request("GET", "/v1.41/images/busybox:latest/get")
    resp = conn.getresponse()
    assert resp.status == 200 and len(resp.read(65536)) == 65536
    conn.close()  # gone mid-archive
    save_to_real(ours, real_docker, "busybox:latest")  # the next save is whole
    real_docker.cli("tag", "busybox:latest", "rd-cut:v1")
    saved = real_docker.cli("save", "rd-cut:v1")
    assert saved.returncode == 0, saved.stderr
    env = dict(os.environ, LOGPIPE_HOST=ours.host, LOGPIPE_NO_AUTOSTART="1")
    loaded = subprocess.run(LOGPIPE + ["load"], input=saved.stdout[:len(saved.stdout) // 2],
                            env=env, capture_output=True, timeout=60)
    assert loaded.returncode != 0, loaded.stdout
    assert loaded.stderr.startswith(b"Error response from daemon: "), loaded.stderr
    assert ours.lp("image", "inspect", "rd-cut:v1").returncode != 0
    assert ours.ok("run", "--rm", "busybox", "echo", "alive") == b"alive\n"
    real_docker.cli("rmi", "rd-cut:v1")
