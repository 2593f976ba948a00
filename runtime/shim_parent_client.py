"""The daemon's side of the shim parent (``runtime/shim_parent.py``): find it, start it,
replace it, ask it for a shim, stop it.

``ShimParent.spawn`` returns the pid of a forked shim, or raises ``ParentUnusable`` when no
shim was forked — only then may the caller start an exec'd one instead, so that a container
always starts and never gets two shims. The proof is the pipe whose write end goes to the
parent with the request: the shim's pid arrives on it, or EOF once every copy of the write
end is closed without one (the parent refused, died, or could not fork). A parent that does
not answer at all within ``timeout`` after taking the request leaves the question open: that
is a ``ShimError``, not a fallback.

A parent is started on demand (at the first spawn, under a lock: one per data root), in its
own session and not as the daemon's child; a restarted daemon uses the one that is running.
A parent that is gone (killed, crashed) is started again; one whose code or inheritance no
longer matches what an exec'd shim would get (it answers ``stale``) is stopped and replaced.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time

from .shim_parent import LOG, SOCKET, inheritance
from .shimclient import ParentUnusable, ShimError, connect_unix, shim_environment

LOCK = "shim-parent.lock"
#: After a parent failed to start, shims are exec'd for this long before trying again.
RETRY_AFTER = 30.0
#: A daemon shutting down waits no longer than this for the parent to acknowledge ``stop``.
STOP_TIMEOUT = 2.0


class ShimParent:
    """The shim parent of one data root, as the daemon sees it."""

    def __init__(self, data_root: str, python: str = sys.executable,
                 timeout: float = 10.0) -> None:
        self.root = os.path.abspath(data_root)
        self.python = python
        self.timeout = timeout
        self._lock = threading.Lock()
        self._failed_at = -RETRY_AFTER  # when a parent last failed to start

    def spawn(self, container_dir: str) -> int:
        """Fork the shim of ``container_dir``; its pid."""
        env = shim_environment(self.python)
        expect = inheritance(env, self.python)
        try:
            return self._spawn(container_dir, expect)
        except _Stale as err:
            self._restart(env, str(err))  # stop it, start another
        except ParentUnusable:
            self._restart(env, "")  # none runs (or it died): start one
        try:
            return self._spawn(container_dir, expect)
        except _Stale as err:
            raise ParentUnusable(f"a new shim parent is stale at once: {err}") from None

    def stop(self) -> bool:
        """Ask the running parent to exit (a daemon shutting down): whether one answered."""
        try:
            self._request({"op": "stop"}, timeout=min(self.timeout, STOP_TIMEOUT))
            return True
        except (OSError, ShimError, ValueError):
            return False

    # -- internals -----------------------------------------------------------------------

    def _spawn(self, container_dir: str, expect: dict) -> int:
        directory = os.path.abspath(container_dir)
        try:
            sock = connect_unix(self.root, SOCKET, self.timeout)
        except OSError as err:
            raise ParentUnusable(f"no shim parent: {err}") from None
        r, w = os.pipe()
        with sock:
            try:
                request = json.dumps({"op": "spawn", "dir": directory, "expect": expect})
                try:
                    socket.send_fds(sock, [request.encode() + b"\n"], [w])
                finally:
                    os.close(w)  # from now on, EOF on r means every other copy is closed
                reply = _read_reply(sock)
            except (OSError, ValueError) as err:
                reply = {"error": str(err)}
            try:
                out = _read_pid(r, self.timeout)
            finally:
                os.close(r)
        if out:
            return out
        if "stale" in reply:
            raise _Stale(reply["stale"])
        raise ParentUnusable(f"the shim parent forked no shim: {reply.get('error', reply)}")

    def _restart(self, env: dict, why: str) -> None:
        """Start a parent (replacing a stale one) unless another thread just did."""
        with self._lock:
            fd = os.open(os.path.join(self.root, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if why:
                    self.stop()
                elif self._answers():
                    return  # started meanwhile
                self._start(env)
            finally:
                os.close(fd)

    def _answers(self) -> bool:
        try:
            connect_unix(self.root, SOCKET, self.timeout).close()
            return True
        except OSError:
            return False

    def _start(self, env: dict) -> None:
        if time.monotonic() - self._failed_at < RETRY_AFTER:
            raise ParentUnusable("the shim parent failed to start a moment ago")
        try:
            self._exec_parent(env)
        except (OSError, ParentUnusable):
            self._failed_at = time.monotonic()
            raise

    def _exec_parent(self, env: dict) -> None:
        argv = [self.python, "-S", "-m", "runtime.shim_parent", self.root]
        with open(os.path.join(self.root, LOG), "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=log, env=env, start_new_session=True,
                                    close_fds=True, cwd=self.root)
        with proc:
            out = proc.stdout.read()  # its pid, once its socket listens
            proc.wait()
        if not out.strip().isdigit():
            raise ParentUnusable(f"the shim parent did not start (see {LOG} in {self.root})")

    def _request(self, request: dict, timeout: float | None = None) -> dict:
        with connect_unix(self.root, SOCKET, timeout or self.timeout) as sock:
            sock.sendall(json.dumps(request).encode() + b"\n")
            return _read_reply(sock)


class _Stale(Exception):
    """The parent refused: its code or inheritance differs from an exec'd shim's."""


def _read_reply(sock: socket.socket) -> dict:
    buf = b""
    while not buf.endswith(b"\n"):
        data = sock.recv(65536)
        if not data:
            raise ConnectionResetError("the shim parent closed the connection")
        buf += data
    return json.loads(buf)


def _read_pid(fd: int, timeout: float) -> int:
    """The pid written on the pipe; 0 at EOF without one. A silence of ``timeout`` is an
    error: a shim may or may not have been forked."""
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise ShimError(f"the shim parent neither forked a shim nor refused within "
                            f"{timeout:g} s")
        data = os.read(fd, 64)
        if not data:
            return 0
        buf += data
    return int(buf)
