"""``build`` (the classic builder) against a real daemon: runc containers on the busybox image,
the docker CLI with ``DOCKER_BUILDKIT=0``, docker-py and the logpipe CLI."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import tarfile

import pytest

from conftest import LOGPIPE, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def runc_daemon(runc_module_daemon):
    """The module's one runc daemon: each test names its own images and containers, and
    removes the containers it leaves."""
    return runc_module_daemon

MULTI_STAGE = """\
# escape=\\
ARG BASE=busybox
FROM $BASE AS builder
ARG GREETING=hello
RUN echo "$GREETING" from \\
    the builder > /greeting
COPY app/ /src/
FROM busybox
WORKDIR /app
COPY --from=builder /greeting /src/*.txt ./
ENV WHO=world
CMD ["cat", "/app/greeting"]
"""


def docker_build(d, *args: str, limit: int = 120) -> subprocess.CompletedProcess:
    """``DOCKER_BUILDKIT=0 docker build`` against ``d``."""
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    return subprocess.run(["timeout", "-s", "KILL", str(limit), shutil.which("docker") or "docker",
                           "-H", d.host, "build", *args], capture_output=True,
                          stdin=subprocess.DEVNULL, env=env)


@pytest.fixture
def context(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "a.txt").write_text("A\n")
    (tmp_path / "app" / "secret.txt").write_text("do not ship\n")
    (tmp_path / ".dockerignore").write_text("# not the secret\napp/secret.txt\n")
    (tmp_path / "Dockerfile").write_text(MULTI_STAGE)
    return tmp_path


def build_lines(out: bytes) -> list[str]:
    return out.decode().splitlines()


def test_multi_stage_build_with_copy_from_arg_and_dockerignore(runc_daemon, context):
    d = runc_daemon
    if shutil.which("docker") is None:
        pytest.skip("needs the docker CLI")
    res = docker_build(d, "-t", "multi:1", "--build-arg", "GREETING=hi", str(context))
    assert res.returncode == 0, res.stderr
    lines = build_lines(res.stdout)
    assert lines[0].startswith("Sending build context to Docker daemon")
    steps = [line for line in lines if line.startswith("Step ")]
    assert steps[0] == "Step 1/10 : ARG BASE=busybox"
    assert steps[1] == "Step 2/10 : FROM $BASE AS builder"
    assert steps[-1] == 'Step 10/10 : CMD ["cat", "/app/greeting"]'
    assert " ---> Running in " in res.stdout.decode()
    assert any(line.startswith("Removing intermediate container ") for line in lines)
    assert lines[-2].startswith("Successfully built ") and lines[-1] == "Successfully tagged multi:1"
    assert d.ok("run", "--rm", "multi:1") == b"hi from the builder\n"
    listing = d.ok("run", "--rm", "multi:1", "ls", "/app").decode().split()
    assert listing == ["a.txt", "greeting"]  # secret.txt was left out by .dockerignore
    cfg = json.loads(d.inspect("multi:1", "{{json .Config}}"))
    assert cfg["WorkingDir"] == "/app" and "WHO=world" in cfg["Env"]
    # History: the steps as Docker records them.
    created_by = [r["CreatedBy"] for r in json.loads(
        d.ok("history", "--no-trunc", "--format", "{{json .}}", "multi:1").decode().replace(
            "}\n{", "},{").join("[]"))]
    assert created_by[0] == '/bin/sh -c #(nop)  CMD ["cat" "/app/greeting"]'
    assert created_by[1] == "/bin/sh -c #(nop)  ENV WHO=world"
    assert created_by[2].startswith("/bin/sh -c #(nop) COPY multi:") and \
        created_by[2].endswith(" in ./ ")
    assert created_by[3] == "/bin/sh -c #(nop) WORKDIR /app"


def test_second_build_is_all_cache_and_a_changed_file_breaks_it_from_its_copy(runc_daemon,
                                                                            tmp_path):
    d = runc_daemon
    (tmp_path / "f").write_text("one\n")
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nRUN echo built > /b\nCOPY f /f\nRUN cat /f /b > /both\n")
    first = d.lp("build", "-t", "cached:1", str(tmp_path))
    assert first.returncode == 0, first.stderr
    second = d.lp("build", "-t", "cached:1", str(tmp_path))
    assert second.returncode == 0, second.stderr
    out = second.stdout.decode()
    assert out.count(" ---> Using cache") == 3 and "Running in" not in out
    assert build_lines(first.stdout)[-2] == build_lines(second.stdout)[-2]  # same image id
    (tmp_path / "f").write_text("two\n")
    third = d.lp("build", "-t", "cached:2", str(tmp_path))
    assert third.returncode == 0, third.stderr
    out = third.stdout.decode()
    assert out.count(" ---> Using cache") == 1  # the RUN before the COPY only
    assert d.ok("run", "--rm", "cached:2", "cat", "/both") == b"two\nbuilt\n"
    # Intermediate images are listed with -a only.
    plain = d.ok("images", "-q").decode().split()
    every = d.ok("images", "-a", "-q").decode().split()
    assert len(every) > len(plain)
    # rmi of the last build's image deletes it and its intermediate images (not the ones
    # cached:1 still stands on), as Docker does
    removed = d.ok("rmi", "cached:2").decode().splitlines()
    assert removed[0] == "Untagged: cached:2"
    assert [line.split(":")[0] for line in removed[1:]] == ["Deleted", "Deleted"]
    assert d.ok("images", "-a", "-q").decode().split() == \
        [i for i in every if i not in [x.split(":")[-1][:12] for x in removed[1:]]]


def test_failing_run_reports_docker_text_and_exit_status(runc_daemon, tmp_path):
    d = runc_daemon
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo about to fail; exit 3\n")
    before = d.ok("ps", "-a", "-q")
    res = docker_build(d, "--force-rm", "-t", "fails:1", str(tmp_path))
    assert res.returncode == 3
    assert b"about to fail\n" in res.stdout
    assert res.stderr.decode().strip().endswith(
        "The command '/bin/sh -c echo about to fail; exit 3' returned a non-zero code: 3")
    assert d.lp("inspect", "fails:1").returncode != 0  # no image
    assert d.ok("ps", "-a", "-q") == before  # --force-rm: no container either
    # Without --force-rm, Docker's classic builder keeps the failed step's container.
    res = d.lp("build", str(tmp_path))
    assert res.returncode == 3
    kept = set(d.ok("ps", "-a", "-q").split()) - set(before.split())
    assert len(kept) == 1
    d.ok("rm", kept.pop().decode())


def test_docker_py_builds_and_tags(runc_daemon, tmp_path):
    docker = pytest.importorskip("docker")
    (tmp_path / "Dockerfile").write_text(
        'FROM busybox\nLABEL purpose=test\nEXPOSE 8080\nENTRYPOINT ["echo"]\nCMD ["hi"]\n')
    client = docker.DockerClient(base_url=runc_daemon.host)
    try:
        image, logs = client.images.build(path=str(tmp_path), tag="pyb:1", rm=True,
                                          labels={"built-by": "docker-py"})
        assert "pyb:1" in image.tags
        assert image.labels == {"purpose": "test", "built-by": "docker-py"}
        assert image.attrs["Config"]["ExposedPorts"] == {"8080/tcp": {}}
        streams = "".join(item.get("stream", "") for item in logs)
        assert "Step 5/6 : CMD [\"hi\"]" in streams
        assert "Step 6/6 : LABEL \"built-by\"='docker-py'" in streams  # as Docker appends it
        assert client.containers.run("pyb:1", remove=True) == b"hi\n"
    finally:
        client.close()


def test_parse_errors_and_missing_dockerfile_are_400(runc_daemon, tmp_path):
    d = runc_daemon
    (tmp_path / "Dockerfile").write_text("FROM busybox\nFROBNICATE now\n")
    res = d.lp("build", str(tmp_path))
    assert res.returncode != 0
    assert b"unknown instruction: FROBNICATE" in res.stderr
    res = d.lp("build", "-f", str(tmp_path / "Nope"), str(tmp_path))
    assert b"Cannot locate specified Dockerfile: Nope" in res.stderr
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "Other.dockerfile").write_text("FROM busybox\nLABEL from=other\n")
    res = docker_build(d, "-q", "-f", str(tmp_path / "sub" / "Other.dockerfile"), str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert d.inspect(res.stdout.decode().strip(), "{{.Config.Labels.from}}") == "other"
    outside = tmp_path.parent / f"{tmp_path.name}.Dockerfile"  # -f outside the context
    outside.write_text("FROM busybox\nLABEL from=outside\n")
    try:
        res = d.lp("build", "-q", "-f", str(outside), str(tmp_path))
    finally:
        outside.unlink()
    assert res.returncode == 0, res.stderr
    assert d.inspect(res.stdout.decode().strip(), "{{.Config.Labels.from}}") == "outside"
    # ``docker build - < Dockerfile``: the body is the Dockerfile, not a tar
    with open(tmp_path / "Dockerfile", "w") as f:
        f.write("FROM busybox\nENV FROM_STDIN=1\n")
    with open(tmp_path / "Dockerfile", "rb") as f:
        res = subprocess.run(["docker", "-H", d.host, "build", "-q", "-"], stdin=f,
                             capture_output=True, env=dict(os.environ, DOCKER_BUILDKIT="0"),
                             timeout=60)
    assert res.returncode == 0, res.stderr
    image_id = res.stdout.decode().strip()
    assert "FROM_STDIN=1" in d.inspect(image_id, "{{json .Config.Env}}")


def test_client_that_goes_away_cancels_the_build(runc_daemon, tmp_path):
    """The RUN's container goes, no image is tagged, the daemon serves on."""
    d = runc_daemon
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w") as tar:
        data = b"FROM busybox\nRUN echo started; sleep 60\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    before = d.ok("ps", "-a", "-q")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(d.host.removeprefix("unix://"))
    payload = body.getvalue()
    sock.sendall(b"POST /v1.41/build?t=gone:1 HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/x-tar\r\n"
                 + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    seen = b""
    sock.settimeout(60)
    while b'"started\\n"' not in seen:  # the RUN's output, not the step's line
        chunk = sock.recv(65536)
        assert chunk, seen
        seen += chunk
    sock.close()
    wait_until(lambda: d.ok("ps", "-a", "-q") == before, timeout=30)
    assert d.lp("inspect", "gone:1").returncode != 0


def test_add_chown_wildcards_shell_and_quiet_target_nocache(runc_daemon, tmp_path):
    d = runc_daemon
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        data = b"from the archive\n"
        info = tarfile.TarInfo("inside/file")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / "bundle.tar.gz").write_bytes(inner.getvalue())
    for name in ("one.conf", "two.conf", "skip.txt"):
        (tmp_path / name).write_text(name + "\n")
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox AS first\n"
        "ADD bundle.tar.gz /opt/\n"
        "COPY --chown=nobody:nogroup *.conf /etc/app/\n"
        'SHELL ["/bin/sh", "-ec"]\n'
        "USER nobody\n"
        "STOPSIGNAL SIGINT\n"
        "VOLUME /data\n"
        "RUN id -u > /tmp/uid\n"
        "FROM first AS second\n"
        "RUN echo never built\n")
    res = d.lp("build", "-q", "--target", "first", "-t", "t:1", "-t", "t:2", str(tmp_path))
    assert res.returncode == 0, res.stderr
    image_id = res.stdout.decode().strip()
    assert image_id.startswith("sha256:") and len(res.stdout.splitlines()) == 1
    out = d.ok("run", "--rm", "t:2", "sh", "-c",
               "cat /opt/inside/file; stat -c '%u %g %n' /etc/app/*; cat /tmp/uid")
    assert out.decode().split("\n") == ["from the archive", "65534 65534 /etc/app/one.conf",
                                        "65534 65534 /etc/app/two.conf", "65534", ""]
    cfg = json.loads(d.inspect("t:1", "{{json .Config}}"))
    assert cfg["User"] == "nobody" and cfg["StopSignal"] == "SIGINT"
    assert cfg["Volumes"] == {"/data": {}} and cfg["Shell"] == ["/bin/sh", "-ec"]
    res = d.lp("build", "--no-cache", "--target", "first", str(tmp_path))
    assert res.returncode == 0 and b"Using cache" not in res.stdout, res.stderr


def test_daemon_killed_mid_build_leaves_no_image_and_lists_the_step_container(runc_daemon,
                                                                            tmp_path):
    d = runc_daemon
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo started; sleep 60\n")
    env = dict(os.environ, LOGPIPE_HOST=d.host, LOGPIPE_NO_AUTOSTART="1")
    before = d.ok("ps", "-a", "-q")

    before_running = d.ok("ps", "-q")
    client = subprocess.Popen(LOGPIPE + ["build", "-t", "killed:1", str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: d.ok("ps", "-q") != before_running, timeout=30,
                   what="the RUN's container")
        d.sigkill()
        client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
    d.start()
    assert os.listdir(os.path.join(d.root, "images", "tmp")) == []
    assert d.lp("inspect", "killed:1").returncode != 0
    left = set(d.ok("ps", "-a", "-q").split()) - set(before.split())
    assert len(left) == 1  # a build step's container, as Docker lists one after a crash
    d.ok("rm", "-f", left.pop().decode())


def test_run_is_refused_on_the_process_runtime(api, tmp_path):
    """Without isolation a RUN would change the host: refused, nothing left behind."""
    (tmp_path / "Dockerfile").write_text("FROM empty\nENV A=1\nRUN touch /should-not-exist\n")
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w") as tar:
        tar.add(tmp_path / "Dockerfile", "Dockerfile")
    resp = api.request("POST", "/build", {"t": "p:1"}, body=body.getvalue(),
                       headers={"Content-Type": "application/x-tar"})
    messages = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert messages[-1]["error"].startswith("RUN needs an isolated runtime")
    assert messages[1] == {"stream": " ---> " + api.json("GET", "/images/empty/json")["Id"][
        7:19] + "\n"}
    assert not os.path.exists("/should-not-exist")
    assert api.json("GET", "/containers/json", {"all": 1}) == []
