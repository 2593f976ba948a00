"""The read side of a container's FIFO: big reads, one batch of entries per read, and the
answer to StopLogging's question "is everything Docker wrote so far stored?".

Docker asks that question before it closes its end: moby's ``pluginAdapter.Close`` calls
StopLogging, and closes the FIFO only once the plugin has answered. The end of what Docker
wrote is therefore not an EOF: it is the pipe found empty between two reads of the thread
that reads it (Docker holds the adapter's lock while it stops, so nothing is written after
the question). This module must not open drivers or know about the protocol: it reads,
decodes (``entry``) and hands batches to a sink.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import termios
import threading
from typing import Any

#: One read takes what a pipe enlarged to ``logpipe.capture.PIPE_SIZE`` holds.
READ_SIZE = 1 << 20


class FlushRequest:
    """StopLogging's question to the drain thread, through a pipe that wakes its ``poll``.
    Each question is a ticket; the thread answers every ticket it had taken before a read
    after which it found the pipe empty, and all of them when it ends."""

    def __init__(self) -> None:
        self.rfd, self.wfd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.cond = threading.Condition()
        self.asked = self.answered = 0
        self.ended = False

    def ask(self, timeout: float) -> bool:
        """Whether the answer came within ``timeout`` seconds."""
        with self.cond:
            if self.ended:
                return True
            self.asked += 1
            ticket = self.asked
            try:
                os.write(self.wfd, b"?")
            except BlockingIOError:  # questions already waiting: the thread is woken
                pass
            return self.cond.wait_for(lambda: self.ended or self.answered >= ticket, timeout)

    def take(self) -> int:
        """(drain thread) The last ticket asked, once the wake-up pipe is emptied."""
        try:
            while os.read(self.rfd, 4096):
                pass
        except BlockingIOError:
            pass
        with self.cond:
            return self.asked

    def answer(self, ticket: int) -> None:
        with self.cond:
            self.answered = max(self.answered, ticket)
            self.cond.notify_all()

    def end(self) -> None:
        """(drain thread) Nothing more will be read: every question is answered."""
        with self.cond:
            self.ended = True
            self.cond.notify_all()
            os.close(self.rfd)
            os.close(self.wfd)


def pending(fd: int) -> int:
    """Bytes waiting in the pipe ``fd``."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def drain(fd: int, sink, counter: Any = None, adopted: bool = False,
          flush: FlushRequest | None = None) -> None:
    """Read the FIFO ``fd`` until EOF (closing it), writing each read's entries through
    ``sink`` as one batch. ``adopted``: the FIFO was read by a plugin that died, and may
    start inside a frame. ``flush``: answered whenever the pipe is found empty after it
    was asked."""
    from logpipe.capture import enlarge_pipe

    from .entry import decode_frames, resync

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if flush is not None:
        poller.register(flush.rfd, select.POLLIN)
    ticket = 0
    try:
        enlarge_pipe(fd)
        os.set_blocking(fd, False)
        buf = b""
        while True:
            poller.poll()
            if flush is not None:
                ticket = flush.take() or ticket
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:  # only the question woke us
                data = None
            if data == b"":
                break
            if data:
                buf = buf + data if buf else data
                if adopted and (start := resync(buf)) is not None:
                    buf, adopted = buf[start:], False
                if not adopted:
                    chunks, used = decode_frames(buf)
                    buf = buf[used:]
                    if chunks:
                        sink.write(chunks)
                        if counter is not None:
                            counter.lines += len(chunks)
            if ticket and pending(fd) == 0:
                flush.answer(ticket)
                ticket = 0
    finally:
        os.close(fd)
