"""The ``fluentd`` remote driver: Fluentd's Forward protocol v1 (msgpack) over TCP or a unix socket.

Owns Docker's fluentd options (validated with Docker's texts), the record Docker builds for
each line (``container_id``, ``container_name``, ``source``, ``log``, extras, ``partial_*``),
and its delivery to a Forward receiver (Fluentd's ``in_forward``, Fluent Bit's ``forward``
input) as **PackedForward** batches: one ``[tag, <bin: concatenated [time, record]>, option]``
per batch, where Docker sends one Message-mode array per line. The records inside are
Docker's byte for byte: every value a msgpack *str* (invalid UTF-8 and NUL included, never
*bin*), ``time`` an int (``0xd2``) or an EventTime (ext type 0) with
``fluentd-sub-second-precision``.

Delivery is what makes this driver differ from Docker's (see ``docs/drivers/fluentd.md``):

* ``send`` returns only when the batch is confirmed: with ``fluentd-request-ack`` when the
  receiver answered ``{"ack": <chunk>}`` for this batch's chunk id, otherwise when the whole
  frame was written to the socket. Anything else closes the connection and raises
  ``RetryableError``; the shipper resends the batch from the spool, so nothing is lost
  (a batch whose ack went missing may arrive twice: at-least-once).
* One connection per container, used by one ``send`` at a time (a lock): Docker's two
  writers reading each other's acks (reference §8, a defect) cannot happen.
* Times are the records' own (log time), not the time of sending (moby#21793).

What it must not do: buffer or retry by itself (the spool is the buffer and the shipper
retries), do network I/O in the constructor (it connects in ``send``), or import msgpack or
fluent-logger at module level (only the daemon's shipper needs them).

msgpack packs the option map and reads acks. fluent-logger's ``FluentSender`` does not fit:
it sends Message mode, one record per call, keeps failed data in its own ``pendings`` buffer
instead of raising (the shipper must know), has no ``chunk``/ack support and connects over
IPv4 only. Its ``EventTime`` fits the format but not the hot path: lines rarely share a
nanosecond, and building and packing an ExtType per line costs seven times one ``struct``
call, so the same eight bytes are packed here (the tests check them against the library's).
The rest of each entry is joined from pre-packed bytes too: msgpack-python cannot pack
``bytes`` as a *str* with the str8 headers Docker's Go encoder (tinylib/msgp) writes, and
packing a dict per line is 2.5 times slower.

Size: longer than 500 lines because the options, the hand-packed msgpack of the hot path and the
acknowledged delivery are one protocol; the network plumbing is ``drivers.netconn``.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import struct
import threading
import time
from typing import Any, Mapping, NamedTuple, Sequence
from urllib.parse import unquote, urlsplit

from logpipe.driver import BatchLimits, LogInfo
from logpipe.errors import DriverInitError, LogOptError, LogpipeError, RetryableError
from logpipe.message import PARTIAL_SIZE, Message
from logpipe.options import check_known_keys, driver_opts, parse_bool
from logpipe.units import parse_duration, parse_ram_size

from .netconn import AddrError, NetError
from .netconn import dial_error as go_dial_error
from .netconn import (dial_unix, go_io_error, join_host_port, lookup_error, peer_spoke,
                      send_all, split_host_port, url_host)
from .remote import RemoteDriverBase

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 24224
DEFAULT_BUFFER_LIMIT = 1 << 20
DEFAULT_RETRY_WAIT = 1.0
#: fluent-logger-golang never waits longer than this between two reconnects.
MAX_RETRY_WAIT = 60.0
#: Batches are cut to ``fluentd-buffer-limit`` bytes, but never above this: Fluentd's default
#: buffer chunk limit (8 MiB), so that a receiver forwarding our batches can keep them whole.
MAX_BATCH_BYTES = 8 << 20
MAX_BATCH_COUNT = 10_000

ADDRESS = "fluentd-address"
ASYNC = "fluentd-async"
ASYNC_CONNECT = "fluentd-async-connect"
BUFFER_LIMIT = "fluentd-buffer-limit"
RETRY_WAIT = "fluentd-retry-wait"
MAX_RETRIES = "fluentd-max-retries"
SUB_SECOND = "fluentd-sub-second-precision"
REQUEST_ACK = "fluentd-request-ack"

OPTIONS = frozenset({"env", "env-regex", "labels", "labels-regex", "tag", ADDRESS, ASYNC,
                     ASYNC_CONNECT, BUFFER_LIMIT, MAX_RETRIES, REQUEST_ACK, RETRY_WAIT,
                     SUB_SECOND})
_EXTRA_KEYS = ("labels", "labels-regex", "env", "env-regex")
#: Docker's ``urlutil.IsTransportURL`` prefixes: only these are parsed as URLs.
_TRANSPORT_PREFIXES = ("tcp://", "tcp+tls://", "udp://", "unix://", "unixgram://")


# -- options -------------------------------------------------------------------------------

class Address(NamedTuple):
    """Where to connect: ``network`` is ``tcp`` (``host``, ``port``) or ``unix`` (``path``)."""

    network: str
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        """As Go prints a dial target: ``tcp 127.0.0.1:24224``, ``tcp [::1]:24224``,
        ``unix /run/fluent.sock``."""
        if self.network == "unix":
            return f"unix {self.path}"
        return f"tcp {join_host_port(self.host, self.port)}"


class FluentdConfig(NamedTuple):
    """The parsed options (Docker's ``parseConfig``)."""

    address: Address
    buffer_limit: int
    retry_wait: float
    max_retries: int | None
    async_: bool
    sub_second: bool
    request_ack: bool


def parse_config(opts: Mapping[str, str]) -> FluentdConfig:
    """Docker's ``parseConfig``, in its order and with its texts. An empty value means the
    default, as in Docker (``cfg[key] != ""``)."""
    address = parse_address(opts.get(ADDRESS, ""))
    buffer_limit = DEFAULT_BUFFER_LIMIT
    if opts.get(BUFFER_LIMIT):
        buffer_limit = parse_ram_size(opts[BUFFER_LIMIT])
    retry_wait = DEFAULT_RETRY_WAIT
    if opts.get(RETRY_WAIT):
        try:
            # A negative wait (Go accepts "-1s") means no wait, as fluent-logger-golang does.
            retry_wait = max(0.0, parse_duration(opts[RETRY_WAIT]) / 1e9)
        except ValueError as err:
            raise LogOptError(str(err)) from None
    max_retries = None
    if opts.get(MAX_RETRIES):
        max_retries = _parse_uint(opts[MAX_RETRIES])
    if opts.get(ASYNC) and opts.get(ASYNC_CONNECT):
        # Docker's text, unbalanced quote included.
        raise LogOptError("conflicting options: cannot specify both "
                          f"'{ASYNC}' and '{ASYNC_CONNECT}")
    is_async = bool(opts.get(ASYNC)) and parse_bool(opts[ASYNC])
    is_async = (bool(opts.get(ASYNC_CONNECT)) and parse_bool(opts[ASYNC_CONNECT])) or is_async
    sub_second = bool(opts.get(SUB_SECOND)) and parse_bool(opts[SUB_SECOND])
    request_ack = bool(opts.get(REQUEST_ACK)) and parse_bool(opts[REQUEST_ACK])
    return FluentdConfig(address, buffer_limit, retry_wait, max_retries, is_async, sub_second,
                         request_ack)


def _parse_uint(value: str) -> int:
    """Go's ``strconv.ParseUint(value, 10, 64)``, with its error texts."""
    if not re.fullmatch(r"[0-9]+", value):
        raise LogOptError(f'strconv.ParseUint: parsing "{value}": invalid syntax')
    number = int(value)
    if number >= 1 << 64:
        raise LogOptError(f'strconv.ParseUint: parsing "{value}": value out of range')
    return number


def parse_address(value: str) -> Address:
    """Docker's ``parseAddress``: ``host:port``, ``tcp://host:port`` or ``unix:///path``.

    Errors read as Docker's (``invalid fluentd-address <value>: <Go error>``). Two
    differences, both refusing at create what could only fail later: Docker dials
    ``127.0.0.1:24224`` for a host given without a port (it drops the host: a bug, reference
    §4.5), logpipe dials that host on port 24224; and schemes Docker accepts but cannot send
    to (``udp``, ``unixgram``, ``tcp+tls`` in 20.10), bad ports and empty socket paths are
    refused here rather than at container start.
    """
    if not value:
        return Address("tcp", DEFAULT_HOST, DEFAULT_PORT)
    hostport, network = value, "tcp"
    if value.startswith(_TRANSPORT_PREFIXES):
        network, _, rest = value.partition("://")
        if network in ("unix", "unixgram"):
            return _unix_address(value, network)
        hostport = _url_host(value, rest)
    try:
        # "[::1]x:1" is refused with Go's text, where Docker takes any "missing port" as no
        # port at all, drops the host and dials 127.0.0.1.
        host, port = split_host_port(hostport)
    except AddrError as err:
        raise _bad_address(value, str(err)) from None
    if network != "tcp":
        raise _bad_address(value, f"logpipe sends to fluentd over tcp:// or unix:// only, "
                                  f"not {network}://")
    number = DEFAULT_PORT if port is None else _parse_port(value, port)
    return Address("tcp", host or DEFAULT_HOST, number)


def _bad_address(value: str, why: str) -> LogOptError:
    return LogOptError(f"invalid fluentd-address {value}: {why}")


def _unix_address(value: str, network: str) -> Address:
    if network != "unix":
        raise _bad_address(value, "logpipe sends to fluentd over tcp:// or unix:// only, "
                                  "not unixgram://")
    path = unquote(urlsplit(value).path)
    if not path:
        raise _bad_address(value, "no socket path (write unix:///absolute/path)")
    return Address("unix", path=path)


def _url_host(value: str, rest: str) -> str:
    """The host[:port] of a URL, refused as Go's ``url.Parse`` refuses it."""
    host = url_host(rest)
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise _bad_address(value, f'parse "{value}": missing \']\' in host')
        colon_port = host[end + 1:]
    else:
        colon = host.rfind(":")
        colon_port = host[colon:] if colon >= 0 else ""
    if not re.fullmatch(r"(:[0-9]*)?", colon_port):
        raise _bad_address(value, f'parse "{value}": invalid port "{colon_port}" after host')
    return host


def _parse_port(value: str, port: str) -> int:
    """Go's ``strconv.Atoi`` texts; a number outside 1-65535 passes Docker's check and fails
    its dial at start (``dial tcp: address 99999: invalid port``): refused here, in those words."""
    if not re.fullmatch(r"[+-]?[0-9]+", port):
        raise _bad_address(value, f'strconv.Atoi: parsing "{port}": invalid syntax')
    number = int(port)
    if not -(1 << 63) <= number < 1 << 63:
        raise _bad_address(value, f'strconv.Atoi: parsing "{port}": value out of range')
    if not 0 < number < 65536:
        raise DriverInitError(f"dial tcp: address {port}: invalid port")
    return number


# -- msgpack, the parts packed by hand -------------------------------------------------------

#: str headers for lengths below 256 (fixstr, then str8 as tinylib/msgp writes them).
_STR_HEADERS = [bytes((0xA0 | n,)) for n in range(32)] + [b"\xd9" + bytes((n,))
                                                         for n in range(32, 256)]


def _str_header(n: int) -> bytes:
    if n < 256:
        return _STR_HEADERS[n]
    if n < 1 << 16:
        return b"\xda" + n.to_bytes(2, "big")
    return b"\xdb" + n.to_bytes(4, "big")


def _str(text: str | bytes) -> bytes:
    """A msgpack str of the UTF-8 bytes; bytes are packed as they are, valid UTF-8 or not."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    return _str_header(len(data)) + data


def _bin_header(n: int) -> bytes:
    if n < 256:
        return b"\xc4" + bytes((n,))
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def _map_header(n: int) -> bytes:
    return bytes((0x80 | n,)) if n < 16 else b"\xde" + n.to_bytes(2, "big")


def _int64(i: int) -> bytes:
    """tinylib/msgp ``AppendInt64``: signed encodings only, so a Unix time is ``0xd2``."""
    if -32 <= i <= 0x7F:
        return struct.pack(">b", i) if i < 0 else bytes((i,))
    for code, fmt, bound in ((b"\xd0", ">b", 1 << 7), (b"\xd1", ">h", 1 << 15),
                             (b"\xd2", ">i", 1 << 31), (b"\xd3", ">q", 1 << 63)):
        if -bound <= i < bound:
            return code + struct.pack(fmt, i)
    raise OverflowError(f"{i} does not fit in an int64")


_LOG = object()  # where the line goes in a record template


#: An entry's start with an EventTime: fixarray 2, fixext 8 of type 0, u32 s, u32 ns: the
#: bytes of fluent-logger's ``EventTime`` packed by msgpack (see the module docstring).
_EVENT_ENTRY = struct.Struct(">BBBII")
_NS = 1_000_000_000


class RecordPacker:
    """Packs ``[time, record]`` entries as Docker's fluentd driver builds them.

    The record is Docker's map: ``container_id``, ``container_name``, ``source``, ``log``,
    then the extra attributes (a label named ``log`` or ``source`` overwrites the built-in
    value, as in Docker), then for pieces of a long line ``partial_message`` ("true" on every
    piece), ``partial_id``, ``partial_ordinal``, ``partial_last``. Everything but the time and
    the line is packed once per source; a line costs one header lookup and a few list appends.
    """

    def __init__(self, info: LogInfo, extras: Mapping[str, str], sub_second: bool) -> None:
        self._info, self._extras, self.sub_second = info, extras, sub_second
        #: source -> (bytes before the line's str header, bytes after the line, has a line)
        self._templates = {src: self._split(self._fields(src)) for src in ("stdout", "stderr")}

    def _fields(self, source: str, partial: Any = None) -> dict[str, object]:
        fields: dict[str, object] = {"container_id": self._info.container_id,
                                     "container_name": self._info.container_name,
                                     "source": source, "log": _LOG}
        fields.update(self._extras)
        if partial is not None:
            fields["partial_message"] = "true"
            fields["partial_id"] = partial.id
            fields["partial_ordinal"] = str(partial.ordinal)
            fields["partial_last"] = "true" if partial.last else "false"
        return fields

    @staticmethod
    def _split(fields: dict[str, object]) -> tuple[bytes, bytes, bool]:
        parts = [_map_header(len(fields))]
        cut = -1
        for key, value in fields.items():
            parts.append(_str(key))
            if value is _LOG:
                cut = len(parts)
            else:
                parts.append(_str(value))  # type: ignore[arg-type]
        if cut < 0:  # the line is overwritten by an extra attribute named "log"
            return b"".join(parts), b"", False
        return b"".join(parts[:cut]), b"".join(parts[cut:]), True

    def template(self, source: str) -> tuple[bytes, bytes, bool]:
        template = self._templates.get(source)
        if template is None:
            template = self._templates[source] = self._split(self._fields(source))
        return template

    def entry_start(self, ts: int) -> bytes:
        """``fixarray(2)`` and the time: Unix seconds as tinylib/msgp packs an int64 (``0xd2``),
        or with sub-second precision an EventTime."""
        if self.sub_second:
            return _EVENT_ENTRY.pack(0x92, 0xD7, 0, *divmod(ts, _NS))
        return b"\x92" + _int64(ts // _NS)

    def overhead(self) -> int:
        """Bytes a record adds to its line, for the shipper's byte count (the largest case:
        a str32 header, the longer source)."""
        head, tail, _ = max(self._templates.values(), key=lambda t: len(t[0]) + len(t[1]))
        return len(self.entry_start(time.time_ns())) + len(head) + 5 + len(tail)

    def entries(self, batch: Sequence[Message]) -> list[bytes]:
        """The concatenation of the batch's entries, as a list of parts to join."""
        parts: list[bytes] = []
        append = parts.append
        sub_second = self.sub_second
        event_entry = _EVENT_ENTRY.pack
        last_ts = last_sec = -1
        last_src = None
        start = head = tail = b""
        has_line = True
        for line, source, ts, _newline, partial, _attrs in batch:
            if partial is not None:
                piece_head, piece_tail, keep = self._split(self._fields(source, partial))
                append(self.entry_start(ts) + piece_head)
                if keep:
                    append(_str(line) + piece_tail)
                continue
            if source != last_src:
                head, tail, has_line = self.template(source)
                last_src = source
            if ts != last_ts:
                if sub_second:
                    start = event_entry(0x92, 0xD7, 0, *divmod(ts, _NS))
                elif ts // _NS != last_sec:
                    last_sec = ts // _NS
                    start = b"\x92" + _int64(last_sec)
                last_ts = ts
            append(start)
            append(head)
            if has_line:
                n = len(line)
                append(_STR_HEADERS[n] if n < 256 else _str_header(n))
                append(line)
                if tail:
                    append(tail)
        return parts


# -- the connection ------------------------------------------------------------------------

def dial_error(address: Address, err: BaseException) -> str:
    """A failed dial in Go's words: ``dial tcp 127.0.0.1:24224: connect: connection refused``.
    The address is the configured one (``socket.create_connection`` does not say which of
    a name's addresses failed), and a name that does not resolve is "no such host"."""
    if isinstance(err, NetError):  # a unix socket: already in Go's words
        return str(err)
    if isinstance(err, socket.gaierror):
        return lookup_error(address.network, address.host, "no such host")
    if isinstance(err, OSError):
        net, _, where = str(address).partition(" ")
        return go_dial_error(net, where, err)
    return f"dial {address}: {err}"


def dial(address: Address, timeout: float) -> socket.socket:
    """Connect, or raise ``OSError`` (``socket.gaierror`` for a name that does not resolve)."""
    if address.network == "unix":
        return dial_unix(address.path, socket.SOCK_STREAM, timeout)
    sock = socket.create_connection((address.host, address.port), timeout=timeout)
    # Whole frames are written at once: Nagle could only delay the tail of one (and its ack).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


# -- the driver ----------------------------------------------------------------------------

class FluentdDriver(RemoteDriverBase):
    """Docker's ``fluentd`` driver, sending PackedForward batches.

    Attributes the shipper reads:

    * ``limits``: batches of at most ``MAX_BATCH_COUNT`` records and ``fluentd-buffer-limit``
      bytes (default 1 MiB), raised to hold at least one 16 KiB piece with its keys and
      capped at 8 MiB. In Docker the buffer limit sizes fluent-logger's in-memory buffer; in
      logpipe the spool is the buffer, so the limit sizes what is sent at once instead.
    * ``retry_wait`` (seconds, ``fluentd-retry-wait``, default 1 s) and ``retry_max_wait``
      (60 s, fluent-logger-golang's cap): the shipper's backoff between attempts of a batch.
    * ``max_retries`` (``fluentd-max-retries``): None (the default: retry until delivered;
      Docker's default, 2147483647, means the same in practice) or how many retries of one
      batch the shipper makes before it drops the batch, as Docker drops a message.

    ``connect_timeout`` (fluent-logger-golang's 3 s) bounds a dial; ``io_timeout`` bounds a
    stalled write and the wait for an ack.
    """

    name = "fluentd"
    connect_timeout = 3.0
    io_timeout = 30.0
    retry_max_wait = MAX_RETRY_WAIT

    @staticmethod
    def validate(opts: Mapping[str, str], info: LogInfo | None = None) -> None:
        """Docker's key check and ``parseConfig``; then the tag and the extras' regexes
        (rendered with the container's info when given; Docker only finds them at start)."""
        check_known_keys(opts, OPTIONS, "fluentd")
        parse_config(opts)
        if info is not None:
            _tag_and_extras(opts, info)
            return
        from logpipe.extras import check_without_container

        check_without_container(opts)

    @staticmethod
    def probe(info: LogInfo) -> None:
        """Docker dials at container start unless ``fluentd-async`` (or the deprecated
        ``fluentd-async-connect``) is true, and refuses to start when that fails."""
        config = parse_config(driver_opts(info.config))
        if config.async_:
            return
        try:
            dial(config.address, FluentdDriver.connect_timeout).close()
        except OSError as err:
            raise LogpipeError(dial_error(config.address, err)) from None

    def __init__(self, info: LogInfo) -> None:
        super().__init__(info)
        import msgpack

        self._msgpack = msgpack
        config = parse_config(self.opts)
        self.address = config.address
        self.request_ack = config.request_ack
        self.retry_wait = config.retry_wait
        self.max_retries = config.max_retries
        tag, extras = _tag_and_extras(self.opts, info)
        self._packer = RecordPacker(info, extras, config.sub_second)
        self._frame_head = b"\x93" + _str(tag)
        overhead = self._packer.overhead()
        max_bytes = min(max(config.buffer_limit, PARTIAL_SIZE + overhead), MAX_BATCH_BYTES)
        self.limits = BatchLimits(max_count=MAX_BATCH_COUNT, max_bytes=max_bytes,
                                  overhead=overhead)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def send(self, batch: Sequence[Message]) -> None:
        """Send the batch as one PackedForward frame; with ``fluentd-request-ack``, return
        only after the receiver acknowledged this frame's chunk id.

        Every failure is a ``RetryableError`` that leaves no connection behind (a frame cut
        off mid-way is discarded by the receiver with the connection). Never
        ``PermanentError``: the Forward protocol has no way to refuse a batch.
        """
        if not batch:
            return None
        frame, chunk = self.frame(batch)
        with self._lock:
            sock = self._connection()
            try:
                send_all(sock, frame)
                if chunk is not None:
                    self._await_ack(sock, chunk)
            except RetryableError:
                self._disconnect()
                raise
            except OSError as err:
                self._disconnect()
                raise RetryableError(f"write {self.address}: {go_io_error(err)}") from None
        return None

    def frame(self, batch: Sequence[Message]) -> tuple[bytes, str | None]:
        """The PackedForward frame of a batch, and its chunk id (None without ack).

        A fresh chunk id per attempt: it pairs an ack with one transmission, and Fluentd
        deduplicates nothing by it, so reusing it for a resend would gain nothing.
        """
        parts = self._packer.entries(batch)
        size = sum(map(len, parts))
        option: dict[str, object] = {"size": len(batch)}
        chunk = None
        if self.request_ack:
            chunk = base64.b64encode(os.urandom(16)).decode("ascii")
            option["chunk"] = chunk
        parts.insert(0, self._frame_head + _bin_header(size))
        parts.append(self._msgpack.packb(option))
        return b"".join(parts), chunk

    def _connection(self) -> socket.socket:
        """The kept connection, or a new one (``RetryableError`` if the receiver is down)."""
        if self._sock is not None and peer_spoke(self._sock):
            self._disconnect()
        if self._sock is None:
            try:
                self._sock = dial(self.address, self.connect_timeout)
            except OSError as err:
                raise RetryableError(dial_error(self.address, err)) from None
            self._sock.settimeout(self.io_timeout)
        return self._sock

    def _await_ack(self, sock: socket.socket, chunk: str) -> None:
        """Read the one answer to this frame: ``{"ack": chunk}``, or ``RetryableError``."""
        unpacker = self._msgpack.Unpacker(raw=False, max_buffer_size=1 << 16)
        deadline = time.monotonic() + self.io_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RetryableError(f"fluentd {self.address}: no ack for chunk {chunk} "
                                     f"within {self.io_timeout:g}s")
            sock.settimeout(left)
            try:
                data = sock.recv(4096)
            except (socket.timeout, TimeoutError):
                continue
            finally:
                sock.settimeout(self.io_timeout)
            if not data:
                raise RetryableError(f"fluentd {self.address}: connection closed before the "
                                     f"ack for chunk {chunk}")
            unpacker.feed(data)
            try:
                answer = next(unpacker)
            except StopIteration:
                continue
            except (ValueError, self._msgpack.UnpackException) as err:
                raise RetryableError(f"fluentd {self.address}: unreadable ack: {err}") from None
            if isinstance(answer, dict) and answer.get("ack") == chunk:
                return
            raise RetryableError(f"fluentd {self.address}: expected ack for chunk {chunk}, "
                                 f"got {answer!r}")

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def close(self) -> None:
        """Closing loses nothing: every frame ``send`` returned for was confirmed (written,
        or acknowledged with ``fluentd-request-ack``)."""
        with self._lock:
            self._disconnect()


def _tag_and_extras(opts: Mapping[str, str], info: LogInfo) -> tuple[str, dict[str, str]]:
    """The rendered tag (default ``{{.ID}}``) and the extra attributes; ``LogOptError`` on a
    bad template or regex. Imported on use: the shim never needs the template engine."""
    from logpipe.template import render_tag

    extras: dict[str, str] = {}
    if any(opts.get(k) for k in _EXTRA_KEYS):
        from logpipe.extras import extra_attrs

        extras = extra_attrs(opts, info)
    return render_tag(opts, info), extras
