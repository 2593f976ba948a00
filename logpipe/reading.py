"""The read side shared by every storage format: what to read, and reading a rotated set.

A storage format (json-file, local) only knows how to decode its own bytes and how to find a
starting offset quickly (``tail_offset``, ``since_offset``). Walking the rotated files oldest
to newest, applying ``tail`` before ``since`` (Docker's order) and stopping at ``until`` is
done once, here, for all of them. Following lives in ``follow.py``.
"""

from __future__ import annotations

import os
import zlib
import sys
from typing import BinaryIO, Callable, Iterable, Iterator, NamedTuple, Protocol

from .fileset import read_before, read_seq, rotated_files
from .message import Chunk

#: Size of the pieces in which files are read and handed to a format's decoder.
READ_SIZE = 1 << 20


Warn = Callable[[str], None]


class ReadConfig(NamedTuple):
    """What ``logs`` asked for. ``tail`` -1 means all; ``since``/``until`` are ns, 0 = unbounded.

    ``warn`` is where the reader reports what the client must know although it is not a
    record: damaged data it skipped, records a slow follower missed. None: on stderr (the
    CLI); the daemon passes a function that puts the reports into the client's stream.
    """

    tail: int = -1
    since: int = 0
    until: int = 0
    follow: bool = False
    timestamps: bool = False
    details: bool = False
    warn: "Warn | None" = None


def warn_stderr(text: str) -> None:
    """Default report of damaged data: one line on stderr, reading goes on."""
    sys.stderr.write(f"logpipe: {text}\n")


class RecordFormat(Protocol):
    """How one storage format decodes its bytes. Offsets are always at record boundaries."""

    def decode(self, buf: bytes, final: bool, warn: Warn) -> tuple[list[Chunk], int]:
        """Decode the whole records at the start of ``buf``.

        Returns the chunks (in file order) and how many bytes of ``buf`` they used. Bytes of
        an incomplete last record are not used, so the caller can retry with more data. Damaged
        records in the middle (a garbage line, a block with a bad checksum) are skipped, counted
        as used, and reported through ``warn`` with what was skipped. ``final`` says no more
        bytes will come: the format should then consume everything it can.
        """

    def tail_offset(self, f: BinaryIO, size: int, n: int) -> tuple[int, int]:
        """An offset at or before the start of the last ``n`` records of ``f[:size]``.

        Returns ``(offset, found)`` where ``found`` is how many records lie after ``offset``
        (fewer than ``n`` when the file holds fewer).
        """

    def since_offset(self, f: BinaryIO, size: int, since: int) -> int:
        """An offset at or before the first record with ``ts >= since`` (timestamps in a
        file never decrease, so formats may bisect)."""

    def last_ts(self, f: BinaryIO, size: int) -> int | None:
        """Timestamp of the last record in ``f[:size]``, or None when empty."""

    def skip_damage(self, buf: bytes) -> int:
        """How many leading bytes of ``buf`` cannot be part of any record.

        Called with the undecoded rest of a file once it is ``READ_SIZE`` or longer, that is
        longer than a whole record normally is: a run of damage (NULs left by a crash, garbage)
        that ``decode`` cannot consume until it sees where the next record starts. The reader
        drops (and reports) these bytes, so damage of any size is read in bounded memory.
        """


def count_records(fmt: RecordFormat, f: BinaryIO, size: int) -> int:
    """Records in ``f[:size]`` as the format counts them (what ``--tail`` would count)."""
    return fmt.tail_offset(f, size, 1 << 62)[1]


class Decoder:
    """The bytes of one file, fed in order, as records: the incomplete record at the end of
    one piece is kept for the next, and a run of damage is skipped as it is read, never
    buffered, and reported once (where it starts and how long it is) when records resume."""

    __slots__ = ("fmt", "path", "warn", "pending", "offset", "skipped", "skipped_at")

    def __init__(self, fmt: RecordFormat, path: str, warn: Warn, offset: int = 0) -> None:
        self.fmt, self.path, self.warn = fmt, path, warn
        self.pending = b""
        self.offset = offset  # file offset of ``pending``
        self.skipped, self.skipped_at = 0, 0

    def reset(self, offset: int = 0) -> None:
        """Start again at ``offset`` (the file was truncated)."""
        self.pending, self.offset, self.skipped = b"", offset, 0

    def feed(self, piece: bytes) -> list[Chunk]:
        buf = self.pending + piece if self.pending else piece
        chunks, used = self.fmt.decode(buf, False, self.warn)
        if used and self.skipped:
            self._report()
        self.offset += used
        rest = buf[used:] if used else buf
        if len(rest) >= READ_SIZE:
            n = self.fmt.skip_damage(rest)
            if n:
                if not self.skipped:
                    self.skipped_at = self.offset
                self.skipped += n
                self.offset += n
                rest = rest[n:]
        self.pending = rest
        return chunks

    def finish(self) -> list[Chunk]:
        """The file will not grow: decode what is left; a torn record is reported."""
        chunks: list[Chunk] = []
        if self.pending:
            chunks = decode_last(self.fmt, self.pending, self.path, self.warn)
        if self.skipped:
            self._report()
        self.offset += len(self.pending)
        self.pending = b""
        return chunks

    def _report(self) -> None:
        self.warn(f"{os.path.basename(self.path)}: skipped {self.skipped} bytes of damaged data "
                  f"at offset {self.skipped_at}")
        self.skipped = 0


def iter_decoded(fmt: RecordFormat, pieces: Iterable[bytes], path: str,
                 warn: Warn = warn_stderr, start: int = 0) -> Iterator[Chunk]:
    """Feed raw pieces of one file (from offset ``start``) through ``fmt.decode``.

    A file that ends inside a record (its writer died mid-write) yields everything before the
    tear and reports the tear through ``warn``; damage is skipped in bounded memory and
    reported; it never raises.
    """
    decoder = Decoder(fmt, path, warn, start)
    for piece in pieces:
        yield from decoder.feed(piece)
    yield from decoder.finish()


def decode_last(fmt: RecordFormat, pending: bytes, path: str, warn: Warn) -> list[Chunk]:
    """The records in the last bytes of a file that will not grow; what is left of them is a
    torn record (its writer died mid-write), reported, never raised."""
    chunks, used = fmt.decode(pending, True, warn)
    if used < len(pending):
        warn(f"{path}: torn record at end of file: "
             f"{len(pending) - used} trailing bytes do not form a whole record")
    return chunks


def read_pieces(f: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    """Raw bytes of ``f[start:end]`` in ``READ_SIZE`` pieces (``pread``: no shared offset)."""
    pos, fd = start, f.fileno()
    while pos < end:
        data = os.pread(fd, min(READ_SIZE, end - pos), pos)
        if not data:
            return
        pos += len(data)
        yield data


def gunzip_pieces(path: str) -> Iterator[bytes]:
    """Decompressed bytes of a rotated ``.gz`` file, streamed."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as f:
        while True:
            raw = f.read(READ_SIZE)
            if not raw:
                break
            out = d.decompress(raw)
            if out:
                yield out
        rest = d.flush()
        if rest:
            yield rest


class Segment:
    """One file of a rotated set, opened, with the number of bytes to read from it.

    A ``.gz`` file is decompressed once into an anonymous temporary file next to it, so that
    formats can seek in it like in any other file (Docker does the same with ``.gz.tmp``).
    """

    __slots__ = ("path", "f", "size", "seq", "before")
    path: str
    f: BinaryIO
    size: int
    seq: int | None
    before: tuple[int, int, int] | None  # its count stamp (fileset.read_before)


def open_segment(path: str) -> "Segment | None":
    """Open one file of the set; None if it vanished in the meantime (rotated away)."""
    seg = Segment.__new__(Segment)
    seg.path = path
    try:
        if path.endswith(".gz"):
            import tempfile  # only rotated, compressed files need it

            seg.f = tempfile.TemporaryFile(dir=os.path.dirname(path) or ".")
            for piece in gunzip_pieces(path):
                seg.f.write(piece)
            seg.f.flush()
            seg.seq = read_seq(path)
            seg.before = read_before(path)
        else:
            seg.f = open(path, "rb")
            seg.seq = read_seq(seg.f.fileno())
            seg.before = read_before(seg.f.fileno())
    except FileNotFoundError:
        return None
    seg.size = os.fstat(seg.f.fileno()).st_size
    return seg


def _trim_head(chunks: Iterable[Chunk], skip: int) -> Iterator[Chunk]:
    """Drop the first ``skip`` records (``--tail`` selected a little more than asked)."""
    for chunk in chunks:
        if skip:
            n = chunk.count
            if n <= skip:
                skip -= n
                continue
            chunk = chunk.tail(n - skip)
            skip = 0
        yield chunk


def _tail_starts(segs: list[Segment], fmt: RecordFormat, n: int) -> tuple[list[Segment], list[int], int]:
    """Where to start in each segment so that exactly the last ``n`` records are read."""
    starts: list[int] = []
    chosen: list[Segment] = []
    for seg in reversed(segs):
        off, found = fmt.tail_offset(seg.f, seg.size, n)
        chosen.append(seg)
        starts.append(off)
        if found >= n:
            return chosen[::-1], starts[::-1], found - n
        n -= found
    return chosen[::-1], starts[::-1], 0


def history(segs: list[Segment], fmt: RecordFormat, cfg: ReadConfig,
            warn: Warn = warn_stderr) -> Iterator[Chunk]:
    """The records already stored, with Docker's semantics: ``tail`` picks the last N
    records of both streams first, then ``since`` filters, and ``until`` stops reading.

    Returns (as the generator's value) True if reading stopped at ``until``.
    """
    if cfg.tail == 0:
        return False
    skip = 0
    starts = [0] * len(segs)
    if cfg.tail > 0:
        segs, starts, skip = _tail_starts(segs, fmt, cfg.tail)
    for seg, start in zip(segs, starts):
        if cfg.since and cfg.tail < 0:
            last = fmt.last_ts(seg.f, seg.size)
            if last is None or last < cfg.since:
                continue
            start = max(start, fmt.since_offset(seg.f, seg.size, cfg.since))
        chunks = iter_decoded(fmt, read_pieces(seg.f, start, seg.size), seg.path, warn, start)
        if skip:
            chunks = _trim_head(chunks, skip)
            skip = 0
        for chunk in chunks:
            if cfg.since and chunk.ts < cfg.since:
                continue
            if cfg.until and chunk.ts > cfg.until:
                return True
            yield chunk
    return False


def open_segments(path: str) -> list[Segment]:
    """Open every file of the rotated set of ``path``, oldest first."""
    segs = [open_segment(p) for p in rotated_files(path)]
    return [s for s in segs if s is not None]


def close_segments(segs: Iterable[Segment]) -> None:
    for seg in segs:
        seg.f.close()


def read_logs(path: str, fmt: RecordFormat, cfg: ReadConfig,
              warn: Warn = warn_stderr) -> Iterator[Chunk]:
    """Everything ``logs`` asked for from the log at ``path``: history, then (with ``follow``)
    new records until the writer closes the log for good."""
    warn = cfg.warn or warn
    if cfg.follow:
        from .follow import follow_logs
        yield from follow_logs(path, fmt, cfg, warn)
        return
    segs = open_segments(path)
    try:
        yield from history(segs, fmt, cfg, warn)
    finally:
        close_segments(segs)
