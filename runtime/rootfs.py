"""A container's root filesystem: the image's files plus a per-container writable layer.

Owns ``<container-dir>/rootfs`` (and ``upper/``, ``work/`` when overlayfs is used) and the
rule every writer into an image or container tree must follow: paths are resolved *inside*
the root, as if chrooted (``resolve_in_root``), so that neither a hostile tarball nor a
symlink in a container can make logpipe write outside it.

It never deletes a container's writable layer: a stopped container may be restarted, and
removing the container directory is the daemon's job (after ``release``).
"""

from __future__ import annotations

import errno
import os
from typing import Callable

from logpipe.errors import LogpipeError

from runtime.command import run_command
from runtime.spec import ContainerSpec

_MAX_SYMLINKS = 40  # Linux's own limit (MAXSYMLINKS) on one path resolution
COPY_MARKER = ".logpipe-copied"  # in <dir>: the copy fallback finished (rootfs/ is complete)


class RootfsError(LogpipeError):
    """The container's root filesystem could not be set up."""


def resolve_in_root(root: str, path: str, follow_last: bool = False) -> str:
    """The host path of ``path`` inside ``root``, with symlinks resolved as if chrooted there.

    Absolute symlinks restart at ``root``, ``..`` stops at ``root``: the result is always
    ``root`` or below it (Docker's ``FollowSymlinkInScope`` does the same). The last
    component is followed only when ``follow_last`` (an extractor replaces it instead).
    """
    root = os.path.abspath(root)
    scoped = resolve_scoped(path, follow_last, lambda p: os.readlink(root + p))
    return root if scoped == "/" else root + scoped


def resolve_scoped(path: str, follow_last: bool, readlink: Callable[[str], str]) -> str:
    """``path`` as a clean absolute path of a tree whose links ``readlink(tree_path)`` reads
    (``OSError``: not a link, or absent: taken literally), each link followed inside the
    tree. The one walk behind ``resolve_in_root`` and a container's view with its mounts
    (``runtime.archive``), so both refuse the same escapes and loops."""
    todo, done, links = _parts(path), [], 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        if todo or follow_last:
            try:
                target = readlink("/" + "/".join(done + [part]))
            except OSError:
                done.append(part)
                continue
            links += 1
            if links > _MAX_SYMLINKS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
            if target.startswith("/"):
                done = []
            todo = _parts(target) + todo
            continue
        done.append(part)
    return "/" + "/".join(done)


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def bind_mountpoint(root: str, source: str, target: str) -> None:
    """Prepare ``-v source:target``: a missing host path becomes a directory (Docker creates
    it at start), and the mount point inside ``root`` is made of the source's kind — a
    directory, or an empty regular file for a single-file bind — resolved inside the root,
    so that a symlink in the image cannot place it on the host."""
    if not os.path.lexists(source):
        os.makedirs(source, exist_ok=True)
    is_dir = os.path.isdir(source)
    point = resolve_in_root(root, target, follow_last=True)
    if os.path.lexists(point):
        return  # what is there is the runtime's to check (a dir over a file fails as in Docker)
    parent = os.path.dirname(point) if not is_dir else point
    os.makedirs(parent, 0o755, exist_ok=True)
    if not is_dir:
        os.close(os.open(point, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644))


# -- overlayfs, or a copy ---------------------------------------------------------------


def _paths(spec: ContainerSpec) -> tuple[str, str, str]:
    return (os.path.join(spec.dir, "rootfs"), os.path.join(spec.dir, "upper"),
            os.path.join(spec.dir, "work"))


def _mount_overlay(lower: str, upper: str, work: str, target: str) -> str | None:
    """Mount overlayfs; ``None`` on success, else why it failed (the caller falls back)."""
    for p in (upper, work, target):
        os.makedirs(p, exist_ok=True)
    if any(c in p for p in (lower, upper, work) for c in ",:\\"):
        return "path contains a character overlayfs options cannot carry"
    # ``volatile`` (Linux 5.10+): the overlay never syncs. Without it, unmounting it at the
    # container's exit syncs the whole filesystem under it — the data root, logs included —
    # and the exit is recorded that much later (0.5 s after a 160 MB burst). The writable
    # layer is scratch space a crash may leave inconsistent, as with Docker's; logs are not
    # in it. A volatile mount leaves work/work/incompat/volatile behind, which a new mount refuses
    # until it is removed.
    _remove_empty_dirs(os.path.join(work, "work", "incompat", "volatile"),
                       os.path.join(work, "work", "incompat"))
    base = f"lowerdir={lower},upperdir={upper},workdir={work}"
    why = ""
    for opts in (base + ",volatile", base):
        try:
            r = run_command(["mount", "-t", "overlay", "overlay", "-o", opts, target])
        except OSError as e:
            return str(e)
        if r.returncode == 0:
            return None
        why = r.stderr.decode(errors="replace").strip()
    return why


def _remove_empty_dirs(*paths: str) -> None:
    """rmdir each of ``paths`` that exists (without ``shutil``: the shim runs this, and
    ``shutil`` would cost every shim ~2 MiB of imports)."""
    for path in paths:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError:
            import shutil

            shutil.rmtree(path, ignore_errors=True)


def _copy(lower: str, spec: ContainerSpec) -> str:
    """``cp -a`` the image into ``<dir>/rootfs`` once; later starts reuse it."""
    import shutil

    target = os.path.join(spec.dir, "rootfs")
    marker = os.path.join(spec.dir, COPY_MARKER)
    if os.path.exists(marker):
        return target
    tmp = os.path.join(spec.dir, "rootfs.copying")
    shutil.rmtree(tmp, ignore_errors=True)
    r = run_command(["cp", "-a", "--reflink=auto", lower, tmp])
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RootfsError(f"copying image rootfs {lower}: "
                          + r.stderr.decode(errors="replace").strip())
    if os.path.isdir(target):  # an empty mount point left by a failed overlay attempt
        os.rmdir(target)
    os.rename(tmp, target)
    with open(marker, "w"):
        pass
    return target


def prepare(spec: ContainerSpec) -> str:
    """Make the container's root and return its path (idempotent: restarts reuse it).

    overlayfs (lower = the image's rootfs, upper/work in the container directory) when the
    kernel and our privileges allow it, else a full copy, made once and kept as the
    container's writable layer.
    """
    if not spec.rootfs or not os.path.isdir(spec.rootfs):
        raise RootfsError(f"image rootfs {spec.rootfs!r} of {spec.image} does not exist")
    target, upper, work = _paths(spec)
    if os.path.exists(os.path.join(spec.dir, COPY_MARKER)):
        return target
    if os.path.ismount(target):
        return target
    if os.geteuid() == 0:
        why = _mount_overlay(os.path.abspath(spec.rootfs), upper, work, target)
        if why is None:
            return target
        # A half-made overlay layout (empty upper) must not linger next to the copy.
        import shutil

        for p in (upper, work):
            shutil.rmtree(p, ignore_errors=True)
    return _copy(os.path.abspath(spec.rootfs), spec)


def release(spec: ContainerSpec) -> None:
    """Unmount the overlay, if mounted; the writable layer stays for a restart."""
    target = _paths(spec)[0]
    if not os.path.ismount(target):
        return
    r = run_command(["umount", target])
    if r.returncode != 0:
        # Busy (a process still inside?): detach it lazily rather than leak the mount.
        r = run_command(["umount", "-l", target])
        if r.returncode != 0:
            raise RootfsError(f"unmounting {target}: "
                              + r.stderr.decode(errors="replace").strip())


def writable_size(spec: ContainerSpec) -> int:
    """Bytes in the container's writable layer (Docker's ``SizeRw``): its overlay's upper
    directory, or what a full copy holds beyond the image (blocking I/O)."""
    target, upper, _work = _paths(spec)
    if os.path.isdir(upper):
        return tree_size(upper)
    if os.path.exists(os.path.join(spec.dir, COPY_MARKER)):
        return max(0, tree_size(target) - tree_size(spec.rootfs))
    return 0


def tree_size(path: str) -> int:
    """Bytes of the regular files and symlinks under ``path``, not following links, not
    crossing into mounts (``/etc/hosts`` binds, volumes) — Docker's ``directory.Size``."""
    total = 0
    dev = None
    for root, dirs, files in os.walk(path):
        try:
            st = os.lstat(root)
        except OSError:
            continue
        if dev is None:
            dev = st.st_dev
        elif st.st_dev != dev:
            dirs[:] = []
            continue
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
