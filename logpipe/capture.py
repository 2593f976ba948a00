"""The capture loop: a process's stdout and stderr pipes → framer → storage driver.

This is the shim's data path, usable on its own (``logpipe capture``) and by benchmarks. It is
synchronous (one ``selectors`` loop) and reads up to 1 MiB per ``read()`` from pipes enlarged
to 1 MiB, so that one Python iteration handles thousands of lines. It never touches the
network and imports nothing heavy.

``check_log_dir`` is the rule for a directory that ``capture`` (often run as root) writes
into by name: see its docstring.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import selectors
import signal
import stat
import time
from typing import Callable, Mapping, Sequence

from . import heap
from .driver import LogInfo
from .errors import LogpipeError
from .framing import Clock, Framer
from .message import STDERR, STDOUT, Chunk
from .options import DEFAULT_MAX_BUFFER_SIZE
from .units import parse_ram_size

#: 256 KiB per read: big enough to batch thousands of lines, small enough to be recycled by
#: malloc instead of being mapped and faulted in afresh each time (1 MiB reads were 20 % slower).
READ_SIZE = 256 << 10
#: Pipes are enlarged so a burst of output waits in the kernel, not in the program's write().
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
#: How long a terminal's reader waits, in all, for the rest of a burst (``_read_more``).
BURST_WAIT = 0.01
#: Quiet seconds after output after which the buffers of the burst are given back (``heap``).
IDLE_RELEASE = 1.0


class CaptureStats:
    """What one capture saw; ``dropped_*`` count non-blocking drops (Docker counts none)."""

    __slots__ = ("lines", "bytes", "dropped_lines", "dropped_bytes")

    def __init__(self) -> None:
        self.lines = self.bytes = self.dropped_lines = self.dropped_bytes = 0


def enlarge_pipe(fd: int, size: int = PIPE_SIZE) -> None:
    """Bigger pipes mean fewer, larger reads; the limit is fs.pipe-max-size, so try smaller."""
    while size >= 65536:
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, size)
            return
        except OSError:
            size //= 2


def make_sink(driver, opts: Mapping[str, str]):
    """The driver itself in blocking mode; a bounded non-blocking buffer in front of it otherwise."""
    if opts.get("mode") == "non-blocking":
        from .nonblocking import NonBlockingSink  # a thread: only when asked for

        size = opts.get("max-buffer-size")
        return NonBlockingSink(driver, parse_ram_size(size) if size else DEFAULT_MAX_BUFFER_SIZE)
    return driver


def pump(fds: Mapping[str, int], sink, stats: CaptureStats,
         extra: Mapping[int, Callable[[], None]] | None = None, eager: bool = False) -> None:
    """Read both pipes (or one pty master) until EOF on each, writing every batch through
    ``sink``.

    ``extra`` maps other readable fds (the shim's control socket) to handlers called from the
    same loop, so the shim needs no threads. ``eager``: a terminal's output, whose
    unfinished lines are stored at once (``Framer``).
    """
    clock = Clock()
    framers = {fd: Framer(source, clock, eager) for source, fd in fds.items()}
    sel = selectors.DefaultSelector()
    for fd in framers:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    for fd, handler in (extra or {}).items():
        sel.register(fd, selectors.EVENT_READ, handler)
    heap.hold()
    quiet: float | None = None  # select's timeout: set while a burst's buffers are held
    while framers:
        batch: list[Chunk] = []
        events = sel.select(quiet)
        if not events and quiet is not None:
            heap.release()
            quiet = None
        for key, _ in events:
            if key.data is not None:
                key.data()
                continue
            fd = key.fd
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                continue
            except OSError as err:
                # A pty master whose last slave is closed answers EIO, not EOF (after
                # what was written is read): a container's terminal is one more door.
                if err.errno != errno.EIO:
                    raise
                data = b""
            if data and eager:
                data = _read_more(fd, data)
            if data:
                stats.bytes += len(data)
                batch.extend(framers[fd].feed(data))
            else:
                batch.extend(framers.pop(fd).close())
                sel.unregister(fd)
        if batch:
            stats.lines += sum(chunk.count for chunk in batch)
            sink.write(batch)
            quiet = IDLE_RELEASE
    sel.close()
    heap.release()


def _read_more(fd: int, data: bytes) -> bytes:
    """A pty gives at most 4 KiB per ``read()``, and a batch per read made a terminal's
    output 6x slower than pipes: the rest of a burst is read too, waiting at most
    ``BURST_WAIT`` in all for it, so that one batch (and one partial piece of an unfinished
    line) covers it. People do not see 10 ms; a prompt alone costs no wait at all, as
    nothing follows it."""
    parts, size = [data], len(data)
    deadline = 0.0
    while size < READ_SIZE:
        try:
            more = os.read(fd, READ_SIZE - size)
        except BlockingIOError:
            now = time.monotonic()
            deadline = deadline or now + BURST_WAIT
            if now >= deadline or not select.select([fd], [], [], deadline - now)[0]:
                break
            continue
        except OSError:  # EIO: the end, seen at the next read
            break
        if not more:
            break
        parts.append(more)
        size += len(more)
    return b"".join(parts) if len(parts) > 1 else data


def run_capture(argv: Sequence[str], driver, opts: Mapping[str, str],
                env: Mapping[str, str] | None = None) -> tuple[int, CaptureStats]:
    """Run ``argv`` with its output captured through ``driver``; returns (exit code, stats).

    The exit code follows Docker and shells: the command's status, or 128 + signal number.
    """
    import subprocess

    stats = CaptureStats()
    from .storage_guard import StorageGuard

    guard = StorageGuard(driver, report=_report)
    sink = make_sink(guard, opts)
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(env) if env is not None else None,
                            start_new_session=False)
    for pipe in (proc.stdout, proc.stderr):
        enlarge_pipe(pipe.fileno())
    forwarded = _forward_signals(proc)
    try:
        pump({STDOUT: proc.stdout.fileno(), STDERR: proc.stderr.fileno()}, sink, stats)
    finally:
        if sink is not guard:
            sink.close()
            stats.dropped_lines, stats.dropped_bytes = sink.dropped_lines, sink.dropped_bytes
        guard.close()
        if guard.lines_dropped:
            _report(f"{guard.lines_dropped} lines ({guard.bytes_dropped} bytes) could not be "
                    f"stored: {guard.last_error}")
        proc.stdout.close()
        proc.stderr.close()
        code = proc.wait()
        for sig, old in forwarded.items():
            signal.signal(sig, old)
    return (128 - code if code < 0 else code), stats


def _report(text: str) -> None:
    """A storage fault, to the capture's stderr (never raising: it may be a full disk too)."""
    try:
        os.write(2, f"logpipe capture: {text}\n".encode(errors="replace"))
    except OSError:
        pass


def _forward_signals(proc) -> dict[int, object]:
    """SIGINT/SIGTERM to the capture are passed on to the command, whose exit ends capture."""
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        old[sig] = signal.signal(sig, lambda s, _f: proc.send_signal(s))
    return old


def capture_info(log_dir: str, container_id: str, name: str, opts: Mapping[str, str],
                 labels: Mapping[str, str], env: Sequence[str], argv: Sequence[str]) -> LogInfo:
    """The ``LogInfo`` of a standalone capture: the command plays the container."""
    return LogInfo(container_id=container_id, log_dir=log_dir, config=dict(opts),
                   container_name="/" + name if name else "", entrypoint=argv[0] if argv else "",
                   args=tuple(argv[1:]), env=tuple(env), labels=dict(labels))


class UnsafeLogDir(LogpipeError):
    """``capture --log-dir`` names a directory someone else could plant files or symlinks in."""


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def check_log_dir(path: str) -> None:
    """Refuse a log directory another user controls, the way OpenSSH's ``StrictModes`` and
    logrotate do: capture creates and appends files there *by name*, so whoever can write in
    the directory could plant a symlink (``capture.json.tmp`` → ``/etc/shadow``) and have a
    root capture write through it.

    The rule: the directory must be owned by root or by the user running capture and be
    writable by nobody else (no group or other write bit, sticky or not); every directory
    above it must be owned by root or that user and, if others may write in it, carry the
    sticky bit (as ``/tmp`` does: others then cannot rename or replace what is not theirs);
    and a symlink on the way must be owned by root or that user.
    """
    uid = os.geteuid()
    trusted = (0, uid)
    here = "/"
    for part in os.path.abspath(path).split("/")[1:]:
        here = os.path.join(here, part)
        st = os.lstat(here)
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in trusted:
            raise UnsafeLogDir(f"refusing log directory {path}: the symlink {here} is owned by "
                               f"{_owner(st.st_uid)}, not by root or by {_owner(uid)}")
    real = os.path.realpath(path)
    here = real
    while True:
        st = os.stat(here)
        what = "it" if here == real else f"its parent {here}"
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeLogDir(f"refusing log directory {path}: not a directory")
        if st.st_uid not in trusted:
            raise UnsafeLogDir(f"refusing log directory {path}: {what} is owned by "
                               f"{_owner(st.st_uid)}, not by root or by {_owner(uid)}")
        if st.st_mode & 0o022 and (here == real or not st.st_mode & stat.S_ISVTX):
            raise UnsafeLogDir(f"refusing log directory {path}: {what} is writable by "
                               f"{'others' if st.st_mode & 0o002 else 'its group'}"
                               f"{'' if here == real else ' without the sticky bit'} "
                               f"(chmod go-w {here})")
        if here == "/":
            return
        here = os.path.dirname(here)
