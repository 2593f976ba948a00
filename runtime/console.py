"""Terminals: runc's console socket, and a terminal's size.

A container or an exec with a terminal (``-t``) has no stdout/stderr pipes: its output is a
pty. runc creates the pty inside the container and hands the master to whoever asked for
it over a unix socket (``runc run|exec --console-socket PATH``), as ``SCM_RIGHTS`` ancillary
data on one connection. The receiver owns the master from then on: the shim for a
container's terminal (so it is captured and logged, and survives the daemon), the daemon
for an exec's (Docker does not log exec output).
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios

#: The console socket's name in the directory it is made in.
CONSOLE_SOCKET = "console.sock"


class ConsoleSocket:
    """A listening socket for runc's ``--console-socket``; ``receive`` returns the master.

    It lives in a private temporary directory: a unix socket path must stay under 108
    bytes, which a path inside a deep data root may not. The shim passes the container's
    directory instead when that path is short enough, and spares itself ``tempfile``'s
    imports (runc changes to the bundle's directory: the path must be absolute)."""

    def __init__(self, directory: str | None = None) -> None:
        if directory is None:
            import tempfile

            self._dir: str | None = tempfile.mkdtemp(prefix="logpipe-console-")
            self.path = os.path.join(self._dir, CONSOLE_SOCKET)
        else:
            self._dir = None
            self.path = os.path.join(directory, CONSOLE_SOCKET)
            try:
                os.unlink(self.path)  # a previous run's
            except FileNotFoundError:
                pass
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._sock.bind(self.path)
        # Only the owner (root, runc) may connect. Not through the umask: it is the whole
        # process's, and the daemon has threads (a temporary directory is private anyway).
        os.chmod(self.path, 0o600)
        self._sock.listen(1)

    def receive(self, timeout: float = 30.0) -> int:
        """The pty master runc sent (blocks until it connects, at most ``timeout`` s)."""
        self._sock.settimeout(timeout)
        conn, _ = self._sock.accept()
        with conn:
            conn.settimeout(timeout)
            _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        if not fds:
            raise OSError("runc sent no terminal on the console socket")
        os.set_inheritable(fds[0], False)
        return fds[0]

    def close(self) -> None:
        self._sock.close()
        for name in (self.path, self._dir):
            if name is None:
                continue
            try:
                (os.unlink if name == self.path else os.rmdir)(name)
            except OSError:
                pass

    def __enter__(self) -> "ConsoleSocket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def set_size(fd: int, height: int, width: int) -> None:
    """Docker's ``resize`` (``h``, ``w``): the kernel signals SIGWINCH to the foreground
    process group of the terminal."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    """(height, width) of the terminal ``fd``."""
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols
