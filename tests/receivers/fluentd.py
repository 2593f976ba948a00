"""A Fluentd Forward receiver for tests and benchmarks, independent of pytest.

``FakeFluentd`` stands in for Fluentd's ``in_forward`` input: Fluentd is a Ruby gem, not
installable from PyPI, Debian's archive (in the versions CI uses) or npm, so the tests cannot
start the real one. It decodes the Forward protocol v1 byte for byte with msgpack-python, in
all four modes a client may use:

* Message: ``[tag, time, record]`` or ``[tag, time, record, option]``;
* Forward: ``[tag, [[time, record], ...], option?]``;
* PackedForward: ``[tag, <bin or str: concatenated msgpack [time, record]>, option?]``;
* CompressedPackedForward: the same with ``option["compressed"] == "gzip"`` (gzip members).

``time`` is an int or an EventTime (ext type 0, 8 bytes: u32 seconds, u32 nanoseconds). When
an option carries ``chunk``, it answers ``{"ack": chunk}`` after recording the events, as
``in_forward`` does. Strings are decoded with ``surrogateescape``, so a *str* holding invalid
UTF-8 arrives as a Python ``str`` (``.encode("utf-8", "surrogateescape")`` gives the bytes
back) while a *bin* arrives as ``bytes``: tests can tell the two msgpack types apart.

Not implemented: the ``<security>`` handshake (HELO/PING/PONG with a shared key; Docker's
driver and logpipe's never do it), JSON-encoded frames, UDP heartbeats and TLS.

Misbehaviour on purpose, for delivery tests: ``ack_mode`` ``"none"`` (never answer) or
``"bad"`` (answer with a wrong chunk id); ``drop_before_ack(n)`` (close the connection on the
next ``n`` frames that ask for an ack, without recording them, as a receiver that crashed
would); ``rate`` (records per second: a slow receiver); ``stop()``/``start()`` on the same
port or socket path (a receiver that goes down and comes back).

For benchmarks, ``count_only=True`` counts PackedForward records from the ``size`` option
without decoding them (``received`` grows, ``events`` stays empty), so the receiver is not
what is measured.
"""

from __future__ import annotations

import gzip
import os
import socket
import threading
import time
from typing import Any, NamedTuple

import msgpack


class EventTime(NamedTuple):
    """A decoded Forward EventTime (msgpack ext type 0)."""

    seconds: int
    nanoseconds: int

    @property
    def ns(self) -> int:
        return self.seconds * 1_000_000_000 + self.nanoseconds


class Event(NamedTuple):
    """One record as received: ``time`` is an int or an ``EventTime``."""

    tag: str
    time: int | EventTime
    record: dict
    mode: str


class Frame(NamedTuple):
    """One top-level Forward message: its mode, option map, number of events, raw bytes
    (``b""`` unless the receiver keeps them)."""

    mode: str
    tag: str
    option: dict | None
    count: int
    raw: bytes


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0 and len(data) == 8:
        return EventTime(int.from_bytes(data[:4], "big"), int.from_bytes(data[4:], "big"))
    return msgpack.ExtType(code, data)


def _unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", ext_hook=_ext_hook,
                            strict_map_key=False, max_buffer_size=256 << 20)


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def decode_frame(frame: Any) -> tuple[str, str, dict | None, list[tuple[Any, dict]]]:
    """(mode, tag, option, [(time, record)]) of one Forward message; ValueError if malformed."""
    if not isinstance(frame, list) or len(frame) < 2 or not isinstance(frame[0], str):
        raise ValueError(f"not a Forward message: {frame!r:.200}")
    tag, second = frame[0], frame[1]
    if isinstance(second, (int, EventTime)):
        if len(frame) not in (3, 4) or not isinstance(frame[2], dict):
            raise ValueError(f"bad Message mode frame: {frame!r:.200}")
        return "Message", tag, _option(frame, 3), [(second, frame[2])]
    option = _option(frame, 2)
    if isinstance(second, list):
        return "Forward", tag, option, [_entry(e) for e in second]
    if isinstance(second, (bytes, str)):
        data = _as_bytes(second)
        mode = "PackedForward"
        if option and option.get("compressed") == "gzip":
            data, mode = gzip.decompress(data), "CompressedPackedForward"
        unpacker = _unpacker()
        unpacker.feed(data)
        entries = [_entry(e) for e in unpacker]
        if option and "size" in option and option["size"] != len(entries):
            raise ValueError(f"size option {option['size']} but {len(entries)} entries")
        return mode, tag, option, entries
    raise ValueError(f"unknown Forward mode: {frame!r:.200}")


def _option(frame: list, index: int) -> dict | None:
    if len(frame) <= index:
        return None
    if len(frame) > index + 1 or not isinstance(frame[index], dict):
        raise ValueError(f"bad option in {frame!r:.200}")
    return frame[index]


def _entry(entry: Any) -> tuple[Any, dict]:
    if (not isinstance(entry, list) or len(entry) != 2
            or not isinstance(entry[0], (int, EventTime)) or not isinstance(entry[1], dict)):
        raise ValueError(f"bad entry {entry!r:.200}")
    return entry[0], entry[1]


class FakeFluentd:
    """A Forward receiver on TCP (``127.0.0.1``, a free port unless ``port``) or on a unix
    socket (``unix_path``). Use as a context manager, or ``start()``/``stop()``.

    ``address`` is the value for ``--log-opt fluentd-address``. ``events``, ``frames``,
    ``received`` (a count), ``errors`` and ``connections`` grow as data arrives;
    ``wait_for(n)`` blocks until ``n`` records have arrived. ``keep_raw`` keeps each frame's
    bytes in ``Frame.raw``.
    """

    def __init__(self, *, port: int = 0, unix_path: str | None = None,
                 ack_mode: str = "ack", rate: float | None = None,
                 keep_raw: bool = False, count_only: bool = False) -> None:
        if ack_mode not in ("ack", "none", "bad"):
            raise ValueError(f"ack_mode must be ack, none or bad, not {ack_mode!r}")
        self.port, self.unix_path = port, unix_path
        self.ack_mode, self.rate, self.keep_raw = ack_mode, rate, keep_raw
        self.count_only = count_only
        self.received = 0
        self.events: list[Event] = []
        self.frames: list[Frame] = []
        self.errors: list[str] = []
        self.connections = 0
        self._drops = 0
        self._cond = threading.Condition()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        if self.unix_path:
            return f"unix://{self.unix_path}"
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> "FakeFluentd":
        """Listen (again, on the same port or path after a ``stop``)."""
        if self.unix_path:
            if os.path.exists(self.unix_path):
                os.unlink(self.unix_path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(self.unix_path)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            self.port = sock.getsockname()[1]
        sock.listen(64)
        self._listener = sock
        self._spawn(self._accept_loop, sock)
        return self

    def stop(self) -> None:
        """Go down as a crashed receiver would: close the listener and every connection;
        what the kernel buffered but was not yet read is lost."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _shutdown(listener)
        with self._cond:
            conns = list(self._conns)
        for conn in conns:
            _shutdown(conn)
        threads, self._threads = self._threads, []
        for t in threads:
            t.join(10)
        if self.unix_path and os.path.exists(self.unix_path):
            os.unlink(self.unix_path)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> "FakeFluentd":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour switches ----------------------------------------------------------------

    def drop_before_ack(self, n: int = 1) -> None:
        """Close the connection on the next ``n`` frames that ask for an ack, recording
        nothing from them (a receiver that died before processing them)."""
        with self._cond:
            self._drops += n

    # -- results -----------------------------------------------------------------------------

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Event]:
        """All events received (none with ``count_only``), once at least ``n`` records
        have arrived; TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.received >= n, timeout):
                raise TimeoutError(f"{self.received} of {n} fluentd records arrived in "
                                   f"{timeout}s; errors: {self.errors}")
            return list(self.events)

    def wait_for_frames(self, n: int, timeout: float = 10.0) -> list[Frame]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.frames) >= n, timeout):
                raise TimeoutError(f"{len(self.frames)} of {n} frames arrived in {timeout}s")
            return list(self.frames)

    # -- serving -------------------------------------------------------------------------------

    def _spawn(self, target: Any, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, daemon=True, name="fake-fluentd")
        self._threads.append(t)
        t.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                listener.close()
                return
            with self._cond:
                if self._listener is not listener:  # stopped while accepting
                    conn.close()
                    continue
                self._conns.add(conn)
                self.connections += 1
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        unpacker = _unpacker()
        raw = bytearray()
        start = 0
        try:
            while True:
                data = conn.recv(1 << 18)
                if not data:
                    return
                unpacker.feed(data)
                if self.keep_raw:
                    raw += data
                for obj in unpacker:
                    end = unpacker.tell()
                    frame_bytes = bytes(raw[start:end]) if self.keep_raw else b""
                    start = end
                    if not self._handle(conn, obj, frame_bytes):
                        return
        except (OSError, ValueError, msgpack.UnpackException) as err:
            if self._listener is not None:  # errors while stopping are expected
                with self._cond:
                    self.errors.append(f"{type(err).__name__}: {err}")
        finally:
            with self._cond:
                self._conns.discard(conn)
            conn.close()

    def _handle(self, conn: socket.socket, obj: Any, raw: bytes) -> bool:
        """Record one frame and acknowledge it; False when the connection must close."""
        if self.count_only and _counted(obj) is not None:
            mode, tag, option, entries = "PackedForward", obj[0], obj[2], []
            count = _counted(obj)
        else:
            mode, tag, option, entries = decode_frame(obj)
            count = len(entries)
        chunk = option.get("chunk") if option else None
        with self._cond:
            if chunk is not None and self._drops:
                self._drops -= 1
                return False
        if self.rate:
            time.sleep(count / self.rate)  # a slow receiver, on purpose
        with self._cond:
            self.frames.append(Frame(mode, tag, option, count, raw))
            self.events.extend(Event(tag, t, record, mode) for t, record in entries)
            self.received += count
            self._cond.notify_all()
        if chunk is not None and self.ack_mode != "none":
            answer = chunk if self.ack_mode == "ack" else "not-" + str(chunk)
            conn.sendall(msgpack.packb({"ack": answer}))
        return True


def _counted(obj: Any) -> int | None:
    """The record count of an uncompressed PackedForward frame with a ``size`` option."""
    if (isinstance(obj, list) and len(obj) == 3 and isinstance(obj[1], (bytes, str))
            and isinstance(obj[2], dict) and isinstance(obj[2].get("size"), int)
            and "compressed" not in obj[2]):
        return obj[2]["size"]
    return None


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
