"""Security end to end: what a hostile image, a hostile local user or a careless flag must not
achieve, through a real ``logpipe daemon`` running real runc containers on a busybox image.

The container tests need root, runc and busybox-static (``tests/busybox.py``) and skip without
them; the ``capture`` tests need root (they plant files as ``nobody``).
"""

from __future__ import annotations

import io
import os
import tarfile
import time

import pytest

from test_reliability import IMAGE, RUNC, busybox_tar, running_daemon  # noqa: F401 (fixture)

needs_runc = pytest.mark.skipif(not RUNC, reason="needs root, runc and busybox-static")


@pytest.fixture(scope="module")
def daemon(busybox_tar):  # noqa: F811 - the fixture imported above
    """One runc daemon for the module's container tests (starting one costs ~1 s)."""
    if not RUNC:
        pytest.skip("needs root, runc and busybox-static")
    with running_daemon("runc", busybox_tar) as d:
        yield d


def run(daemon, *args: str):
    """``logpipe run --rm ARGS`` attached: (exit status, stdout, stderr)."""
    r = daemon.lp("run", "--rm", *args, timeout=60)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


# -- binds ---------------------------------------------------------------------------------


@needs_runc
def test_single_file_binds_work_read_only_and_read_write(daemon, tmp_path):
    src = tmp_path / "app.conf"
    src.write_text("from the host\n")
    code, out, err = run(daemon, "-v", f"{src}:/etc/app.conf:ro", IMAGE,
                         "sh", "-c", "cat /etc/app.conf; echo x >> /etc/app.conf")
    assert out == "from the host\n", err
    assert code != 0 and "Read-only file system" in err
    code, out, err = run(daemon, "-v", f"{src}:/data/app.conf", IMAGE,
                         "sh", "-c", "echo from the container >> /data/app.conf")
    assert code == 0, err
    assert src.read_text() == "from the host\nfrom the container\n"


@needs_runc
def test_a_missing_bind_source_is_created_as_a_directory(daemon, tmp_path):
    src = tmp_path / "made" / "here"
    code, _, err = run(daemon, "-v", f"{src}:/data", IMAGE, "sh", "-c", "echo hi > /data/f")
    assert code == 0, err
    assert src.is_dir() and (src / "f").read_text() == "hi\n"


# -- user lookup in the image --------------------------------------------------------------


def with_fifo_passwd(busybox: str, out: str) -> str:
    """The busybox tarball with ``/etc/passwd`` replaced by a FIFO."""
    with tarfile.open(busybox) as src, tarfile.open(out, "w") as dst:
        for m in src.getmembers():
            if m.name == "etc/passwd":
                fifo = tarfile.TarInfo("etc/passwd")
                fifo.type, fifo.mode = tarfile.FIFOTYPE, 0o644
                dst.addfile(fifo)
            else:
                dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    return out


@needs_runc
def test_a_fifo_as_etc_passwd_gives_dockers_error_instead_of_a_hang(daemon, busybox_tar,
                                                                    tmp_path):
    daemon.ok("import", with_fifo_passwd(busybox_tar, str(tmp_path / "fifo.tar")), "fifo:1")
    started = time.monotonic()
    r = daemon.lp("run", "--rm", "--user", "someone", "fifo:1", "true", timeout=30)
    assert r.returncode != 0
    assert b"unable to find user someone: no matching entries in passwd file" in r.stderr
    assert time.monotonic() - started < 10


def test_user_lookup_never_opens_what_is_not_a_regular_file(tmp_path):
    """FIFO (``open`` would wait for a writer), symlink out of the root, directory: none is
    read; a named user is then not found, with Docker's text, at once."""
    from runtime.oci import OCIConfigError, resolve_user

    (tmp_path / "etc").mkdir()
    os.mkfifo(tmp_path / "etc" / "passwd")
    started = time.monotonic()
    with pytest.raises(OCIConfigError, match="^unable to find user someone: no matching "
                                             "entries in passwd file$"):
        resolve_user(str(tmp_path), "someone")
    assert time.monotonic() - started < 1
    os.unlink(tmp_path / "etc" / "passwd")
    host = tmp_path / "host-passwd"
    host.write_text("someone:x:4242:4242::/:/bin/sh\n")
    os.symlink(str(host), tmp_path / "etc" / "passwd")  # resolved inside the root: missing
    with pytest.raises(OCIConfigError, match="unable to find user someone"):
        resolve_user(str(tmp_path), "someone")
    os.unlink(tmp_path / "etc" / "passwd")
    (tmp_path / "etc" / "passwd").mkdir()
    with pytest.raises(OCIConfigError, match="unable to find user someone"):
        resolve_user(str(tmp_path), "someone")

