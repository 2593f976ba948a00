"""Bind-mounted network namespaces, as Podman (``ip netns``) makes them.

A container's namespace is a file under ``<data-root>/run/netns`` with the namespace
bind-mounted onto it: runc joins it by path (``linux.namespaces``), netavark configures it by
path, and it lives on without any process in it, so neither a daemon restart nor a
container's restart changes the container's address.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess

MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def netns_dir(data_root: str) -> str:
    return os.path.join(data_root, "run", "netns")


def netns_path(data_root: str, cid: str) -> str:
    return os.path.join(netns_dir(data_root), cid)


def is_mounted(path: str) -> bool:
    """True when ``path`` is a mount point (listed in /proc/self/mountinfo)."""
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == real for line in f)
    except OSError:
        return False


def create(path: str) -> None:
    """A new, empty network namespace bind-mounted on ``path`` (util-linux ``unshare``
    creates and mounts it in one step)."""
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    delete(path)
    with open(path, "w"):
        pass
    r = subprocess.run(["unshare", f"--net={path}", "true"], capture_output=True)
    if r.returncode != 0:
        delete(path)
        raise OSError(f"creating the network namespace {path} failed: "
                      f"{r.stderr.decode(errors='replace').strip()}")


def delete(path: str) -> None:
    """Unmount (lazily: a process may still hold it) and delete; nothing if absent."""
    for _ in range(4):  # a path mounted twice needs two unmounts
        if _libc.umount2(os.fsencode(path), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                break
            raise OSError(err, f"unmounting {path}: {os.strerror(err)}")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
