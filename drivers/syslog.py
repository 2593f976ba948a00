"""The syslog remote driver: Docker's ``syslog`` log driver, batch-shaped.

Owns Docker's syslog options and their create-time checks (with Docker's error texts), the
four message formats Docker writes (``""``, ``rfc3164``, ``rfc5424``, ``rfc5424micro``), the
framing of each transport (UDP/unixgram: one datagram per message; TCP/unix: newline
terminated; ``tcp+tls`` with RFC 5424: octet counting), and the one connection to the
receiver, kept open across batches and reopened lazily.

It must not buffer or retry on its own: the shipper hands it a batch from the spool and
resends the same batch after a ``RetryableError``. It must not do network I/O in the
constructor (``send`` connects), and it imports nothing beyond the standard library.

Deliberate differences from Docker 20.10 (see docs/drivers/syslog.md):
* the timestamp is the record's log time, not the send time (moby#21793);
* RFC 5424 timestamps are always UTC (``Z``); the RFC 3164 ``Jan _2 15:04:05`` stamp is local
  time, as in Docker;
* ``[pid]``/PROCID is the pid of the process that runs the driver (the daemon), as Docker's
  is dockerd's;
* the TLS files are read and checked at create, not at start;
* a datagram that would exceed the UDP limit is split into several messages, where Docker's
  write fails with EMSGSIZE and the line is lost;
* UDP datagrams are paced (``syslog-udp-rate``, and a local receiver's buffer:
  ``drivers.pacing``), where Docker sends a burst unpaced and the receiver drops what its
  buffer cannot hold.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import time
from typing import TYPE_CHECKING, Callable, ClassVar, Mapping, NamedTuple, Sequence

from logpipe.driver import BatchLimits, LogInfo
from logpipe.errors import DriverInitError, LogOptError, LogpipeError, PermanentError, RetryableError
from logpipe.message import STDERR, STDOUT, Message
from logpipe.options import check_known_keys, driver_opts

from .netconn import (AddrError, NetError, close, dial, dial_unix, go_connections_context,
                      go_errno, go_io_error, go_quote, join_host_port, lookup_error,
                      no_such_host, peer_closed, settle_tls, split_host_port, tls_handshake,
                      url_host)
from .pacing import PATIENCE, UDPPacer, parse_rate
from .remote import RemoteDriverBase

if TYPE_CHECKING:
    import ssl

#: logpipe only: datagrams per second over UDP (``drivers.pacing``), 0 for Docker's unpaced.
RATE_OPT = "syslog-udp-rate"
OPTIONS = frozenset({
    "env", "env-regex", "labels", "labels-regex", "syslog-address", "syslog-facility",
    "syslog-tls-ca-cert", "syslog-tls-cert", "syslog-tls-key", "syslog-tls-skip-verify",
    "tag", "syslog-format", RATE_OPT,
})

#: Go's log/syslog facility names (srslog's table); values are facility codes (0–23).
FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}
FORMATS = ("", "rfc3164", "rfc5424", "rfc5424micro")
SEVERITY_INFO, SEVERITY_ERR = 6, 3  # stdout → info, stderr → err, as Docker

TRANSPORTS = ("tcp://", "tcp+tls://", "udp://", "unix://", "unixgram://")
DEFAULT_PORT = 514
#: srslog's search for the local syslog socket when no address is given: every path as a
#: datagram socket first, then every path as a stream socket.
LOCAL_SOCKETS = ("/dev/log", "/var/run/syslog", "/var/run/log")
#: The largest UDP payload over IPv4 (65,535 − 8 − 20); larger messages are split.
MAX_DATAGRAM = 65_507


# -- options -------------------------------------------------------------------------------

class Address(NamedTuple):
    """Where messages go. ``proto`` is ``""`` for the local syslog socket."""

    proto: str
    host: str = ""
    port: int = DEFAULT_PORT
    path: str = ""

    @property
    def stream(self) -> bool:
        return self.proto in ("tcp", "tcp+tls", "unix")

    def text(self) -> str:
        """``host:port`` as Go prints a dial address (IPv6 in brackets)."""
        return join_host_port(self.host, self.port)


def parse_address(value: str) -> Address:
    """Docker's ``parseAddress``: the ``syslog-address`` option, with its error texts."""
    if not value:
        return Address("")
    if not value.startswith(TRANSPORTS):
        raise LogOptError(f"syslog-address should be in form proto://address, got {value}")
    scheme, host, path = _go_url_parse(value)
    if scheme in ("unix", "unixgram"):
        try:
            os.stat(path)
        except OSError as err:
            raise LogOptError(f"stat {path}: {go_errno(err)}") from None
        return Address(scheme, path=path)
    try:  # Go's url.Parse has checked the port: digits or empty
        name, port = split_host_port(host)
        if port is None:
            # Docker appends ":514" and dials that; brackets are the only form that parses
            # again.
            name, port = split_host_port(host + f":{DEFAULT_PORT}")
    except AddrError as err:
        raise LogOptError(str(err)) from None
    number = int(port) if port else 0
    if number > 65535:
        raise DriverInitError(f"dial {scheme}: address {port}: invalid port")  # Docker: at start
    return Address(scheme, name, number)


_HOST_OK = set(b"-_.~!$&'()*+,;=:[]<>\"%") | set(range(0x80, 0x100))


def _go_url_parse(value: str) -> tuple[str, str, str]:
    """The part of Go's ``url.Parse`` Docker's check relies on: scheme, host (with port) and
    unescaped path, refusing what Go refuses with ``parse "<url>": <reason>``."""

    def fail(reason: str) -> LogOptError:
        return LogOptError(f"parse {go_quote(value)}: {reason}")

    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise fail("net/url: invalid control character in URL")
    scheme, _, rest = value.partition("://")
    host = url_host(rest)
    _, slash, path = rest.partition("#")[0].partition("?")[0].partition("/")
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise fail("missing ']' in host")
        port_part = host[end + 1:]
    else:
        colon = host.rfind(":")
        port_part = host[colon:] if colon >= 0 else ""
        for byte in host.encode():
            if not (chr(byte).isalnum() and byte < 0x80) and byte not in _HOST_OK:
                raise fail(f"invalid character {go_quote(chr(byte))} in host name")
    if port_part and not (port_part[0] == ":" and (port_part[1:] == "" or port_part[1:].isdigit())):
        raise fail(f"invalid port {go_quote(port_part)} after host")
    bad = re.search(r"%(?![0-9A-Fa-f]{2})(.{0,2})", host + slash + path, re.S)
    if bad:
        raise fail(f"invalid URL escape {go_quote('%' + bad.group(1))}")
    from urllib.parse import unquote

    return scheme, host, unquote(slash + path, errors="surrogateescape")


def parse_facility(value: str) -> int:
    """Docker's ``parseFacility``: a name, or an integer 0–23 (``strconv.Atoi`` grammar)."""
    if not value:
        return FACILITIES["daemon"]
    if value in FACILITIES:
        return FACILITIES[value]
    if re.fullmatch(r"[+-]?\d+", value) and 0 <= int(value) <= 23:
        return int(value)
    raise LogOptError("invalid syslog facility")


def parse_format(value: str) -> str:
    if value not in FORMATS:
        raise LogOptError("Invalid syslog format")
    return value


def tls_context(opts: Mapping[str, str], system_roots: bool = True) -> "ssl.SSLContext":
    """The client context of ``tcp+tls`` from the ``syslog-tls-*`` options, as Docker's
    go-connections builds it (``drivers.netconn.go_connections_context``).

    ``syslog-tls-skip-verify`` is honoured by its presence alone, whatever its value
    (Docker: ``_, skip := cfg[...]``). Raises ``LogOptError`` with go-connections' texts.
    ``system_roots=False`` only checks the files (loading the system store costs ~80 ms).
    """
    return go_connections_context(
        opts.get("syslog-tls-ca-cert", ""), opts.get("syslog-tls-cert", ""),
        opts.get("syslog-tls-key", ""), "syslog-tls-skip-verify" in opts, system_roots)


# -- message format ------------------------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _stamp(ns: int) -> str:
    """Go's ``time.Stamp`` (``Jan _2 15:04:05``) in local time, independent of the locale."""
    t = time.localtime(ns // 1_000_000_000)
    return f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def _rfc3339(ns: int, micro: bool) -> str:
    """RFC 3339 in UTC; with ``micro`` six fraction digits, truncated as Go formats them."""
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
    return f"{base}.{ns // 1000 % 1_000_000:06d}Z" if micro else base + "Z"


class Header:
    """The bytes before the line, per stream and timestamp, with a cache.

    Every record of one stream within one second (one microsecond for ``rfc5424micro``)
    has the same header; batches come in runs of those, so most records cost a dict lookup.
    """

    def __init__(self, fmt: str, facility: int, hostname: str, tag: str, pid: int) -> None:
        self.unit = 1000 if fmt == "rfc5424micro" else 1_000_000_000
        self._info = facility * 8 + SEVERITY_INFO
        self._pri = {STDOUT: self._info, STDERR: facility * 8 + SEVERITY_ERR}
        if fmt == "":  # Docker's default: the local socket format, without a hostname
            self._make: Callable[[int, int], str] = \
                lambda pri, ns: f"<{pri}>{_stamp(ns)} {tag}[{pid}]: "
        elif fmt == "rfc3164":
            self._make = lambda pri, ns: f"<{pri}>{_stamp(ns)} {hostname} {tag}[{pid}]: "
        else:  # APP-NAME and MSGID are both the tag, as Docker writes them
            micro = fmt == "rfc5424micro"
            self._make = lambda pri, ns: \
                f"<{pri}>1 {_rfc3339(ns, micro)} {hostname} {tag} {pid} {tag} - "
        self._cache: dict[tuple[str, int], bytes] = {}

    def __call__(self, source: str, ns: int) -> bytes:
        key = (source, ns // self.unit)
        head = self._cache.get(key)
        if head is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            pri = self._pri.get(source, self._info)
            head = self._cache[key] = self._make(pri, ns).encode("utf-8", "surrogateescape")
        return head


def encode_stream(batch: Sequence[Message], header: Header, octet_counting: bool) -> bytes:
    """The whole batch as one stream payload: every non-empty line as
    ``header + line + "\\n"``, prefixed with ``<length> `` under octet counting (RFC 5425;
    the length includes the ``\\n``, as Docker's framer counts it)."""
    parts: list[bytes] = []
    add = parts.append
    unit = header.unit
    last_key: tuple[str, int] | None = None
    head = b""
    for m in batch:
        line = m.line
        if not line:
            continue  # Docker sends no empty messages
        key = (m.source, m.ts // unit)
        if key != last_key:
            head, last_key = header(m.source, m.ts), key
        if octet_counting:
            add(b"%d " % (len(head) + len(line) + 1))
        add(head)
        add(line)
        add(b"\n")
    return b"".join(parts)


def encode_datagrams(batch: Sequence[Message], header: Header,
                     limit: int = MAX_DATAGRAM) -> list[bytes]:
    """One datagram per non-empty line. A line whose datagram would exceed ``limit`` is cut
    into pieces sent as separate messages with the same header (each piece ends in ``\\n``),
    as Docker sends the 16 KiB pieces of a long line: nothing is dropped."""
    out: list[bytes] = []
    for m in batch:
        line = m.line
        if not line:
            continue
        head = header(m.source, m.ts)
        room = limit - len(head) - 1
        if len(line) <= room:
            out.append(head + line + b"\n")
        else:
            room = max(room, 1)
            out.extend(head + line[i:i + room] + b"\n" for i in range(0, len(line), room))
    return out


# -- connection ----------------------------------------------------------------------------

def _write_error(err: OSError) -> str:
    """A failed write as Go words it; TLS errors by their reason (their errno is OpenSSL's)."""
    import ssl

    if isinstance(err, ssl.SSLError):
        return f"tls: {err.reason or err}"
    return go_io_error(err)


def _connect_inet(address: Address, net: str, timeout: float) -> socket.socket:
    """``net`` (``tcp``, ``udp``) to the address; no host is the loopback, as Go dials it."""
    try:
        return dial(net, address.host or None, address.port, timeout)[0]
    except socket.gaierror as err:
        why = "no such host" if no_such_host(err) else str(err)
        raise NetError(lookup_error(net, address.host, why)) from None


def _connect_local(timeout: float) -> tuple[socket.socket, bool]:
    """srslog's ``unixSyslog``: the first local socket that accepts, datagram first.
    Returns the socket and whether it is a stream."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        for path in LOCAL_SOCKETS:
            try:
                return dial_unix(path, kind, timeout), kind == socket.SOCK_STREAM
            except NetError:
                continue
    raise LogpipeError("Unix syslog delivery error")


# -- the driver ----------------------------------------------------------------------------

class SyslogDriver(RemoteDriverBase):
    """Docker's ``syslog`` driver: every line as one syslog message to ``syslog-address``."""

    name: ClassVar[str] = "syslog"
    limits: BatchLimits = BatchLimits(max_count=1000, max_bytes=1 << 20, overhead=100)
    #: Seconds to connect, and the longest one write may block on a stalled receiver before
    #: the batch is given up as retryable (Docker blocks for as long as TCP does).
    connect_timeout: float = 10.0
    io_timeout: float = 30.0
    #: Seconds a new TLS connection is watched for being dropped by the receiver
    #: (``netconn.settle_tls``).
    tls_settle: float = 0.1
    #: Seconds a receiver on this host may read nothing before a UDP send is retryable.
    udp_patience: float = PATIENCE

    @staticmethod
    def validate(opts: Mapping[str, str], info: LogInfo | None = None) -> None:
        """Docker's ``ValidateLogOpt`` (keys, address, facility, format, in that order), then
        what Docker's constructor checks at start: the TLS files and the tag template.
        ``labels``/``env`` are accepted and unused, as in Docker."""
        from logpipe.template import compile_template

        check_known_keys(opts, OPTIONS, "syslog")
        address = parse_address(opts.get("syslog-address", ""))
        parse_facility(opts.get("syslog-facility", ""))
        parse_format(opts.get("syslog-format", ""))
        if RATE_OPT in opts and address.proto != "udp":
            raise LogOptError(f'"{RATE_OPT}" is only valid for UDP')
        parse_rate(opts, RATE_OPT)
        if address.proto == "tcp+tls":  # Docker reads the TLS files for tcp+tls only
            tls_context(opts, system_roots=False)
        template = compile_template(opts.get("tag") or "{{.ID}}")
        if info is not None:
            template.render(info)

    @staticmethod
    def probe(info: LogInfo) -> None:
        """Dial as Docker does at start: a refused TCP/TLS/unix connection, a failed TLS
        handshake or no local syslog socket refuses the start; UDP never does."""
        opts = driver_opts(info.config)
        link = _Link(opts, SyslogDriver.connect_timeout, SyslogDriver.tls_settle)
        link.open()
        link.close()

    def __init__(self, info: LogInfo) -> None:
        super().__init__(info)
        from logpipe.template import render_tag

        opts = self.opts
        fmt = opts.get("syslog-format", "")
        # An empty rendered tag: Go's syslog falls back to the program name.
        tag = render_tag(opts, info) or info.daemon_name
        self._header = Header(fmt, parse_facility(opts.get("syslog-facility", "")),
                              info.host_name(), tag, os.getpid())
        self._link = _Link(opts, self.connect_timeout, self.tls_settle)
        self._octets = self._link.address.proto == "tcp+tls" and fmt.startswith("rfc5424")
        self._pacer = UDPPacer(parse_rate(opts, RATE_OPT), self.udp_patience) \
            if self._link.address.proto == "udp" else None
        self.limits = BatchLimits(max_count=1000, max_bytes=1 << 20,
                                  overhead=len(self._header(STDERR, 0)) + 8)

    def send(self, batch: Sequence[Message]) -> int | None:
        """Write the batch: one ``sendall`` for streams, one ``send`` per datagram.

        Any failure closes the connection and raises ``RetryableError``; the shipper then
        resends the whole batch, so the records written before the failure may arrive twice.
        A datagram the kernel refuses for its size (EMSGSIZE) can never be sent:
        ``PermanentError``.
        """
        link = self._link
        if not any(m.line for m in batch):
            return None  # only empty lines, which Docker never sends: no need to connect
        try:
            sock = link.ready(self.io_timeout)  # the local socket's kind is known only now
            if link.stream:
                sock.sendall(encode_stream(batch, self._header, self._octets))
            elif self._pacer is not None:
                self._send_paced(sock, batch)
            else:
                for datagram in encode_datagrams(batch, self._header):
                    sock.send(datagram)
        except LogpipeError as err:
            link.close()
            raise RetryableError(f"syslog: {err}") from None
        except OSError as err:
            link.close()
            if err.errno == errno.EMSGSIZE:
                raise PermanentError(f"syslog: {link.name}: {go_errno(err)}") from None
            raise RetryableError(f"syslog: write {link.name}: {_write_error(err)}") from None
        return None

    def _send_paced(self, sock: socket.socket, batch: Sequence[Message]) -> None:
        """UDP: at the receiver's pace; a batch sent again after a stall resumes where the
        stall stopped it."""
        key = (len(batch), batch[0], batch[-1])
        pending = self._pacer.resume(key)
        if pending is not None:
            self._pacer.send(sock, pending.datagrams, key, pending.done)
        else:
            self._pacer.send(sock, encode_datagrams(batch, self._header), key)

    def close(self) -> None:
        self._link.close()
        if self._pacer is not None:
            self._pacer.close()


class _Link:
    """The one connection to the receiver: opened on first use, kept across batches,
    checked before each batch and reopened when the receiver has dropped it."""

    def __init__(self, opts: Mapping[str, str], timeout: float, settle: float) -> None:
        self.opts = opts
        self.address = parse_address(opts.get("syslog-address", ""))
        self.stream = self.address.stream
        self.name = self.address.path or (self.address.text() if self.address.proto
                                          else "local syslog socket")
        self.timeout, self.settle = timeout, settle
        self.sock: socket.socket | None = None

    def open(self) -> socket.socket:
        """Connect; raises ``LogpipeError`` with Go's dial texts."""
        a = self.address
        if a.proto == "":
            self.sock, self.stream = _connect_local(self.timeout)
        elif a.proto in ("unix", "unixgram"):
            kind = socket.SOCK_STREAM if a.proto == "unix" else socket.SOCK_DGRAM
            self.sock = dial_unix(a.path, kind, self.timeout)
        elif a.proto == "udp":
            self.sock = _connect_inet(a, "udp", self.timeout)
        else:
            sock = _connect_inet(a, "tcp", self.timeout)
            if a.proto == "tcp+tls":
                try:
                    ctx = tls_context(self.opts)
                except LogOptError as err:
                    sock.close()
                    raise LogpipeError(str(err)) from None
                sock = tls_handshake(sock, ctx, a.host)
                settle_tls(sock, self.settle)
            self.sock = sock
        return self.sock

    def ready(self, io_timeout: float) -> socket.socket:
        """The open connection, reopened if the receiver dropped it since the last batch."""
        if self.sock is not None and self.stream and peer_closed(self.sock):
            self.close()
        if self.sock is None:
            self.open().settimeout(io_timeout)
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            sock, self.sock = self.sock, None
            close(sock)
