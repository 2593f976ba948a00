"""The spool of a remote driver: written by the shim, shipped by the daemon from a checkpoint.

For a container whose driver sends to a receiver (syslog, fluentd, Loki …) the shim stores
every byte in a bounded rotated set in the ``local`` format (``local-logs/container.log``,
sized by Docker's dual-logging options ``cache-max-size``/``cache-max-file``/``cache-compress``)
and never talks to the network. The daemon's shipper reads that set from a **checkpoint**,
``ship/<driver>.pos``, which only moves once the receiver has confirmed a batch. A receiver
outage or a daemon restart therefore only delays delivery.

What happens when unshipped data fills the budget, and a rotation would delete a generation
the shipper has not finished, is decided here, by Docker's ``mode`` option:

* ``blocking`` (default): the writer waits until the shipper's checkpoint has moved past that
  generation. The shim stops reading the container's pipes meanwhile, so the container's
  writes block — only when the spool is full, never because the network is slow. Once the
  container has exited there is no writer left to hold back: what is still in its pipes
  (plus what a leftover process writes during the shim's exit grace) is appended past the
  budget instead of being waited for or dropped, so that a stopped or killed container's
  exit is recorded at once and nothing is lost.
* ``non-blocking``: the oldest unshipped generation is deleted and its unshipped records are
  counted as dropped, exactly: the shim takes an exclusive ``flock`` on the file before
  counting, and the shipper holds a shared one while it reads a generation. A generation the
  shipper is reading is unlinked but not counted (the shipper finishes it from its open
  descriptor); one it has not opened is counted from the checkpoint, marked as counted
  (``COUNTED_XATTR``) before the lock is released, and never shipped. The shipper skips a
  generation only on that evidence: it is marked, or a consistent look at the set's names
  (``SpoolTail._visible``) shows it gone.

This module owns the spool's file conventions, the checkpoint file, the writer's budget rule
and the reader the shipper uses. It must not send anything or import a driver's library.
"""

from __future__ import annotations

import fcntl
import os
import time
from typing import Callable, Iterator, Mapping, NamedTuple

from logpipe.checkpoint import checkpoint_path, read_checkpoint
from logpipe.driver import LogInfo
from logpipe.errors import LogOptError
from logpipe.fileset import read_seq, rotated_files, rotated_name, writer_alive
from logpipe.message import Chunk
from logpipe.options import parse_bool, parse_int
from logpipe.units import parse_human_size
from logpipe.reading import Warn

from .local.reader import decode_block, whole_blocks
from .local.writer import LocalConfig, LocalDriver

#: Docker's dual-logging cache defaults (docs: 20m, 5 files, compressed).
DEFAULT_CACHE_OPTS = {"cache-max-size": "20m", "cache-max-file": "5", "cache-compress": "true"}
#: How long a blocked writer sleeps between looks at the checkpoint when nothing wakes it.
BLOCKED_POLL = 0.05


def spool_config(opts: Mapping[str, str]) -> LocalConfig:
    """The spool's size budget from the ``cache-*`` options (validated at create, with the
    ``local`` driver's wording). Compression is lz4 per block, so it works with one file too."""
    def get(key: str, parse):
        value = opts.get(key, DEFAULT_CACHE_OPTS[key])
        try:
            return parse(value)
        except LogOptError as err:
            raise LogOptError(f"invalid value for {key}: {value}: {err}") from None

    max_size = get("cache-max-size", parse_human_size)
    max_file = get("cache-max-file", parse_int)
    compress = get("cache-compress", parse_bool)
    if max_size <= 0:
        raise LogOptError("cache-max-size must be a positive number")
    if max_file < 1:
        raise LogOptError("cache-max-file cannot be less than 1")
    return LocalConfig(max_size, max_file, compress)


# ---------------------------------------------------------------------------------------------
# The writer (in the shim)
# ---------------------------------------------------------------------------------------------

class SpoolWriter(LocalDriver):
    """The shim's storage driver for a container with a remote driver.

    ``idle(timeout)`` is how the shim goes on serving its control socket while a blocking
    spool waits for the shipper; it returns False once waiting has become pointless (the
    container has exited), and the block is then written past the budget. Drops
    (non-blocking mode) are counted in ``dropped_lines`` and ``dropped_bytes`` and reported
    through ``report``.
    """

    def __init__(self, info: LogInfo, driver: str,
                 idle: Callable[[float], bool] | None = None,
                 report: Callable[[str], None] | None = None) -> None:
        super().__init__(info, spool_config(info.config))
        self.blocking = info.config.get("mode", "blocking") != "non-blocking"
        self.idle = idle or _sleep
        self.report = report or (lambda text: None)
        self.path = self.log_path(info)
        self.checkpoint = checkpoint_path(info.log_dir, driver)
        os.makedirs(os.path.dirname(self.checkpoint), mode=0o700, exist_ok=True)
        self.dropped_lines = self.dropped_bytes = 0
        self.blocked_seconds = 0.0
        #: Set when the container is being removed: waiting for the shipper is pointless.
        self.abandon = False

    def _append_block(self, block: bytes) -> None:
        held = self._make_room() if self._file.size >= self._max_size else None
        if held is _OVERFLOW:
            self._file.write_unrotated(block)
            return
        try:
            self._file.write(block)
        finally:
            if held is not None:
                os.close(held)  # only after the rotation removed the file: see _drop

    def _make_room(self) -> int | None | object:
        """Before a rotation: make sure the generation it deletes has been shipped, or wait, or
        drop it. Returns a descriptor to close once the rotation is done (a held lock), or
        ``_OVERFLOW`` when the block is to be appended without rotating."""
        oldest = self._file.seq - (self._file.max_file - 1)
        if oldest < 1 or self._shipped_past(oldest):
            return None
        if self.blocking:
            started = time.monotonic()
            waiting = True
            while waiting and not self._shipped_past(oldest) and not self.abandon:
                waiting = self.idle(BLOCKED_POLL) is not False
            self.blocked_seconds += time.monotonic() - started
            if not self.abandon:
                return None if waiting else _OVERFLOW
        return self._drop(oldest)

    def _shipped_past(self, seq: int) -> bool:
        """Whether the shipper is done with generation ``seq``: past it, or at its end."""
        cp = read_checkpoint(self.checkpoint)
        if cp.seq != seq:
            return cp.seq > seq
        if cp.skip:
            return False
        if seq == self._file.seq:
            return cp.offset >= self._file.size
        try:
            return cp.offset >= os.stat(rotated_name(self.path, self._file.max_file - 1)).st_size
        except FileNotFoundError:
            return True

    def _drop(self, seq: int) -> int | None:
        """Count what the shipper will never ship of generation ``seq``, which the coming
        rotation deletes; the lock stays held until then, so the shipper cannot start it."""
        name = self.path if self._file.max_file == 1 else \
            rotated_name(self.path, self._file.max_file - 1)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # the shipper is reading it: it finishes from its descriptor
            return None
        cp = read_checkpoint(self.checkpoint)
        if read_seq(fd) != seq or cp.seq > seq:
            return fd
        start, skip = (cp.offset, cp.skip) if cp.seq == seq else (0, 0)
        lines, nbytes = count_records(fd, start, skip)
        mark_counted(fd)
        if lines:
            self.dropped_lines += lines
            self.dropped_bytes += nbytes
            text = (f"spool full (cache-max-size × cache-max-file) with mode=non-blocking: "
                    f"dropped {lines} unshipped records ({nbytes} bytes) of generation {seq}")
            self.report(text)
            record_event(os.path.dirname(self.checkpoint), text)
        return fd


#: Set (under the exclusive lock) on a generation whose unshipped records the writer counted as
#: dropped: the one fact a tail that locks it afterwards can trust. Whether the file is still
#: visible cannot tell: the writer also deletes, uncounted, a generation the tail holds.
COUNTED_XATTR = "user.logpipe.dropped"


def mark_counted(fd: int) -> None:
    try:
        os.setxattr(fd, COUNTED_XATTR, b"1")
    except OSError:
        pass  # no xattr support: neither has the generation stamp the tail needs


def counted(fd: int) -> bool:
    """Whether the writer counted what is left of this generation as dropped."""
    try:
        os.getxattr(fd, COUNTED_XATTR)
    except OSError:
        return False
    return True


#: ``_make_room``'s answer when the writer is gone: append past the budget, rotate nothing.
_OVERFLOW = object()


def _sleep(timeout: float) -> bool:
    """The default ``idle``: nothing else to serve, so wait for the shipper, always."""
    time.sleep(timeout)
    return True


def read_spool(info: LogInfo, config) -> Iterator[Chunk]:
    """The spool as ``logs`` reads a ``local`` log (also with ``cache-disabled``: for attach)."""
    from logpipe.reading import read_logs

    from .local.reader import LocalFormat

    return read_logs(LocalDriver.log_path(info), LocalFormat(), config)


def shipping_position(info: LogInfo, driver: str) -> tuple[int, int, int]:
    """Where the shipper's checkpoint stands (to tell progress from a standstill)."""
    cp = read_checkpoint(checkpoint_path(info.log_dir, driver))
    return cp.seq, cp.offset, cp.skip


def spool_drained(info: LogInfo, driver: str) -> bool:
    """Whether the shipper has delivered everything the spool holds now."""
    path = LocalDriver.log_path(info)
    current = read_seq(path)
    if current is None:
        return not os.path.exists(path)
    cp = read_checkpoint(checkpoint_path(info.log_dir, driver))
    if cp.seq != current:
        return cp.seq > current
    try:
        return cp.skip == 0 and cp.offset >= os.stat(path).st_size
    except FileNotFoundError:
        return True


EVENTS_FILE = "events.log"


def spool_backlog(path: str, cp) -> tuple[int, int]:
    """Records and bytes of the spool at ``path`` from the checkpoint ``cp`` on, from block
    headers only (no decoding): what ``LogShipping``'s backlog counts."""
    records = nbytes = 0
    for name in rotated_files(path):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            seq = read_seq(fd)
            if seq is not None and seq < cp.seq:
                continue
            start = cp.offset if seq == cp.seq else 0
            size = os.fstat(fd).st_size
            nbytes += max(0, size - start)
            for offset, header in whole_blocks(fd, start, size):
                records += header.records - (cp.skip if offset == start and seq == cp.seq else 0)
        finally:
            os.close(fd)
    return records, nbytes


def record_event(ship_dir: str, text: str) -> None:
    """Append one line to ``ship/events.log``, which ``inspect`` shows under
    ``LogShipping.Events`` (best effort: an event must never stop the writer)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        with open(os.path.join(ship_dir, EVENTS_FILE), "a") as f:
            f.write(f"{stamp} {text}\n")
    except OSError:
        pass


def recent_events(ship_dir: str, n: int = 20) -> list[str]:
    try:
        with open(os.path.join(ship_dir, EVENTS_FILE), "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 16384))
            return f.read().decode(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def count_records(fd: int, start: int, skip: int) -> tuple[int, int]:
    """Records and bytes of the spool file ``fd`` from block ``start``, less the first
    ``skip`` records there (already shipped)."""
    size = os.fstat(fd).st_size
    lines = nbytes = 0
    for offset, header in whole_blocks(fd, start, size):
        chunks = decode_block(fd, offset, header, lambda _t: None)
        lines += sum(c.count for c in chunks)
        nbytes += sum(len(c.data) for c in chunks)
        if offset == start and skip:
            shipped = _first_records(chunks, skip)
            lines -= skip
            nbytes -= sum(len(m.line) + m.newline for m in shipped)
    return lines, nbytes


def _first_records(chunks: list[Chunk], n: int) -> list:
    out = []
    for chunk in chunks:
        for msg in chunk.messages():
            if len(out) == n:
                return out
            out.append(msg)
    return out


# ---------------------------------------------------------------------------------------------
# The reader (in the daemon's shipper)
# ---------------------------------------------------------------------------------------------

class Block(NamedTuple):
    """One block of the spool as the shipper sees it: where it is and its records."""

    seq: int
    offset: int
    end: int
    chunks: list[Chunk]


class SpoolTail:
    """Reads the spool from a checkpoint position, generation by generation, block by block.

    It holds a shared ``flock`` on every generation it has read from until the shipper's
    checkpoint is past it (``release``), so that a full non-blocking spool never counts as
    dropped what a batch in flight holds (see the module docstring). It only looks at the
    visible files (current and rotated names): a generation the writer dropped and counted is
    never read, even if a ``logs -f`` follower keeps it alive under a hidden name.
    """

    def __init__(self, path: str, warn: Warn) -> None:
        self.path, self.warn = path, warn
        self.held: dict[int, int] = {}  # generation → open, shared-locked descriptor
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        from logpipe.inotify import Inotify  # ctypes: the daemon's side only, not the shim's

        self.inotify = Inotify(os.path.dirname(path))

    def close(self) -> None:
        self.release(1 << 62)
        self.inotify.close()

    def release(self, below: int) -> None:
        """The checkpoint is at generation ``below``: earlier ones are done with."""
        for seq in [s for s in self.held if s < below]:
            os.close(self.held.pop(seq))

    def wait(self, timeout: float) -> None:
        """Until the spool changes (an append, a rotation) or ``timeout`` seconds pass."""
        if self.inotify.wait(timeout):
            self.inotify.names()

    def _visible(self) -> dict[int, str] | None:
        """Generation → file name of every visible file of the set, as it was at one moment,
        or None while rotations keep changing it.

        One scan is not enough: a rotation during it can move a file from a name not read
        yet to one already read (``x`` to ``x.1``) and the scan misses that generation, which
        the tail would then take for dropped and skip. A file's name only ever passes to newer
        generations, so two scans in a row that agree saw the set as it was between them."""
        last = None
        for _ in range(SCAN_TRIES):
            scan = _scan(self.path)
            if scan is not None and scan == last:
                return {seq: name for name, (seq, _ino) in scan.items() if seq is not None}
            last = scan
        return None

    def _open(self, seq: int) -> tuple[int, int] | None:
        """Open generation ``seq``, or the first visible one after it (the ones between were
        dropped); returns ``(seq, fd)`` or None when no such generation exists yet."""
        for _ in range(5):  # a rotation renaming files meanwhile: look again
            visible = self._visible()
            later = sorted(s for s in visible or () if s >= seq)
            if not later:
                return None
            want = later[0]
            try:
                fd = os.open(visible[want], os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            fcntl.flock(fd, fcntl.LOCK_SH)  # the writer holds it only while it counts a drop
            # Once we hold the lock the writer can no longer count it: it is ours to ship,
            # even if a rotation deletes it now, unless the writer counted it before.
            if read_seq(fd) == want and not counted(fd):
                return want, fd
            os.close(fd)
        return None

    def blocks(self, seq: int, offset: int) -> Iterator[Block]:
        """Whole blocks from ``(seq, offset)`` on, as far as the spool goes now. A generation
        is left for the next one only once the writer has moved on from it."""
        # A checkpoint that never moved says generation 0: the set starts at 1. Looked up as
        # 0, the generation held since the last call would be opened again and the first
        # descriptor, still locked, forgotten: the writer then deletes that generation
        # uncounted, while the tail finds it gone and takes it for counted.
        seq = max(seq, 1)
        while True:
            if seq in self.held:
                fd = self.held[seq]
            else:
                opened = self._open(seq)
                if opened is None:
                    return
                if opened[0] != seq:
                    seq, offset = opened[0], 0  # the ones between were dropped (and counted)
                if seq in self.held:
                    os.close(opened[1])  # held already: its lock is the one that counts
                else:
                    self.held[seq] = opened[1]
                fd = self.held[seq]
            size = os.fstat(fd).st_size
            for start, header in whole_blocks(fd, offset, size):
                chunks = decode_block(fd, start, header, self.warn)
                yield Block(seq, start, start + header.total, chunks)
                offset = start + header.total
            if not self._finished(seq):
                return
            if os.fstat(fd).st_size > offset:
                continue  # written to just before the writer moved on
            seq, offset = seq + 1, 0

    def _finished(self, seq: int) -> bool:
        """Whether the writer will never append to generation ``seq`` again: the current
        file is a later one. (The current file of a stopped container is not finished: a
        restart appends to it, as Docker does.)"""
        current = read_seq(self.path)
        return current is not None and current > seq

    def writer_gone(self) -> bool:
        return not writer_alive(self.path)


#: Scans of the spool's names before the tail gives up for now (and waits for the next event).
SCAN_TRIES = 50


def _scan(path: str) -> dict[str, tuple[int | None, int]] | None:
    """Name → (generation, inode) of the rotated set of ``path``; None when a listed file
    vanished meanwhile (a rotation is under way)."""
    found = {}
    for name in rotated_files(path):
        try:
            ino = os.stat(name).st_ino
        except FileNotFoundError:
            return None
        found[name] = (read_seq(name), ino)
    return found
