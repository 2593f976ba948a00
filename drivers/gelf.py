"""The ``gelf`` remote driver: GELF 1.1 to Graylog over UDP (compressed, chunked) or TCP.

Owns Docker's ``gelf`` options and their validation (Docker's error texts), the GELF JSON of
a record exactly as Docker's Go encoder writes it, UDP compression and chunking, TCP NUL
framing, and the two sockets. It does not read the spool, never waits between retries (the
shipper's job, see ``GelfDriver``; over UDP it only paces datagrams, ``drivers.pacing``) and
imports nothing beyond the standard library.

The JSON is Docker's (``go-gelf``'s ``MarshalJSONBuf`` fed by ``daemon/logger/gelf``):
``version, host, short_message, timestamp, level``, then every ``_`` field sorted bytewise.
The ``_`` fields are the same for every record of a container, and sort after the varying
ones, so they are encoded once per driver as one constant tail. A batch's lines are escaped
in one pass over the ``\\n``-joined batch; only the assembly of each record is per line.

Size: longer than 500 lines because the options, the encoder, UDP chunking and the two senders are
one protocol whose parts are read together; the network plumbing is ``drivers.netconn``.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import time
import zlib
from typing import Any, Callable, Hashable, Mapping, NamedTuple, Sequence

from logpipe.driver import BatchLimits, LogInfo
from logpipe.errors import LogOptError, LogpipeError, RetryableError
from logpipe.gojson import ascii_escapes, go_json_string
from logpipe.message import STDERR, Message

from .netconn import (NetError, dial, gai_reason, go_io_error, join_host_port, lookup_error,
                      peer_closed, send_all, url_host)
from .pacing import PATIENCE, UDPPacer, parse_rate
from .remote import RemoteDriverBase

__all__ = ["GelfDriver", "escape_lines", "format_timestamp", "parse_address", "chunk_payload"]

# -- options ---------------------------------------------------------------------------------

_ALWAYS = frozenset({"gelf-address", "tag", "labels", "labels-regex", "env", "env-regex"})
#: logpipe only: datagrams per second over UDP (``drivers.pacing``), 0 for Docker's unpaced.
RATE_OPT = "gelf-udp-rate"
_UDP_ONLY = ("gelf-compression-type", "gelf-compression-level")
_TCP_ONLY = ("gelf-tcp-max-reconnect", "gelf-tcp-reconnect-delay")
_COMPRESSION_TYPES = ("gzip", "zlib", "none")
_INT64_MAX = (1 << 63) - 1


class Address(NamedTuple):
    """A parsed ``gelf-address``: ``host`` without IPv6 brackets; ``netloc`` as Docker
    prints it in errors (Go's ``url.Host``)."""

    scheme: str
    host: str
    port: int
    netloc: str


def _go_quote(text: str) -> str:
    from logpipe.template.literals import go_quote  # error paths only: the package is large

    return go_quote(text)


def parse_address(value: str) -> Address:
    """Docker's ``parseAddress``: ``udp://host:port`` or ``tcp://host:port``, its errors.

    The authority is read as Go's ``url.Parse`` reads it (userinfo and path ignored), then
    split as ``net.SplitHostPort`` splits it. Docker accepts an empty or out-of-range port
    (``udp://host:``), which then cannot be dialled; logpipe refuses it at create.
    """
    if not value:
        raise LogOptError("gelf-address is a required parameter")
    # urlutil.IsTransportURL: a prefix test only
    if not value.startswith(("tcp://", "tcp+tls://", "udp://", "unix://", "unixgram://")):
        raise LogOptError(f"gelf-address should be in form proto://address, got {value}")
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise LogOptError(f"parse {_go_quote(value)}: net/url: invalid control character in URL")
    scheme, _, rest = value.partition("://")
    netloc = url_host(rest)
    if netloc.startswith("["):
        close = netloc.find("]")
        if close < 0:
            raise LogOptError(f"parse {_go_quote(value)}: missing ']' in host")
        host, port = netloc[1:close], netloc[close + 1:]
    else:
        colon = netloc.rfind(":")
        host, port = (netloc[:colon], netloc[colon:]) if colon >= 0 else (netloc, "")
    if port and not (port[0] == ":" and all("0" <= c <= "9" for c in port[1:])):
        raise LogOptError(f"parse {_go_quote(value)}: invalid port {_go_quote(port)} after host")
    if scheme not in ("udp", "tcp"):
        raise LogOptError("gelf: endpoint needs to be TCP or UDP")
    # net.SplitHostPort: a port is required, and an unbracketed host has no colon
    if not port or (not netloc.startswith("[") and ":" in host):
        raise LogOptError("gelf: please provide gelf-address as proto://host:port")
    if not 0 < int(port[1:] or "0") < 65536:
        raise LogOptError(f"gelf: the port of gelf-address {value} must be in 1..65535")
    return Address(scheme, host, int(port[1:]), netloc)


def _check_int(value: str, lo: int, hi: int, error: str) -> int:
    """``strconv.Atoi`` within ``lo..hi``, else ``error`` (Docker's own text)."""
    digits = value[1:] if value[:1] in "+-" else value
    if not (digits.isascii() and digits.isdigit()):
        raise LogOptError(error)
    number = int(value)
    if not lo <= number <= hi:
        raise LogOptError(error)
    return number


def _check_options(opts: Mapping[str, str]) -> Address:
    """Docker's ``ValidateLogOpt`` for gelf: the address first, then each key."""
    address = parse_address(opts.get("gelf-address", ""))
    for key, value in opts.items():
        if key in _ALWAYS:
            continue
        if key in _UDP_ONLY:
            if address.scheme != "udp":
                raise LogOptError("compression is only supported on UDP")
            bad = (f"unknown value {_go_quote(value)} for log opt {_go_quote(key)} "
                   "for gelf log driver")
            if key == "gelf-compression-level":
                _check_int(value, -1, 9, bad)
            elif value not in _COMPRESSION_TYPES:
                raise LogOptError(bad)
        elif key == RATE_OPT:
            if address.scheme != "udp":
                raise LogOptError(f"{_go_quote(key)} is only valid for UDP")
            parse_rate(opts, key)
        elif key in _TCP_ONLY:
            if address.scheme != "tcp":
                raise LogOptError(f"{_go_quote(key)} is only valid for TCP")
            _check_int(value, 0, _INT64_MAX, f"{_go_quote(key)} must be a positive integer")
        else:
            # gelf is the one driver whose unknown-key error quotes with %q
            raise LogOptError(f"unknown log opt {_go_quote(key)} for gelf log driver")
    return address


def _extra_fields(opts: Mapping[str, str], info: LogInfo) -> dict[str, str]:
    """Docker's ``_`` fields: the container's, then labels/env (which may overwrite them).
    Raises ``LogOptError`` for a bad tag template or extras regex."""
    from logpipe.extras import extra_attrs, mangle_gelf
    from logpipe.template import render_tag

    fields = {
        "_container_id": info.container_id,
        "_container_name": info.name,
        "_image_id": info.image_id,
        "_image_name": info.image_name,
        "_command": info.command,
        "_tag": render_tag(opts, info),
        # a Go time.Time: its zero value when unknown
        "_created": info.created or "0001-01-01T00:00:00Z",
    }
    fields.update(extra_attrs(opts, info, mangle_gelf))
    return fields


# -- encoding --------------------------------------------------------------------------------


_ESCAPES = ascii_escapes()  # GELF is plain Go encoding/json (TAB short)
_NEEDLES = {c: bytes([c]) for c in _ESCAPES}
_NOT_SPECIAL = bytes(c for c in range(256) if c not in _ESCAPES)
#: what ``surrogateescape`` makes of each byte that is not valid UTF-8
_BAD_BYTE = re.compile("[\udc80-\udcff]")


def escape_lines(data: bytes) -> bytes:
    """``data`` as the inside of a Go JSON string, except that ``\\n`` stays raw.

    Invalid UTF-8 becomes one ``\\ufffd`` escape per byte: Go decodes rune by rune and
    replaces each byte that starts no valid sequence. ``surrogateescape`` gives exactly one
    lone surrogate per such byte, whereas ``errors="replace"`` would give one U+FFFD per
    maximal invalid subsequence (``e2 82`` is two in Go, one there). U+2028 and U+2029 are
    escaped; every other valid character is kept raw.
    """
    found = data.translate(None, _NOT_SPECIAL)
    if found:
        codes = set(found)
        if 0x5C in codes:  # first: every other escape introduces a backslash
            data = data.replace(b"\\", b"\\\\")
        for c in codes:
            if c != 0x5C:
                data = data.replace(_NEEDLES[c], _ESCAPES[c])
    if data.isascii():
        return data
    try:
        text = data.decode()
    except UnicodeDecodeError:
        # the ASCII escapes above cannot change how the non-ASCII bytes decode
        text = _BAD_BYTE.sub(r"\\ufffd", data.decode("utf-8", "surrogateescape"))
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()
    for sep in ("\u2028", "\u2029"):
        if sep in text:  # searching the text is much faster than a 3-byte search of bytes
            data = data.replace(sep.encode(), b"\\u%04x" % ord(sep))
    return data


def format_timestamp(ts: int) -> bytes:
    """GELF ``timestamp`` of a record stamped ``ts`` ns: Docker's
    ``float64(UnixNano/1e6)/1000`` as Go prints a float64 (shortest form, no exponent).

    Whole milliseconds since 1970 have at most 13 significant digits, fewer than the 15 a
    float64 keeps, so the shortest text of that float is the decimal itself, trailing zeros
    (and a bare ``.``) removed: ``…786.721``, ``…786.48``, ``…786``.
    """
    ms = ts // 1_000_000 if ts >= 0 else -(-ts // 1_000_000)  # Go truncates toward zero
    sign = b"-" if ms < 0 else b""
    sec, frac = divmod(abs(ms), 1000)
    if not frac:
        return b"%s%d" % (sign, sec)
    return (b"%s%d.%03d" % (sign, sec, frac)).rstrip(b"0")


class _Encoder:
    """GELF documents of a container's records: ``head`` + escaped line + ``stamp(ts)`` +
    ``tail[source]``, where everything but the line and the timestamp is built once."""

    def __init__(self, host: str, fields: Mapping[str, str], terminator: bytes) -> None:
        self.head = b'{"version":"1.1","host":%s,"short_message":"' % go_json_string(host)
        # Go sorts map keys as byte strings
        items = sorted(fields.items(), key=lambda kv: kv[0].encode("utf-8", "surrogateescape"))
        extras = b",".join(go_json_string(k) + b":" + go_json_string(v) for k, v in items)
        self.info_tail = b"6," + extras + b"}" + terminator
        self.error_tail = b"3," + extras + b"}" + terminator
        #: bytes of a record besides its line (the shipper's ``BatchLimits.overhead``)
        self.overhead = len(self.head) + len(b'","timestamp":1795343786.721,"level":') + len(
            self.info_tail)

    def stamps(self, batch: Sequence[Message]) -> dict[int, bytes]:
        """The ``","timestamp":…,"level":`` middle of each distinct ``ts`` in the batch
        (records read together share one)."""
        return {ts: b'","timestamp":%s,"level":' % format_timestamp(ts)
                for ts in {m.ts for m in batch}}

    def escaped(self, batch: Sequence[Message]) -> list[bytes]:
        """Each record's escaped line, escaped in one pass over the whole batch."""
        blob = b"\n".join([m.line for m in batch])
        if blob.count(b"\n") != len(batch) - 1:  # a line with "\n" in it: no shared pass
            return [escape_lines(m.line).replace(b"\n", b"\\n") for m in batch]
        return escape_lines(blob).split(b"\n")

    def documents(self, batch: Sequence[Message]) -> list[bytes]:
        """One GELF document per record (each ended by the terminator)."""
        head, info, error = self.head, self.info_tail, self.error_tail
        stamps = self.stamps(batch)
        return [b"%s%s%s%s" % (head, line, stamps[m.ts], error if m.source == STDERR else info)
                for line, m in zip(self.escaped(batch), batch)]

    def stream(self, batch: Sequence[Message]) -> bytes:
        """All records of the batch as one byte string (the TCP payload)."""
        head, info, error = self.head, self.info_tail, self.error_tail
        stamps = self.stamps(batch)
        parts: list[bytes] = []
        extend = parts.extend
        for line, m in zip(self.escaped(batch), batch):
            extend((head, line, stamps[m.ts], error if m.source == STDERR else info))
        return b"".join(parts)


# -- UDP: compression and chunking -----------------------------------------------------------

#: go-gelf's ``ChunkSize``: a payload longer than this is sent in chunks.
CHUNK_SIZE = 1420
_CHUNK_HEADER = 12  # 1e 0f, 8-byte message id, sequence number, count
CHUNK_DATA = CHUNK_SIZE - _CHUNK_HEADER
#: The GELF spec's (and Graylog's) limit on chunks per message.
MAX_CHUNKS = 128
MAX_PAYLOAD = MAX_CHUNKS * CHUNK_DATA


def _compressor(kind: str, level: int) -> Callable[[bytes], bytes] | None:
    """Compress one message framed as Go's ``compress/gzip`` / ``compress/zlib`` frame it.

    The deflate data differ from Go's, the framing does not: gzip's header is
    ``1f8b 08 00 00000000 <xfl> ff`` (no mtime, OS "unknown", XFL 4 for level 1 and 2 for 9,
    as Go writes it; written here to pin every byte of it); zlib's own header is Go's
    (``78 01`` for levels 0 and 1). Compressing is most of the cost of sending over UDP
    (about 9 µs of CPU for a 400-byte record, measured; a smaller window saves nothing).
    """
    if kind == "none":
        return None
    compress = zlib.compress
    if kind == "zlib":
        return lambda data: compress(data, level)
    xfl = {1: 4, 9: 2}.get(level, 0)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes((xfl, 0xFF))
    crc32, trailer = zlib.crc32, struct.Struct("<II").pack

    def gzip_frame(data: bytes) -> bytes:
        return b"".join((header, compress(data, level, -15),
                         trailer(crc32(data), len(data) & 0xFFFFFFFF)))

    return gzip_frame


def chunk_payload(payload: bytes, message_id: bytes) -> list[bytes]:
    """The GELF chunks of a payload longer than ``CHUNK_SIZE`` (at most ``MAX_PAYLOAD``).

    go-gelf counts ``len // 1408 + 1`` chunks, so a payload of an exact multiple of 1408
    bytes gets an empty last chunk; logpipe sends ``ceil(len / 1408)``.
    """
    count = -(-len(payload) // CHUNK_DATA)
    view = memoryview(payload)
    return [b"\x1e\x0f%s%c%c%s" % (message_id, seq, count, view[start:start + CHUNK_DATA])
            for seq, start in enumerate(range(0, len(payload), CHUNK_DATA))]


def _char_boundary(line: bytes, cut: int) -> int:
    """``cut`` (0 < cut < len) moved to the start of a UTF-8 character, back if it can be
    and forward otherwise, so that splitting a line never turns a valid character into
    replacement characters. Both pieces stay non-empty."""
    for i in (cut, cut - 1, cut - 2, cut - 3, cut + 1, cut + 2, cut + 3):
        if 0 < i < len(line) and not 0x80 <= line[i] < 0xC0:
            return i
    return cut


# -- sockets ---------------------------------------------------------------------------------

def _dial(kind: int, host: str, port: int, timeout: float) -> tuple[socket.socket, str]:
    """A socket connected to the first address of ``host`` that answers, resolved now, and
    its name for errors (``tcp 127.0.0.1:40000->127.0.0.1:12201``). Raises ``NetError``
    with the first failure, as Go's ``dialSerial`` reports it."""
    proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
    try:
        sock, sockaddr = dial(proto, host, port, timeout)
    except socket.gaierror as err:
        raise NetError(lookup_error(proto, host, gai_reason(err))) from err
    here, there = join_host_port(*sock.getsockname()[:2]), join_host_port(*sockaddr[:2])
    return sock, f"{proto} {here}->{there}"


def _write_error(name: str, err: OSError) -> NetError:
    op = "" if isinstance(err, socket.timeout) else "write: "
    return NetError(f"write {name}: {op}{go_io_error(err)}")


class _TCPSender:
    """One kept connection, resolved and dialled again whenever it has to be reconnected
    (Docker resolves once, at start: moby#17904)."""

    def __init__(self, address: Address, connect_timeout: float, write_timeout: float) -> None:
        self.address = address
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout
        self.sock: socket.socket | None = None
        self.name = ""

    def connect(self) -> socket.socket:
        sock, self.name = _dial(socket.SOCK_STREAM, self.address.host, self.address.port,
                                self.connect_timeout)
        sock.settimeout(self.write_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        return sock

    def send(self, payload: bytes) -> None:
        """Write the whole payload or raise ``NetError``.

        A kept connection that turns out dead gets one fresh connection at once: an idle
        close by the receiver or a proxy is normal, not a failure worth a backoff. A write
        that fails part way may have delivered the first records: the retry sends them again.
        """
        sock = self.sock
        if sock is not None and peer_closed(sock):
            self.close()
            sock = None
        if sock is not None:
            try:
                send_all(sock, payload)
                return
            except OSError:
                self.close()
        sock = self.connect()
        try:
            send_all(sock, payload)
        except OSError as err:
            self.close()
            raise _write_error(self.name, err) from err

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _UDPSender:
    """A connected UDP socket, made anew every ``refresh`` seconds and after any error,
    and the pacer its datagrams go through.

    A new socket means a fresh resolution of the host name (Docker resolves once:
    moby#17904) and a new source port, hence a new conntrack entry: a receiver that was
    started after the driver, behind NAT, is then reached (moby#35135).
    """

    def __init__(self, address: Address, refresh: float, rate: int, patience: float) -> None:
        self.address = address
        self.refresh = refresh
        self.pacer = UDPPacer(rate, patience)
        self.sock: socket.socket | None = None
        self.name = ""
        self.made = 0.0

    def socket(self) -> socket.socket:
        now = time.monotonic()
        if self.sock is not None and now - self.made < self.refresh:
            return self.sock
        try:
            sock, name = _dial(socket.SOCK_DGRAM, self.address.host, self.address.port, 5.0)
        except NetError:
            if self.sock is None:
                raise
            sock, name = self.sock, self.name  # resolution failing: keep the address we have
        else:
            self.close()
        self.sock, self.name, self.made = sock, name, now
        return sock

    def send(self, datagrams: Sequence[bytes], key: Hashable = None, done: int = 0,
             extra: Any = None) -> None:
        """Send ``datagrams[done:]``, paced, or raise ``NetError`` (the kernel reports an
        unreachable port on a send after the datagram that provoked it). After a stalled
        receiver, ``pacer.resume(key)`` holds the rest, with ``extra``."""
        sock = self.socket()
        try:
            self.pacer.send(sock, datagrams, key, done, extra)
        except OSError as err:
            self.close()
            raise _write_error(self.name, err) from err

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.pacer.close()


# -- the driver ------------------------------------------------------------------------------


class GelfDriver(RemoteDriverBase):
    """Docker's ``gelf`` driver: each record is one GELF 1.1 message to Graylog.

    ``send`` makes one attempt per call and never waits to retry. On TCP it writes the whole
    batch in one ``sendall`` on a kept connection (reconnecting at once, once, if the kept one
    was found closed); when the receiver cannot be reached it raises ``RetryableError``.
    Docker's own retry loop (``gelf-tcp-max-reconnect`` attempts, ``gelf-tcp-reconnect-delay``
    seconds apart, then the message is dropped) is exposed to the shipper instead:

    * ``retry_wait`` — seconds to wait before sending a failed batch again
      (``gelf-tcp-reconnect-delay``, default 1);
    * ``max_retries`` — only when ``gelf-tcp-max-reconnect`` is given: after that many
      retries the shipper drops the batch (counted as rejected), as Docker drops a message.
      Unset (Docker's default would be 3), the batch stays in the spool and is retried with
      backoff until the receiver is back: an outage only delays delivery.

    On UDP, datagrams are paced (``gelf-udp-rate``, and the receiver's own buffer when it is
    on this host: ``drivers.pacing``); an error from the socket (the kernel reporting the
    port unreachable after an earlier datagram, no route) or a local receiver that reads
    nothing for seconds raises ``RetryableError`` too; what the network loses silently is
    lost, as with any UDP. A message too large for 128 chunks is split into
    several messages (Docker drops it with "msg too large"); if even an empty line would not
    fit (huge labels or env), the record is counted as rejected.
    """

    name = "gelf"
    #: seconds allowed to connect, and to wait for the receiver to take more of a batch
    connect_timeout = 10.0
    write_timeout = 30.0
    #: seconds between re-resolutions of a UDP receiver's name
    udp_refresh = 60.0
    #: seconds a receiver on this host may read nothing before a UDP send is retryable
    udp_patience = PATIENCE

    @staticmethod
    def validate(opts: Mapping[str, str], info: LogInfo | None = None) -> None:
        """Docker's ``ValidateLogOpt``, then what its constructor checks (the tag template,
        the extras regexes), with Docker's wording."""
        _check_options(opts)
        if info is not None:
            _extra_fields(opts, info)
            return
        from logpipe.extras import check_without_container

        check_without_container(opts)

    @staticmethod
    def probe(info: LogInfo) -> None:
        """Over TCP Docker dials at start and refuses to start the container if that fails;
        over UDP nothing can fail (the name is resolved when sending)."""
        from logpipe.options import driver_opts

        address = parse_address(driver_opts(info.config).get("gelf-address", ""))
        if address.scheme != "tcp":
            return
        try:
            sock, _ = _dial(socket.SOCK_STREAM, address.host, address.port,
                            GelfDriver.connect_timeout)
        except NetError as err:
            raise LogpipeError(
                f"gelf: cannot connect to GELF endpoint: {address.netloc} {err}") from None
        sock.close()

    def __init__(self, info: LogInfo) -> None:
        super().__init__(info)
        opts = self.opts
        self.address = _check_options(opts)
        tcp = self.address.scheme == "tcp"
        self._encoder = _Encoder(info.host_name(), _extra_fields(opts, info),
                                 b"\0" if tcp else b"")
        self.limits = BatchLimits(max_count=2000, max_bytes=2 << 20,
                                  overhead=self._encoder.overhead)
        self.retry_wait = float(int(opts.get("gelf-tcp-reconnect-delay", "1")))
        self.max_retries = int(opts["gelf-tcp-max-reconnect"]) \
            if "gelf-tcp-max-reconnect" in opts else None
        self._compress = _compressor(opts.get("gelf-compression-type", "gzip"),
                                     int(opts.get("gelf-compression-level", "1")))
        self._fixed_fits: bool | None = None
        self._tcp = _TCPSender(self.address, self.connect_timeout, self.write_timeout) if tcp \
            else None
        self._udp = None if tcp else _UDPSender(self.address, self.udp_refresh,
                                                parse_rate(opts, RATE_OPT), self.udp_patience)

    def send(self, batch: Sequence[Message]) -> int | None:
        """Send the batch's non-empty records (Docker sends no empty line); raise
        ``RetryableError`` if the receiver cannot be reached. Returns how many records were
        too large to send at all (UDP only), or None."""
        batch = [m for m in batch if m.line]
        if not batch:
            return None
        try:
            if self._tcp is not None:
                self._tcp.send(self._encoder.stream(batch))
                return None
            key = (len(batch), batch[0], batch[-1])
            pending = self._udp.pacer.resume(key)
            if pending is not None:  # the rest of a batch a stalled receiver interrupted
                rejected = pending.extra
                self._udp.send(pending.datagrams, key, pending.done, rejected)
            else:
                datagrams: list[bytes] = []
                rejected = self._datagrams(batch, datagrams)
                self._udp.send(datagrams, key, 0, rejected)
        except OSError as err:  # NetError, in Go's words, for all that the senders expect
            raise RetryableError(f"gelf: cannot send GELF message: {err}") from err
        return rejected or None

    def _payload(self, document: bytes) -> bytes:
        return self._compress(document) if self._compress is not None else document

    def _datagrams(self, batch: Sequence[Message], out: list[bytes]) -> int:
        """Append the datagrams of the batch to ``out``; return the records left out."""
        rejected = 0
        append = out.append
        for m, document in zip(batch, self._encoder.documents(batch)):
            payload = self._payload(document)
            if len(payload) <= CHUNK_SIZE:
                append(payload)
            elif len(payload) <= MAX_PAYLOAD:
                out.extend(chunk_payload(payload, os.urandom(8)))
            else:
                rejected += self._split(m, out)
        return rejected

    def _split(self, m: Message, out: list[bytes]) -> int:
        """Send a record too large for 128 chunks as several messages, each as large as fits
        (halving until it does). Returns 1 if the record cannot be sent at all."""
        if self._fixed_fits is None:
            empty = self._encoder.documents([m._replace(line=b" ")])[0]
            self._fixed_fits = len(self._payload(empty)) <= MAX_PAYLOAD
        if not self._fixed_fits or len(m.line) < 2:
            return 1
        cut = _char_boundary(m.line, len(m.line) // 2)
        halves = [m._replace(line=m.line[:cut]), m._replace(line=m.line[cut:])]
        return 1 if self._datagrams(halves, out) else 0

    def close(self) -> None:
        """Nothing is buffered: every batch ``send`` returned from was written."""
        if self._tcp is not None:
            self._tcp.close()
        if self._udp is not None:
            self._udp.close()
