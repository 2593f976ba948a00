"""The on-disk conventions of a rotated log set, shared by its writer and its readers.

* Names: ``x`` is current, ``x.1`` … ``x.N`` (or ``x.N.gz``) are older, ``x.N`` oldest.
* Every file carries its generation number in the xattr ``user.logpipe.seq``, so a reader
  always knows which file follows the one it holds, however often files are renamed, and in
  ``user.logpipe.before`` how many records and bytes all earlier generations held, so a
  reader that finds generations missing knows exactly how much it missed (counted only while
  someone follows: see ``read_before``).
* The writer holds an exclusive ``flock`` on ``x.lock`` while the log is open; a reader that
  can take a shared lock knows the writer is gone for good and stops following.
"""

from __future__ import annotations

import fcntl
import os
import re

SEQ_XATTR = "user.logpipe.seq"
BEFORE_XATTR = "user.logpipe.before"

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


def read_before(fd_or_path: int | str) -> tuple[int, int, int] | None:
    """``(anchor, records, bytes)``: the records and bytes in generations ``anchor`` up to
    this one (excluded), or None (not stamped). Counts are only comparable between files of
    the same anchor; the writer starts a new anchor whenever nobody follows (see rotation)."""
    try:
        anchor, records, size = os.getxattr(fd_or_path, BEFORE_XATTR).split()
        return int(anchor), int(records), int(size)
    except (OSError, ValueError):
        return None


def write_before(fd: int, before: tuple[int, int, int]) -> None:
    try:
        os.setxattr(fd, BEFORE_XATTR, b"%d %d %d" % before)
    except OSError:
        pass  # no xattr support: a reader that misses files cannot say how much


def copy_stamps(src_fd: int, dst_fd: int) -> None:
    """Carry a file's stamps over to its compressed copy."""
    seq = read_seq(src_fd)
    if seq is not None:
        write_seq(dst_fd, seq)
    before = read_before(src_fd)
    if before is not None:
        write_before(dst_fd, before)


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


# -- followers: generations a live follower still needs are kept, not deleted ---------------
#
# A follower registers a marker file ``.x.follow.<pid>-<rand>`` that it holds locked and that
# holds the lowest generation it still has to read. When rotation would delete a generation
# that some live follower still needs, the writer renames it to ``.x.keep.<seq>`` instead;
# keeps nobody needs are swept at every rotation. The writer never waits for a reader, and a
# follower that dies releases its lock, so its marker stops counting.
#
# Keeps are bounded (``keep_budget``): the newest stay while they hold no more than the log's
# own budget again (``max-size`` × ``max-file``, at least 32 MiB), so a follower that stops
# reading can never fill the disk. A follower that falls further behind finds its next
# generation gone, continues with the oldest one left and reports how many records and
# bytes it missed (from the ``before`` stamps), never a silent gap.


def keep_name(path: str, seq: int, gz: bool = False) -> str:
    directory, base = os.path.split(path)
    return os.path.join(directory, f".{base}.keep.{seq}" + (".gz" if gz else ""))


def _hidden(path: str, kind: str) -> tuple[str, str]:
    directory, base = os.path.split(path)
    return directory or ".", f".{base}.{kind}."


def has_followers(path: str) -> bool:
    return min_follower_position(path) is not None


def min_follower_position(path: str) -> int | None:
    """The lowest generation a live follower still needs; dead followers' markers are removed."""
    directory, prefix = _hidden(path, "follow")
    lowest: int | None = None
    for name in os.listdir(directory):
        if not name.startswith(prefix):
            continue
        full = os.path.join(directory, name)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pos = int(os.pread(fd, 32, 0) or b"0")
                lowest = pos if lowest is None else min(lowest, pos)
            else:
                _unlink_quietly(full)  # its follower is gone
        except ValueError:
            lowest = 0  # being written right now: be safe, keep everything
        finally:
            os.close(fd)
    return lowest


def discard_generation(name: str, path: str) -> None:
    """Remove a rotated-out file, unless a live follower still needs its generation."""
    seq = read_seq(name)
    if seq is not None:
        needed = min_follower_position(path)
        if needed is not None and needed <= seq:
            try:
                os.rename(name, keep_name(path, seq, name.endswith(".gz")))
                return
            except FileNotFoundError:
                return
    _unlink_quietly(name)


def kept_generations(path: str) -> list[tuple[int, str]]:
    """(generation, name) of the kept files of ``path``, oldest first."""
    directory, prefix = _hidden(path, "keep")
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix)]
    except FileNotFoundError:
        return []
    kept = []
    for name in names:
        try:
            seq = int(name[len(prefix):].removesuffix(".gz"))
        except ValueError:
            continue
        kept.append((seq, os.path.join(directory, name)))
    kept.sort()
    return kept


#: Kept files may always hold this much, however small the log's own budget: a burst of
#: output must not cut off a follower that is only a moment behind.
KEEP_FLOOR = 32 << 20


def keep_budget(max_size: int, max_file: int) -> int:
    """Bytes of kept files a rotated log allows: twice its own budget, at least 32 MiB. Twice,
    because a follower that keeps up on average still lags behind a burst: with a single
    budget, a busy 2-core machine made ``logs -f`` of a 100 MB burst into 10m x 3 miss lines."""
    return max(2 * max_size * max_file, KEEP_FLOOR)


def sweep_keeps(path: str, budget: int | None = None) -> None:
    """Delete kept generations that no live follower needs any more; beyond ``budget``
    bytes of kept files, also the oldest ones a follower still needs (it will say so)."""
    kept = kept_generations(path)
    if not kept:
        return
    needed = min_follower_position(path)
    left = []
    for seq, name in kept:
        if needed is None or seq < needed:
            _unlink_quietly(name)
        else:
            left.append(name)
    if budget is None:
        return
    total = 0
    for name in reversed(left):  # the newest are kept, the oldest go first
        try:
            total += os.stat(name).st_size
        except FileNotFoundError:
            continue
        if total > budget:
            _unlink_quietly(name)


def _unlink_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass


class FollowerMark:
    """A follower's registration: a locked marker holding the generation it needs next.

    It starts at 0 (everything is needed) until the follower knows where it starts.
    """

    def __init__(self, path: str) -> None:
        directory, prefix = _hidden(path, "follow")
        ident = f"{os.getpid()}-{os.urandom(4).hex()}"
        self.name = os.path.join(directory, prefix + ident)
        # Locked and filled before it is published: an unlocked marker means a dead follower.
        tmp = os.path.join(directory, _hidden(path, "registering")[1] + ident)
        self.fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.set(0)
        os.rename(tmp, self.name)

    def set(self, seq: int) -> None:
        data = b"%020d" % seq  # fixed width: a reader never sees a half-rewritten number
        os.pwrite(self.fd, data, 0)

    def close(self) -> None:
        if self.fd >= 0:
            _unlink_quietly(self.name)
            os.close(self.fd)
            self.fd = -1
