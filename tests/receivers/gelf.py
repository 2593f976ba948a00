"""A fake Graylog GELF input, for the gelf driver's tests, end-to-end tests and benchmarks.

``FakeGraylog`` stands in for Graylog's "GELF UDP" and "GELF TCP" inputs. Graylog is a Java
server installable from neither PyPI nor Debian, so this fake decodes the real wire format
byte for byte instead: UDP datagrams that are gzip (``1f 8b``), zlib (``78 ..``) or plain
JSON (``{``), or chunks (``1e 0f``, 8-byte message id, sequence number, count, data) that
it reassembles in any order, as Graylog does; TCP streams of JSON documents each ended by a
NUL byte. It checks what Graylog checks (a GELF ``version``, a non-empty ``short_message``
and ``host``; at most 128 chunks, consistent counts) and records any violation in
``errors`` instead of a record.

It does not depend on pytest: ``with FakeGraylog("tcp") as g: ... g.wait_for(10)``. It can
be stopped and started again on the same port (receiver-down tests), made slow on purpose
(``read_delay``, or ``pause()``), and told to count records without storing them
(``store=False``, for benchmarks).
"""

from __future__ import annotations

import gzip
import json
import select
import socket
import threading
import time
import zlib

MAX_CHUNKS = 128
_CHUNK_MAGIC = b"\x1e\x0f"


def decode_payload(payload: bytes) -> bytes:
    """A UDP GELF payload (not chunked) as its JSON text, by Graylog's magic bytes."""
    if payload[:2] == b"\x1f\x8b":
        return gzip.decompress(payload)
    if payload[:1] == b"\x78" and int.from_bytes(payload[:2], "big") % 31 == 0:
        return zlib.decompress(payload)
    if payload[:1] == b"{":
        return payload
    raise ValueError(f"not a GELF payload: starts with {payload[:4].hex()}")


class FakeGraylog:
    """A GELF receiver on ``host:port`` (``port=0``: a free one, kept across restarts).

    ``records`` holds the decoded messages (dicts) in arrival order, ``documents`` their
    JSON bytes exactly as received, ``datagrams`` every UDP datagram (chunks included) and
    ``errors`` what a real Graylog would have refused. ``connections`` counts accepted TCP
    connections.
    """

    def __init__(self, proto: str = "udp", host: str = "127.0.0.1", port: int = 0,
                 read_delay: float = 0.0, store: bool = True) -> None:
        if proto not in ("udp", "tcp"):
            raise ValueError(f"proto must be udp or tcp, not {proto!r}")
        self.proto, self.host, self.port = proto, host, port
        self.read_delay = read_delay
        self.store = store
        self.records: list[dict] = []
        self.documents: list[bytes] = []
        self.datagrams: list[bytes] = []
        self.errors: list[str] = []
        self.count = 0
        self.connections = 0
        self._cond = threading.Condition()
        self._running = threading.Event()
        self._resumed = threading.Event()
        self._resumed.set()
        self._thread: threading.Thread | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._chunks: dict[bytes, dict[int, bytes]] = {}
        self._chunk_counts: dict[bytes, int] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The driver's ``gelf-address`` for this receiver."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.proto}://{host}:{self.port}"

    def start(self) -> "FakeGraylog":
        """Bind (the same port again after a ``stop``) and serve in a thread."""
        if self._thread is not None:
            raise RuntimeError("already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        kind = socket.SOCK_DGRAM if self.proto == "udp" else socket.SOCK_STREAM
        sock = socket.socket(family, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.proto == "udp":
            self._grow_receive_buffer(sock)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        if self.proto == "tcp":
            sock.listen(64)
        sock.setblocking(False)
        self._wake = socket.socketpair()
        self._running.set()
        self._thread = threading.Thread(target=self._serve, args=(sock,), daemon=True,
                                        name=f"FakeGraylog-{self.proto}-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and every connection (clients see EOF), then return."""
        if self._thread is None:
            return
        self._running.clear()
        self._resumed.set()
        self._wake[1].send(b"x")
        self._thread.join(10)
        for s in self._wake:
            s.close()
        self._thread, self._wake = None, None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> "FakeGraylog":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def pause(self) -> None:
        """Stop reading: TCP senders fill the socket buffers and then block."""
        self._resumed.clear()

    def resume(self) -> None:
        self._resumed.set()
        if self._wake is not None:
            self._wake[1].send(b"r")

    # -- results -----------------------------------------------------------------------------

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict]:
        """Wait until ``n`` records have arrived; return the first ``n`` (decoded dicts;
        an empty list with ``store=False``). Raises ``TimeoutError`` saying what came."""
        self.wait_until(lambda records: self.count >= n, timeout, f"{n} GELF records")
        with self._cond:
            return list(self.records[:n])

    def wait_until(self, done, timeout: float = 10.0, what: str = "condition") -> list[dict]:
        """Wait until ``done(records)`` is true of the records so far; return them."""
        with self._cond:
            if not self._cond.wait_for(lambda: done(self.records), timeout):
                raise TimeoutError(f"waited {timeout} s for {what}: {self.count} records "
                                   f"arrived; errors: {self.errors[:5]}")
            return list(self.records)

    # -- serving -----------------------------------------------------------------------------

    @staticmethod
    def _grow_receive_buffer(sock: socket.socket) -> None:
        """A Python reader is slower than a sender: a large buffer keeps bursts from
        being dropped by the kernel (root may exceed ``net.core.rmem_max``)."""
        force = getattr(socket, "SO_RCVBUFFORCE", None)
        try:
            sock.setsockopt(socket.SOL_SOCKET, force or socket.SO_RCVBUF, 32 << 20)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)

    def _serve(self, sock: socket.socket) -> None:
        wake = self._wake[0]
        conns: dict[socket.socket, bytearray] = {}
        try:
            while self._running.is_set():
                watched = [wake] + ([sock, *conns] if self._resumed.is_set() else [])
                readable, _, _ = select.select(watched, [], [])
                for r in readable:
                    if r is wake:
                        wake.recv(64)
                    elif r is sock and self.proto == "udp":
                        self._read_datagrams(sock)
                    elif r is sock:
                        self._accept(sock, conns)
                    else:
                        self._read_stream(r, conns)
                    if self.read_delay:
                        time.sleep(self.read_delay)  # slow on purpose, not synchronisation
        finally:
            for conn, buf in conns.items():
                self._truncated(buf)
                conn.close()
            sock.close()

    def _accept(self, sock: socket.socket, conns: dict) -> None:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        conns[conn] = bytearray()
        self.connections += 1

    def _read_stream(self, conn: socket.socket, conns: dict) -> None:
        buf = conns[conn]
        try:
            data = conn.recv(1 << 18)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._truncated(buf)
            del conns[conn]
            conn.close()
            return
        buf += data
        end = buf.rfind(b"\0")
        if end < 0:
            return
        frames = bytes(buf[:end]).split(b"\0")
        del buf[:end + 1]
        self._deliver(frames)

    def _truncated(self, buf: bytearray) -> None:
        if buf:  # Graylog drops a frame cut off by the end of the connection
            with self._cond:
                self.errors.append(f"TCP connection closed inside a frame of {len(buf)} bytes")

    def _read_datagrams(self, sock: socket.socket) -> None:
        payloads = []
        for _ in range(1024):  # drain, but let stop() and the other sockets in now and then
            try:
                datagram = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            if self.store:
                self.datagrams.append(datagram)
            payload = self._reassemble(datagram) if datagram[:2] == _CHUNK_MAGIC else datagram
            if payload is not None:
                payloads.append(payload)
        if not self.store:
            self._deliver([b""] * len(payloads))
            return
        documents = []
        for payload in payloads:
            try:
                documents.append(decode_payload(payload))
            except (ValueError, OSError, zlib.error) as err:
                self.errors.append(f"undecodable payload: {err}")
        self._deliver(documents)

    def _reassemble(self, datagram: bytes) -> bytes | None:
        """Keep a chunk; return the whole payload once every chunk of its message is in."""
        if len(datagram) < 12:
            self.errors.append(f"chunk of {len(datagram)} bytes has no complete header")
            return None
        msg_id, seq, count = datagram[2:10], datagram[10], datagram[11]
        if not 0 < count <= MAX_CHUNKS or seq >= count:
            self.errors.append(f"chunk {seq} of {count}: out of range")
            return None
        parts = self._chunks.setdefault(msg_id, {})
        if self._chunk_counts.setdefault(msg_id, count) != count:
            self.errors.append(f"chunk {seq}: count {count} differs from earlier chunks")
            return None
        if seq in parts:
            self.errors.append(f"chunk {seq} of {count} received twice")
        parts[seq] = datagram[12:]
        if len(parts) < count:
            return None
        del self._chunks[msg_id], self._chunk_counts[msg_id]
        return b"".join(parts[i] for i in range(count))

    def _deliver(self, documents: list[bytes]) -> None:
        if not self.store:
            with self._cond:
                self.count += len(documents)
                self._cond.notify_all()
            return
        records, kept, errors = [], [], []
        for doc in documents:
            try:
                record = json.loads(doc)
            except ValueError as err:
                errors.append(f"not JSON ({err}): {doc[:80]!r}")
                continue
            problem = self._gelf_problem(record)
            if problem:
                errors.append(f"{problem}: {doc[:80]!r}")
                continue
            records.append(record)
            kept.append(doc)
        with self._cond:
            self.records += records
            self.documents += kept
            self.errors += errors
            self.count += len(records)
            self._cond.notify_all()

    @staticmethod
    def _gelf_problem(record: object) -> str:
        """Why Graylog would refuse this message, or ""."""
        if not isinstance(record, dict):
            return "not a JSON object"
        if record.get("version") != "1.1":
            return "no GELF version 1.1"
        if not record.get("short_message"):
            return "empty or missing short_message"
        if not record.get("host"):
            return "empty or missing host"
        return ""
