"""``commit`` and ``history`` against a real daemon: runc containers on the busybox image,
the logpipe CLI and docker-py."""

from __future__ import annotations

import json

import pytest

from conftest import docker_cli

pytestmark = pytest.mark.e2e


def test_commit_keeps_new_file_and_whiteout_of_deleted_one(runc_daemon):
    d = runc_daemon
    d.ok("run", "--name", "maker", "busybox", "sh", "-c",
         "echo hello > /hello && rm /etc/group && mkdir -p /tmp/x && echo y > /tmp/x/y")
    out = d.ok("commit", "-m", "made by a test", "-a", "tester",
               "-c", "ENV A=1", "-c", 'CMD ["cat","/hello"]', "maker", "made:v1")
    image_id = out.decode().strip()
    assert image_id.startswith("sha256:")
    res = d.lp("run", "--rm", "made:v1")
    assert res.returncode == 0 and res.stdout == b"hello\n", res.stderr
    res = d.lp("run", "--rm", "made:v1", "sh", "-c",
               'test ! -e /etc/group && cat /tmp/x/y && echo "A=$A"')
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"y\nA=1\n"
    cfg = json.loads(d.inspect("made:v1", "{{json .Config}}"))
    assert cfg["Cmd"] == ["cat", "/hello"] and "A=1" in cfg["Env"]


def test_commit_refuses_instruction_it_cannot_apply(runc_daemon):
    d = runc_daemon
    d.ok("create", "--name", "c1", "busybox", "true")
    res = d.lp("commit", "-c", "RUN echo no", "c1", "x:y")
    assert res.returncode != 0
    assert b"run is not a valid change command" in res.stderr


def test_commit_of_running_container_pauses_it_and_resumes(runc_daemon):
    d = runc_daemon
    d.ok("run", "-d", "--name", "live", "busybox", "sh", "-c",
         "echo up > /state; exec sleep 60")
    d.ok("commit", "live", "live:snap")
    assert d.inspect("live", "{{.State.Status}}") == "running"
    assert d.ok("run", "--rm", "live:snap", "cat", "/state") == b"up\n"


def test_history_rows_newest_first_with_missing_below_parents(runc_daemon):
    d = runc_daemon
    d.ok("run", "--name", "hist", "busybox", "sh", "-c", "echo 12345 > /five")
    d.ok("commit", "-m", "five bytes and a newline", "hist", "hist:1")
    import docker

    client = docker.DockerClient(base_url=d.host)
    try:
        rows = client.api.history("hist:1")
    finally:
        client.close()
    assert [r["Comment"] for r in rows] == ["five bytes and a newline", "Imported from -"]
    top, base = rows
    assert top["CreatedBy"] == "sh -c echo 12345 > /five"
    assert top["Tags"] == ["hist:1"] and top["Size"] == 6
    assert base["Tags"] == ["busybox:latest"] and base["Id"].startswith("sha256:")
    out = d.ok("history", "hist:1").decode().splitlines()
    assert out[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert "sh -c echo 12345 > /five" in out[1] and "6B" in out[1]
    # The docker CLI reads the same rows.
    res = docker_cli(d, "history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}",
                     "hist:1")
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().splitlines()[0] == "sh -c echo 12345 > /five|five bytes and a newline"


def test_commit_of_missing_container_is_404(runc_daemon):
    res = runc_daemon.lp("commit", "nosuch", "x:y")
    assert res.returncode != 0 and b"No such container: nosuch" in res.stderr
