"""One HTTP/1.1 exchange over a unix socket, for the CLI's commonest requests.

``http.client`` brings ``email``, ``ssl``, ``socket``'s enums and ``urllib.parse`` with it:
half of a bare interpreter's start-up again, on every ``logpipe ps``. The daemon's answers
need little: a status line, headers, and a body framed by ``Content-Length``, chunks, or the
end of the connection. This module reads exactly that on a raw ``_socket``, and encodes
URLs as ``urllib.parse`` does (``quote(s, safe="")`` and ``urlencode(q, doseq=True)``).
Streaming request bodies (``build``, ``import``, ``load``) stay with ``http.client``
(``client.Client.request``). It must import nothing beyond built-in modules.
"""

from __future__ import annotations

import _socket

TYPE_CHECKING = False  # typing costs milliseconds at every start: for the checker only
if TYPE_CHECKING:
    from typing import Any, Mapping

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_BODY_METHODS = ("POST", "PUT", "PATCH")  # ``http.client`` sends them Content-Length: 0


class RemoteDisconnected(ConnectionResetError):
    """The daemon closed the connection before its answer's head (``http.client``'s name)."""


class IncompleteRead(ConnectionError):
    """The daemon closed the connection inside a body (``http.client``'s name)."""


def quote(text: str | bytes, plus: bool = False) -> str:
    """``urllib.parse.quote(text, safe="")``; ``quote_plus`` with ``plus``."""
    out = []
    for byte in text if isinstance(text, bytes) else text.encode():
        if byte in _UNRESERVED:
            out.append(chr(byte))
        elif plus and byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def query_string(query: Mapping[str, Any]) -> str:
    """``urllib.parse.urlencode(query, doseq=True)``: a sequence repeats its key."""
    pairs = []
    for key, value in query.items():
        name = quote(key if isinstance(key, bytes) else str(key), True)
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
            value = (value,)
        pairs += [f"{name}={quote(v if isinstance(v, bytes) else str(v), True)}" for v in value]
    return "&".join(pairs)


def exchange(path: str, method: str, url: str, body: bytes | None,
             headers: Mapping[str, str], timeout: float | None) -> Response:
    """Send one request on a new connection to the socket at ``path``; its answer's head
    read. ``FileNotFoundError``/``ConnectionRefusedError`` when nothing listens."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        lines = [f"{method} {url} HTTP/1.1", "Host: localhost", "Accept-Encoding: identity",
                 "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None or method in _BODY_METHODS:
            lines.append(f"Content-Length: {len(body or b'')}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        return Response(sock, method)
    except BaseException:
        sock.close()
        raise


def read_head(sock: Any) -> tuple[int, str, dict[str, str], bytes]:
    """The status, reason, headers (names in lower case) and what followed them, of an
    HTTP answer on ``sock``."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise RemoteDisconnected("the daemon closed the connection before answering")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    _, status, reason = (lines[0].split(None, 2) + [""])[:3]
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:])}
    return int(status), reason, headers, rest


class Response:
    """An answer: ``status``, ``reason``, ``getheader``, and its body through ``read`` and
    ``read1`` (what ``http.client.HTTPResponse`` offers that the commands use). The socket
    is closed once the body has been read to its end."""

    def __init__(self, sock: Any, method: str) -> None:
        self.status, self.reason, self.headers, self._raw = read_head(sock)
        self._sock, self._buf, self._chunk_left, self._done = sock, b"", 0, False
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        self._length = int(length) if length and not self._chunked else None
        if method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            self._length = 0

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def read(self, n: int | None = None) -> bytes:
        """``n`` bytes of the body (fewer at its end); all of the rest without ``n``."""
        while (n is None or n < 0 or len(self._buf) < n) and self._more():
            pass
        return self._take(n)

    def read1(self, n: int = 65536) -> bytes:
        """What has arrived, up to ``n`` bytes, waiting for some only when nothing has;
        ``b""`` at the body's end."""
        while not self._buf and self._more():
            pass
        return self._take(n)

    def close(self) -> None:
        self._done = True
        self._sock.close()

    def _take(self, n: int | None) -> bytes:
        if n is None or n < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def _recv(self) -> bytes:
        if self._raw:
            data, self._raw = self._raw, b""
            return data
        return self._sock.recv(65536)

    def _more(self) -> bool:
        """Move more of the body into ``_buf``; ``False`` once it has ended."""
        if self._done:
            return False
        if self._chunked:
            return self._more_chunked()
        if self._length == 0:
            self.close()
            return False
        data = self._recv()
        if not data:
            if self._length is not None:
                self.close()
                raise IncompleteRead(f"{self._length} more bytes expected")
            self.close()  # no length: the body ends with the connection
            return False
        if self._length is not None:
            data = data[:self._length]
            self._length -= len(data)
        self._buf += data
        return True

    def _more_chunked(self) -> bool:
        while not self._chunk_left:
            line = self._line()
            if not line:  # the CRLF that ends the previous chunk
                continue
            self._chunk_left = int(line.split(b";", 1)[0], 16)
            if not self._chunk_left:
                while self._line():  # trailers, up to the empty line
                    pass
                self.close()
                return False
        data = self._recv()
        if not data:
            self.close()
            raise IncompleteRead(f"{self._chunk_left} more bytes expected in a chunk")
        self._raw = data[self._chunk_left:]
        data = data[:self._chunk_left]
        self._chunk_left -= len(data)
        self._buf += data
        return True

    def _line(self) -> bytes:
        while b"\r\n" not in self._raw:
            data = self._sock.recv(65536)
            if not data:
                self.close()
                raise IncompleteRead("the connection ended inside a chunked body")
            self._raw += data
        line, _, self._raw = self._raw.partition(b"\r\n")
        return line.strip()
