"""Layer tarballs, read safely: the one extractor every writer of an image or build tree
uses (import, load, pull, a build's context and COPY, a committed layer's apply), the
archive checks around it, and a layer's diff id.

Extraction is the security boundary: every tar member is placed with ``resolve_in_root``
(symlinks resolved as if chrooted), so absolute names, ``..``, hostile symlinks and hard links
cannot write or link outside the root. Whiteouts (``.wh.NAME``, ``.wh..wh..opq``) are applied
as OCI/Docker layers define them. Device nodes are skipped. A bad archive is an
``InvalidImage`` (400) naming the member at fault.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import tarfile
from typing import IO, Any, Callable, Iterator

from logpipe.errors import InvalidParameter

from runtime.rootfs import resolve_in_root

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
#: What a member's *name* can make the filesystem answer: the archive is at fault (400).
_BAD_MEMBER_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EISDIR,
                                errno.EEXIST, errno.EINVAL})


class InvalidImage(InvalidParameter):
    """The tarball or archive is not a usable image."""


class LayerExtractor:
    """Applies tar layers to one rootfs, OCI/Docker layer semantics, never writing outside."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.is_root = os.geteuid() == 0
        self.dir_modes: dict[str, tarfile.TarInfo] = {}
        self.current = ""  # the member being placed, for the error that names it

    def _place(self, name: str) -> str:
        """Host path for member ``name``; its parent directory exists afterwards."""
        path = resolve_in_root(self.root, name)
        if path == self.root:
            return path
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            # Parents missing from the archive are made like tar does; a parent that is a
            # (non-directory) file is replaced, as a later layer would.
            rel = os.path.relpath(parent, self.root)
            cur = self.root
            for part in rel.split("/"):
                cur = os.path.join(cur, part)
                if os.path.islink(cur) or (os.path.lexists(cur) and not os.path.isdir(cur)):
                    os.unlink(cur)
                if not os.path.lexists(cur):
                    os.mkdir(cur, 0o755)
        return path

    @staticmethod
    def _remove(path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)

    def apply_whiteouts(self, members: list[tarfile.TarInfo]) -> None:
        """Whiteouts of a layer delete from the layers *below* it, so they go first."""
        with self._naming_member():
            self._apply_whiteouts(members)

    def extract(self, tar: tarfile.TarFile, members: list[tarfile.TarInfo],
                tick: Callable[[], None]) -> None:
        with self._naming_member():
            self._extract(tar, members, tick)

    @contextlib.contextmanager
    def _naming_member(self) -> Iterator[None]:
        """A member the filesystem cannot hold as named (a 256-byte name, a symlink loop on
        its path) is the archive's fault: a 400 naming the member, not the host path. A
        full or failing disk is not, and stays what it is."""
        try:
            yield
        except OSError as err:
            if err.errno not in _BAD_MEMBER_ERRNOS:
                raise
            name = self.current if len(self.current) <= 200 else self.current[:200] + "..."
            reason = os.strerror(err.errno)
            raise InvalidImage(f"invalid tar member {name}: "
                               f"{reason[:1].lower()}{reason[1:]}") from None

    def _apply_whiteouts(self, members: list[tarfile.TarInfo]) -> None:
        for m in members:
            self.current = m.name
            base = os.path.basename(m.name.rstrip("/"))
            if not base.startswith(WHITEOUT_PREFIX):
                continue
            parent = resolve_in_root(self.root, os.path.dirname(m.name.rstrip("/")),
                                     follow_last=True)
            if not os.path.isdir(parent):
                continue
            if base == OPAQUE_WHITEOUT:
                for entry in os.listdir(parent):
                    self._remove(os.path.join(parent, entry))
            else:
                victim = base[len(WHITEOUT_PREFIX):]
                if victim not in ("", ".", ".."):
                    self._remove(os.path.join(parent, victim))

    def _extract(self, tar: tarfile.TarFile, members: list[tarfile.TarInfo],
                 tick: Callable[[], None]) -> None:
        for m in members:
            self.current = m.name
            if os.path.basename(m.name.rstrip("/")).startswith(WHITEOUT_PREFIX):
                continue
            if m.ischr() or m.isblk():
                continue  # containers get a fresh /dev from the runtime
            path = self._place(m.name)
            if path == self.root:
                if m.isdir():
                    self.dir_modes[path] = m
                continue
            if m.isdir():
                if os.path.lexists(path) and (os.path.islink(path) or not os.path.isdir(path)):
                    os.unlink(path)
                if not os.path.lexists(path):
                    os.mkdir(path, 0o700)
                self.dir_modes[path] = m  # mode applied last: a 0555 dir must stay writable
                continue
            if os.path.lexists(path):
                self._remove(path)
            if m.isreg():
                src = tar.extractfile(m)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            elif m.issym():
                os.symlink(m.linkname, path)  # stored verbatim; only ever followed in-root
            elif m.islnk():
                target = resolve_in_root(self.root, m.linkname)
                if not os.path.lexists(target) or (os.path.isdir(target)
                                                   and not os.path.islink(target)):
                    raise InvalidImage(f"hard link {m.name} to missing or directory {m.linkname}")
                os.link(target, path, follow_symlinks=False)
                tick()
                continue  # a hard link shares its target's inode: owner and mode are set
            elif m.isfifo():
                os.mkfifo(path, 0o600)
            else:
                continue
            self._finish(path, m)
            tick()

    def _finish(self, path: str, m: tarfile.TarInfo) -> None:
        """Owner (numeric: the image's ids, not the host's names), mode, mtime."""
        if self.is_root:
            os.lchown(path, m.uid, m.gid)
        if not m.issym():
            os.chmod(path, stat.S_IMODE(m.mode))
        with contextlib.suppress(OSError, OverflowError):
            os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)

    def finish_dirs(self) -> None:
        for path in sorted(self.dir_modes, reverse=True):
            if os.path.isdir(path) and not os.path.islink(path):
                self._finish(path, self.dir_modes[path])
        self.dir_modes.clear()


def open_tar(fileobj: IO[bytes], what: str) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=fileobj, mode="r:*")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise InvalidImage(f"{what} is not a tar archive: {e}") from None


def tar_members(tar: tarfile.TarFile, what: str) -> list[tarfile.TarInfo]:
    try:
        return tar.getmembers()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise InvalidImage(f"{what}: damaged tar archive: {e}") from None


def diff_id(f: IO[bytes]) -> str:
    """``sha256:<hex>`` of a layer's *uncompressed* tar (what ``rootfs.diff_ids`` lists),
    gzip-compressed layers (OCI archives) inflated on the fly."""
    import zlib

    h = hashlib.sha256()
    head = f.read(1 << 20)
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if head[:2] == b"\x1f\x8b" else None
    block = head
    try:
        while block:
            h.update(inflate.decompress(block) if inflate is not None else block)
            block = f.read(1 << 20)
        if inflate is not None:
            h.update(inflate.flush())
    except zlib.error as e:
        raise InvalidImage(f"damaged compressed layer: {e}") from None
    return "sha256:" + h.hexdigest()


def verify_layers(image_config: dict[str, Any], layers: list[str],
                   read_member: Callable[[str], IO[bytes]]) -> None:
    """Every layer must be the one the config names: its diff id is what the image id (the
    config's digest) vouches for. Without this check, two archives with the same config and
    different layers would load as one image, whichever came first winning (moby's
    ``tarexport`` checks the same, with these texts)."""
    rootfs = image_config.get("rootfs") if isinstance(image_config, dict) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        diff_ids = []
    if len(diff_ids) != len(layers):
        raise InvalidImage(f"invalid manifest, layers length mismatch: expected "
                           f"{len(diff_ids)}, got {len(layers)}")
    for i, (layer, expected) in enumerate(zip(layers, diff_ids)):
        got = diff_id(read_member(layer))
        if got != expected:
            raise InvalidImage(f'invalid diffID for layer {i}: expected "{expected}", '
                               f'got "{got}"')
