"""A small Engine-API client over a unix socket, for the ``logpipe`` CLI (``http.client`` only).

Where the daemon is: ``-H/--host``, else ``$LOGPIPE_HOST``, else the default socket
(``runtime/hosts.py``: ``/run/logpipe/logpipe.sock`` for root, ``$XDG_RUNTIME_DIR/logpipe.sock``
otherwise). When nothing answers on the default socket, the client starts a daemon in the
background (in its own session, its output in ``logpipe-daemon.log`` next to the socket),
says so on stderr, and waits for it to answer; ``LOGPIPE_NO_AUTOSTART=1`` turns that off.

The daemon's errors arrive as ``APIError`` with Docker's message and status; the commands
print them as the docker CLI does. This module must stay light: every CLI command imports it.
``json`` and ``stream`` (the commonest commands' requests) speak HTTP through ``http1``;
``request`` (streamed bodies, whole responses for callers that want ``http.client``'s) through
``http.client``, imported on first use.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time

from logpipe.errors import LogpipeError

from ..hosts import default_host, socket_path
from . import http1

TYPE_CHECKING = False  # typing costs milliseconds at every start: for the checker only
if TYPE_CHECKING:
    import argparse
    import http.client
    from typing import Any, BinaryIO, Callable, Iterator, Mapping, TypeVar

    Answer = TypeVar("Answer", "http.client.HTTPResponse", http1.Response)

API_PREFIX = "/v1.41"
DAEMON_LOG = "logpipe-daemon.log"
AUTOSTART_TIMEOUT = 30.0


class APIError(LogpipeError):
    """The daemon refused the request; ``str()`` is its message (Docker's wording)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class DaemonUnavailable(LogpipeError):
    """Nothing answers on the socket (and no daemon could be started)."""


@functools.cache
def _unix_connection() -> type:
    """``http.client`` over a unix socket. Built on first use: ``http.client`` and ``socket``
    cost ~25 ms to import, which commands that never talk to the daemon (``logs --log-dir``,
    ``capture``) should not pay."""
    import http.client
    import socket

    class UnixConnection(http.client.HTTPConnection):
        def __init__(self, path: str, timeout: float | None = None) -> None:
            super().__init__("localhost", timeout=timeout)
            self.path = path

        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
            self.sock = sock

    return UnixConnection


class Client:
    """Requests to one daemon. Each request uses its own connection (streams may be open)."""

    def __init__(self, host: str | None = None, autostart: bool | None = None) -> None:
        explicit = host or os.environ.get("LOGPIPE_HOST")
        self.host = explicit or default_host()
        self.path = socket_path(self.host)
        if autostart is None:
            autostart = os.environ.get("LOGPIPE_NO_AUTOSTART", "") not in ("1", "true", "yes")
        self.autostart = autostart
        self._started = False

    # -- transport ------------------------------------------------------------------------

    def _send(self, method: str, path: str, query: Mapping[str, Any] | None,
              body: Any, headers: Mapping[str, str] | None,
              timeout: float | None) -> http.client.HTTPResponse:
        url = _url(path, query)
        hdrs = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn = _unix_connection()(self.path, timeout)
        encode_chunked = body is not None and not isinstance(body, (bytes, str)) \
            and "Content-Length" not in hdrs
        if encode_chunked:
            hdrs["Transfer-Encoding"] = "chunked"
        conn.request(method, url, body=body, headers=hdrs, encode_chunked=encode_chunked)
        return conn.getresponse()

    def _exchange(self, method: str, path: str, query: Mapping[str, Any] | None,
                  body: dict | list | bytes | str | None,
                  timeout: float | None) -> http1.Response:
        """``_send`` through ``http1``: a body sent whole, no ``http.client``."""
        headers = {}
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif isinstance(body, str):
            body = body.encode("latin-1")  # as http.client sends a str
        return http1.exchange(self.path, method, _url(path, query), body, headers, timeout)

    def request(self, method: str, path: str, query: Mapping[str, Any] | None = None,
                body: Any = None, headers: Mapping[str, str] | None = None,
                timeout: float | None = None) -> http.client.HTTPResponse:
        """The response, status < 400 (its body unread); ``APIError`` otherwise."""
        return self._checked(lambda: self._send(method, path, query, body, headers, timeout))

    def stream(self, method: str, path: str, query: Mapping[str, Any] | None = None,
               body: dict | list | bytes | str | None = None,
               timeout: float | None = None) -> http1.Response:
        """``request`` without ``http.client``, for a body sent whole: the response (status
        < 400, its body unread, ``read``/``read1``/``getheader``); ``APIError`` otherwise."""
        return self._checked(lambda: self._exchange(method, path, query, body, timeout))

    def _checked(self, send: Callable[[], Answer]) -> Answer:
        """``send()``'s response once a daemon answers (started here if need be, see the
        module's docstring); the daemon's refusal as ``APIError``."""
        try:
            resp = send()
        except (FileNotFoundError, ConnectionRefusedError) as err:
            if not self.autostart or self._started:
                raise DaemonUnavailable(
                    f"Cannot connect to the logpipe daemon at {self.host}. "
                    f"Is the logpipe daemon running? ({err.strerror})") from None
            self.start_daemon()
            resp = send()
        if resp.status >= 400:
            data = resp.read()
            try:
                message = json.loads(data)["message"]
            except (ValueError, KeyError, TypeError):
                message = data.decode(errors="replace").strip() or resp.reason
            raise APIError(resp.status, message)
        return resp

    def json(self, method: str, path: str, query: Mapping[str, Any] | None = None,
             body: Any = None, timeout: float | None = None) -> Any:
        whole = body is None or isinstance(body, (dict, list, bytes, str))
        resp = (self.stream(method, path, query, body, timeout=timeout) if whole
                else self.request(method, path, query, body, timeout=timeout))  # a file
        data = resp.read()
        return json.loads(data) if data.strip() else None

    def hijack(self, path: str, query: Mapping[str, Any] | None = None,
               body: Any = None) -> "HijackedConnection":
        """``POST path`` with Docker's ``Upgrade: tcp``: after ``101 UPGRADED`` the
        connection carries the raw streams both ways (attach, exec start)."""
        import socket

        url = _url(path, query)
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"POST {url} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
                f"Upgrade: tcp\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                sock.connect(self.path)
            except (FileNotFoundError, ConnectionRefusedError):
                self.request("GET", "/_ping").read()  # autostart, or Docker's refusal
                sock.connect(self.path)
            sock.sendall(head + data)
            try:
                status, _, headers, rest = http1.read_head(sock)
            except http1.RemoteDisconnected as err:
                raise DaemonUnavailable(str(err)) from None
            if status == 101:
                conn, sock = HijackedConnection(sock, rest), None
                return conn
            body_bytes = _read_body(sock, headers, rest)
        finally:
            if sock is not None:
                sock.close()
        try:
            message = json.loads(body_bytes)["message"]
        except (ValueError, KeyError, TypeError):
            message = body_bytes.decode(errors="replace").strip() or f"status {status}"
        raise APIError(status, message)

    # -- autostart ------------------------------------------------------------------------

    def start_daemon(self) -> None:
        """Start ``logpipe daemon`` in the background and wait until it answers."""
        self._started = True
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        log_path = os.path.join(os.path.dirname(self.path) or ".", DAEMON_LOG)
        with open(log_path, "ab") as log:
            import subprocess

            proc = subprocess.Popen([sys.executable, "-m", "runtime.cli", "daemon",
                                     "-H", "unix://" + self.path],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, close_fds=True)
        sys.stderr.write(f"logpipe: no daemon answered on {self.host}: started one in the "
                         f"background (pid {proc.pid}); its log is {log_path}\n")
        deadline = time.monotonic() + AUTOSTART_TIMEOUT
        delay = 0.01
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DaemonUnavailable(f"the logpipe daemon exited at start (status "
                                        f"{proc.returncode}): {_tail(log_path)}")
            try:
                self._send("GET", "/_ping", None, None, None, 2.0).read()
                return
            except OSError:
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        raise DaemonUnavailable(f"the logpipe daemon did not answer within "
                                f"{AUTOSTART_TIMEOUT:g} s: see {log_path}")

    # -- Engine API calls used by the commands ----------------------------------------------

    def container(self, name: str) -> dict[str, Any]:
        return self.json("GET", f"/containers/{ref(name)}/json")

    def post(self, path: str, query: Mapping[str, Any] | None = None,
             timeout: float | None = None) -> None:
        self.request("POST", path, query, timeout=timeout).read()


class HijackedConnection:
    """A hijacked connection: ``read`` the container's output (what came with the answer's
    head first), ``sendall`` its input, ``close_write`` for the input's end."""

    def __init__(self, sock, first: bytes = b"") -> None:
        self.sock, self._first = sock, first

    def read(self, n: int = 65536) -> bytes:
        if self._first:
            data, self._first = self._first[:n], self._first[n:]
            return data
        try:
            return self.sock.recv(n)
        except OSError:
            return b""

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        import socket

        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


def _read_body(sock, headers: dict[str, str], rest: bytes) -> bytes:
    """An error's body: ``Content-Length`` bytes (what Docker and logpipe send with one)."""
    length = int(headers.get("content-length", "0") or 0)
    while len(rest) < length:
        data = sock.recv(length - len(rest))
        if not data:
            break
        rest += data
    return rest[:length]


def read_frames(resp: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Docker's multiplexed stream as ``(stream, payload)``: 1 stdout, 2 stderr, 3 error."""
    while True:
        head = _read_exact(resp, 8)
        if len(head) < 8:
            return
        stream, length = head[0], int.from_bytes(head[4:], "big")  # Docker's ``>BxxxL``
        payload = _read_exact(resp, length)
        yield stream, payload
        if len(payload) < length:
            return


def _read_exact(resp: BinaryIO, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        data = resp.read(n - len(buf))
        if not data:
            break
        buf += data
    return buf


def _tail(path: str, size: int = 1500) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return "(no log)"


def client_of(args: argparse.Namespace) -> Client:
    """The client for a command: the global ``-H/--host`` if given."""
    return Client(getattr(args, "global_host", None) or None)


def ref(name: str) -> str:
    """A container or image name as one path segment of a URL."""
    return http1.quote(name)


def _url(path: str, query: Mapping[str, Any] | None) -> str:
    """The request's target: the API's version, ``path``, and the query without its
    ``None`` values (a list: its key repeated)."""
    q = {k: v for k, v in (query or {}).items() if v is not None}
    return API_PREFIX + path + ("?" + http1.query_string(q) if q else "")
