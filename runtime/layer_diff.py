"""Layers: a directory of changes as a Docker layer tar, and a layer applied to a rootfs copy.

A container's changes are its overlay's upper directory. overlayfs marks a deleted file with
a character device 0/0 and a directory whose lower content is hidden ("opaque") with the
``trusted.overlay.opaque`` xattr; in a layer tar Docker writes those as an empty
``.wh.NAME`` file and a ``.wh..wh..opq`` file in the directory (the OCI image spec's
whiteouts), which is what ``write_layer`` produces. A staging directory of new files (COPY,
ADD, WORKDIR) has no whiteouts and goes through the same code.

Applying a layer uses the image store's extractor (``runtime.layer_tar.LayerExtractor``), the one
place that knows how to place tar members inside a root without escaping it. This module
never touches the image store's bookkeeping: ``runtime.commit`` does.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from typing import NamedTuple

from runtime.command import run_command
from runtime.layer_tar import OPAQUE_WHITEOUT, WHITEOUT_PREFIX, InvalidImage, LayerExtractor

OPAQUE_XATTR = "trusted.overlay.opaque"


class Layer(NamedTuple):
    """A layer tar written to ``path``: its diff id, its size (bytes of regular files, what
    ``history`` shows) and whether it holds nothing (Docker's ``empty_layer``)."""

    path: str
    diff_id: str
    size: int
    empty: bool


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _info(tar: tarfile.TarFile, path: str, name: str) -> tarfile.TarInfo:
    """A member for ``path`` with numeric owners only: an image's ids are not the host's
    names (Docker writes no uname/gname either)."""
    info = tar.gettarinfo(path, name)
    info.uname = info.gname = ""
    return info


def write_layer(changes: str, out: str) -> Layer:
    """Write the changes under ``changes`` (an overlay upper dir, or a staging dir) to the
    layer tar ``out``, parents before children, names sorted: the same changes give the
    same bytes, hence the same diff id."""
    size = 0
    count = 0
    with open(out, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT,
                                            dereference=False) as tar:
        for dirpath, dirs, files in os.walk(changes):
            dirs.sort()
            rel_dir = os.path.relpath(dirpath, changes)
            if rel_dir != "." and _is_opaque(dirpath):
                tar.addfile(_whiteout(os.path.join(rel_dir, OPAQUE_WHITEOUT)))
                count += 1
            for name in sorted(files + dirs):  # symlinks to dirs are listed, not entered
                path = os.path.join(dirpath, name)
                rel = os.path.normpath(os.path.join(rel_dir, name))
                st = os.lstat(path)
                count += 1
                if _is_whiteout(st):
                    tar.addfile(_whiteout(os.path.join(os.path.dirname(rel),
                                                       WHITEOUT_PREFIX + name)))
                    continue
                info = _info(tar, path, rel)
                if info.isreg():
                    with _open_regular(path) as data:
                        info.size = os.fstat(data.fileno()).st_size
                        size += info.size
                        tar.addfile(info, data)
                else:
                    tar.addfile(info)
    return Layer(out, "sha256:" + _sha256_file(out), size, count == 0)


def _open_regular(path: str):
    """A file of the changes, never through a symlink: a container that is not paused
    (``commit --pause=false``) could swap a file for a link to a host path meanwhile."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path}: changed while it was being read")
    return os.fdopen(fd, "rb")


def _whiteout(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(os.path.normpath(name))
    info.mode = 0o644
    return info


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def copy_rootfs(src: str | None, dst: str) -> None:
    """``dst`` becomes a copy of the image rootfs ``src`` (owners, modes, hard links and
    xattrs kept; reflinks where the filesystem has them), or an empty root for scratch."""
    if src is None:
        os.mkdir(dst, 0o755)
        return
    r = run_command(["cp", "-a", "--reflink=auto", src, dst])
    if r.returncode != 0:
        raise OSError(r.stderr.decode(errors="replace").strip() or f"cp exited {r.returncode}")


def apply_layer(rootfs: str, layer_path: str) -> None:
    """Apply a layer tar onto ``rootfs``: whiteouts delete from below, then the members."""
    with tarfile.open(layer_path, "r:") as tar:
        try:
            members = tar.getmembers()
        except tarfile.TarError as err:
            raise InvalidImage(f"damaged layer: {err}") from None
        ex = LayerExtractor(rootfs)
        ex.apply_whiteouts(members)
        ex.extract(tar, members, lambda: None)
        ex.finish_dirs()
