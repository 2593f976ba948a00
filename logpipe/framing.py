"""The framer: raw bytes read from a container's pipe become ``Chunk``s of lines.

Docker's copier rules are kept: lines end at ``\\n`` only (``\\r`` is data); a line whose
content reaches 16 KiB is emitted in 16,384-byte partial pieces sharing a random 64-hex id,
ordinals from 1, ``last`` on the piece that carries the newline; bytes left at EOF are a
partial piece that is never completed.

One deliberate difference: every piece is stamped when it is read (Docker stamps all pieces
with the first piece's time). Timestamps then never go backwards within a container's log,
which is what lets readers find ``--since`` by binary search.

The common case costs a handful of C-level calls per ``read()``, not per line: the complete
lines of a read become one chunk, after a block-wise check that none is 16 KiB long.
"""

from __future__ import annotations

import os
import time

from .message import PARTIAL_SIZE, Chunk, PartialMeta

#: Half the partial size: a line of ≥ 16 KiB must contain an aligned block of this size.
_PROBE = PARTIAL_SIZE // 2


class Clock:
    """Per-container timestamps in ns that never decrease (a backwards step is clamped)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = 0

    def now(self) -> int:
        t = time.time_ns()
        if t < self.last:
            t = self.last
        self.last = t
        return t


def _no_long_line(buf: bytes, end: int) -> bool:
    """True if no line in ``buf[:end]`` has ``PARTIAL_SIZE`` content bytes or more.

    Any run of 16,384 bytes without a newline contains a whole 8 KiB-aligned block, so it is
    enough to check that every such block holds a newline (a false alarm only costs the slow
    path).
    """
    if end <= PARTIAL_SIZE:
        return True
    find = buf.find
    for k in range(0, end - _PROBE + 1, _PROBE):
        if find(b"\n", k, k + _PROBE) < 0:
            return False
    return True


def new_partial_id() -> str:
    """Docker's partial id: 64 random lowercase hex characters."""
    return os.urandom(32).hex()


class Framer:
    """Frames one stream (stdout or stderr) of one container."""

    __slots__ = ("source", "clock", "eager", "_pending", "_pid", "_ordinal")

    def __init__(self, source: str, clock: Clock, eager: bool = False) -> None:
        self.source, self.clock = source, clock
        # A terminal's output (``-t``) is read by people as it comes: a prompt, an echoed
        # key, never end in a newline. Eager, what a read leaves of an unfinished line is
        # emitted at once as a partial piece (the line's next piece continues it), so that
        # ``attach`` and ``logs -f``, which read the log, show it now; ``logs`` joins the
        # pieces back into the same bytes.
        self.eager = eager
        self._pending = b""
        self._pid: str | None = None
        self._ordinal = 0

    def feed(self, data: bytes) -> list[Chunk]:
        """Frame the bytes of one read; returns the chunks that are now complete."""
        out = self._feed(data)
        if self.eager and self._pending:
            out.append(self._piece(self._pending, self.clock.now(), last=False))
            self._pending = b""
        return out

    def _feed(self, data: bytes) -> list[Chunk]:
        out: list[Chunk] = []
        buf = self._pending + data if self._pending else data
        ts = self.clock.now()
        start = 0
        if self._pid is not None:
            start = self._finish_partial(buf, ts, out)
            if self._pid is not None:
                return out
        last = buf.rfind(b"\n", start)
        if last < 0:
            self._pending = buf[start:] if start else buf
            self._spill(ts, out)
            return out
        if _no_long_line(buf[start:last + 1] if start else buf, last + 1 - start):
            out.append(Chunk(self.source, ts, buf[start:last + 1]))
        else:
            self._split_long_lines(buf, start, last + 1, ts, out)
        self._pending = buf[last + 1:]
        self._spill(ts, out)
        return out

    def close(self) -> list[Chunk]:
        """EOF: what is left is a partial piece that will never be completed (as Docker)."""
        if not self._pending:
            return []
        piece = self._piece(self._pending, self.clock.now(), last=False)
        self._pending, self._pid = b"", None
        return [piece]

    def _piece(self, data: bytes, ts: int, last: bool) -> Chunk:
        if self._pid is None:
            self._pid, self._ordinal = new_partial_id(), 0
        self._ordinal += 1
        return Chunk(self.source, ts, data, PartialMeta(self._pid, self._ordinal, last))

    def _spill(self, ts: int, out: list[Chunk]) -> None:
        """Emit 16 KiB pieces of a pending line that has grown that long without a newline."""
        pending = self._pending
        if len(pending) < PARTIAL_SIZE:
            return
        full = len(pending) - len(pending) % PARTIAL_SIZE
        for k in range(0, full, PARTIAL_SIZE):
            out.append(self._piece(pending[k:k + PARTIAL_SIZE], ts, last=False))
        self._pending = pending[full:]

    def _finish_partial(self, buf: bytes, ts: int, out: list[Chunk]) -> int:
        """Continue a line already being emitted in pieces; returns where normal lines start."""
        nl = buf.find(b"\n")
        if nl < 0:
            self._pending = buf
            self._spill(ts, out)
            return len(buf)
        self._emit_long_line(buf, 0, nl + 1, ts, out)
        return nl + 1

    def _emit_long_line(self, buf: bytes, start: int, end: int, ts: int,
                        out: list[Chunk]) -> None:
        """One line ``buf[start:end]`` (newline included) in pieces of 16 KiB, last one marked."""
        pos = start
        while end - 1 - pos >= PARTIAL_SIZE:
            out.append(self._piece(buf[pos:pos + PARTIAL_SIZE], ts, last=False))
            pos += PARTIAL_SIZE
        out.append(self._piece(buf[pos:end], ts, last=True))
        self._pid = None

    def _split_long_lines(self, buf: bytes, start: int, end: int, ts: int,
                          out: list[Chunk]) -> None:
        """Slow path for reads that hold a line of 16 KiB or more: runs of short lines stay
        one chunk, each long line becomes its pieces."""
        run = start
        pos = start
        while pos < end:
            nl = buf.find(b"\n", pos, end)
            if nl - pos >= PARTIAL_SIZE:
                if run < pos:
                    out.append(Chunk(self.source, ts, buf[run:pos]))
                self._emit_long_line(buf, pos, nl + 1, ts, out)
                run = nl + 1
            pos = nl + 1
        if run < end:
            out.append(Chunk(self.source, ts, buf[run:end]))
