"""CloudWatch Logs receivers for tests and benchmarks, independent of pytest.

``CloudWatchReceiver`` runs the real CloudWatch Logs HTTP API as moto implements it (moto in
server mode, a threaded werkzeug server on loopback) behind ``FakeFaultProxy``, which passes
every request through unchanged unless told to fail. Point the driver at ``endpoint``:

    with CloudWatchReceiver() as cw:
        opts = {"awslogs-endpoint": cw.endpoint, "awslogs-region": cw.region, ...}
        ...
        events = cw.wait_for("group", "stream", 3)   # [{"timestamp": ms, "message": str}]
        cw.fail("ThrottlingException", calls=2)      # the next 2 PutLogEvents are throttled
        cw.stop(); cw.start()                        # down and up again, same ports, same data

moto keeps its data in process-wide memory, so a restart keeps every group and stream, and
two receivers in one process share it: use distinct group names (``reset()`` clears all).
Whoever sends needs credentials of any value (moto does not check signatures), e.g.
``AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing``.

``FakeCredentialsEndpoint`` stands in for the ECS task-role credential endpoint
(``http://169.254.170.2/v2/credentials/<id>``) that ``awslogs-credentials-endpoint`` names.
"""

from __future__ import annotations

import collections
import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

TARGET_PREFIX = "Logs_20140328."
FAKE_KEY_ID = "testing"
FAKE_SECRET = "testing"


class Captured(NamedTuple):
    """One request as it reached the proxy."""

    operation: str  # e.g. "PutLogEvents" (from X-Amz-Target)
    headers: dict[str, str]  # names lower-cased
    body: bytes


class Fault:
    """What the proxy answers instead of CloudWatch while the fault is active."""

    def __init__(self, code: str, status: int, message: str, operation: str | None,
                 calls: int | None, seconds: float | None, echo: bool, reset: bool,
                 after: int) -> None:
        self.code, self.status, self.message = code, status, message
        self.operation, self.calls, self.echo, self.reset = operation, calls, echo, reset
        self.after = after
        self.until = time.monotonic() + seconds if seconds is not None else None

    def take(self, operation: str) -> bool:
        """Whether this request fails (and count it)."""
        if self.operation is not None and operation != self.operation:
            return False
        if self.until is not None and time.monotonic() >= self.until:
            return False
        if self.after > 0:
            self.after -= 1
            return False
        if self.calls is not None:
            if self.calls <= 0:
                return False
            self.calls -= 1
        return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    server: "_ProxyServer"

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target", "")
        operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else target
        proxy = self.server.proxy
        proxy.record(Captured(operation, {k.lower(): v for k, v in self.headers.items()}, body))
        if proxy.delay:
            time.sleep(proxy.delay)  # slow on purpose: a receiver that takes its time
        fault = proxy.fault_for(operation)
        if fault is not None and fault.reset:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None:
            message = fault.message
            if fault.echo:  # a misbehaving endpoint that quotes the request back
                message += " " + json.dumps(dict(self.headers.items())) + " " + body.decode(
                    "utf-8", "replace")
            payload = json.dumps({"__type": fault.code, "message": message}).encode()
            self._answer(fault.status, {"Content-Type": "application/x-amz-json-1.1",
                                        "x-amzn-RequestId": "fake-fault"}, payload)
            return
        status, headers, payload = proxy.forward(self.command, self.path, self.headers, body)
        self._answer(status, headers, payload)

    def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], proxy: "FakeFaultProxy") -> None:
        self.proxy = proxy
        self.connections: set[socket.socket] = set()
        super().__init__(address, _Handler)


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server",
               "date"}


class FakeFaultProxy:
    """Stands in for Amazon CloudWatch Logs' failure answers, which moto never gives:
    throttling (``ThrottlingException``, HTTP 400), ``ServiceUnavailableException`` (5xx),
    sequence-token errors of older endpoints, rejected batches, dropped connections, and a
    slow service. Everything else is forwarded unchanged to the real API behind it (moto),
    and every request is recorded (the last ``keep`` of them) for assertions on the wire.
    """

    def __init__(self, upstream: tuple[str, int], port: int = 0, keep: int = 200) -> None:
        self.upstream = upstream
        self.port = port
        self.delay = 0.0
        self.requests: collections.deque[Captured] = collections.deque(maxlen=keep)
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server = _ProxyServer(("127.0.0.1", self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="cloudwatch-fault-proxy")
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and cut every open connection (a receiver that went away)."""
        if self._server is None:
            return
        self._server.shutdown()
        for conn in list(self._server.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        self._thread.join(5)
        self._server = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, code: str = "ThrottlingException", status: int = 400,
             message: str = "Rate exceeded", *, operation: str | None = "PutLogEvents",
             calls: int | None = None, seconds: float | None = None, after: int = 0,
             echo: bool = False, reset: bool = False) -> None:
        """Answer ``operation`` (None: every operation) with this error for the next
        ``calls`` requests, or for ``seconds``, or until ``heal()``, once ``after`` matching
        requests have passed. ``reset`` closes the connection without an answer instead;
        ``echo`` appends the request (headers and body) to the message, as a misbehaving
        endpoint might."""
        with self._lock:
            self._faults.append(Fault(code, status, message, operation, calls, seconds, echo,
                                      reset, after))

    def heal(self) -> None:
        with self._lock:
            self._faults.clear()

    def fault_for(self, operation: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.take(operation):
                    return fault
        return None

    def record(self, captured: Captured) -> None:
        self.requests.append(captured)

    def bodies(self, operation: str = "PutLogEvents") -> list[dict[str, Any]]:
        """The JSON bodies of the recorded requests for ``operation``, oldest first."""
        return [json.loads(r.body) for r in list(self.requests) if r.operation == operation]

    def forward(self, method: str, path: str, headers: Any, body: bytes
                ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request(method, path, body=body, headers={
                k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP})
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, {k: v for k, v in resp.getheaders()
                                 if k.lower() not in _HOP_BY_HOP}, payload
        finally:
            conn.close()


class CloudWatchReceiver:
    """moto's CloudWatch Logs on loopback behind a ``FakeFaultProxy``; see the module
    docstring. ``endpoint`` goes through the proxy, ``direct_endpoint`` does not (for
    benchmarks)."""

    def __init__(self, port: int = 0, moto_port: int = 0, region: str = "us-east-1") -> None:
        self.region = region
        self._moto_port = moto_port
        self._moto: Any = None
        self.proxy = FakeFaultProxy(("127.0.0.1", moto_port), port)
        self._client: Any = None

    def __enter__(self) -> "CloudWatchReceiver":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        """Start (or start again, on the same ports and with the same data)."""
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self._moto_port,
                                        verbose=False)
        self._moto.start()
        self._moto_port = self._moto.get_host_and_port()[1]
        self.proxy.upstream = ("127.0.0.1", self._moto_port)
        self.proxy.start()

    def stop(self) -> None:
        self.proxy.stop()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    @property
    def endpoint(self) -> str:
        return self.proxy.endpoint

    @property
    def direct_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._moto_port}"

    # faults, passed through to the proxy
    def fail(self, *args: Any, **kwargs: Any) -> None:
        self.proxy.fail(*args, **kwargs)

    def heal(self) -> None:
        self.proxy.heal()

    def slow(self, seconds: float) -> None:
        """Delay every request by ``seconds`` (0: full speed again)."""
        self.proxy.delay = seconds

    # reading back, straight from moto
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "logs", region_name=self.region, endpoint_url=self.direct_endpoint,
                aws_access_key_id=FAKE_KEY_ID, aws_secret_access_key=FAKE_SECRET)
        return self._client

    def events(self, group: str, stream: str) -> list[dict[str, Any]]:
        """Every event of the stream as ``{"timestamp": ms, "message": str}``, in
        CloudWatch's order (by timestamp, then arrival)."""
        out: list[dict[str, Any]] = []
        token = None
        while True:
            kwargs = {"nextToken": token} if token else {}
            resp = self.client().get_log_events(logGroupName=group, logStreamName=stream,
                                                startFromHead=True, **kwargs)
            out += [{"timestamp": e["timestamp"], "message": e["message"]}
                    for e in resp["events"]]
            if not resp["events"] or resp["nextForwardToken"] == token:
                return out
            token = resp["nextForwardToken"]

    def wait_for(self, group: str, stream: str, count: int, timeout: float = 10.0
                 ) -> list[dict[str, Any]]:
        """Poll (the sender is another thread or process) until the stream holds ``count``
        events; return them. Raises ``TimeoutError`` with what did arrive."""
        deadline = time.monotonic() + timeout
        got: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                got = self.events(group, stream)
            except self.client().exceptions.ResourceNotFoundException:
                got = []
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise TimeoutError(f"{len(got)} of {count} events in {group}/{stream}: {got[-3:]}")

    def groups(self) -> list[str]:
        return [g["logGroupName"] for g in self.client().describe_log_groups()["logGroups"]]

    def streams(self, group: str) -> list[str]:
        resp = self.client().describe_log_streams(logGroupName=group)
        return [s["logStreamName"] for s in resp["logStreams"]]

    def reset(self) -> None:
        """Forget every group, stream and event (moto's reset API) and heal all faults."""
        conn = http.client.HTTPConnection("127.0.0.1", self._moto_port, timeout=10)
        try:
            conn.request("POST", "/moto-api/reset")
            conn.getresponse().read()
        finally:
            conn.close()
        self.heal()


class _CredentialsHandler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        fake: FakeCredentialsEndpoint = self.server.fake
        fake.paths.append(self.path)
        if fake.failing or self.path != fake.path:
            # A broken endpoint that puts the secret into its error page: the driver must
            # never repeat such an answer.
            status, body = (500 if fake.failing else 404), json.dumps(
                {"error": "broken", "echo": fake.document()}).encode()
        else:
            status, body = 200, json.dumps(fake.document()).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakeCredentialsEndpoint:
    """Stands in for the ECS task-role credential endpoint (``169.254.170.2``): answers
    ``GET <path>`` with ``{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}`` as the
    real one does. ``failing = True`` makes it answer 500 with the secret in the body."""

    def __init__(self, path: str, key_id: str, secret: str, token: str) -> None:
        self.path, self.key_id, self.secret, self.token = path, key_id, secret, token
        self.failing = False
        self.paths: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    def document(self) -> dict[str, str]:
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        return {"AccessKeyId": self.key_id, "SecretAccessKey": self.secret,
                "Token": self.token, "Expiration": expiry}

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _CredentialsHandler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base(self) -> str:
        """What stands in for ``http://169.254.170.2``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"
