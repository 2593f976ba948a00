"""Following a rotated log set: every record exactly once, across any number of rotations.

Docker's follower reopens the current file by name after a rotation; when files rotate
faster than it reacts, it skips or re-reads whole files (moby#23913, #39235; 30 % of lines
delivered in our measurement). This follower instead:

* knows the order of files from the generation number every file carries (``fileset.py``),
  so after finishing generation *g* it continues with exactly *g+1*, wherever rotation has
  put it (``x``, ``x.N``, ``x.N.gz``), holding the descriptor so later renames and deletes
  cannot take it away mid-read;
* registers the generation it still needs, so that rotation keeps (renames to a hidden name)
  instead of deleting any file it has not read yet, without ever making the writer wait. The
  writer keeps such files up to twice the log's budget (at least 32 MiB, ``fileset.py``): a
  follower that falls further behind (its client stopped reading) continues with the oldest
  file left and reports exactly how many records and bytes it missed, from the counts the
  files are stamped with;
* waits on inotify, not a poll loop, and ends only when the writer has released its lock and
  everything has been read.
"""

from __future__ import annotations

import os
from typing import Iterator

from .fileset import (FollowerMark, keep_name, kept_generations, read_seq, rotated_files,
                      sweep_keeps, writer_alive)
from .inotify import Inotify
from .message import Chunk
from .reading import (READ_SIZE, Decoder, ReadConfig, RecordFormat, Segment, Warn,
                      close_segments, count_records, history, open_segment)

#: Upper bound on a wait without events; inotify normally wakes the follower at once.
_IDLE_WAIT = 1.0


class Follower:
    """Follows the log at ``path`` from a given file and offset until the writer is gone."""

    def __init__(self, path: str, fmt: RecordFormat, warn: Warn) -> None:
        self.path, self.fmt, self.warn = path, fmt, warn
        # Register and watch before opening anything, so no rotation can slip in between.
        self.mark = FollowerMark(path)
        self.inotify = Inotify(os.path.dirname(path) or ".")

    def close(self) -> None:
        self.inotify.close()
        self.mark.close()
        if not writer_alive(self.path):
            sweep_keeps(self.path)  # the writer is gone: nobody else will sweep our keeps

    def _successor(self, seg: Segment) -> Segment | None:
        """The file that follows ``seg``, or None if ``seg`` is still the current file (or
        the next one is not in place yet: the writer renames the old file away first)."""
        try:
            if os.stat(self.path).st_ino == os.fstat(seg.f.fileno()).st_ino:
                return None
        except FileNotFoundError:
            return None
        if seg.seq is None:
            return open_segment(self.path)  # unstamped files (no xattrs): best effort, by name
        want = seg.seq + 1
        for _ in range(3):  # a file being renamed during the scan is found on the next one
            found = self._find(want)
            if found is not None:
                return found
        later = self._oldest_after(want)
        nxt = None if later is None else self._find(later)
        if nxt is not None:
            # ``want`` may just have been renamed while we looked: one more look first.
            found = self._find(want)
            if found is not None:
                nxt.f.close()
                return found
        return nxt

    def _oldest_after(self, want: int) -> int | None:
        """The oldest generation after ``want`` still on disk (rotated, current or kept)."""
        seqs = [s for s in map(read_seq, rotated_files(self.path)) if s is not None and s > want]
        seqs += [s for s, _ in kept_generations(self.path) if s > want]
        return min(seqs, default=None)

    def _gap(self, seg: Segment, nxt: Segment) -> str | None:
        """What is missing between ``seg`` (read to its end) and ``nxt``, if they do not
        follow each other: generations removed before this follower read them (it fell
        more than the kept files behind). Exact, from the files' stamps."""
        if seg.seq is None or nxt.seq is None or nxt.seq == seg.seq + 1:
            return None
        name = os.path.basename(self.path)
        want = seg.seq + 1
        files = f"{want}" if nxt.seq == want + 1 else f"{want}..{nxt.seq - 1}"
        if nxt.before is not None and nxt.before[0] == want:  # counted from ``want`` on
            records, missed = nxt.before[1], nxt.before[2]
        elif seg.before is not None and nxt.before is not None and seg.before[0] == nxt.before[0]:
            size = os.fstat(seg.f.fileno()).st_size
            records = nxt.before[1] - seg.before[1] - count_records(self.fmt, seg.f, size)
            missed = nxt.before[2] - seg.before[2] - size
        else:  # no xattr support here
            return (f"{name}: this reader fell behind: log file generation {files} was "
                    "rotated away before it read it; its records are missing")
        return (f"{name}: this reader fell behind: {records} records ({missed} bytes, log "
                f"file generation {files}) were rotated away before it read them")

    def _find(self, want: int) -> Segment | None:
        """Open generation ``want`` wherever it is: kept for us, rotated, or current."""
        for name in (keep_name(self.path, want), keep_name(self.path, want, gz=True),
                     *reversed(rotated_files(self.path))):
            if read_seq(name) == want:
                seg = open_segment(name)
                if seg is not None and seg.seq == want:
                    return seg
                if seg is not None:
                    seg.f.close()
        return None

    def _read_new(self, seg: Segment, pos: int, decoder: Decoder,
                  final: bool) -> tuple[list[Chunk], int]:
        """Decode what was appended to ``seg`` since ``pos``."""
        out: list[Chunk] = []
        fd = seg.f.fileno()
        if os.fstat(fd).st_size < pos:
            self.warn(f"{seg.path}: file was truncated; reading it again from the start")
            pos = 0
            decoder.reset()
        while len(out) < 256:
            data = os.pread(fd, READ_SIZE, pos)
            if not data:
                break
            pos += len(data)
            out.extend(decoder.feed(data))
        if final:
            out.extend(decoder.finish())
        return out, pos

    def follow(self, seg: Segment, pos: int, cfg: ReadConfig) -> Iterator[Chunk]:
        """Records appended from ``seg[pos:]`` on, through every later file."""
        decoder = Decoder(self.fmt, seg.path, self.warn, pos)
        writer_gone = False
        done = False
        while not done:
            gap = None
            chunks, pos = self._read_new(seg, pos, decoder, final=False)
            if not chunks:
                nxt = self._successor(seg)
                if nxt is not None:
                    # The writer never appends to a rotated file: finish it, then move on
                    # (a gap is reported after this file's last records).
                    chunks, pos = self._read_new(seg, pos, decoder, final=True)
                    gap = self._gap(seg, nxt)
                    seg.f.close()
                    seg, pos, writer_gone = nxt, 0, False
                    decoder = Decoder(self.fmt, seg.path, self.warn)
                    self.mark.set(seg.seq or 0)
                elif not writer_gone:
                    if writer_alive(self.path):
                        self.inotify.wait(_IDLE_WAIT)
                        self.inotify.names()
                    else:
                        writer_gone = True  # one more pass: data or a rotation may be last
                    continue
                else:
                    chunks, pos = self._read_new(seg, pos, decoder, final=True)
                    done = True
            for chunk in chunks:
                if cfg.until and chunk.ts > cfg.until:
                    return
                if not cfg.since or chunk.ts >= cfg.since:
                    yield chunk
            if gap:
                self.warn(gap)
        seg.f.close()


def _open_current(follower: Follower) -> Segment | None:
    """The current file; during a rotation its name is briefly missing, so wait for it."""
    while True:
        current = open_segment(follower.path)
        if current is not None:
            return current
        if not writer_alive(follower.path) and not os.path.exists(follower.path):
            return None
        follower.inotify.wait(0.05)
        follower.inotify.names()


def _snapshot(follower: Follower, before: int | None) -> tuple[list[Segment], Segment | None]:
    """Open every file of the set as of now, by generation, so that none is missed.

    ``before`` is the current generation read before the follower registered: from there on,
    every generation that rotation removes is kept under a hidden name, where ``_find`` finds
    it. Older files are taken as listed now.
    """
    listed = [s for s in map(read_seq, rotated_files(follower.path)) if s is not None]
    if before is not None:
        listed.append(before)
    current = _open_current(follower)
    if current is None or current.seq is None:
        return [], current
    segs = []
    for seq in range(min(listed, default=current.seq), current.seq):
        seg = follower._find(seq)
        if seg is not None:
            segs.append(seg)
    return segs, current


def follow_logs(path: str, fmt: RecordFormat, cfg: ReadConfig, warn: Warn) -> Iterator[Chunk]:
    """History as ``cfg`` asks, then every new record until the writer is gone for good."""
    before = read_seq(path)
    follower = Follower(path, fmt, warn)
    segs: list[Segment] = []
    current = None
    try:
        segs, current = _snapshot(follower, before)
        if current is None:
            return
        if current.seq is None:  # unstamped files: the rotated set by name, best effort
            segs = [s for s in map(open_segment, rotated_files(path)[:-1]) if s is not None]
        follower.mark.set(current.seq or 0)
        until_passed = yield from history(segs + [current], fmt, cfg, warn)
        if not until_passed:
            yield from follower.follow(current, current.size, cfg)
    finally:
        close_segments(segs)
        if current is not None:
            current.f.close()
        follower.close()
