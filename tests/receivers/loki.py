"""``FakeLoki``: a stand-in for Grafana Loki's push endpoint, for tests and benchmarks.

Grafana Loki is a Go server that is not packaged for PyPI, Debian or npm, so it cannot be
installed here; this receiver implements the part of it a log shipper talks to, decoding
the real wire format: ``POST /loki/api/v1/push`` with a JSON body (``Content-Type:
application/json``, optionally ``Content-Encoding: gzip`` or ``deflate``)::

    {"streams": [{"stream": {"label": "value", ...},
                  "values": [["<unix ns as a string>", "<line>"], ...]}, ...]}

It validates what Loki validates (schema, label names, timestamps as decimal strings), and
stores entries per tenant (``X-Scope-OrgID``) and stream as Loki does:

* an entry equal in timestamp and line to one already stored in its stream is dropped
  silently (Loki's deduplication);
* with ``ordered=True`` (the default: Loki before 2.4, or ``unordered_writes: false``) an
  entry older than the newest one of its stream is refused; the others of the push are
  stored, and the push is answered 400 with Loki's ``entry out of order`` text.

It can be told to answer an error status for a while (``fail``), to be slow (``delay``),
and to stop and start again on the same port (``stop``/``start``/``restart``). It needs
nothing but the standard library (orjson, a logpipe dependency, parses faster when
present), so end-to-end tests and benchmarks can use it outside pytest::

    with FakeLoki() as loki:            # or FakeLoki(store=False) to only count
        run(["--log-driver=loki", f"--log-opt=loki-url={loki.url}", ...])
        entries = loki.wait_for(1000)   # Entry(tenant, labels, ts, line), arrival order
        loki.streams()                  # {sorted label items: [(ts, line), ...]}
"""

from __future__ import annotations

import gzip
import http.server
import json
import re
import socket
import ssl
import threading
import time
import zlib
from typing import NamedTuple

try:  # a project dependency: parses pushes ~3x faster, which matters in benchmarks
    from orjson import loads as _json_loads
except ImportError:  # pragma: no cover - the fake needs only the standard library
    _json_loads = json.loads

PUSH_PATH = "/loki/api/v1/push"
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

#: Texts the real Loki answers with (pkg/distributor, pkg/ingester, pkg/validation).
RATE_LIMITED = ("Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) "
                "while attempting to ingest '{n}' lines totaling '{b}' bytes, reduce log "
                "volume or contact your Loki administrator to see if the limit can be "
                "increased")


class Entry(NamedTuple):
    """One stored log entry."""

    tenant: str
    labels: dict[str, str]
    ts: int
    line: str


class Push(NamedTuple):
    """One push request as it arrived, whatever the answer."""

    status: int
    path: str  # the request target: path and query
    tenant: str
    authorization: str | None
    content_type: str
    content_encoding: str
    body: bytes  # as decoded (after gzip/deflate)
    streams: int
    connection: int  # number of the TCP connection it came on (1, 2, ...)
    server_name: str | None  # SNI the client sent (TLS only)
    client_cert: dict | None  # the client certificate (mutual TLS only)


class _BadRequest(Exception):
    pass


class FakeLoki:
    """Stands in for Grafana Loki (push API only). See the module docstring.

    Use as a context manager or with ``start()``/``stop()``. ``url`` is what to pass as
    ``loki-url``. ``tls`` is a server ``ssl.SSLContext`` (e.g. from trustme) to speak HTTPS.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 tls: ssl.SSLContext | None = None, ordered: bool = True,
                 store: bool = True) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.ordered = ordered
        #: With ``store=False`` (benchmarks) only counts are kept: no entries, no checks of
        #: order or duplicates.
        self.store = store
        #: Seconds to wait before answering each push (a slow receiver).
        self.delay = 0.0
        self.entries: list[Entry] = []
        self.pushes: list[Push] = []
        self.count = 0
        self.connections = 0
        self._cond = threading.Condition()
        self._streams: dict[tuple, list[tuple[int, str]]] = {}
        self._seen: dict[tuple, set[tuple[int, str]]] = {}
        self._fail: list[tuple[int, str | None]] = []
        self._fail_forever: tuple[int, str | None] | None = None
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._socks: set[socket.socket] = set()
        self._stopping = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> "FakeLoki":
        """Listen (again, on the same port after a ``stop``)."""
        fake = self

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address) -> None:
                pass  # a client hanging up or failing its TLS handshake is not our failure

        self._stopping.clear()
        self._server = Server((self.host, self.port), _handler(fake))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection, as a crashed Loki would."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._cond:
            socks, self._socks = set(self._socks), set()
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join()
        self._server = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> "FakeLoki":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The push URL to pass as ``loki-url``."""
        return self.url_with_auth()

    def url_with_auth(self, user: str | None = None, password: str | None = None) -> str:
        scheme = "https" if self.tls else "http"
        auth = "" if user is None else user + ("" if password is None else ":" + password) + "@"
        return f"{scheme}://{auth}{self.host}:{self.port}{PUSH_PATH}"

    # -- behaviour switches -------------------------------------------------------------

    def fail(self, status: int, times: int | None = None, text: str | None = None) -> None:
        """Answer ``status`` to the next ``times`` pushes (None: until ``heal``) without
        storing them. ``text`` is the body (Loki's usual text for 429 by default)."""
        with self._cond:
            if times is None:
                self._fail_forever = (status, text)
            else:
                self._fail.extend([(status, text)] * times)

    def heal(self) -> None:
        """Store and answer 204 again."""
        with self._cond:
            self._fail.clear()
            self._fail_forever = None

    # -- results ------------------------------------------------------------------------

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Entry]:
        """Wait until at least ``n`` entries are stored; return all entries stored."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.count < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"FakeLoki: {self.count} of {n} entries arrived")
                self._cond.wait(left)
            return list(self.entries)

    def wait_for_pushes(self, n: int, timeout: float = 10.0) -> list[Push]:
        """Wait until at least ``n`` push requests were answered (whatever the status)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.pushes) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"FakeLoki: {len(self.pushes)} of {n} pushes arrived")
                self._cond.wait(left)
            return list(self.pushes)

    def streams(self, tenant: str | None = None) -> dict[tuple[tuple[str, str], ...],
                                                         list[tuple[int, str]]]:
        """Entries per stream, in stored order. Keys are the sorted label items (and only
        the tenant's streams, when ``tenant`` is given)."""
        with self._cond:
            return {labels: list(values) for (t, labels), values in self._streams.items()
                    if tenant is None or t == tenant}

    def lines(self) -> list[str]:
        """Every stored line, in arrival order."""
        with self._cond:
            return [e.line for e in self.entries]

    # -- the push API -------------------------------------------------------------------

    def _fault(self) -> tuple[int, str | None] | None:
        with self._cond:
            if self._fail:
                return self._fail.pop(0)
            return self._fail_forever

    def _ingest(self, tenant: str, data: dict) -> tuple[int, str, int]:
        """Validate and store one decoded push; (status, body, streams)."""
        streams = _check_schema(data)
        ignored: list[str] = []
        total = 0
        with self._cond:
            for labels, values in streams:
                key = (tenant, tuple(sorted(labels.items())))
                total += len(values)
                if not self.store:
                    self.count += len(values)
                    continue
                stored = self._streams.setdefault(key, [])
                seen = self._seen.setdefault(key, set())
                for ts, line in values:
                    if (ts, line) in seen:
                        continue  # Loki drops an exact duplicate silently
                    if self.ordered and stored and ts < stored[-1][0]:
                        ignored.append(f"entry with timestamp {_go_time(ts)} ignored, reason: "
                                       f"'entry out of order' for stream: {_selector(labels)},")
                        continue
                    stored.append((ts, line))
                    seen.add((ts, line))
                    self.entries.append(Entry(tenant, labels, ts, line))
                    self.count += 1
        if ignored:
            return 400, "\n".join(ignored + [f"total ignored: {len(ignored)} out of {total}"]), \
                len(streams)
        return 204, "", len(streams)


def _check_schema(data: object) -> list[tuple[dict[str, str], list[tuple[int, str]]]]:
    """Loki's checks of a JSON push (loghttp.PushRequest and the distributor's validation)."""
    if not isinstance(data, dict) or not isinstance(data.get("streams"), list):
        raise _BadRequest('loghttp.PushRequest: "streams" must be an array')
    out = []
    for stream in data["streams"]:
        if not isinstance(stream, dict) or set(stream) - {"stream", "values"}:
            raise _BadRequest(f"stream must be an object with stream and values: {stream!r:.80}")
        labels = stream.get("stream")
        if not isinstance(labels, dict) or not labels:
            raise _BadRequest("error at least one label pair is required per stream")
        for name, value in labels.items():
            if not _LABEL_NAME.match(name) or not isinstance(value, str):
                raise _BadRequest(f"error parsing labels {labels!r:.200}: invalid label")
        values = stream.get("values")
        if not isinstance(values, list):
            raise _BadRequest("values must be an array")
        entries = []
        for value in values:
            if (not isinstance(value, list) or len(value) not in (2, 3)
                    or not isinstance(value[0], str) or not isinstance(value[1], str)):
                raise _BadRequest(f"entry must be [\"<ns>\", \"<line>\"]: {value!r:.80}")
            if not value[0].isascii() or not value[0].isdigit():
                raise _BadRequest(f'strconv.ParseInt: parsing "{value[0]}": invalid syntax')
            entries.append((int(value[0]), value[1]))
        out.append((labels, entries))
    return out


def _selector(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())) + "}"


def _go_time(ns: int) -> str:
    """Go's ``time.Time.String`` in UTC, as Loki prints timestamps in its errors."""
    secs, frac = divmod(ns, 10**9)
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(secs))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + " +0000 UTC"


def _decode_body(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    raise _BadRequest(f'Content-Encoding "{encoding}" not supported')


def _handler(fake: FakeLoki) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Loki's Go server

        def setup(self) -> None:
            with fake._cond:
                fake.connections += 1
                self.connection_number = fake.connections
                fake._socks.add(self.request)
            self.server_name: str | None = None
            if fake.tls is not None:
                raw = self.request
                self.request = fake.tls.wrap_socket(raw, server_side=True)
                with fake._cond:
                    fake._socks.discard(raw)
                    fake._socks.add(self.request)
            super().setup()

        def finish(self) -> None:
            with fake._cond:
                fake._socks.discard(self.request)
            super().finish()

        def log_message(self, format: str, *args) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.split("?", 1)[0] != PUSH_PATH:
                return self._answer(404, "404 page not found", raw, 0)
            if fake.delay:
                fake._stopping.wait(fake.delay)
                if fake._stopping.is_set():
                    self.close_connection = True
                    return
            fault = fake._fault()
            if fault is not None:
                status, text = fault
                if text is None:
                    text = RATE_LIMITED.format(n="?", b=length) if status == 429 else \
                        f"fake loki answers {status}"
                return self._answer(status, text, raw, 0)
            encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            try:
                body = _decode_body(raw, encoding)
                if ctype != "application/json":
                    raise _BadRequest(f"unsupported Content-Type {ctype!r}: FakeLoki decodes "
                                      "JSON only (Loki reads anything else as snappy protobuf)")
                try:
                    data = _json_loads(body)
                except (ValueError, UnicodeDecodeError) as e:
                    raise _BadRequest(f"loghttp.PushRequest: {e}") from None
                status, text, streams = fake._ingest(self.headers.get("X-Scope-OrgID", ""), data)
            except (_BadRequest, OSError, EOFError, zlib.error) as e:
                return self._answer(400, str(e), raw, 0)
            self._answer(status, text, body, streams)

        def _answer(self, status: int, text: str, body: bytes, streams: int) -> None:
            cert = self.request.getpeercert() if fake.tls is not None else None
            push = Push(status, self.path, self.headers.get("X-Scope-OrgID", ""),
                        self.headers.get("Authorization"), self.headers.get("Content-Type", ""),
                        self.headers.get("Content-Encoding", ""), body, streams,
                        self.connection_number, _sni(self.request), cert or None)
            with fake._cond:  # recorded before the answer: a client that got it sees it
                fake.pushes.append(push)
                fake._cond.notify_all()
            payload = (text + "\n").encode() if text else b""
            self.send_response(status)
            if status != 204:
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if status != 204:
                self.wfile.write(payload)

    return Handler


def _sni(sock: socket.socket) -> str | None:
    return getattr(sock, "sni", None)


def server_context(cert, *, require_client_cert_from=None,
                   record_sni: bool = True) -> ssl.SSLContext:
    """A server TLS context for ``FakeLoki(tls=...)`` from a trustme ``LeafCert``;
    ``require_client_cert_from`` (a trustme ``CA``) turns on mutual TLS. The SNI name each
    client sent is recorded on its connection (``Push.server_name``)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    if require_client_cert_from is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        require_client_cert_from.configure_trust(ctx)
    if record_sni:
        def remember(sock: ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> None:
            sock.sni = name  # type: ignore[attr-defined]  # read back by _sni

        ctx.sni_callback = remember
    return ctx
