"""Size-based rotation of a log file, shared by json-file, local and the spool.

Docker's rules are kept: the size check happens before each record is written, so a file
exceeds ``max-size`` by at most one record; rotation renames ``x`` → ``x.1`` → ``x.2`` …;
with ``compress`` the rotated file is gzipped off the write path into ``x.1.gz`` whose FEXTRA
holds ``{"lastTime": …}``.

What Docker gets wrong and logpipe does not:

* Every file carries its generation number in the extended attribute ``user.logpipe.seq``,
  and a new current file only appears (by an atomic rename) once that attribute is set. A
  follower therefore always knows which file comes next, however fast files rotate, and can
  hold descriptors of files that are later renamed, compressed or deleted (see follow.py).
* The writer holds an exclusive ``flock`` on ``x.lock`` for as long as the log is open, so
  readers can tell "no new data yet" from "the writer is gone for good".
* A generation that a live follower still needs is renamed to a hidden ``.x.keep.<seq>``
  instead of being deleted (see fileset.py), up to twice the log's budget (at least
  32 MiB): a follower that stops reading cannot fill the disk, and one that falls further
  behind is told exactly how many records it missed (every file is stamped with the
  records and bytes written before it), never silently.
* With ``max-file=1`` the old file is removed instead of leaving a stale, never-read ``x.1``.
"""

from __future__ import annotations

import fcntl
import os
import time
import zlib
from typing import Callable

from logpipe.errors import LogWriterBusy
from logpipe.fileset import (copy_stamps, discard_generation, has_followers, keep_budget,
                             lock_path, read_before, read_seq, rotated_name, sweep_keeps,
                             write_before, write_seq)
from logpipe.reading import RecordFormat, count_records
from logpipe.timespec import format_rfc3339nano

FILE_MODE = 0o640
#: How long a writer retries a lock held by someone else before calling it busy (s).
LOCK_PATIENCE = 0.25

Boundary = Callable[[bytes, int], int]


def gzip_with_last_time(src: str, dst: str, last_ts: int | None, level: int = 1) -> None:
    """Write ``src`` gzipped to ``dst`` with Docker's FEXTRA ``{"lastTime": …}``, mtime 0."""
    extra = b'{"lastTime":"%s"}' % format_rfc3339nano(last_ts or 0).encode()
    header = b"\x1f\x8b\x08\x04" + b"\x00\x00\x00\x00" + b"\x00\xff"
    header += len(extra).to_bytes(2, "little") + extra
    comp = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    tmp = dst + ".tmp"
    try:
        _gzip_to(src, tmp, header, comp)
    except OSError:  # a full disk: the rotated file stays as it is, uncompressed
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return
    os.rename(tmp, dst)
    os.unlink(src)


def _gzip_to(src: str, tmp: str, header: bytes, comp) -> None:
    crc, size = 0, 0
    with open(src, "rb") as fin, open(create_new(tmp), "wb") as fout:
        os.fchmod(fout.fileno(), FILE_MODE)
        fout.write(header)
        while block := fin.read(1 << 20):
            crc = zlib.crc32(block, crc)
            size += len(block)
            fout.write(comp.compress(block))
        fout.write(comp.flush())
        fout.write(crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little"))
        copy_stamps(fin.fileno(), fout.fileno())


def create_new(path: str, flags: int = os.O_WRONLY) -> int:
    """Create ``path`` as a new file (mode ``FILE_MODE``) and return its descriptor.

    ``O_EXCL`` (which implies not following a symlink) means a name someone planted in the
    log directory is never written through; a leftover of ours (a crash between create and
    rename) is unlinked — the name, never what a symlink points to — and the create retried.
    """
    flags |= os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, FILE_MODE)
    except FileExistsError:
        os.unlink(path)
        return os.open(path, flags, FILE_MODE)


class RotatingFile:
    """An append-only log file rotated by size. One writer per path, enforced by a lock."""

    def __init__(self, path: str, max_size: int = -1, max_file: int = 1, compress: bool = False,
                 fmt: RecordFormat | Callable[[], RecordFormat] | None = None,
                 boundary: Boundary | None = None) -> None:
        self.path, self.max_size, self.max_file = path, max_size, max(1, max_file)
        #: The format, or a function that makes it: then it is made by the first rotation that
        #: needs it (a follower to count records for, ``compress``), so that a writer whose
        #: decoder lives in a reader module does not import it just to write.
        self.compress, self._fmt = compress, fmt
        self.boundary = boundary or (lambda data, i: len(data))
        self._lock_fd = self._take_lock()
        self._compressor = None  # a threading.Thread while a rotated file is compressed
        self._torn = False  # a failed write could not be truncated away yet
        self._next_before: tuple[int, int, int] | None = None  # the stamp of a file to create
        #: Bytes appended by this writer, over all generations: how a driver tells, after a
        #: failed write, how much of its batch was stored.
        self.appended = 0
        try:
            # Docker appends to the existing file when a container starts again.
            # O_NOFOLLOW: a symlink planted where the log should be is refused (ELOOP).
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            self._fd = self._create_current(1)
        self.seq = read_seq(self._fd)
        if self.seq is None:
            self.seq = 1
            write_seq(self._fd, self.seq)
        # Counts start here for files written before they were stamped.
        self.before = read_before(self._fd) or (self.seq, 0, 0)
        self.size = os.fstat(self._fd).st_size

    def _take_lock(self) -> int:
        """The writer's lock. ``writer_alive`` probes it by taking a shared lock for a few
        microseconds (a reader waiting for a container to start probes every few ms), so
        a refusal is retried for a moment: only a lock still held after that is a writer."""
        fd = os.open(lock_path(self.path), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     FILE_MODE)
        deadline = time.monotonic() + LOCK_PATIENCE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LogWriterBusy(
                        f"log file {self.path} is already being written by another process"
                    ) from None
                time.sleep(0.001)

    def room(self) -> int:
        """Bytes that may still be written before the next write rotates."""
        if self.max_size < 0:
            return 1 << 62
        return max(0, self.max_size - self.size)

    def write(self, data: bytes) -> None:
        """Append whole records, rotating between records exactly where Docker would.

        A failed write (disk full, I/O error) raises, leaving the file at its last whole
        record: what a short write appended is truncated away, so readers never meet half a
        record and the next write starts cleanly. Whole records written before the failure
        stay (a follower or the shipper may already have read them)."""
        if self._fd < 0:
            # a rotation failed to create it: its count stamp still holds
            self._fd = self._create_current(self.seq, self._next_before)
            self.size = 0
        if self.max_size < 0:
            self._append(data)
            return
        pos, end = 0, len(data)
        while pos < end:
            if self.size >= self.max_size:
                self._rotate()
            room = self.max_size - self.size
            if end - pos <= room:
                cut = end
            else:
                cut = min(end, max(pos + 1, self.boundary(data, pos + room - 1)))
                if cut <= pos:
                    cut = end
            self._append(data[pos:cut] if pos or cut != end else data)
            pos = cut

    def write_unrotated(self, data: bytes) -> None:
        """Append to the current file even past ``max_size``: for a writer that may neither
        wait nor delete the oldest generation (a spool whose container has exited)."""
        self._append(data)

    def _append(self, data: bytes) -> None:
        if self._torn:  # never append after half a record: raises if it is still there
            os.ftruncate(self._fd, self.size)
            self._torn = False
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError:
            if len(view) != len(data):
                self._truncate(self.size)
            raise
        self.size += len(data)
        self.appended += len(data)

    def _truncate(self, size: int) -> None:
        """Cut the current file to ``size`` (no space needed); if even that fails (EIO), the
        next append tries again, and fails, before writing."""
        try:
            os.ftruncate(self._fd, size)
        except OSError:
            self._torn = True
        else:
            self._torn = False
            self.size = size

    def _rotate(self) -> None:
        self.wait_compression()
        before = self._before_next()
        os.close(self._fd)
        self._fd = -1  # until the next file exists: a failed creation is retried by ``write``
        if self.max_file == 1:
            discard_generation(self.path, self.path)
        else:
            self._shift()
        sweep_keeps(self.path, keep_budget(self.max_size, self.max_file))
        self.seq += 1
        self.size = 0
        self._next_before = before
        self._fd = self._create_current(self.seq, before)

    def _before_next(self) -> tuple[int, int, int]:
        """The next generation's count stamp: this one's plus its content, counted as a
        reader counts it (one pass over a file still in the page cache), so that a follower
        that misses files can say exactly how much it missed. Only a follower can miss
        anything, so without one nothing is counted and the next file starts a new count."""
        if self._fmt is None or not has_followers(self.path):
            return self.seq + 1, 0, 0
        with open(self.path, "rb") as f:
            records = count_records(self._format(), f, self.size)
        anchor, before, size = self.before
        return anchor, before + records, size + self.size

    def _shift(self) -> None:
        """``x.{n-2}`` → ``x.{n-1}`` … ``x`` → ``x.1``; the oldest generation is deleted."""
        last = self.max_file - 1
        for gz in (False, True):
            name = rotated_name(self.path, last, gz)
            if os.path.exists(name):
                discard_generation(name, self.path)
        for n in range(last - 1, 0, -1):
            for gz in (False, True):
                try:
                    os.rename(rotated_name(self.path, n, gz), rotated_name(self.path, n + 1, gz))
                except FileNotFoundError:
                    pass
        first = rotated_name(self.path, 1)
        os.rename(self.path, first)
        if self.compress:
            last_ts = self._last_ts(first)
            import threading  # only with compress: an idle shim need not import it

            self._compressor = threading.Thread(
                target=gzip_with_last_time, args=(first, first + ".gz", last_ts),
                name="logpipe-compress", daemon=True)
            self._compressor.start()

    def _last_ts(self, path: str) -> int | None:
        fmt = self._format()
        if fmt is None:
            return None
        with open(path, "rb") as f:
            return fmt.last_ts(f, os.fstat(f.fileno()).st_size)

    def _format(self) -> RecordFormat | None:
        """The format, made now if it was given as a function (see ``__init__``)."""
        if callable(self._fmt):
            self._fmt = self._fmt()
        return self._fmt

    def _create_current(self, seq: int, before: tuple[int, int, int] | None = None) -> int:
        """Create the next file under a temporary name, stamp it, then rename it into place,
        so that the current name never shows a file without its generation number."""
        directory, base = os.path.split(self.path)
        tmp = os.path.join(directory, f".{base}.new")
        fd = create_new(tmp, os.O_WRONLY | os.O_APPEND)
        try:
            os.fchmod(fd, FILE_MODE)
            write_seq(fd, seq)
            self.before = before or (seq, 0, 0)
            write_before(fd, self.before)
            os.rename(tmp, self.path)
        except OSError:
            os.close(fd)
            raise
        return fd

    def wait_compression(self) -> None:
        """Docker's rule: a rotation waits for the previous file's compression."""
        if self._compressor is not None:
            self._compressor.join()
            self._compressor = None

    def close(self) -> None:
        """Close the file and release the writer lock: followers then end."""
        if self._lock_fd < 0:
            return
        self.wait_compression()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        sweep_keeps(self.path, keep_budget(self.max_size, self.max_file))
        os.close(self._lock_fd)
        self._lock_fd = -1
