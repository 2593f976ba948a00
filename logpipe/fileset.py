"""The on-disk conventions of a rotated log set, shared by its writer and its readers.

* Names: ``x`` is current, ``x.1`` … ``x.N`` (or ``x.N.gz``) are older, ``x.N`` oldest.
* Every file carries its generation number in the xattr ``user.logpipe.seq``, so a reader
  always knows which file follows the one it holds, however often files are renamed.
* The writer holds an exclusive ``flock`` on ``x.lock`` while the log is open; a reader that
  can take a shared lock knows the writer is gone for good and stops following.
"""

from __future__ import annotations

import fcntl
import os
import re

SEQ_XATTR = "user.logpipe.seq"

_ROTATED_RE = re.compile(r"\.(\d+)(\.gz)?")


def rotated_name(path: str, n: int, gz: bool = False) -> str:
    return f"{path}.{n}.gz" if gz else f"{path}.{n}"


def rotated_files(path: str) -> list[str]:
    """The rotated set of ``path``, oldest first, current last (``x.3.gz … x.1, x``)."""
    directory, base = os.path.split(path)
    found: list[tuple[int, str]] = []
    try:
        names = os.listdir(directory or ".")
    except FileNotFoundError:
        return []
    for name in names:
        if name.startswith(base + "."):
            m = _ROTATED_RE.fullmatch(name[len(base):])
            if m:
                found.append((int(m.group(1)), os.path.join(directory, name)))
    found.sort(reverse=True)
    files = [p for _, p in found]
    if os.path.exists(path):
        files.append(path)
    return files


def read_seq(fd_or_path: int | str) -> int | None:
    """Generation number of a log file, or None (no stamp, or no xattr support)."""
    try:
        return int(os.getxattr(fd_or_path, SEQ_XATTR))
    except (OSError, ValueError):
        return None


def write_seq(fd: int, seq: int) -> None:
    try:
        os.setxattr(fd, SEQ_XATTR, str(seq).encode())
    except OSError:
        pass  # no xattr support here: followers fall back to comparing inodes


def lock_path(path: str) -> str:
    """The lock file a writer holds while the log at ``path`` is open."""
    return path + ".lock"


def writer_alive(path: str) -> bool:
    """Whether some process holds the writer lock of ``path`` right now."""
    try:
        fd = os.open(lock_path(path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
