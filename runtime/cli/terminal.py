"""The local end of a hijacked stream (``run -it``, ``attach``, ``exec -it``): the user's
terminal or pipes on one side, a container's input and output on the other.

``stream_hijacked`` copies stdin to the connection (until stdin's EOF, then half-closes it)
and the output back (raw with a terminal, Docker's multiplexed frames without) until the
daemon ends the stream. With a terminal, the local one is put in raw mode — every key,
ctrl-C included, goes to the container, whose pty does the echoing and line editing — and
restored however the stream ends; the window's size is sent at the start and on each
SIGWINCH, through the ``resize`` callback the caller gives (``/containers/{id}/resize`` or
``/exec/{id}/resize``). The detach keys are watched on the way out only to know that the
stream ended because of them: the daemon acts on them.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable

from ..detach_keys import EscapeWatch
from .client import HijackedConnection, read_frames

READ_SIZE = 32 << 10


class InputNotATerminal(Exception):
    """``-it`` with a stdin that is not a terminal: the docker CLI's refusal."""


def check_tty(interactive: bool, tty: bool, fd: int = 0) -> None:
    """The docker CLI's ``CheckTty``: ``-i -t`` needs a terminal on stdin."""
    if interactive and tty and not os.isatty(fd):
        raise InputNotATerminal("the input device is not a TTY")


def terminal_size(fd: int = 1) -> tuple[int, int] | None:
    """(height, width) of the terminal ``fd`` (stdout, else stdin), None without one."""
    from runtime.console import get_size

    for candidate in (fd, 0):
        if os.isatty(candidate):
            try:
                return get_size(candidate)
            except OSError:
                continue
    return None


class _RawMode:
    """The terminal ``fd`` in raw mode for the block's duration (``tty.setraw``, which also
    stops the local output processing: the container's pty already turned ``\\n`` into
    ``\\r\\n``)."""

    def __init__(self, fd: int, enabled: bool) -> None:
        self.fd, self.enabled, self.saved = fd, enabled, None

    def __enter__(self) -> "_RawMode":
        if self.enabled:
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


class _Resizer:
    """The window's size, sent at the start and on SIGWINCH (from a thread: the handler
    must not block in HTTP)."""

    def __init__(self, resize: Callable[[int, int], None] | None) -> None:
        self.resize = resize
        self.previous = None

    def __enter__(self) -> "_Resizer":
        if self.resize is not None and threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGWINCH, lambda _s, _f: self.send())
        self.send()
        return self

    def send(self) -> None:
        size = terminal_size() if self.resize is not None else None
        if size is not None and all(size):
            threading.Thread(target=self._call, args=size, daemon=True).start()

    def _call(self, height: int, width: int) -> None:
        try:
            self.resize(height, width)
        except Exception:  # noqa: BLE001 - a container that has exited: nothing to resize
            pass

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGWINCH, self.previous)


def stream_hijacked(conn: HijackedConnection, tty: bool, stdin: bool,
                    resize: Callable[[int, int], None] | None = None,
                    detach_keys: bytes = b"",
                    interrupt: Callable[[], None] | None = None) -> bool:
    """Copy stdin to ``conn`` and its output to stdout (and stderr) until the output ends.
    True if it ended because the user typed ``detach_keys`` (the container runs on).
    ``interrupt``: called on ctrl-C when the local terminal is not raw (docker's
    sig-proxy sends the container SIGINT), and the copy goes on."""
    detached = threading.Event()
    raw = tty and stdin and os.isatty(0)
    with _RawMode(0, raw), _Resizer(resize if tty else None):
        if stdin:
            threading.Thread(target=_send_input, args=(conn, detach_keys, detached),
                             name="stdin", daemon=True).start()
        while True:
            try:
                (_copy_raw if tty else _copy_frames)(conn)
                break
            except KeyboardInterrupt:
                if interrupt is None:
                    raise
                interrupt()
    return detached.is_set()


def _send_input(conn: HijackedConnection, keys: bytes, detached: threading.Event) -> None:
    watch = EscapeWatch(keys) if keys else None
    try:
        while data := os.read(0, READ_SIZE):
            conn.sendall(data)  # all of it: the daemon decides what the keys do
            if watch is not None and watch.feed(data)[1]:
                detached.set()
                return
    except OSError:
        return  # the connection is gone: the output's end follows
    conn.close_write()


def _copy_raw(conn: HijackedConnection) -> None:
    out = sys.stdout.buffer
    while data := conn.read():
        out.write(data)
        out.flush()


def _copy_frames(conn: HijackedConnection) -> None:
    outs = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    for stream, payload in read_frames(conn):
        out = outs.get(stream, sys.stderr.buffer)
        out.write(payload)
        out.flush()
