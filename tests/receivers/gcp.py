"""Fake Google Cloud endpoints for the gcplogs driver: Cloud Logging's REST API, the OAuth2
token endpoint and the Compute Engine metadata server, each on a free loopback port.

Google publishes no emulator for Cloud Logging, so ``FakeCloudLogging`` implements the one
method the driver calls, ``POST /v2/entries:write``, from the public v2 reference: it decodes
the JSON body and checks it against the ``WriteLogEntriesRequest``/``LogEntry`` schema the
way the real API does (proto3 JSON mapping: camelCase or proto field names, an unknown field
is a 400 ``INVALID_ARGUMENT``), then stores the entries with the request's ``logName``,
``resource`` and ``labels`` applied, as the API does. Nothing here imports pytest: the same
classes serve unit tests, end-to-end tests through the daemon and benchmarks.

Usage::

    with FakeCloudLogging() as gcp:            # started; .url is the driver's gcp-endpoint
        ...                                    # logpipe run --log-opt gcp-endpoint=<gcp.url>
        entries = gcp.wait_for(3)              # the first 3 entries of gcplogs-docker-driver
        gcp.fail(500, times=2)                 # the next 2 writes answer 500
        gcp.stop(); gcp.start()                # down, then up again on the same port

    FakeCloudLogging(port=8085, keep=False, check_schema=False)  # benchmarks: only count,
    gcp.wait_count(100_000)                                      # with wait_count
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

#: entries:write refuses bodies over 10 MiB and entries over 256 KiB (Cloud Logging quotas).
MAX_REQUEST_BYTES = 10 * 1024 * 1024
MAX_ENTRY_BYTES = 256 * 1024

#: google.logging.type.LogSeverity: names and numbers are both valid JSON for the enum.
SEVERITIES = {"DEFAULT": 0, "DEBUG": 100, "INFO": 200, "NOTICE": 300, "WARNING": 400,
              "ERROR": 500, "CRITICAL": 600, "ALERT": 700, "EMERGENCY": 800}

#: Proto field name -> JSON name; a parser accepts both (proto3 JSON mapping).
_REQUEST_FIELDS = {"log_name": "logName", "resource": "resource", "labels": "labels",
                   "entries": "entries", "partial_success": "partialSuccess",
                   "dry_run": "dryRun"}
_ENTRY_FIELDS = {
    "log_name": "logName", "resource": "resource", "proto_payload": "protoPayload",
    "text_payload": "textPayload", "json_payload": "jsonPayload", "timestamp": "timestamp",
    "receive_timestamp": "receiveTimestamp", "severity": "severity", "insert_id": "insertId",
    "http_request": "httpRequest", "labels": "labels", "operation": "operation",
    "trace": "trace", "span_id": "spanId", "trace_sampled": "traceSampled",
    "source_location": "sourceLocation", "split": "split", "error_groups": "errorGroups",
    "apphub": "apphub", "apphub_destination": "apphubDestination",
}
_RESOURCE_FIELDS = {"type": "type", "labels": "labels"}
_JSON_NAMES = {"request": frozenset(_REQUEST_FIELDS.values()),
               "entry": frozenset(_ENTRY_FIELDS.values()),
               "resource": frozenset(_RESOURCE_FIELDS.values())}
_PAYLOADS = frozenset({"protoPayload", "textPayload", "jsonPayload"})
#: How each LogEntry field is checked (JSON types, or a named rule).
_KINDS: dict[str, Any] = {
    "logName": str, "textPayload": str, "insertId": str, "trace": str, "spanId": str,
    "protoPayload": dict, "jsonPayload": dict, "httpRequest": dict, "operation": dict,
    "sourceLocation": dict, "split": dict, "traceSampled": bool,
    "timestamp": "timestamp", "receiveTimestamp": "timestamp", "severity": "severity",
    "labels": "labels",
}

_PROTO_TYPE = {str: "TYPE_STRING", dict: "TYPE_MESSAGE", bool: "TYPE_BOOL"}

#: Label keys of the monitored-resource types the fake knows (Cloud Logging resource list);
#: the API refuses labels a type does not define.
RESOURCE_TYPES = {
    "global": {"project_id"},
    "gce_instance": {"project_id", "instance_id", "zone"},
    "generic_node": {"project_id", "location", "namespace", "node_id"},
    "generic_task": {"project_id", "location", "namespace", "job", "task_id"},
    "k8s_container": {"project_id", "location", "cluster_name", "namespace_name",
                      "pod_name", "container_name"},
}

_LOG_NAME = re.compile(r"(projects|organizations|billingAccounts|folders)/([^/]+)/logs/"
                       r"([A-Za-z0-9_.\-/%]{1,512})")
_TIMESTAMP = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:"
                        r"([0-5]\d|60)(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")

try:  # orjson, when installed, keeps the fake ahead of the driver in benchmarks
    from orjson import dumps as _dumps, loads as _loads
except ImportError:  # pragma: no cover
    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False).encode()

    _loads = json.loads


class InvalidArgument(Exception):
    """What the API answers with HTTP 400 and status ``INVALID_ARGUMENT``."""


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that can drop its open keep-alive connections on stop, so a
    stopped receiver is really down for a client that pools connections."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, fake: "_FakeHTTP") -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        with self.lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self.lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real front end and requests use
    disable_nagle_algorithm = True  # else headers and body wait on the client's delayed ACK

    def log_message(self, format: str, *args: Any) -> None:  # no stderr noise in tests
        pass

    def do_GET(self) -> None:
        self.server.fake.handle(self, b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.fake.handle(self, self.rfile.read(length))

    def answer(self, status: int, body: bytes, content_type: str = "application/json",
               headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


class _FakeHTTP:
    """Start, stop and restart on the same loopback port; a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """``host:port``, the form ``GCE_METADATA_HOST`` takes."""
        return f"{self.host}:{self.port}"

    def start(self) -> "_FakeHTTP":
        """Listen (again) on the same port as before, or on a free one the first time."""
        self._server = _Server((self.host, self.port), _Handler, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection: the receiver is down."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.drop_connections()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle(self, handler: _Handler, body: bytes) -> None:
        raise NotImplementedError


def _error_body(status: int, message: str) -> bytes:
    names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
             404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
             503: "UNAVAILABLE"}
    return json.dumps({"error": {"code": status, "message": message,
                                 "status": names.get(status, "UNKNOWN")}}).encode()


class FakeCloudLogging(_FakeHTTP):
    """Stands in for Google Cloud Logging (``logging.googleapis.com``), which has no official
    emulator: ``POST /v2/entries:write`` with the real API's schema checks, plus the OAuth2
    token endpoint (``POST /token``) that a service-account key file may name as its
    ``token_uri`` (google-auth ignores that field in ``authorized_user`` files).

    Accepted entries are kept in ``entries`` (request-level ``logName``/``resource``/``labels``
    applied, as the API stores them); every write request, accepted or not, in ``requests`` as
    ``(headers, decoded body or None)``. ``fail(status, times)`` answers the next writes with
    an error, ``delay`` slows every answer down, ``require_token`` answers 401 to writes
    without the bearer token that ``/token`` hands out.

    For benchmarks, ``keep=False`` only counts entries per log (``counts``, ``wait_count``)
    instead of keeping them, and ``check_schema=False`` skips the per-entry checks (the real
    API is not the bottleneck a Python fake would be).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, keep: bool = True,
                 check_schema: bool = True) -> None:
        super().__init__(host, port)
        self.keep, self.check_schema = keep, check_schema
        self.entries: list[dict] = []
        self.counts: dict[str, int] = {}
        self.requests: list[tuple[dict[str, str], dict | None]] = []
        self.delay = 0.0
        self.token = "ya29.fake-token-for-tests"
        self.require_token = False
        self.token_requests = 0
        self._fail_status = 0
        self._fail_left: int | None = 0
        self._fail_message = ""
        self._cond = threading.Condition()

    # -- test controls -----------------------------------------------------------------------

    def fail(self, status: int, times: int | None = None, message: str = "") -> None:
        """Answer the next ``times`` writes (all, until ``recover``, if None) with ``status``."""
        with self._cond:
            self._fail_status, self._fail_left = status, times
            self._fail_message = message or f"fake failure {status}"

    def recover(self) -> None:
        self.fail(0, 0)

    def wait_for(self, n: int, timeout: float = 10.0,
                 log_id: str | None = "gcplogs-docker-driver") -> list[dict]:
        """The first ``n`` stored entries of log ``log_id`` (any log if None), waiting up to
        ``timeout`` seconds for them; raises ``TimeoutError`` saying how many came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = self.log(log_id)
                if len(got) >= n:
                    return got[:n]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(got)} of {n} entries arrived in {timeout} s")
                self._cond.wait(left)

    def wait_count(self, n: int, timeout: float = 10.0,
                   log_id: str = "gcplogs-docker-driver") -> int:
        """Wait until ``n`` entries of log ``log_id`` were accepted (also with ``keep=False``);
        returns the count, or raises ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.counts.get(log_id, 0) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.counts.get(log_id, 0)} of {n} entries arrived "
                                       f"in {timeout} s")
                self._cond.wait(left)
            return self.counts[log_id]

    def log(self, log_id: str | None = "gcplogs-docker-driver") -> list[dict]:
        """The stored entries of one log (all if None), in arrival order."""
        with self._cond:
            if log_id is None:
                return list(self.entries)
            return [e for e in self.entries if e["logName"].endswith("/logs/" + log_id)]

    def clear(self) -> None:
        with self._cond:
            self.entries.clear()
            self.counts.clear()
            self.requests.clear()

    # -- the server side -----------------------------------------------------------------------

    def handle(self, handler: _Handler, body: bytes) -> None:
        if self.delay:
            time.sleep(self.delay)  # a slow receiver on purpose, not synchronisation
        path = urlsplit(handler.path).path
        if handler.command == "POST" and path == "/token":
            self._token(handler)
        elif handler.command == "POST" and path == "/v2/entries:write":
            self._write(handler, body)
        else:
            handler.answer(404, _error_body(404, f"no such method: {handler.command} {path}"))

    def _token(self, handler: _Handler) -> None:
        with self._cond:
            self.token_requests += 1
        handler.answer(200, json.dumps({"access_token": self.token, "expires_in": 3600,
                                        "token_type": "Bearer"}).encode())

    def _write(self, handler: _Handler, body: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        try:
            request = _loads(body)
        except ValueError:  # orjson also refuses lone surrogates, as a proto parser does
            request = None
        with self._cond:
            if self.keep:
                self.requests.append((headers, request))
            failing = self._fail_left is None or self._fail_left > 0
            if failing and self._fail_status:
                if self._fail_left is not None:
                    self._fail_left -= 1
                status, message = self._fail_status, self._fail_message
            else:
                status, message = 0, ""
        if status:
            handler.answer(status, _error_body(status, message))
            return
        if self.require_token and headers.get("authorization") != f"Bearer {self.token}":
            handler.answer(401, _error_body(401, "Request is missing required authentication "
                                                 "credential."))
            return
        try:
            if "application/json" not in headers.get("content-type", ""):
                raise InvalidArgument("Invalid JSON payload received: not application/json.")
            if len(body) > MAX_REQUEST_BYTES:
                raise InvalidArgument("Request payload size exceeds the limit: "
                                      f"{MAX_REQUEST_BYTES} bytes.")
            if request is None:
                raise InvalidArgument("Invalid JSON payload received.")
            if self.check_schema:
                entries, dry_run = check_write_request(request, len(body))
            else:
                entries, dry_run = _apply_defaults(request), False
        except InvalidArgument as err:
            handler.answer(400, _error_body(400, str(err)))
            return
        if not dry_run:
            with self._cond:
                if self.keep:
                    self.entries.extend(entries)
                for entry in entries:
                    log_id = entry["logName"].rpartition("/logs/")[2]
                    self.counts[log_id] = self.counts.get(log_id, 0) + 1
                self._cond.notify_all()
        handler.answer(200, b"{}")


# -- the schema ---------------------------------------------------------------------------------

def _fields(obj: Any, known: dict[str, str], json_names: frozenset[str],
            where: str) -> dict[str, Any]:
    """An object's fields under their JSON names; an unknown name is the API's 400."""
    if not isinstance(obj, dict):
        raise InvalidArgument(f"Invalid value at '{where}': expected an object.")
    if obj.keys() <= json_names:  # the usual case: JSON names only
        return dict(obj)
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = key if key in json_names else known.get(key)
        if name is None:
            at = f" at '{where}'" if where else ""
            raise InvalidArgument(
                f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.')
        if name in out:
            raise InvalidArgument(f"Invalid JSON payload received. Duplicate field \"{key}\".")
        out[name] = value
    return out


def _string_map(obj: Any, where: str) -> dict[str, str]:
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        raise InvalidArgument(f"Invalid value at '{where}' (map<string, string>): "
                              f"{json.dumps(obj)[:200]}")
    return obj


def _check_timestamp(value: Any, where: str) -> None:
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise InvalidArgument(f"Invalid value at '{where}' (type.googleapis.com/"
                              f"google.protobuf.Timestamp), {json.dumps(value)}")


def _check_resource(obj: Any, where: str) -> dict:
    res = _fields(obj, _RESOURCE_FIELDS, _JSON_NAMES["resource"], where)
    rtype = res.get("type")
    if not isinstance(rtype, str) or not rtype:
        raise InvalidArgument(f"{where}.type is required.")
    allowed = RESOURCE_TYPES.get(rtype)
    if allowed is None:
        raise InvalidArgument(f"Unknown resource type: {rtype}")
    labels = _string_map(res.get("labels", {}), f"{where}.labels")
    for key in labels:
        if key not in allowed:
            raise InvalidArgument(f"Unrecognized resource label {key!r} for type {rtype}.")
    return {"type": rtype, "labels": dict(labels)}


def _check_entry(obj: Any, where: str, measure: bool) -> dict:
    entry = _fields(obj, _ENTRY_FIELDS, _JSON_NAMES["entry"], where)
    if len(entry.keys() & _PAYLOADS) > 1:
        raise InvalidArgument(f"{where}: more than one payload field is set.")
    for name, value in entry.items():  # one pass over the few fields an entry has
        kind = _KINDS.get(name)
        if kind is str or kind is dict or kind is bool:
            if type(value) is not kind:
                raise InvalidArgument(f"Invalid value at '{where}.{name}' ({_PROTO_TYPE[kind]}"
                                      f"), {json.dumps(value)[:200]}")
        elif kind == "timestamp":
            _check_timestamp(value, f"{where}.{name}")
        elif kind == "severity":
            if not (value in SEVERITIES or (type(value) is int and 0 <= value <= 800)):
                raise InvalidArgument(f"Invalid value at '{where}.severity' (type.googleapis."
                                      f"com/google.logging.type.LogSeverity), "
                                      f"{json.dumps(value)}")
        elif kind == "labels":
            _string_map(value, f"{where}.labels")
    if "resource" in entry:
        entry["resource"] = _check_resource(entry["resource"], f"{where}.resource")
    if "logName" in entry:
        _check_log_name(entry["logName"])
    size = len(_dumps(obj)) if measure else 0
    if size > MAX_ENTRY_BYTES:
        raise InvalidArgument(f"Log entry with size {size / 1024:.1f}K exceeds maximum size "
                              f"of {MAX_ENTRY_BYTES / 1024:.1f}K")
    return entry


def _check_log_name(name: Any) -> None:
    if not isinstance(name, str) or not _LOG_NAME.fullmatch(name):
        raise InvalidArgument(f"Invalid log name: {json.dumps(name)}")


def check_write_request(body: Any,
                        body_size: int = MAX_REQUEST_BYTES) -> tuple[list[dict], bool]:
    """Check a decoded ``WriteLogEntriesRequest`` as the API does; return the entries as
    stored (request-level ``logName``, ``resource``, ``labels`` applied) and ``dryRun``.
    Raises ``InvalidArgument`` with the API's wording where known. Entries are measured
    only when the body could hold one over the limit (the fake must keep up in benchmarks)."""
    req = _fields(body, _REQUEST_FIELDS, _JSON_NAMES["request"], "")
    for name in ("partialSuccess", "dryRun"):
        if name in req and not isinstance(req[name], bool):
            raise InvalidArgument(f"Invalid value at '{name}' (TYPE_BOOL)")
    log_name = req.get("logName")
    if log_name is not None:
        _check_log_name(log_name)
    resource = _check_resource(req["resource"], "resource") if "resource" in req else None
    labels = _string_map(req.get("labels", {}), "labels")
    raw = req.get("entries")
    if not isinstance(raw, list) or not raw:
        raise InvalidArgument("At least one log entry is required.")
    stored = []
    for i, obj in enumerate(raw):
        entry = _check_entry(obj, f"entries[{i}]", body_size > MAX_ENTRY_BYTES)
        entry.setdefault("logName", log_name)
        if entry["logName"] is None:
            raise InvalidArgument(f"entries[{i}].log_name is required.")
        entry.setdefault("resource", resource)
        if entry["resource"] is None:
            raise InvalidArgument(f"entries[{i}].resource is required.")
        if labels:
            entry["labels"] = {**labels, **entry.get("labels", {})}
        stored.append(entry)
    return stored, bool(req.get("dryRun", False))


def _apply_defaults(request: dict) -> list[dict]:
    """The stored entries without checks: request-level logName and resource applied."""
    log_name = request.get("logName", request.get("log_name"))
    resource = request.get("resource")
    return [{"logName": log_name, "resource": resource, **e} for e in request["entries"]]


class FakeGCEMetadata(_FakeHTTP):
    """Stands in for the Compute Engine metadata server (``169.254.169.254``): ``GET /``
    answers with ``Metadata-Flavor: Google``, ``/computeMetadata/v1/<path>`` with the value
    of ``values[path]`` (404 if absent), and a request without ``Metadata-Flavor: Google`` is
    refused with 403, as on GCE. Point a process at it with ``GCE_METADATA_HOST=<address>``.
    """

    def __init__(self, values: dict[str, str] | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(host, port)
        self.values = dict(values or {})
        self.paths: list[str] = []

    def handle(self, handler: _Handler, body: bytes) -> None:
        flavor = {"Metadata-Flavor": "Google"}
        path = urlsplit(handler.path).path
        self.paths.append(path)
        if handler.headers.get("Metadata-Flavor") != "Google":
            handler.answer(403, b"Missing Metadata-Flavor:Google header.", "text/html")
        elif path == "/":
            handler.answer(200, b"computeMetadata/\n", "application/text", flavor)
        elif path.startswith("/computeMetadata/v1/") and \
                path[len("/computeMetadata/v1/"):] in self.values:
            value = self.values[path[len("/computeMetadata/v1/"):]].encode()
            handler.answer(200, value, "application/text", flavor)
        else:
            handler.answer(404, b"Not Found", "text/html", flavor)
