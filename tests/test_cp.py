"""A container's files through ``cp``, ``export`` and ``diff``: the docker CLI, docker-py and
``logpipe`` against real runc containers, running and stopped, their volumes, a symlink
that points out of the container, bad paths, and a client that leaves mid-archive."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import tarfile
import uuid

import pytest

from conftest import docker_cli, wait_until

pytestmark = pytest.mark.e2e

docker = pytest.importorskip("docker")
PASSWD_NOBODY = b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false"


@pytest.fixture(scope="module")
def d(runc_module_daemon):
    return runc_module_daemon


@pytest.fixture(scope="module")
def ctr(d):
    """A running container (one for the module: a start costs seconds here) with a file in
    an anonymous volume, a deleted image file, and two symlinks that point out of it."""
    cid = d.ok("run", "-d", "--network", "none", "-v", "/data", "busybox", "sh", "-c",
               "echo v > /data/in-volume; rm /etc/group; ln -s /../../etc /x; "
               "ln -s ../../../../tmp /y; exec sleep 300").decode().strip()
    wait_until(lambda: b"A /y" in d.ok("diff", cid), what="the container's setup")
    yield cid
    d.lp("rm", "-f", "-v", cid)


def _ok(res: subprocess.CompletedProcess) -> bytes:
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {ti.name: ti for ti in tar}


def _read(d, cid: str, path: str) -> bytes:
    data = _ok(docker_cli(d, "cp", f"{cid}:{path}", "-"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.next()
        return tar.extractfile(member).read()


def test_docker_cp_copies_files_and_directories_both_ways(d, ctr, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("alpha\n")
    (src / "top.txt").write_text("top\n")
    _ok(docker_cli(d, "cp", str(src), f"{ctr}:/tmp/new"))  # missing dest: becomes it
    _ok(docker_cli(d, "cp", str(src), f"{ctr}:/tmp"))  # existing dir: goes inside it
    _ok(docker_cli(d, "cp", str(src / "top.txt"), f"{ctr}:/tmp/renamed.txt"))
    assert _read(d, ctr, "/tmp/new/sub/a.txt") == b"alpha\n"
    assert _read(d, ctr, "/tmp/src/top.txt") == b"top\n"
    assert _read(d, ctr, "/tmp/renamed.txt") == b"top\n"
    out = tmp_path / "out"
    out.mkdir()
    _ok(docker_cli(d, "cp", f"{ctr}:/tmp/new", str(out / "copy")))
    _ok(docker_cli(d, "cp", f"{ctr}:/tmp/new/.", str(out / "content")))
    _ok(docker_cli(d, "cp", f"{ctr}:/etc/passwd", str(out)))
    assert (out / "copy" / "sub" / "a.txt").read_text() == "alpha\n"
    assert (out / "content" / "top.txt").read_text() == "top\n"
    assert PASSWD_NOBODY in (out / "passwd").read_bytes()
    res = docker_cli(d, "cp", str(src / "top.txt"), f"{ctr}:/nowhere/")
    assert res.returncode != 0


def test_logpipe_cp_export_and_diff(d, ctr, tmp_path):
    (tmp_path / "f.txt").write_text("hello\n")
    d.ok("cp", str(tmp_path / "f.txt"), f"{ctr}:/tmp/")
    d.ok("cp", f"{ctr}:/tmp/f.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "hello\n"
    d.ok("cp", f"{ctr}:/etc/.", str(tmp_path / "etc"))
    assert PASSWD_NOBODY in (tmp_path / "etc" / "passwd").read_bytes()
    d.ok("export", "-o", str(tmp_path / "fs.tar"), ctr)
    with tarfile.open(tmp_path / "fs.tar") as tar:
        assert "bin/busybox" in tar.getnames() and "tmp/f.txt" in tar.getnames()
    diff = d.ok("diff", ctr).decode().splitlines()
    assert {"C /tmp", "A /tmp/f.txt", "C /etc", "D /etc/group", "A /x"} <= set(diff)
    assert "A /data/in-volume" not in diff and "A /etc/hostname" not in diff


def test_archive_errors_are_dockers(d, ctr, module_docker_client):
    res = docker_cli(d, "cp", f"{ctr}:/nope", "-")
    assert res.returncode == 1
    assert f"Could not find the file /nope in container {ctr}" in res.stderr.decode()
    with pytest.raises(docker.errors.NotFound):
        module_docker_client.api.get_archive(ctr, "/nope")
    with pytest.raises(docker.errors.APIError) as err:
        module_docker_client.api.put_archive(ctr, "/etc/passwd", b"")
    assert err.value.status_code == 400
    assert err.value.explanation == "extraction point is not a directory"
    with pytest.raises(docker.errors.APIError) as err:
        module_docker_client.api.get_archive(ctr, "")
    assert err.value.status_code == 400


def test_cp_into_a_stopped_container_and_out_of_its_volume(d, tmp_path):
    vol = f"v{uuid.uuid4().hex[:8]}"
    cid = d.ok("create", "--network", "none", "-v", f"{vol}:/data", "busybox", "cat",
               "/data/in.txt", "/etc/motd").decode().strip()
    rootfs = os.path.join(d.root, "containers", cid, "rootfs")
    try:
        (tmp_path / "in.txt").write_text("into the volume\n")
        (tmp_path / "motd").write_text("into the root\n")
        _ok(docker_cli(d, "cp", str(tmp_path / "in.txt"), f"{cid}:/data/"))
        _ok(docker_cli(d, "cp", str(tmp_path / "motd"), f"{cid}:/etc/motd"))
        assert _read(d, cid, "/data/in.txt") == b"into the volume\n"  # created, not run
        wait_until(lambda: not os.path.ismount(rootfs), what="the root mounted for the copy "
                   "only to be unmounted")
        # A client that leaves mid-archive: the root stays mounted only while it is read.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(d.host.removeprefix("unix://"))
        sock.sendall(f"GET /v1.41/containers/{cid}/archive?path=/ HTTP/1.1\r\n"
                     f"Host: x\r\n\r\n".encode())
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.close()
        # The container's lock is free again: it starts, and sees both files.
        assert _ok(docker_cli(d, "start", "-a", cid)) == b"into the volume\ninto the root\n"
        assert _read(d, cid, "/data/in.txt") == b"into the volume\n"  # exited
        volume_dir = json.loads(d.ok("volume", "inspect", vol))[0]["Mountpoint"]
        assert os.path.exists(os.path.join(volume_dir, "in.txt"))  # the volume's, not the root's
        assert "A /etc/motd" in d.ok("diff", cid).decode().splitlines()
        wait_until(lambda: not os.path.ismount(rootfs), what="the root to be unmounted")
    finally:
        d.lp("rm", "-f", cid)
        d.lp("volume", "rm", vol)


def test_a_symlink_out_of_the_container_stays_inside_it(d, module_docker_client, ctr, tmp_path):
    marker = f"lp-escape-{uuid.uuid4().hex[:8]}"
    c = module_docker_client.containers.get(ctr)
    try:
        assert PASSWD_NOBODY in _read(d, c.id, "/x/passwd")  # the container's passwd
        (tmp_path / marker).write_text("x")
        _ok(docker_cli(d, "cp", str(tmp_path / marker), f"{c.id}:/x/"))
        _ok(docker_cli(d, "cp", str(tmp_path / marker), f"{c.id}:/y/"))
        assert not os.path.exists(f"/etc/{marker}") and not os.path.exists(f"/tmp/{marker}")
        assert _read(d, c.id, f"/etc/{marker}") == b"x"
        assert _read(d, c.id, f"/tmp/{marker}") == b"x"
        evil = io.BytesIO()  # an archive whose entries climb out of the extraction point
        with tarfile.open(fileobj=evil, mode="w") as tar:
            ti = tarfile.TarInfo(f"../../../../tmp/{marker}-up")
            ti.size = 1
            tar.addfile(ti, io.BytesIO(b"x"))
        with pytest.raises(docker.errors.APIError) as err:
            c.put_archive("/tmp", evil.getvalue())
        assert err.value.status_code == 400
        assert not os.path.exists(f"/tmp/{marker}-up")
    finally:
        for path in (f"/etc/{marker}", f"/tmp/{marker}"):
            if os.path.exists(path):
                os.unlink(path)


def test_dockerpy_archives_top_diff_and_export(module_docker_client, ctr):
    c = module_docker_client.containers.get(ctr)
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tar:
        ti = tarfile.TarInfo("dir/file.txt")
        ti.size, ti.uid = 3, 1234
        tar.addfile(ti, io.BytesIO(b"abc"))
    assert c.put_archive("/tmp", payload.getvalue()) is True
    bits, stat = c.get_archive("/tmp/dir")
    assert stat["name"] == "dir" and stat["mode"] & (1 << 31)
    members = _members(b"".join(bits))
    assert members["dir/file.txt"].uid == 1234 and members["dir/file.txt"].size == 3
    assert c.get_archive("/bin/sh")[1]["linkTarget"] == "/bin/busybox"
    changes = {(ch["Path"], ch["Kind"]) for ch in c.diff()}
    assert {("/tmp/dir/file.txt", 1), ("/etc/group", 2), ("/etc", 0)} <= changes
    exported = _members(b"".join(c.export()))
    assert "bin/busybox" in exported and "etc/group" not in exported
    assert "data/in-volume" not in exported  # export leaves the volumes out, as Docker
    assert c.top()["Processes"]


def test_docker_export_lists_the_root(d, ctr):
    names = _members(_ok(docker_cli(d, "export", ctr)))
    assert "bin/busybox" in names and "etc/passwd" in names and "data/in-volume" not in names
    assert _read(d, ctr, "/data/in-volume") == b"v\n"  # cp, unlike export, sees the volume


