"""COPY and ADD's files: sources found in the context (or a stage, or an image) with Docker's
path rules and Go's ``filepath.Match`` wildcards, the content checksum the cache compares,
and the staging tree that becomes the step's layer (``--chown`` applied, ADD's local
archives unpacked). Every path is resolved inside its root (``resolve_in_root``): a symlink
in the context or an image cannot make a step read or write outside it."""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tarfile

from logpipe.errors import LogpipeError

from runtime.images import Image
from runtime.layer_tar import LayerExtractor
from runtime.rootfs import resolve_in_root


class CopyError(LogpipeError):
    """COPY or ADD cannot be done as written (Docker's text)."""


def owner(image: Image | None, spec: str) -> tuple[int, int]:
    """``--chown=user[:group]``: numbers, or names from the image's passwd and group."""
    user, _, group = spec.partition(":")

    def lookup(name: str, table: str, field: int) -> int:
        if name.isdigit():
            return int(name)
        try:
            with open(resolve_in_root(image.rootfs, f"/etc/{table}", True)) as f:
                for line in f:
                    parts = line.rstrip("\n").split(":")
                    if parts[0] == name and len(parts) > field:
                        return int(parts[field])
        except (OSError, AttributeError, ValueError):
            pass
        raise CopyError(f"unable to convert uid/gid chown string to host mapping: can't "
                         f"find uid for user {name}: no such user: {name}" if table == "passwd"
                         else f"unable to find group {name}")

    uid = lookup(user, "passwd", 2)
    gid = lookup(group, "group", 2) if group else uid if user.isdigit() else lookup(
        user, "passwd", 3)
    return uid, gid


def expand_sources(root: str, sources: list[str], add: bool, from_context: bool) -> list[str]:
    """The host paths COPY copies: wildcards matched as Go's ``filepath.Match``, every path
    kept inside ``root``."""
    import fnmatch

    out: list[str] = []
    for src in sources:
        if add and (src.startswith("http://") or src.startswith("https://")):
            raise CopyError("ADD from a URL is not supported by logpipe: download the file "
                             "into the build context and COPY it")
        norm = posixpath.normpath("/" + src).lstrip("/")
        if from_context and posixpath.normpath(src).startswith(".."):
            raise CopyError(f"Forbidden path outside the build context: {src} ()")
        if any(ch in norm for ch in "*?["):
            found = []
            for dirpath, dirs, files in os.walk(root):
                for name in sorted(dirs + files):
                    rel = os.path.relpath(os.path.join(dirpath, name), root)
                    if fnmatch.fnmatchcase(rel, norm) and rel.count("/") == norm.count("/"):
                        found.append(os.path.join(root, rel))
            if not found:
                raise CopyError("COPY failed: no source files were specified")
            out.extend(sorted(found))
            continue
        path = resolve_in_root(root, norm, follow_last=False) if norm else root
        if not os.path.lexists(path):
            raise CopyError(f"COPY failed: file not found in build context or excluded by "
                             f".dockerignore: stat {src}: file does not exist")
        out.append(path)
    return out


def checksum(root: str, files: list[str]) -> str:
    """What the cache compares for COPY/ADD: content and metadata of every file copied
    (names relative to the source, modes, sizes, link targets; not mtimes, as Docker)."""
    h = hashlib.sha256()
    for top in files:
        walk = [(top, [], [])] if not os.path.isdir(top) or os.path.islink(top) else None
        entries = []
        if walk is None:
            for dirpath, dirs, names in os.walk(top):
                dirs.sort()
                for name in sorted(dirs + names):
                    entries.append(os.path.join(dirpath, name))
        else:
            entries.append(top)
        for path in entries:
            st = os.lstat(path)
            rel = os.path.relpath(path, top if walk is None else os.path.dirname(top))
            h.update(f"{rel}\0{st.st_mode:o}\0{st.st_size}\0".encode())
            if os.path.islink(path):
                h.update(os.readlink(path).encode())
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
    return h.hexdigest()


def make_dirs(staging: str, image: Image | None, path: str, owner: tuple[int, int] | None
               ) -> bool:
    """Create ``path`` in the staging tree: directories that exist in the image keep their
    metadata, new ones are 0755 (owned by ``owner``). True if the image lacked one."""
    made = False
    cur = "/"
    for part in [p for p in path.split("/") if p]:
        cur = posixpath.join(cur, part)
        target = os.path.join(staging, cur.lstrip("/"))
        existing = resolve_in_root(image.rootfs, cur, follow_last=True) if image else None
        if existing and os.path.isdir(existing):
            if not os.path.isdir(target):
                os.mkdir(target)
                st = os.stat(existing)
                os.chown(target, st.st_uid, st.st_gid)
                os.chmod(target, st.st_mode & 0o7777)
                os.utime(target, (st.st_atime, st.st_mtime))
            continue
        if not os.path.isdir(target):
            os.mkdir(target, 0o755)
            os.chmod(target, 0o755)
            if owner:
                os.chown(target, *owner)
            made = True
    return made


def stage_copy(staging: str, image: Image | None, files: list[str], dest: str, add: bool,
                owner: tuple[int, int]) -> None:
    """Lay out in ``staging`` what COPY/ADD puts at ``dest`` (Docker's path rules)."""
    dest_is_dir = dest.endswith("/") or len(files) > 1
    if not dest_is_dir and image is not None:
        existing = resolve_in_root(image.rootfs, dest, follow_last=True)
        dest_is_dir = os.path.isdir(existing)
    for src in files:
        is_dir = os.path.isdir(src) and not os.path.islink(src)
        if is_dir:
            make_dirs(staging, image, dest, owner)
            _copy_tree(src, os.path.join(staging, dest.lstrip("/")), owner)
        elif add and _is_archive(src):
            make_dirs(staging, image, dest, owner)
            _extract_archive(src, os.path.join(staging, dest.lstrip("/")))
        else:
            target = posixpath.join(dest, os.path.basename(src)) if dest_is_dir else dest
            make_dirs(staging, image, posixpath.dirname(target), owner)
            _copy_one(src, os.path.join(staging, target.lstrip("/")), owner)


def _copy_one(src: str, dst: str, owner: tuple[int, int]) -> None:
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
    else:
        shutil.copy2(src, dst, follow_symlinks=False)
    os.lchown(dst, *owner)


def _copy_tree(src: str, dst: str, owner: tuple[int, int]) -> None:
    for dirpath, dirs, files in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        here = os.path.normpath(os.path.join(dst, rel))
        for name in dirs:
            full = os.path.join(dirpath, name)
            target = os.path.join(here, name)
            if os.path.islink(full):
                _copy_one(full, target, owner)
            else:
                os.makedirs(target, exist_ok=True)
                shutil.copystat(full, target)
                os.chown(target, *owner)
        for name in files:
            _copy_one(os.path.join(dirpath, name), os.path.join(here, name), owner)


def _is_archive(path: str) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _extract_archive(path: str, dest: str) -> None:
    """ADD of a local tar (any compression): unpacked at ``dest``, inside the layer."""
    os.makedirs(dest, exist_ok=True)
    with tarfile.open(path, "r:*") as tar:
        members = tar.getmembers()
        ex = LayerExtractor(dest)
        ex.extract(tar, members, lambda: None)
        ex.finish_dirs()
