"""Seeks in a file of newline-ended records: ``--tail`` counting, the ``--since``
bisection, and the time of the last record.

Owns reading a file by lines in bounded pieces (``pread``, never the whole file, never an
overlong line held in memory). What a line means is the caller's: it passes ``is_record`` and
``line_ts`` (``reader.JSONFileFormat`` passes its cached line decoder). Used by the reader,
and by rotation through the reader (the count for followers, the last time for ``compress``).
"""

from __future__ import annotations

import os
from typing import BinaryIO, Callable, Iterator

#: Whether a fragment (a line without its newline) is a whole record.
IsRecord = Callable[[bytes], bool]
#: The time of a line (without its newline), or None if it is not a record.
LineTime = Callable[[bytes], int | None]

#: Bytes read per step when counting lines backwards (--tail), and when looking for one line
#: (a probe of the --since bisection, the last line).
_SCAN = 1 << 20
_PROBE = 1 << 16
#: Longer than any line Docker or logpipe writes (16 KiB of log, 6 bytes per escaped byte,
#: attrs): a longer run without a newline is damage, skipped but for this much of its end,
#: where a record glued behind the damage may begin.
MAX_LINE = 8 << 20


def tail_offset(f: BinaryIO, size: int, n: int, is_record: IsRecord) -> tuple[int, int]:
    """Scans backwards in 1 MiB blocks counting newlines (Docker reads 1 KiB at a time).
    Bytes after the last newline count as a record only if they decode as one."""
    if n <= 0 or size <= 0:
        return size, 0
    last = _last_newline(f, size)
    found = 0
    if 0 < size - last - 1 <= _SCAN:
        frag = _read_at(f, last + 1, size - last - 1)
        if is_record(frag):
            found = 1
            if n == 1:
                return last + 1, 1
    need = n - found + 1  # newlines to pass, the one ending the last line included
    hi = last + 1
    while hi > 0:
        lo = max(0, hi - _SCAN)
        block = _read_at(f, lo, hi - lo)
        c = block.count(b"\n")
        if c >= need:
            return lo + _nth_newline_from_end(block, need) + 1, n
        need -= c
        hi = lo
    return 0, n + 1 - need


def since_offset(f: BinaryIO, size: int, since: int, line_ts: LineTime) -> int:
    """Bisects over byte offsets, probing the first readable line after the middle;
    the answer is a line start less than a probe window before the first match."""
    lo, hi = 0, size
    while hi - lo > _PROBE:
        mid = (lo + hi) // 2
        probe = _probe(f, mid, hi, size, line_ts)
        if probe is None or probe[1] >= since:
            hi = mid
        else:
            lo = probe[0]
    return lo


def _probe(f: BinaryIO, pos: int, limit: int, size: int,
           line_ts: LineTime) -> tuple[int, int] | None:
    """(start, ts) of the first line starting in ``[pos, limit)`` whose time can be
    read; None if there is none."""
    start = _next_line_start(f, pos, size)
    for offset, line in _lines_from(f, start, size):
        if offset >= limit:
            return None
        ts = line_ts(line)
        if ts is not None:
            return offset, ts
    return None


def last_ts(f: BinaryIO, size: int, line_ts: LineTime) -> int | None:
    """Time of the last complete line that is a record (damaged lines are passed)."""
    for line in _lines_backwards(f, _last_newline(f, size) + 1):
        ts = line_ts(line)
        if ts is not None:
            return ts
    return None


def _last_newline(f: BinaryIO, size: int) -> int:
    """Offset of the last ``\\n`` in ``f[:size]``, -1 if there is none."""
    hi = size
    while hi > 0:
        lo = max(0, hi - _PROBE)
        i = _read_at(f, lo, hi - lo).rfind(b"\n")
        if i >= 0:
            return lo + i
        hi = lo
    return -1


def _next_line_start(f: BinaryIO, pos: int, size: int) -> int:
    """The first line start at or after ``pos`` (``size`` if there is none)."""
    if pos <= 0:
        return 0
    off = pos - 1
    while off < size:
        block = _read_at(f, off, min(_PROBE, size - off))
        i = block.find(b"\n")
        if i >= 0:
            return off + i + 1
        off += len(block)
    return size


def _lines_from(f: BinaryIO, start: int, size: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line without newline) of the complete lines of ``f[start:size]``; a line
    longer than ``MAX_LINE`` is damage, passed over without being held in memory."""
    buf, base, pos = b"", start, start
    overlong = False
    while pos < size:
        data = _read_at(f, pos, min(_PROBE, size - pos))
        if not data:
            return
        pos += len(data)
        buf += data
        i = 0
        while (j := buf.find(b"\n", i)) >= 0:
            if not overlong:
                yield base + i, buf[i:j]
            overlong = False
            i = j + 1
        buf, base = buf[i:], base + i
        if overlong or len(buf) > MAX_LINE:
            buf, base, overlong = b"", base + len(buf), True


def _lines_backwards(f: BinaryIO, end: int) -> Iterator[bytes]:
    """The complete lines of ``f[:end]`` (``end`` just after a newline), last first; a line
    longer than ``MAX_LINE`` is damage, passed over without being held in memory."""
    hi, pending = end, b""
    overlong = False
    while hi > 0:
        lo = max(0, hi - _PROBE)
        block = _read_at(f, lo, hi - lo) + pending
        stop = len(block) - 1  # the newline ending the current line
        while (i := block.rfind(b"\n", 0, stop)) >= 0:
            if not overlong:
                yield block[i + 1:stop]
            overlong = False
            stop = i
        if lo == 0:
            if not overlong:
                yield block[:stop]
            return
        pending = block[:stop + 1]  # a line that began in an earlier block
        if overlong or len(pending) > MAX_LINE:
            pending, overlong = b"\n", True  # only where the line ends: its start is ahead
        hi = lo


def _read_at(f: BinaryIO, offset: int, size: int) -> bytes:
    try:
        fd = f.fileno()
    except (OSError, AttributeError, ValueError):
        f.seek(offset)
        return f.read(size)
    return os.pread(fd, size, offset)


def _nth_newline_from_end(block: bytes, n: int) -> int:
    """Index of the ``n``-th ``\\n`` counted from the end of ``block`` (it has ≥ n)."""
    if n <= 64:
        i = len(block)
        for _ in range(n):
            i = block.rfind(b"\n", 0, i)
        return i
    lo, hi = 0, len(block) - 1  # the largest i with n newlines in block[i:]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if block.count(b"\n", mid) >= n:
            lo = mid
        else:
            hi = mid - 1
    return lo
