"""``commit`` and ``history`` against a real daemon: runc containers on the busybox image,
the logpipe CLI and docker-py."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile

import pytest

from conftest import IMAGE, RUNC, RestartableDaemon, add, diff_id, docker_cli, fill, tar_bytes, tmpfs

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def runc_daemon(runc_module_daemon):
    """The module's one runc daemon: each test names its own images and containers, and
    removes the containers it leaves."""
    return runc_module_daemon


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
    made = json.loads(d.inspect("made:v1", "{{json .}}"))
    assert made["Parent"] == json.loads(d.inspect("busybox", "{{json .Id}}"))
    assert made["Author"] == "tester" and made["Container"] == d.inspect("maker", "{{.Id}}")
    assert made["ContainerConfig"]["Cmd"] == ["sh", "-c", "echo hello > /hello && rm "
                                              "/etc/group && mkdir -p /tmp/x && echo y > /tmp/x/y"]
    assert len(made["RootFS"]["Layers"]) == 2
    d.ok("rm", "maker")


def test_commit_refuses_instruction_it_cannot_apply(runc_daemon):
    d = runc_daemon
    d.ok("create", "--name", "c1", "busybox", "true")
    res = d.lp("commit", "-c", "RUN echo no", "c1", "x:y")
    assert res.returncode != 0
    assert b"run is not a valid change command" in res.stderr
    # No change at all is still a commit: an empty layer, as Docker marks one in history.
    d.ok("commit", "c1", "nochange:1")
    top = json.loads(d.ok("history", "--format", "{{json .}}", "nochange:1").splitlines()[0])
    assert top["Size"] == "0B" and top["CreatedBy"] == "true"
    assert len(json.loads(d.inspect("nochange:1", "{{json .RootFS.Layers}}"))) == 1
    d.ok("rm", "c1")


def test_commit_of_running_container_pauses_it_and_resumes(runc_daemon):
    d = runc_daemon
    d.ok("run", "-d", "--name", "live", "busybox", "sh", "-c",
         "echo up > /state; exec sleep 60")
    res = docker_cli(d, "commit", "-c", "EXPOSE 8080", "live", "live:snap")  # the docker CLI
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().strip().startswith("sha256:")
    assert d.inspect("live", "{{.State.Status}}") == "running"
    assert json.loads(d.inspect("live:snap", "{{json .Config.ExposedPorts}}")) == {"8080/tcp": {}}
    assert d.ok("run", "--rm", "live:snap", "cat", "/state") == b"up\n"
    d.ok("rm", "-f", "live")


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
    d.ok("rm", "hist")


def test_commit_of_missing_container_is_404(runc_daemon):
    res = runc_daemon.lp("commit", "nosuch", "x:y")
    assert res.returncode != 0 and b"No such container: nosuch" in res.stderr


def test_history_of_loaded_image_comes_from_its_config(api, tmp_path):
    """Rows from the archive's ``history``: an empty layer is 0 B, layer sizes are their
    files' bytes, only the top row has an id (a loaded image has no parent chain)."""
    layers = [tar_bytes(lambda t: add(t, "a", b"x" * 100)),
              tar_bytes(lambda t: add(t, "b", b"y" * 7))]
    config = json.dumps({
        "created": "2024-01-02T03:04:05Z", "config": {"Cmd": ["sh"]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD a"},
                    {"created": "2024-01-01T00:00:01Z",
                     "created_by": "/bin/sh -c #(nop)  ENV X=1", "empty_layer": True},
                    {"created": "2024-01-02T03:04:05Z", "created_by": "/bin/sh -c echo",
                     "comment": "last"}],
        "rootfs": {"type": "layers", "diff_ids": [diff_id(layer) for layer in layers]}}).encode()
    path = tmp_path / "saved.tar"
    with tarfile.open(path, "w") as tar:
        for i, layer in enumerate(layers):
            add(tar, f"l{i}/layer.tar", layer)
        add(tar, "cfg.json", config)
        add(tar, "manifest.json", json.dumps([{"Config": "cfg.json", "RepoTags": ["hl:1"],
                                               "Layers": ["l0/layer.tar", "l1/layer.tar"]}]
                                             ).encode())
    with open(path, "rb") as f:
        api.request("POST", "/images/load", body=f.read()).read()
    rows = api.json("GET", "/images/hl:1/history")
    image_id = "sha256:" + hashlib.sha256(config).hexdigest()
    assert [(r["Id"], r["CreatedBy"], r["Size"], r["Comment"], r["Tags"]) for r in rows] == [
        (image_id, "/bin/sh -c echo", 7, "last", ["hl:1"]),
        ("<missing>", "/bin/sh -c #(nop)  ENV X=1", 0, "", None),
        ("<missing>", "/bin/sh -c #(nop) ADD a", 100, "", None)]
    assert rows[0]["Created"] == 1704164645


@pytest.fixture
def tmpfs_daemon(busybox_tar, tmp_path):
    """A daemon whose data root is a 64 MB tmpfs, with the busybox image imported."""
    if not RUNC:
        pytest.skip("needs root, runc and busybox-static (a real container on a real tmpfs)")
    d = RestartableDaemon("runc")
    try:
        with tmpfs(d.root, "64m"):
            try:
                d.start()
                d.ok("import", busybox_tar, IMAGE)
                yield d
            finally:
                d.close()
    finally:
        shutil.rmtree(d.base, ignore_errors=True)


def test_disk_full_during_commit_is_an_error_and_leaves_no_half_image(tmpfs_daemon):
    d = tmpfs_daemon
    d.ok("run", "--name", "big", "busybox", "sh", "-c",
         "dd if=/dev/zero of=/big bs=1M count=8 2>/dev/null")
    images_before = d.ok("images", "-a", "-q")
    filler = fill(d.root, leave=1 << 20)
    try:
        res = d.lp("commit", "big", "big:1")
        assert res.returncode != 0
        assert b"no space left on device" in res.stderr
        assert d.ok("images", "-a", "-q") == images_before
        assert os.listdir(os.path.join(d.root, "images", "tmp")) == []
    finally:
        os.unlink(filler)
    d.ok("commit", "big", "big:1")
    assert d.ok("run", "--rm", "big:1", "wc", "-c", "/big").split()[0] == b"8388608"
