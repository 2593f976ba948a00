"""The shim's side of a container's stdin (``-i``): ``<dir>/stdin.sock`` → the container.

The shim holds the write end of the container's stdin — a pipe's, or the pty master with
``-t`` — so that a daemon restart does not close it. The daemon forwards what an attached
client sends by connecting to ``stdin.sock`` and writing raw bytes; every byte received is
written to the container's stdin, in order, from the shim's selector loop.

Why a socket of its own rather than an op of the control socket: the control protocol is
one JSON object per line, which would have to encode binary input (base64) and parse every
keystroke; a stream socket carries the bytes as they are, gives backpressure for free (the
shim stops reading a connection while the container does not read its stdin), and its EOF
*is* the end of an attach.

Docker's rule, applied here because only the shim outlives the daemon: when a connection
ends (the client's EOF or detach, the client or the daemon gone) and the container has
``StdinOnce`` without a terminal, the container's stdin is closed once what was received is
written — ``echo hello | run -i busybox cat`` ends. With a terminal the stdin is never
closed (Docker ends the attach instead). Once closed, ``stdin.sock`` is removed: a later
attach finds no stdin, as with Docker.

It must never block the shim: every descriptor is non-blocking, a client that sends nothing
costs nothing, and while the container does not take what was received (at most one read
per connection) no connection is read.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
from typing import Callable

READ_SIZE = 64 << 10


class StdinRelay:
    """Connections on ``path`` → the container's stdin ``fd``.

    ``fileno`` is a selector of its own (readable when any of its descriptors is ready, for
    reading or writing): the shim registers it in its loop and calls ``ready``."""

    def __init__(self, path: str, fd: int, close_on_eof: bool, owns_fd: bool,
                 report: Callable[[str], None]) -> None:
        self.path, self.fd = path, fd
        self.close_on_eof, self.owns_fd, self.report = close_on_eof, owns_fd, report
        self.sel = selectors.DefaultSelector()
        self.conns: set[socket.socket] = set()
        self.pending = bytearray()
        self.writing = False  # the fd is registered for writing (the conns are not read)
        self.eof = False  # close the stdin once ``pending`` is written
        self.closed = False
        os.set_blocking(fd, False)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.listener.bind(path)
        finally:
            os.umask(old)
        self.listener.listen(8)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, self._accept)

    def fileno(self) -> int:
        return self.sel.fileno()

    def ready(self) -> None:
        for key, _ in self.sel.select(0):
            key.data(key.fileobj)

    def close(self) -> None:
        """The container has exited (or its stdin is closed): nobody can write any more."""
        for conn in list(self.conns):
            self._drop(conn)
        if self.listener is not None:
            self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        if self.writing:
            self.sel.unregister(self.fd)
            self.writing = False
        if not self.closed:
            self.closed = True
            if self.owns_fd:
                os.close(self.fd)
        self.pending.clear()

    # -- the connections -----------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # EMFILE and the like: the daemon will retry
                self.report(f"stdin socket: {err}")
                return
            conn.setblocking(False)
            self.conns.add(conn)
            if not self.writing:
                self.sel.register(conn, selectors.EVENT_READ, self._read)

    def _read(self, conn: socket.socket) -> None:
        if conn not in self.conns or self.writing:  # dropped or paused earlier in this turn
            return
        try:
            data = conn.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            if self.close_on_eof:
                self.eof = True
                self._write()
            return
        self.pending += data
        self._write()

    def _drop(self, conn: socket.socket) -> None:
        self.conns.discard(conn)
        if not self.writing:
            self.sel.unregister(conn)
        conn.close()

    # -- the container's stdin -----------------------------------------------------------

    def _write(self, _fd: object = None) -> None:
        if self.closed:
            return
        while self.pending:
            try:
                n = os.write(self.fd, self.pending[:READ_SIZE])
            except BlockingIOError:
                break
            except OSError as err:
                # EPIPE: the container closed its stdin; EIO: its terminal is gone. What
                # it will never read is dropped.
                if err.errno not in (errno.EPIPE, errno.EIO):
                    self.report(f"writing the container's stdin: {err}")
                self.pending.clear()
                self.eof = self.eof or self.owns_fd
                break
            del self.pending[:n]
        self._pace()
        if self.eof and not self.pending:
            self.close()

    def _pace(self) -> None:
        """Read the connections, or wait for the container to take what is pending."""
        busy = len(self.pending) > 0
        if busy == self.writing or self.closed:
            return
        if busy:  # stop reading: the container is slower than the client
            for conn in self.conns:
                self.sel.unregister(conn)
            self.sel.register(self.fd, selectors.EVENT_WRITE, self._write)
        else:
            self.sel.unregister(self.fd)
            for conn in self.conns:
                self.sel.register(conn, selectors.EVENT_READ, self._read)
        self.writing = busy
