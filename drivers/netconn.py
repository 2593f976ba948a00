"""The network plumbing of the socket drivers (syslog, gelf, fluentd; loki's TLS files).

Owns what those drivers would otherwise each write again, in Go's wording because Docker's
drivers are Go and users compare our errors with Docker's:

* **errors**: an errno as Go's ``syscall.Errno`` prints it (``go_errno``), a timeout as
  ``i/o timeout`` (``go_io_error``), a failed dial as ``*net.OpError`` prints it
  (``dial_error``, ``lookup_error``), and ``NetError`` carrying such a text;
* **addresses**: Go's ``net.SplitHostPort``/``JoinHostPort`` (``split_host_port``,
  ``join_host_port``) and the host part of a URL as ``url.Parse`` cuts it (``url_host``);
* **dialing**: TCP/UDP to the first address of a name that answers (``dial``), and unix
  sockets (``dial_unix``);
* **a kept connection between batches**: ``peer_closed`` and ``peer_spoke`` (two different
  questions, see each), ``send_all`` (a timeout per stall, not per payload), ``close``;
* **TLS**: client contexts from a driver's TLS files, with the wording of the Go library the
  reference driver used (``go_connections_context`` for Docker's syslog,
  ``prometheus_context`` for Grafana's Loki plugin), the handshake with Go's x509 texts
  (``tls_handshake``) and the wait for a receiver that drops a fresh TLS connection
  (``settle_tls``).

Each driver keeps its protocol: option names and their texts, framing, encoding, which
errors are retryable. This module must not know any driver's options or wording beyond the
Go texts above, must not buffer or retry, and imports only the standard library (``ssl``
lazily: gelf and fluentd never load it).
"""

from __future__ import annotations

import os
import re
import socket
import sys
from typing import TYPE_CHECKING

from logpipe.errors import LogOptError, LogpipeError

if TYPE_CHECKING:
    import ssl

__all__ = [
    "AddrError", "NetError", "close", "dial", "dial_error", "dial_unix", "gai_reason",
    "go_connections_context", "go_errno", "go_io_error", "go_quote", "join_host_port",
    "lookup_error", "no_such_host", "peer_closed", "peer_spoke", "prometheus_context",
    "send_all", "settle_tls", "split_host_port", "tls_handshake", "url_host",
]


# -- Go's wording ----------------------------------------------------------------------------

class NetError(LogpipeError, OSError):
    """Dialling, the TLS handshake or writing failed; the text is Go's ``net`` package's
    (``dial tcp 127.0.0.1:1: connect: connection refused``). An ``OSError`` for the code
    that catches socket errors, a ``LogpipeError`` for a ``probe`` that refuses a start."""


def go_errno(err: OSError) -> str:
    """An errno as Go's ``syscall.Errno`` prints it: glibc's text with a lower-case first
    letter (``connection refused``); an error without errno by its own text."""
    text = os.strerror(err.errno) if err.errno else str(err)
    return text[:1].lower() + text[1:]


def go_io_error(err: OSError) -> str:
    """A failed read or write as Go words its cause: ``i/o timeout`` for a deadline, else
    the errno. (Python raises ``TimeoutError`` both for a socket timeout and ETIMEDOUT.)"""
    if isinstance(err, socket.timeout):
        return "i/o timeout"
    return go_errno(err)


def dial_error(net: str, addr: str, err: OSError) -> str:
    """``*net.OpError`` of a failed connect: ``dial tcp 127.0.0.1:1: connect: connection
    refused``, ``dial unix /run/x.sock: connect: no such file or directory``,
    ``dial udp [::1]:514: i/o timeout``."""
    if isinstance(err, socket.timeout):
        return f"dial {net} {addr}: i/o timeout"
    if not err.errno:
        return f"dial {net} {addr}: {err}"
    return f"dial {net} {addr}: connect: {go_errno(err)}"


def lookup_error(net: str, host: str, reason: str) -> str:
    """``*net.OpError`` of a name that did not resolve: ``dial tcp: lookup graylog: no such
    host`` (Go names no address: there is none)."""
    return f"dial {net}: lookup {host}: {reason}"


_GAI_NO_HOST = {getattr(socket, n, None) for n in ("EAI_NONAME", "EAI_NODATA")} - {None}


def no_such_host(err: socket.gaierror) -> bool:
    """Whether the resolver said the name does not exist (Go: ``no such host``), rather than
    that it could not ask (a DNS server down, ``EAI_AGAIN``)."""
    return err.errno in _GAI_NO_HOST


def gai_reason(err: socket.gaierror) -> str:
    """The resolver's answer as Go prints it: ``no such host``, else the resolver's text."""
    return "no such host" if no_such_host(err) else err.strerror or str(err)


def go_quote(text: str) -> str:
    """Go's ``%q`` for the strings these messages hold (addresses, file paths): quotes and
    backslashes escaped, ASCII control characters as ``\\t`` or ``\\x01``."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif c in "\a\b\f\n\r\t\v":
            out.append(repr(c)[1:-1])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


# -- addresses -------------------------------------------------------------------------------

class AddrError(ValueError):
    """Go's ``*net.AddrError``: ``address <addr>: <why>`` (just ``<why>`` for an empty
    address). Drivers wrap it in their own ``LogOptError`` text."""

    def __init__(self, addr: str, why: str) -> None:
        super().__init__(f"address {addr}: {why}" if addr else why)
        self.addr, self.why = addr, why


def join_host_port(host: str, port: int | str) -> str:
    """Go's ``net.JoinHostPort``: ``host:port``, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(hostport: str) -> tuple[str, str | None]:
    """Go's ``net.SplitHostPort``, except that an address with no port at all (no colon, or
    a bracketed host and nothing after it) returns port ``None`` instead of Go's "missing
    port in address": each driver has its default port. Every other refusal raises
    ``AddrError`` with Go's text; a port is returned unchecked (``"abc"``, ``""``)."""

    def fail(why: str) -> AddrError:
        return AddrError(hostport, why)

    colon = hostport.rfind(":")
    if colon < 0:
        return hostport, None
    j = k = 0
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise fail("missing ']' in address")
        if end + 1 == len(hostport):
            return hostport[1:end], None
        if end + 1 != colon:
            raise fail("too many colons in address" if hostport[end + 1] == ":"
                       else "missing port in address")
        host, j, k = hostport[1:end], 1, end + 1
    else:
        host = hostport[:colon]
        if ":" in host:
            raise fail("too many colons in address")
    if "[" in hostport[j:]:
        raise fail("unexpected '[' in address")
    if "]" in hostport[k:]:
        raise fail("unexpected ']' in address")
    return host, hostport[colon + 1:]


def url_host(rest: str) -> str:
    """The host (with its port) of a URL, given what follows ``scheme://``, as Go's
    ``url.Parse`` cuts it: the authority ends at the first ``/``, ``?`` or ``#``, and
    userinfo (up to its last ``@``) is not part of it."""
    authority = re.split("[/?#]", rest, maxsplit=1)[0]
    return authority.rpartition("@")[2]


# -- dialing ---------------------------------------------------------------------------------

def dial(net: str, host: str | None, port: int, timeout: float) -> tuple[socket.socket, tuple]:
    """A socket connected to the first address of ``host`` that accepts (Go's
    ``dialSerial``: the addresses in the resolver's order, the first failure reported),
    and that address. ``net`` is ``tcp`` or ``udp``; ``host`` None is the loopback.

    Raises ``socket.gaierror`` when the name does not resolve (drivers word it with
    ``lookup_error``: the host they show is theirs) and ``NetError`` when no address
    accepts."""
    kind = socket.SOCK_DGRAM if net == "udp" else socket.SOCK_STREAM
    first: NetError | None = None
    for family, socktype, protocol, _, sockaddr in socket.getaddrinfo(host, port, type=kind):
        sock = socket.socket(family, socktype, protocol)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock, sockaddr
        except OSError as err:
            sock.close()
            first = first or NetError(dial_error(net, join_host_port(*sockaddr[:2]), err))
    raise first or NetError(lookup_error(net, host or "", "no such host"))


def dial_unix(path: str, kind: int, timeout: float) -> socket.socket:
    """A unix socket (``SOCK_STREAM``: ``unix``, ``SOCK_DGRAM``: ``unixgram``) connected to
    ``path``; ``NetError`` with Go's text otherwise."""
    sock = socket.socket(socket.AF_UNIX, kind)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except OSError as err:
        sock.close()
        net = "unixgram" if kind == socket.SOCK_DGRAM else "unix"
        raise NetError(dial_error(net, path, err)) from None
    return sock


# -- a kept connection -----------------------------------------------------------------------
#
# A receiver that has gone (restarted, idle timeout) leaves a kept connection that the
# kernel still lets us write into once: the batch would vanish when the reset comes back.
# So the drivers look before each batch. What they look for differs, so there are two
# questions, never one with a flag:
#
# * peer_closed: the receiver never writes to us (syslog, gelf); the connection is gone if
#   the receiver closed or reset it. Bytes it sent anyway are not a reason to drop it.
# * peer_spoke: the receiver writes only when asked (fluentd's acks); anything readable
#   between batches (EOF, reset, or stray bytes such as a late ack) means the connection is
#   gone or out of step, and a new one is needed.

def peer_closed(sock: socket.socket) -> bool:
    """Whether the receiver closed or reset a kept stream connection (EOF, RST, or a TLS
    alert). Does not wait. On a TLS socket a record cannot be peeked at, so one byte of
    application data, if the receiver sent any, is read and dropped."""
    ssl = sys.modules.get("ssl")  # not imported: the socket cannot be a TLS one
    tls = ssl is not None and isinstance(sock, ssl.SSLSocket)
    timeout = sock.gettimeout()
    sock.settimeout(0)  # a socket with a timeout would wait for data, whatever the flags
    try:
        data = sock.recv(1) if tls else sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    except OSError as err:
        return not (tls and isinstance(err, (ssl.SSLWantReadError, ssl.SSLWantWriteError)))
    finally:
        sock.settimeout(timeout)
    return data == b""


def peer_spoke(sock: socket.socket) -> bool:
    """Whether anything at all is readable on a plain connection whose peer speaks only
    when asked: data, EOF or an error. Does not wait and reads nothing."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)
    return True


def send_all(sock: socket.socket, data: bytes) -> None:
    """``sendall``, except that the socket's timeout bounds each wait for the receiver to
    take more, not the whole payload: a slow receiver that keeps reading is waited for, one
    that stopped is given up on."""
    view = memoryview(data)
    while view:
        view = view[sock.send(view):]


def close(sock: socket.socket) -> None:
    """Close, sending a TLS close_notify first without waiting for the answer."""
    ssl = sys.modules.get("ssl")
    if ssl is not None and isinstance(sock, ssl.SSLSocket):
        try:
            sock.settimeout(0)
            sock.unwrap()
        except (OSError, ValueError):
            pass
    sock.close()


# -- TLS -------------------------------------------------------------------------------------

def go_connections_context(ca: str, cert: str, key: str, skip_verify: bool,
                           system_roots: bool = True) -> "ssl.SSLContext":
    """docker/go-connections ``tlsconfig.Client`` (Docker's syslog driver): TLS ≥ 1.2, the
    system roots plus ``ca`` (not read when skipping verification, as Go), and the client
    pair. Raises ``LogOptError`` with go-connections' texts. ``system_roots=False`` only
    checks the files (loading the system store costs ~80 ms)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        if system_roots:
            ctx.load_default_certs()
        if ca:
            pem = _read(ca, f"could not read CA certificate {go_quote(ca)}: ")
            try:
                ctx.load_verify_locations(cadata=pem.decode("ascii", "replace"))
            except (ssl.SSLError, ValueError):
                raise LogOptError(
                    f"failed to append certificates from PEM file: {go_quote(ca)}") from None
    if cert or key:
        _load_pair(ctx, cert, key)
    return ctx


def _load_pair(ctx: "ssl.SSLContext", cert: str, key: str) -> None:
    """go-connections ``getCert``: both files read, then ``tls.X509KeyPair`` (whose texts
    the PEM checks reproduce), every error prefixed ``Could not load X509 key pair: ``."""
    import ssl

    prefix = "Could not load X509 key pair: "
    cert_pem = _read(cert, prefix)
    key_pem = _read(key, prefix)
    if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise LogOptError(prefix + "tls: failed to find any PEM data in certificate input")
    if not re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----", key_pem):
        raise LogOptError(prefix + "tls: failed to find any PEM data in key input")
    try:
        ctx.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as err:
        if "KEY_VALUES_MISMATCH" in str(err) or "key values mismatch" in str(err):
            raise LogOptError(prefix + "tls: private key does not match public key") from None
        raise LogOptError(prefix + f"tls: {err.reason or err}") from None


def _read(path: str, prefix: str) -> bytes:
    """Go's ``os.ReadFile`` with its error text (``open <p>: no such file or directory``)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except IsADirectoryError as err:
        raise LogOptError(f"{prefix}read {path}: {go_errno(err)}") from None
    except OSError as err:
        raise LogOptError(f"{prefix}open {path}: {go_errno(err)}") from None


def prometheus_context(ca: str | None, cert: str | None, key: str | None,
                       insecure: bool) -> "ssl.SSLContext":
    """Prometheus' HTTP client TLS config (Grafana's Loki plugin): the system roots, which a
    ``ca`` file replaces (as in Go) instead of adding to, the client pair, and ``insecure``
    to skip verification. Raises ``LogOptError`` with Prometheus' texts (the caller checks
    that ``cert`` and ``key`` come together: that text names its options)."""
    import ssl

    ctx = ssl.create_default_context()
    if ca:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as e:
            raise LogOptError(f"unable to load specified CA cert {ca}: {e}") from None
    if cert:
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            raise LogOptError(f"unable to use specified client cert ({cert}) & key "
                              f"({key}): {e}") from None
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_handshake(sock: socket.socket, ctx: "ssl.SSLContext", host: str) -> "ssl.SSLSocket":
    """The TLS handshake on a connected socket, with Go's texts for the errors users meet
    (``x509: certificate signed by unknown authority``); closes the socket on failure and
    raises ``NetError``."""
    import ssl

    try:
        return ctx.wrap_socket(sock, server_hostname=host or "localhost")
    except ssl.SSLCertVerificationError as err:
        sock.close()
        code = err.verify_code
        if code in (2, 18, 19, 20, 21):
            raise NetError("x509: certificate signed by unknown authority") from None
        if code == 62:
            raise NetError(f"x509: certificate is not valid for {host}") from None
        if code in (9, 10):
            raise NetError("x509: certificate has expired or is not yet valid") from None
        raise NetError(f"x509: {err.verify_message}") from None
    except ssl.SSLError as err:
        sock.close()
        raise NetError(f"tls: handshake failed: {err.reason or err}") from None
    except OSError as err:
        sock.close()
        raise NetError(f"tls: handshake failed: {go_errno(err)}") from None


def settle_tls(sock: "ssl.SSLSocket", wait: float) -> None:
    """Wait ``wait`` seconds for a receiver to drop a TLS connection it has just accepted.

    rsyslog (and others) check the client certificate after the TLS handshake has completed
    on both sides and then drop the connection: without this wait the first batch of every
    connection would be written into a dying connection and lost, silently and forever.
    Closes the socket and raises ``NetError`` if the receiver dropped it.
    """
    import select

    if select.select([sock], [], [], wait)[0] and peer_closed(sock):
        sock.close()
        raise NetError("the receiver closed the TLS connection after the handshake "
                       "(does it require a client certificate this one lacks?)")
