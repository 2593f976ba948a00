"""Acceptance: the unmodified docker-py package drives logpipe's daemon over its socket.

Create, start, logs (plain, stream, follow, tail, since, timestamps), wait, stop and remove,
exactly as a docker-py user writes them, against the ``daemon`` fixture of ``conftest.py``.
"""

from __future__ import annotations

import time

import pytest

from conftest import EMPTY_IMAGE as IMAGE

pytestmark = pytest.mark.e2e

docker = pytest.importorskip("docker")


@pytest.fixture
def dclient(daemon):
    client = docker.DockerClient(base_url=daemon.host, version="auto", timeout=60)
    yield client
    client.close()


def test_dockerpy_negotiates_api_1_41_and_sees_logpipe(dclient):
    assert dclient.api.api_version == "1.41"
    assert dclient.version()["Version"].startswith("logpipe-")
    assert dclient.ping() is True


def test_dockerpy_runs_a_container_and_reads_its_logs_with_every_option(dclient):
    c = dclient.containers.run(IMAGE, ["sh", "-c", "echo one; echo two >&2; echo three"],
                               detach=True, name="dpy")
    assert dclient.containers.get("dpy").id == c.id
    assert c.wait() == {"StatusCode": 0, "Error": None}
    c.reload()
    assert c.status == "exited"
    assert sorted(c.logs().splitlines()) == [b"one", b"three", b"two"]
    assert c.logs(stderr=False) == b"one\nthree\n"
    assert c.logs(stdout=False, stderr=True) == b"two\n"
    assert len(c.logs(tail=1).splitlines()) == 1
    assert c.logs(since=int(time.time()) + 5) == b""
    stamped = c.logs(timestamps=True, stderr=False).splitlines()
    assert [line.split(b" ", 1)[1] for line in stamped] == [b"one", b"three"]
    assert b"".join(c.logs(stream=True, stderr=False)) == b"one\nthree\n"
    c.remove()
    with pytest.raises(docker.errors.NotFound):
        dclient.containers.get("dpy")


def test_dockerpy_follows_logs_until_stop_and_removes_with_force(dclient):
    c = dclient.containers.create(IMAGE, ["sh", "-c", "echo hello; exec sleep 30"],
                                  log_config={"type": "json-file", "config": {"max-size": "1m"}})
    c.start()
    stream = c.logs(stream=True, follow=True)
    assert next(stream) == b"hello\n"
    c.stop(timeout=5)
    assert list(stream) == []  # the follow ends when the container stops
    c.reload()
    assert c.attrs["State"]["ExitCode"] == 143
    assert c.attrs["HostConfig"]["LogConfig"] == {"Type": "json-file",
                                                  "Config": {"max-size": "1m"}}
    c.start()
    with pytest.raises(docker.errors.APIError) as err:
        c.remove()
    assert err.value.status_code == 409
    c.remove(force=True)
    assert dclient.containers.list(all=True) == []


def test_dockerpy_reports_dockers_errors(dclient):
    with pytest.raises(docker.errors.ImageNotFound):
        dclient.containers.create("nosuch:latest", ["true"])
    dclient.containers.create(IMAGE, ["true"], name="twice")
    with pytest.raises(docker.errors.APIError) as err:
        dclient.containers.create(IMAGE, ["true"], name="twice")
    assert err.value.status_code == 409 and "already in use" in str(err.value)


def test_dockerpy_shows_skipped_damage_after_the_records(dclient):
    c = dclient.containers.run(IMAGE, ["sh", "-c", "echo before; echo after"], detach=True)
    assert c.wait()["StatusCode"] == 0
    c.reload()
    path = c.attrs["LogPath"]
    with open(path, "rb") as f:
        first, second = f.read().splitlines(keepends=True)
    with open(path, "wb") as f:  # a crash left a hole of NULs
        f.write(first + b"\0" * 2_000_000 + b"\n" + second)
    out = c.logs()
    assert out.startswith(b"before\nafter\nError grabbing logs: ") and b"damaged" in out, out
    c.remove()
