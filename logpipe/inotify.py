"""A minimal inotify binding (ctypes over libc), used by followers to wait without polling.

Only what following needs: watch one directory, block until something happens or a timeout
passes, and report the names that were created or renamed into it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

_EVENT = struct.Struct("iIII")
_libc = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


class Inotify:
    """An inotify instance watching one directory. ``fd`` is -1 where inotify is missing,
    and ``wait`` then degrades to a short sleep, so following still works (by polling)."""

    MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE

    def __init__(self, directory: str) -> None:
        self.fd = -1
        try:
            lib = _lib()
            fd = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd >= 0 and lib.inotify_add_watch(fd, os.fsencode(directory), self.MASK) >= 0:
                self.fd = fd
            elif fd >= 0:
                os.close(fd)
        except (OSError, AttributeError):
            self.fd = -1

    def wait(self, timeout: float) -> bool:
        """Block until an event arrives or ``timeout`` seconds pass; True if events arrived."""
        if self.fd < 0:
            select.select([], [], [], min(timeout, 0.05))
            return True
        ready, _, _ = select.select([self.fd], [], [], timeout)
        return bool(ready)

    def names(self) -> set[str]:
        """Drain pending events; returns the names that were created or moved in."""
        found: set[str] = set()
        if self.fd < 0:
            return found
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return found
            pos = 0
            while pos + _EVENT.size <= len(buf):
                _, mask, _, length = _EVENT.unpack_from(buf, pos)
                pos += _EVENT.size
                if mask & (IN_CREATE | IN_MOVED_TO) and length:
                    found.add(buf[pos:pos + length].rstrip(b"\0").decode(errors="surrogateescape"))
                pos += length

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
