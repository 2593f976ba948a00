"""A container's files as tar archives: ``cp`` out of and into a container
(``/containers/{id}/archive``), ``export``, and ``changes`` (``docker diff``).

Size: over 500 lines because paths, archives out, archives in and the overlay's changes are
one contract — every path a client names is resolved by ``ContainerFS.resolve`` and never by
anything else; split over modules, a writer could reach a host path without it.

A container's filesystem is seen through a ``ContainerFS``: a root directory on the host and
the container's mounts (target → host source). For a running container the root is
``/proc/<pid>/root``, the container's own view, mounts included (so the mount table is
empty); for a stopped one it is its root filesystem mounted for the operation
(``runtime.rootfs.prepare``) with its volumes and binds mapped to their host paths, as Docker
does (a path inside a mount is the mount's source). ``export`` sees the root alone: Docker
exports the container's layers without the volumes.

Every path is resolved as if chrooted in the container (symlinks restart at its root,
``..`` stops there, a mount's source replaces its target), the last component is opened
without following it, and what an archive brings in is checked to stay under the directory
it is extracted to: no path a client sends, and no symlink a container holds, reaches the
host's files.

Texts are Docker's (moby ``daemon/archive.go``, ``pkg/archive``). Nothing here knows the
store or HTTP; the caller holds the container while its filesystem is used.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import stat
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator, NamedTuple

from logpipe.errors import InvalidParameter, NotFound
from logpipe.timespec import format_rfc3339nano

from .rootfs import resolve_scoped

if TYPE_CHECKING:  # imported when an archive is made or read: not at the daemon's start
    import tarfile

#: Archive data is read and written in pieces of this size.
CHUNK = 1 << 16
BLOCK = 512  # tarfile.BLOCKSIZE
#: What a walk of a running container's whole tree does not descend into: kernel
#: filesystems, which are no files of the container (Docker's archive never sees them).
KERNEL_DIRS = ("/proc", "/sys", "/dev")
OVERLAY_OPAQUE = "trusted.overlay.opaque"
#: Go's ``os.FileMode`` type bits (what ``X-Docker-Container-Path-Stat`` carries).
GO_MODE_BITS = ((stat.S_IFDIR, 1 << 31), (stat.S_IFLNK, 1 << 27), (stat.S_IFBLK, 1 << 26),
                (stat.S_IFIFO, 1 << 25), (stat.S_IFSOCK, 1 << 24),
                (stat.S_IFCHR, (1 << 26) | (1 << 21)))
CHANGE_MODIFIED, CHANGE_ADDED, CHANGE_DELETED = 0, 1, 2


class FileNotFoundInContainer(NotFound):
    def __init__(self, path: str, container: str) -> None:
        super().__init__(f"Could not find the file {path} in container {container}")


class ArchiveError(InvalidParameter):
    """An archive or an extraction point Docker refuses (400)."""


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def abs_path(path: str) -> str:
    """Docker's ``PreserveTrailingDotOrSeparator(Join("/", path), path)``: the path made
    absolute and clean, keeping a trailing ``/`` or ``/.`` that says "the directory's
    content" to ``cp``."""
    clean = "/" + os.path.normpath("/" + path).lstrip("/")
    if path.endswith("/.") or path == ".":
        return clean.rstrip("/") + "/."
    if path.endswith("/") and clean != "/":
        return clean + "/"
    return clean


class ContainerFS(NamedTuple):
    """A container's filesystem as seen from the host."""

    root: str
    mounts: tuple[tuple[str, str, bool], ...] = ()  # (target, host source, read-only)
    live: bool = False  # ``root`` is the running container's own view

    def host_path(self, cpath: str) -> str:
        """The host path of the already resolved container path ``cpath``."""
        for target, source, _ in self.mounts:
            if cpath == target or cpath.startswith(target.rstrip("/") + "/"):
                return source + cpath[len(target):]
        return self.root.rstrip("/") + cpath if cpath != "/" else self.root

    def read_only(self, cpath: str) -> bool:
        return any(ro and (cpath == t or cpath.startswith(t.rstrip("/") + "/"))
                   for t, _, ro in self.mounts)

    def resolve(self, path: str, follow_last: bool) -> str:
        """``path`` resolved inside the container, symlinks followed in its scope (the last
        one only when ``follow_last``), through its mounts: a clean absolute container path."""
        return resolve_scoped(path, follow_last, lambda p: os.readlink(self.host_path(p)))


def fs_of(root: str, mounts: list[tuple[str, str, bool]], live: bool) -> ContainerFS:
    """A ``ContainerFS``; the mounts longest target first (the innermost one wins)."""
    return ContainerFS(root, tuple(sorted(mounts, key=lambda m: -len(m[0]))), live)


# -- stat ------------------------------------------------------------------------------------


def go_mode(mode: int) -> int:
    """A ``st_mode`` as Go's ``os.FileMode``."""
    out = mode & 0o777
    for kind, bit in GO_MODE_BITS:
        if stat.S_IFMT(mode) == kind:
            out |= bit
    if mode & stat.S_ISUID:
        out |= 1 << 23
    if mode & stat.S_ISGID:
        out |= 1 << 22
    if mode & stat.S_ISVTX:
        out |= 1 << 20
    return out


class Resolved(NamedTuple):
    apath: str  # the absolute path asked for (trailing "/" or "/." kept)
    cpath: str  # resolved in the container (the last component not followed)
    host: str
    st: os.stat_result


def lookup(fs: ContainerFS, path: str, container: str) -> Resolved:
    """Docker's ``ResolvePath`` + ``StatPath``: the directory part resolved, the last
    component not followed (a trailing ``/`` follows it, as ``lstat`` would)."""
    if "\0" in path:
        raise InvalidParameter(f"invalid path {path!r}: it contains a NUL byte")
    apath = abs_path(path)
    follow = apath.endswith("/") or apath.endswith("/.")
    try:
        cpath = fs.resolve(apath, follow_last=follow)
        host = fs.host_path(cpath)
        st = os.lstat(host)
    except FileNotFoundError:
        raise FileNotFoundInContainer(path, container) from None
    except NotADirectoryError:
        raise FileNotFoundInContainer(path, container) from None
    if follow and not stat.S_ISDIR(st.st_mode):
        raise FileNotFoundInContainer(path, container)  # "/file/" is ENOTDIR in Go
    return Resolved(apath, cpath, host, st)


def path_stat(fs: ContainerFS, r: Resolved) -> dict[str, Any]:
    """``types.ContainerPathStat`` of a resolved path."""
    link = ""
    if stat.S_ISLNK(r.st.st_mode):
        try:
            link = fs.resolve(r.cpath, follow_last=True)
        except OSError:
            link = ""
    name = os.path.basename(r.apath.rstrip("/")) if r.apath != "/" else "/"
    if r.apath.endswith("/."):
        name = "."
    return {"name": name, "size": r.st.st_size, "mode": go_mode(r.st.st_mode),
            "mtime": format_rfc3339nano(r.st.st_mtime_ns), "linkTarget": link}


def stat_header(doc: dict[str, Any]) -> str:
    """``X-Docker-Container-Path-Stat``: the stat as base64 of its JSON."""
    return base64.b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()


# -- archives out ----------------------------------------------------------------------------


def _tarinfo(name: str, st: os.stat_result, link: str = "") -> tarfile.TarInfo | None:
    """A tar header for a file of ``st`` (None for a socket: tar cannot hold one)."""
    import tarfile
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = st.st_mtime
    mode = st.st_mode
    if stat.S_ISREG(mode):
        ti.type, ti.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISDIR(mode):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        ti.type, ti.linkname = tarfile.SYMTYPE, link
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        ti.type = tarfile.FIFOTYPE
    else:
        return None
    return ti


def _header(ti: tarfile.TarInfo) -> bytes:
    import tarfile

    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _file_data(host: str, size: int) -> Iterator[bytes]:
    """Exactly ``size`` bytes of a regular file (zeros when it shrank meanwhile), padded to
    the tar block: the header already promised that size."""
    sent = 0
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        fd = -1
    try:
        while fd >= 0 and sent < size:
            data = os.read(fd, min(CHUNK, size - sent))
            if not data:
                break
            sent += len(data)
            yield data
    finally:
        if fd >= 0:
            os.close(fd)
    missing = size - sent
    while missing > 0:
        yield bytes(min(CHUNK, missing))
        missing -= min(CHUNK, missing)
    if size % BLOCK:
        yield bytes(BLOCK - size % BLOCK)


def _entries(fs: ContainerFS, cpath: str, name: str, st: os.stat_result,
             skip_kernel: bool) -> Iterator[tuple[str, str, os.stat_result]]:
    """(archive name, host path, stat) of ``cpath`` and, for a directory, everything under
    it, in lexical order (Go's ``filepath.Walk``); mounts are followed through ``fs``."""
    host = fs.host_path(cpath)
    yield name, host, st
    if not stat.S_ISDIR(st.st_mode):
        return
    if skip_kernel and cpath in KERNEL_DIRS:
        return
    try:
        children = sorted(os.listdir(host))
    except OSError:
        return
    for child in children:
        ccpath = cpath.rstrip("/") + "/" + child
        try:
            cst = os.lstat(fs.host_path(ccpath))
        except OSError:
            continue  # gone meanwhile
        yield from _entries(fs, ccpath, f"{name.rstrip('/')}/{child}", cst, skip_kernel)


def tar_stream(fs: ContainerFS, cpath: str, name: str, st: os.stat_result) -> Iterator[bytes]:
    """The tar of ``cpath`` (a file, or a directory and its content) with entries named
    from ``name``: built as it is read, one file at a time, in bounded memory."""
    seen: dict[tuple[int, int], str] = {}
    for entry, host, est in _entries(fs, cpath, name, st, fs.live):
        yield from _entry_blocks(entry, host, est, seen)
    yield bytes(2 * BLOCK)  # Go's archive/tar ends with two zero blocks


def archive_names(r: Resolved) -> tuple[str, str]:
    """Where Docker's archive of a path starts and what its entries are named from: a
    directory's content is rebased to the base name of the path asked for (``/etc/.`` → ``.``,
    so ``cp`` copies the content); a file (or a symlink, not followed) is one entry."""
    if r.apath.endswith("/."):
        return r.cpath, "."
    base = os.path.basename(r.apath.rstrip("/")) or "/"
    return r.cpath, base


def export_stream(fs: ContainerFS) -> Iterator[bytes]:
    """``docker export``: the container's root filesystem (no volumes), entries relative to
    its root as Docker names them (``bin/``, ``bin/busybox``, …)."""
    seen: dict[tuple[int, int], str] = {}
    for child in sorted(os.listdir(fs.root)):
        try:
            cst = os.lstat(os.path.join(fs.root, child))
        except OSError:
            continue
        for entry, host, est in _entries(fs, "/" + child, child, cst, False):
            yield from _entry_blocks(entry, host, est, seen)
    yield bytes(2 * BLOCK)


def _entry_blocks(entry: str, host: str, est: os.stat_result,
                  seen: dict[tuple[int, int], str]) -> Iterator[bytes]:
    """One archive entry: its header and, for a regular file, its data; a file linked
    again (same inode) becomes a hard link to its first name, as Go's tar writer does it."""
    import tarfile
    link = ""
    if stat.S_ISLNK(est.st_mode):
        try:
            link = os.readlink(host)
        except OSError:
            return
    is_dir = stat.S_ISDIR(est.st_mode) and not entry.endswith("/")
    ti = _tarinfo(entry + "/" if is_dir else entry, est, link)
    if ti is None:
        return
    if ti.type == tarfile.REGTYPE and est.st_nlink > 1:
        key = (est.st_dev, est.st_ino)
        if key in seen:
            ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, seen[key], 0
        else:
            seen[key] = ti.name
    yield _header(ti)
    if ti.type == tarfile.REGTYPE and ti.size:
        yield from _file_data(host, ti.size)


# -- archives in -----------------------------------------------------------------------------


def extraction_point(fs: ContainerFS, path: str, container: str) -> str:
    """Docker's checks of ``PUT …/archive?path=``: the path, its last symlink followed too
    (one may extract "into" a link to a directory), must be an existing directory."""
    if "\0" in path:
        raise InvalidParameter(f"invalid path {path!r}: it contains a NUL byte")
    cpath = fs.resolve(abs_path(path), follow_last=True)
    try:
        st = os.lstat(fs.host_path(cpath))
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundInContainer(path, container) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ArchiveError("extraction point is not a directory")
    return cpath


def _member_path(dest: str, name: str) -> str:
    """Where an archive entry goes, as a container path; Docker's breakout error for one
    that would land outside the extraction point (``../x``, ``/../x``)."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise ArchiveError(f"{name!r} is outside of {dest!r}")
            parts.pop()
            continue
        parts.append(part)
    return dest.rstrip("/") + "/" + "/".join(parts) if parts else dest


class _Extractor:
    """Entries of a tar stream written under ``dest`` one by one, each parent resolved in
    the container (a symlink the container holds cannot lead out of it) and the entry
    itself created without following what is already there."""

    def __init__(self, fs: ContainerFS, dest: str, no_overwrite_dir_non_dir: bool,
                 owner: tuple[int, int] | None) -> None:
        self.fs, self.dest = fs, dest
        self.no_overwrite = no_overwrite_dir_non_dir
        self.owner = owner
        self.dir_times: list[tuple[str, float]] = []

    def target(self, cpath: str) -> str:
        parent = self.fs.resolve(os.path.dirname(cpath), follow_last=True)
        if not os.path.isdir(self.fs.host_path(parent)):
            self.make_parents(os.path.dirname(cpath))
            parent = self.fs.resolve(os.path.dirname(cpath), follow_last=True)
        if self.fs.read_only(parent) and not self.fs.live:
            raise ArchiveError("mounted volume is marked read-only")
        return self.fs.host_path(parent.rstrip("/") + "/" + os.path.basename(cpath))

    def make_parents(self, cdir: str) -> None:
        """An entry whose directories the archive does not hold: they are made (0755),
        each resolved inside the container, as Docker's ``Unpack`` does."""
        done = self.dest
        for part in _parts(cdir[len(self.dest):]):
            done = self.fs.resolve(done.rstrip("/") + "/" + part, follow_last=True)
            host = self.fs.host_path(done)
            if not os.path.isdir(host):
                os.mkdir(host, 0o755)

    def clear(self, host: str, ti: tarfile.TarInfo, cpath: str) -> None:
        """Make room for the entry: Docker's ``NoOverwriteDirNonDir`` refusals, else what
        is there goes (a directory stays for a directory)."""
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if ti.isdir():
                return
            if self.no_overwrite:
                raise ArchiveError(f'cannot overwrite directory "{cpath}" with non-directory '
                                   f'"{ti.name}"')
            import shutil

            shutil.rmtree(host)
            return
        if ti.isdir() and self.no_overwrite:
            raise ArchiveError(f'cannot overwrite non-directory "{cpath}" with directory '
                               f'"{ti.name}"')
        os.unlink(host)

    def add(self, tar: tarfile.TarFile, ti: tarfile.TarInfo) -> None:

        cpath = _member_path(self.dest, ti.name)
        if cpath == self.dest:
            return  # the extraction point itself ("./"): it exists
        host = self.target(cpath)
        self.clear(host, ti, cpath)
        if ti.isdir():
            if not os.path.isdir(host):
                os.mkdir(host, 0o700)
            self.dir_times.append((host, ti.mtime))
        elif ti.isreg():
            self._write(tar, ti, host)
        elif ti.issym():
            os.symlink(ti.linkname, host)
        elif ti.islnk():
            source = self.fs.host_path(self.fs.resolve(_member_path(self.dest, ti.linkname),
                                                       follow_last=False))
            os.link(source, host, follow_symlinks=False)
            return
        elif ti.ischr() or ti.isblk() or ti.isfifo():
            kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK if ti.isblk() else stat.S_IFIFO
            os.mknod(host, kind | 0o600, os.makedev(ti.devmajor, ti.devminor))
        else:
            return  # another kind (a GNU sparse or volume header): nothing to create
        uid, gid = self.owner if self.owner is not None else (ti.uid, ti.gid)
        os.lchown(host, uid, gid)
        if not ti.issym():
            os.chmod(host, ti.mode & 0o7777)
            if not ti.isdir():
                os.utime(host, (ti.mtime, ti.mtime), follow_symlinks=False)

    def _write(self, tar: tarfile.TarFile, ti: tarfile.TarInfo, host: str) -> None:
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            data = tar.extractfile(ti)
            while data is not None and (chunk := data.read(CHUNK)):
                os.write(fd, chunk)
        finally:
            os.close(fd)

    def finish(self) -> None:
        """Directory times last: writing into a directory changes its mtime."""
        for host, mtime in reversed(self.dir_times):
            os.utime(host, (mtime, mtime), follow_symlinks=False)


def extract(fs: ContainerFS, dest: str, stream: BinaryIO, no_overwrite_dir_non_dir: bool,
            owner: tuple[int, int] | None) -> None:
    """Unpack the tar ``stream`` (plain or compressed, as Docker takes it) under the
    container directory ``dest``; the entries keep their owners unless ``owner`` is given
    (``copyUIDGID``: the container's user)."""
    import tarfile
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")
    except tarfile.TarError as err:
        raise ArchiveError(f"Error processing tar file: {err}") from None
    x = _Extractor(fs, dest, no_overwrite_dir_non_dir, owner)
    try:
        for ti in tar:
            x.add(tar, ti)
    except tarfile.TarError as err:
        raise ArchiveError(f"Error processing tar file: {err}") from None
    except OSError as err:
        if err.errno == errno.EROFS:
            raise ArchiveError("container rootfs is marked read-only") from None
        raise
    finally:
        x.finish()


# -- changes -----------------------------------------------------------------------------------


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OVERLAY_OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def overlay_changes(upper: str, lower: str, excluded: set[str]) -> list[dict[str, Any]]:
    """``docker diff`` of an overlay: what the upper layer holds, against the image.

    A whiteout is a deletion, an opaque directory deletes what the image had under it, an
    entry the image has is a modification, any other an addition. The mount points the
    runtime made (``/etc/hosts``, a volume's target) are not the container's changes, and a
    directory the image has is listed only when something under it changed or its own
    mode or owner did (Docker's init layer hides those the same way)."""
    found: dict[str, int] = {}

    def walk(cdir: str) -> None:
        host_dir = upper + cdir
        for name in sorted(os.listdir(host_dir)):
            cpath = cdir.rstrip("/") + "/" + name
            if cpath in excluded:
                continue
            st = os.lstat(host_dir.rstrip("/") + "/" + name)
            below = lower + cpath
            if _is_whiteout(st):
                found[cpath] = CHANGE_DELETED
                continue
            try:
                lst = os.lstat(below)
            except OSError:
                lst = None
            if stat.S_ISDIR(st.st_mode):
                before = len(found)
                opaque = lst is not None and _opaque(upper + cpath)
                walk(cpath)
                if opaque:
                    _deleted_under(lower, upper, cpath, found)
                if lst is None:
                    found[cpath] = CHANGE_ADDED
                elif (len(found) > before or opaque or (lst.st_mode, lst.st_uid, lst.st_gid)
                      != (st.st_mode, st.st_uid, st.st_gid)):
                    found[cpath] = CHANGE_MODIFIED
                continue
            found[cpath] = CHANGE_ADDED if lst is None else CHANGE_MODIFIED

    if os.path.isdir(upper):
        walk("/")
    return [{"Path": p, "Kind": k} for p, k in sorted(found.items())]


def _deleted_under(lower: str, upper: str, cdir: str, found: dict[str, int]) -> None:
    """An opaque directory: what the image had in it and the upper layer does not."""
    try:
        names = os.listdir(lower + cdir)
    except OSError:
        return
    for name in names:
        cpath = cdir.rstrip("/") + "/" + name
        if not os.path.lexists(upper + cpath):
            found[cpath] = CHANGE_DELETED


def copy_changes(copy: str, lower: str, excluded: set[str]) -> list[dict[str, Any]]:
    """``docker diff`` of a container whose root is a full copy of the image (no overlay):
    the two trees compared by kind, size, mode, owner and modification time."""
    found: dict[str, int] = {}

    def key(st: os.stat_result) -> tuple:
        return (stat.S_IFMT(st.st_mode), st.st_mode, st.st_uid, st.st_gid,
                0 if stat.S_ISDIR(st.st_mode) else (st.st_size, st.st_mtime_ns))

    def walk(cdir: str) -> bool:
        changed = False
        names = set(os.listdir(copy + cdir))
        try:
            names_before = set(os.listdir(lower + cdir))
        except OSError:
            names_before = set()
        for name in sorted(names | names_before):
            cpath = cdir.rstrip("/") + "/" + name
            if cpath in excluded:
                continue
            if name not in names:
                found[cpath], changed = CHANGE_DELETED, True
                continue
            st = os.lstat(copy + cpath)
            lst = os.lstat(lower + cpath) if name in names_before else None
            inner = stat.S_ISDIR(st.st_mode) and walk(cpath)
            if lst is None:
                found[cpath] = CHANGE_ADDED
            elif inner or key(st) != key(lst):
                found[cpath] = CHANGE_MODIFIED
            else:
                continue
            changed = True
        return changed

    walk("/")
    return [{"Path": p, "Kind": k} for p, k in sorted(found.items())]
