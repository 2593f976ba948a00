"""The image store: import, load with whiteouts, resolve, remove, and extraction that never
writes outside an image's rootfs."""

import gzip
import io
import json
import os
import tarfile

import pytest

from busybox import build_tarball, find_busybox
from conftest import add, diff_id, tar_bytes, write_save_archive
from runtime.images import ImageConflict, ImageStore, InvalidImage, NoSuchImage

pytestmark = pytest.mark.unit


def small_rootfs(tar: tarfile.TarFile) -> None:
    add(tar, "etc")
    add(tar, "etc/hello", b"hello\n")
    add(tar, "bin")
    add(tar, "bin/tool", b"#!/bin/sh\n", mode=0o4755)
    add(tar, "tmp", None)
    add(tar, "bin/link", kind=tarfile.SYMTYPE, linkname="/etc/hello")


@pytest.fixture
def store(tmp_path):
    return ImageStore(str(tmp_path / "data"))


def test_import_stores_rootfs_and_config_and_resolves_by_name_and_ids(store, tmp_path):
    path = tmp_path / "rootfs.tar"
    path.write_bytes(tar_bytes(small_rootfs))
    seen = []
    image = store.import_tar(str(path), "mine:v1", progress=lambda d, t: seen.append((d, t)))
    assert image.id.startswith("sha256:") and len(image.id) == 71
    assert image.repo_tags == ("mine:v1",)
    assert image.config["Cmd"] is None  # Docker: import gives no Cmd
    root = image.rootfs
    assert open(os.path.join(root, "etc/hello")).read() == "hello\n"
    assert os.stat(os.path.join(root, "bin/tool")).st_mode & 0o7777 == 0o4755
    assert os.readlink(os.path.join(root, "bin/link")) == "/etc/hello"
    assert image.size == len(b"hello\n") + len(b"#!/bin/sh\n")
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)
    on_disk = json.load(open(os.path.join(store.dir, image.id[7:], "image.json")))
    assert on_disk["Id"] == image.id and on_disk["Config"]["Cmd"] is None
    repos = json.load(open(os.path.join(store.dir, "repositories.json")))
    assert repos == {"mine:v1": image.id}

    for ref in ("mine:v1", "docker.io/library/mine:v1", image.id, image.id[7:], image.short_id,
                image.id[:15]):
        assert store.resolve(ref).id == image.id, ref
    with pytest.raises(NoSuchImage, match="^No such image: mine:latest$"):
        store.resolve("mine")  # tag defaults to latest
    assert [i.id for i in store.list()] == [image.id]


def test_import_of_a_stream_hashes_the_bytes_and_default_tag_is_latest(store):
    data = tar_bytes(small_rootfs)

    class Stream(io.RawIOBase):  # an HTTP body: readable, not seekable
        def __init__(self):
            self.inner = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            chunk = self.inner.read(len(b))
            b[:len(chunk)] = chunk
            return len(chunk)

    image = store.import_tar(Stream(), "mine")
    import hashlib
    assert image.id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert store.resolve("mine:latest").id == image.id


def test_remove_untags_then_refuses_while_a_container_uses_the_image(store, tmp_path):
    path = tmp_path / "rootfs.tar"
    path.write_bytes(tar_bytes(small_rootfs))
    image = store.import_tar(str(path), "a")
    store.import_tar(str(path), "b")
    assert store.resolve("a").repo_tags == ("a:latest", "b:latest")
    used_by = "f" * 64
    # Another tag remains: only the name goes, even though a container uses the image.
    assert store.remove("b", in_use=lambda i: used_by) == [{"Untagged": "b:latest"}]
    with pytest.raises(ImageConflict) as err:
        store.remove("a", in_use=lambda i: used_by if i == image.id else None)
    assert str(err.value) == (
        'conflict: unable to remove repository reference "a" (must force) - container '
        f"ffffffffffff is using its referenced image {image.short_id}")
    assert err.value.status == 409
    assert store.remove("a", in_use=lambda i: None) == [{"Untagged": "a:latest"},
                                                        {"Deleted": image.id}]
    assert store.list() == []
    assert not os.path.exists(image.rootfs)
    with pytest.raises(NoSuchImage, match="No such image: a"):
        store.remove("a")


def save_archive(tmp_path) -> str:
    """A ``docker save`` archive with two layers; the second deletes with whiteouts."""
    def layer1(tar):
        add(tar, "etc")
        add(tar, "etc/keep", b"keep\n")
        add(tar, "etc/gone", b"gone\n")
        add(tar, "opaque")
        add(tar, "opaque/old", b"old\n")
        add(tar, "opaque/sub")
        add(tar, "opaque/sub/deep", b"deep\n")
        add(tar, "dir-gone")
        add(tar, "dir-gone/x", b"x\n")

    def layer2(tar):
        add(tar, "etc")
        add(tar, "etc/.wh.gone", b"")
        add(tar, ".wh.dir-gone", b"")
        add(tar, "opaque")
        add(tar, "opaque/.wh..wh..opq", b"")
        add(tar, "opaque/new", b"new\n")
        add(tar, "etc/added", b"added\n")

    return write_save_archive(tmp_path / "saved.tar", [tar_bytes(layer1), tar_bytes(layer2)])


def test_load_refuses_layers_that_are_not_the_configs_diff_ids(store, tmp_path):
    """Same config, different layers: the archive whose layers do not hash to the config's
    ``rootfs.diff_ids`` is refused (Docker's text), whichever archive comes first."""
    good = tar_bytes(lambda tar: add(tar, "etc/hello", b"hello\n"))
    poisoned = tar_bytes(lambda tar: add(tar, "etc/hello", b"poisoned\n"))
    bad = write_save_archive(tmp_path / "bad.tar", [poisoned], [diff_id(good)])
    with pytest.raises(InvalidImage) as err:
        store.load(bad)
    assert str(err.value) == (f'invalid diffID for layer 0: expected "{diff_id(good)}", '
                              f'got "{diff_id(poisoned)}"')
    assert err.value.status == 400
    assert store.list() == []  # nothing of the poisoned archive was kept
    assert store.load(write_save_archive(tmp_path / "good.tar", [good])) == ["saved:1"]
    with open(os.path.join(store.resolve("saved:1").rootfs, "etc", "hello"), "rb") as f:
        assert f.read() == b"hello\n"
    # Loaded after the real image, the poisoned archive is still refused, not "loaded".
    with pytest.raises(InvalidImage, match="invalid diffID for layer 0"):
        store.load(bad)
    with pytest.raises(InvalidImage, match="layers length mismatch: expected 0, got 1"):
        store.load(write_save_archive(tmp_path / "none.tar", [good], []))


def test_load_checks_a_gzip_layer_against_its_uncompressed_digest(store, tmp_path):
    layer = tar_bytes(lambda tar: add(tar, "etc/hello", b"hello\n"))
    archive = write_save_archive(tmp_path / "gz.tar", [gzip.compress(layer)], [diff_id(layer)])
    assert store.load(archive) == ["saved:1"]


def test_load_applies_layers_in_order_with_whiteouts_and_keeps_config(store, tmp_path):
    seen = []
    assert store.load(save_archive(tmp_path), lambda d, t: seen.append((d, t))) == ["saved:1"]
    assert seen and seen[-1][0] == seen[-1][1] > 0
    image = store.resolve("saved:1")
    root = image.rootfs
    tree = sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, dirs, files in os.walk(root) for f in dirs + files)
    assert tree == ["etc", "etc/added", "etc/keep", "opaque", "opaque/new"]
    assert image.config["Cmd"] == ["sh"] and image.config["Env"] == ["A=1"]
    assert image.config["WorkingDir"] == "/etc"
    assert image.created == "2024-01-02T03:04:05Z"
    # Loading again is idempotent: same config, same id.
    assert store.load(save_archive(tmp_path)) == ["saved:1"]
    assert len(store.list()) == 1


def test_load_of_something_else_says_what_is_wrong(store, tmp_path):
    path = tmp_path / "x.tar"
    path.write_bytes(tar_bytes(small_rootfs))
    with pytest.raises(InvalidImage, match="manifest.json is missing"):
        store.load(str(path))
    path.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(InvalidImage, match="not a tar archive"):
        store.load(str(path))


def test_hostile_tar_writes_nothing_outside_the_rootfs(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("original\n")

    def hostile(tar):
        add(tar, "../escape", b"dotdot\n")
        add(tar, "a/../../escape2", b"dotdot\n")
        add(tar, str(tmp_path / "absolute"), b"absolute\n")
        add(tar, "abs-link", kind=tarfile.SYMTYPE, linkname=str(outside))
        add(tar, "abs-link/pwned", b"through absolute symlink\n")
        add(tar, "rel-link", kind=tarfile.SYMTYPE, linkname="../../../../../../" + str(outside))
        add(tar, "rel-link/pwned2", b"through relative symlink\n")
        add(tar, "victim-link", kind=tarfile.SYMTYPE, linkname=str(victim))
        add(tar, "victim-link", b"overwrite the link's target?\n")
        add(tar, "null", kind=tarfile.CHRTYPE)

    path = tmp_path / "hostile.tar"
    path.write_bytes(tar_bytes(hostile))
    try:
        image = store.import_tar(str(path), "hostile")
    except InvalidImage:
        image = None  # refusing is fine too; what matters is the host below
    assert list(outside.iterdir()) == []
    assert victim.read_text() == "original\n"
    assert os.stat(victim).st_nlink == 1
    assert not (tmp_path / "escape").exists() and not (tmp_path / "escape2").exists()
    assert not (tmp_path / "absolute").exists()
    assert not (tmp_path / "data" / "escape").exists()
    if image is not None:  # neutralised: everything landed inside, chroot-style
        root = image.rootfs
        assert open(os.path.join(root, "escape")).read() == "dotdot\n"
        assert open(os.path.join(root, str(outside).lstrip("/"), "pwned")).read() \
            == "through absolute symlink\n"
        assert not os.path.exists(os.path.join(root, "null"))
        # A file over a symlink replaces the link (tar's own rule), it never writes through it.
        assert not os.path.islink(os.path.join(root, "victim-link"))
        assert open(os.path.join(root, "victim-link")).read().startswith("overwrite")


def test_hard_link_to_a_host_file_is_refused(store, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("original\n")

    def hostile(tar):
        add(tar, "hard", kind=tarfile.LNKTYPE, linkname=str(victim))
        add(tar, "hard2", kind=tarfile.LNKTYPE, linkname="../../../../../../../" + str(victim))

    path = tmp_path / "hostile.tar"
    path.write_bytes(tar_bytes(hostile))
    with pytest.raises(InvalidImage, match="hard link"):
        store.import_tar(str(path), "hostile")
    assert os.stat(victim).st_nlink == 1
    assert store.list() == []
    assert os.listdir(store.tmp) == []


def test_busybox_tarball_imports_with_applet_symlinks(store, tmp_path):
    if find_busybox() is None:
        pytest.skip("busybox-static is not installed (apt-get install busybox-static)")
    image = store.import_tar(build_tarball(str(tmp_path / "bb.tar")), "busybox")
    assert os.readlink(os.path.join(image.rootfs, "bin/sh")) == "busybox"
    assert "nobody:x:65534" in open(os.path.join(image.rootfs, "etc/passwd")).read()
    assert os.stat(os.path.join(image.rootfs, "tmp")).st_mode & 0o7777 == 0o1777
