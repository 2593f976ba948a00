"""The read side shared by every storage format: what to read, and reading a rotated set.

A storage format (json-file, local) only knows how to decode its own bytes and how to find a
starting offset quickly (``tail_offset``, ``since_offset``). Walking the rotated files oldest
to newest, applying ``tail`` before ``since`` (Docker's order) and stopping at ``until`` is
done once, here, for all of them. Following lives in ``follow.py``.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass
import sys
from typing import BinaryIO, Callable, Iterable, Iterator, Protocol

from .message import Chunk

#: Size of the pieces in which files are read and handed to a format's decoder.
READ_SIZE = 1 << 20


@dataclass(slots=True, frozen=True)
class ReadConfig:
    """What ``logs`` asked for. ``tail`` -1 means all; ``since``/``until`` are ns, 0 = unbounded."""

    tail: int = -1
    since: int = 0
    until: int = 0
    follow: bool = False
    timestamps: bool = False
    details: bool = False


Warn = Callable[[str], None]


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


_ROTATED_RE = re.compile(r"\.(\d+)(\.gz)?$")


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


def iter_decoded(fmt: RecordFormat, pieces: Iterable[bytes], path: str,
                 warn: Warn = warn_stderr) -> Iterator[Chunk]:
    """Feed raw pieces of one file through ``fmt.decode``.

    A file that ends inside a record (its writer died mid-write) yields everything before the
    tear and reports the tear through ``warn``; it never raises.
    """
    pending = b""
    for piece in pieces:
        buf = pending + piece if pending else piece
        chunks, used = fmt.decode(buf, False, warn)
        yield from chunks
        pending = buf[used:]
    if pending:
        chunks, used = fmt.decode(pending, True, warn)
        yield from chunks
        if used < len(pending):
            warn(f"{path}: torn record at end of file: "
                 f"{len(pending) - used} trailing bytes do not form a whole record")


def read_pieces(f: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    """Raw bytes of ``f[start:end]`` in ``READ_SIZE`` pieces."""
    pos = start
    while pos < end:
        data = os.pread(f.fileno(), min(READ_SIZE, end - pos), pos)
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
