"""Following a rotated log set: every record exactly once, across any number of rotations.

Docker's follower reopens the current file by name after a rotation; when files rotate
faster than it reacts, it skips or re-reads whole files (moby#23913, #39235; 30 % of lines
delivered in our measurement). This follower instead:

* watches the directory with inotify and opens each new current file as soon as it appears,
  keeping the descriptor, so a file that is later renamed, compressed or deleted can still be
  read to its end;
* knows the order of files from the generation number every file carries (``fileset.py``),
  so after finishing generation *g* it continues with exactly *g+1*, found among the open
  descriptors, or by name (``x``, ``x.N``, ``x.N.gz``) if it was not opened in time;
* ends only when the writer has released its lock *and* everything has been read.
"""

from __future__ import annotations

import os
from typing import Iterator

from .fileset import read_seq, rotated_files, writer_alive
from .inotify import Inotify
from .message import Chunk
from .reading import (ReadConfig, RecordFormat, Segment, Warn, close_segments, history,
                      open_segment, READ_SIZE)

#: Upper bound on a wait without events; inotify normally wakes the follower at once.
_IDLE_WAIT = 1.0


class Follower:
    """Follows the log at ``path`` from a given file and offset until the writer is gone."""

    def __init__(self, path: str, fmt: RecordFormat, warn: Warn) -> None:
        self.path, self.fmt, self.warn = path, fmt, warn
        self.base = os.path.basename(path)
        # Watch before opening anything, so that no rotation can slip between the two.
        self.inotify = Inotify(os.path.dirname(path) or ".")
        self.ahead: dict[int, Segment] = {}
        self.reading = 0  # generation being read; older or equal files are not kept

    def close(self) -> None:
        self.inotify.close()
        close_segments(self.ahead.values())
        self.ahead.clear()

    # -- discovering files -------------------------------------------------------------

    def _grab_current(self) -> None:
        """Open the current file now, before it can be rotated away, if it is new to us."""
        seg = open_segment(self.path)
        if seg is None:
            return
        if seg.seq is None or seg.seq <= self.reading or seg.seq in self.ahead:
            seg.f.close()
        else:
            self.ahead[seg.seq] = seg

    def _poll_events(self) -> None:
        if self.base in self.inotify.names():
            self._grab_current()

    def _successor(self, seg: Segment) -> Segment | None:
        """The file that follows ``seg``, or None if ``seg`` is still the current file."""
        try:
            if os.stat(self.path).st_ino == os.fstat(seg.f.fileno()).st_ino:
                return None
        except FileNotFoundError:
            return None  # between the rename away and the new file's appearance
        if seg.seq is None:
            return open_segment(self.path)  # unstamped files: best effort, by name
        want = seg.seq + 1
        if want not in self.ahead:
            self._grab_current()
        if want not in self.ahead:
            self._scan_rotated(want)
        if want in self.ahead:
            return self.ahead.pop(want)
        later = sorted(s for s in self.ahead if s > want)
        if not later:
            return None
        self.warn(f"{self.path}: log files {want}..{later[0] - 1} were removed by rotation "
                  "before they could be read; their records are lost to this reader")
        return self.ahead.pop(later[0])

    def _scan_rotated(self, want: int) -> None:
        for name in reversed(rotated_files(self.path)):
            if read_seq(name) == want:
                seg = open_segment(name)
                if seg is not None and seg.seq == want:
                    self.ahead[want] = seg
                    return

    # -- reading -------------------------------------------------------------------------

    def _read_new(self, seg: Segment, pos: int, pending: bytes,
                  final: bool) -> tuple[list[Chunk], int, bytes]:
        """Decode what was appended to ``seg`` since ``pos``."""
        out: list[Chunk] = []
        fd = seg.f.fileno()
        if os.fstat(fd).st_size < pos:
            self.warn(f"{seg.path}: file was truncated; reading it again from the start")
            pos, pending = 0, b""
        while True:
            data = os.pread(fd, READ_SIZE, pos)
            if not data:
                break
            pos += len(data)
            buf = pending + data if pending else data
            chunks, used = self.fmt.decode(buf, False, self.warn)
            out.extend(chunks)
            pending = buf[used:]
            if len(out) > 256:
                break
        if final and pending:
            chunks, used = self.fmt.decode(pending, True, self.warn)
            out.extend(chunks)
            if used < len(pending):
                self.warn(f"{seg.path}: torn record at end of file: "
                          f"{len(pending) - used} trailing bytes do not form a whole record")
            pending = b""
        return out, pos, pending

    def follow(self, seg: Segment, pos: int, cfg: ReadConfig) -> Iterator[Chunk]:
        """Records appended from ``seg[pos:]`` on, through every later file."""
        pending = b""
        writer_gone = False
        self.reading = seg.seq or 0
        while True:
            self._poll_events()
            chunks, pos, pending = self._read_new(seg, pos, pending, final=False)
            if chunks:
                for chunk in chunks:
                    if cfg.until and chunk.ts > cfg.until:
                        return
                    if not cfg.since or chunk.ts >= cfg.since:
                        yield chunk
                continue
            nxt = self._successor(seg)
            if nxt is not None:
                # The writer never appends to a rotated file: finish it, then move on.
                tail, pos, pending = self._read_new(seg, pos, pending, final=True)
                yield from (c for c in tail if not cfg.since or c.ts >= cfg.since)
                seg.f.close()
                seg, pos, writer_gone = nxt, 0, False
                self.reading = seg.seq or 0
                continue
            if writer_gone:
                tail, pos, pending = self._read_new(seg, pos, pending, final=True)
                yield from (c for c in tail if not cfg.since or c.ts >= cfg.since)
                return
            if not writer_alive(self.path):
                writer_gone = True  # one more pass: data or a rotation may have landed last
                continue
            self.inotify.wait(_IDLE_WAIT)


def follow_logs(path: str, fmt: RecordFormat, cfg: ReadConfig, warn: Warn) -> Iterator[Chunk]:
    """History as ``cfg`` asks, then every new record until the writer is gone for good."""
    follower = Follower(path, fmt, warn)
    current = open_segment(path)
    segs: list[Segment] = []
    try:
        if current is None:
            return
        for name in rotated_files(path)[:-1]:
            seg = open_segment(name)
            if seg is None:
                continue
            if seg.seq is not None and current.seq is not None and seg.seq >= current.seq:
                seg.f.close()  # rotated after we opened ``current``: it is ``current``
                continue
            segs.append(seg)
        until_passed = yield from history(segs + [current], fmt, cfg, warn)
        if not until_passed:
            yield from follower.follow(current, current.size, cfg)
    finally:
        close_segments(segs)
        if current is not None:
            current.f.close()
        follower.close()
