"""Syslog receivers for tests, end-to-end runs and benchmarks (no pytest needed).

``Rsyslog`` runs a private ``rsyslogd`` (Debian's ``rsyslog`` and ``rsyslog-gnutls``) with its
own configuration, work directory and pid file, listening on loopback only: UDP (``imudp``),
plain TCP and a unix stream socket (``imptcp``), TLS (``imtcp`` with the gtls driver; one
listener that only authenticates itself, one that demands a client certificate), and a
unix datagram socket (``imuxsock``). It stores every message twice: exactly as received
(``%rawmsg%``; rsyslog removes the framing and the trailing ``\\n`` but, with control
character escaping switched off, keeps every other byte) and as the fields rsyslog parsed.
Certificates come from ``trustme``.

``FakeSyslogServer`` stands in for the same receiver where the bytes on the wire are the
point: it keeps every byte of every connection and decodes Docker's framing strictly
(``\\n``-terminated messages, RFC 5425 octet counting, or one message per datagram).

Both can stop and start again on the same addresses (receiver-down tests) and can stall on
purpose: ``Rsyslog.pause()`` stops the daemon (SIGSTOP), ``FakeSyslogServer.pause()`` stops
reading, so that a sender's writes block once the socket buffers are full.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from typing import NamedTuple

RSYSLOGD = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd"
                                        if os.path.exists("/usr/sbin/rsyslogd") else None)


_MODULE_DIRS = ("/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/aarch64-linux-gnu/rsyslog",
                "/usr/lib/rsyslog", "/usr/lib64/rsyslog")


def rsyslog_missing(tls: bool = True) -> str | None:
    """Why ``Rsyslog(tls=tls)`` cannot run here, or None."""
    if RSYSLOGD is None:
        return "rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls)"
    needed = ("imudp", "imptcp", "imuxsock") + (("imtcp", "lmnsd_gtls") if tls else ())
    for module in needed:
        if not any(os.path.exists(os.path.join(d, module + ".so")) for d in _MODULE_DIRS):
            return f"rsyslog module {module} is missing (apt-get install rsyslog rsyslog-gnutls)"
    return None


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Certs:
    """A private CA with a server certificate for 127.0.0.1/localhost and a client one."""

    def __init__(self, directory: str) -> None:
        import trustme

        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        client = ca.issue_cert("client.logpipe.test")
        self.ca_cert = os.path.join(directory, "ca.pem")
        self.server_cert = os.path.join(directory, "server.pem")
        self.server_key = os.path.join(directory, "server.key")
        self.client_cert = os.path.join(directory, "client.pem")
        self.client_key = os.path.join(directory, "client.key")
        ca.cert_pem.write_to_path(self.ca_cert)
        server.cert_chain_pems[0].write_to_path(self.server_cert)
        server.private_key_pem.write_to_path(self.server_key)
        client.cert_chain_pems[0].write_to_path(self.client_cert)
        client.private_key_pem.write_to_path(self.client_key)


class SyslogRecord(NamedTuple):
    """One message as rsyslog stored it: the raw bytes and rsyslog's parse of them."""

    raw: bytes         # %rawmsg%: as received, framing and trailing LF removed
    input: str         # imudp, imptcp, imtcp, imuxsock
    pri: int
    timestamp: str     # %timereported:::date-rfc3339%
    hostname: str
    app_name: str
    procid: str
    msgid: str
    msg: bytes         # %msg%: for RFC 3164 rsyslog keeps the space after "tag[pid]:"


_CONF = """\
global(workDirectory="{dir}/work" maxMessageSize="{max_size}"
       parser.escapeControlCharactersOnReceive="off"{tls_global})
module(load="imudp")
module(load="imptcp")
module(load="imuxsock" sysSock.use="off")
input(type="imudp" address="127.0.0.1" port="{udp}" rcvBufSize="8m")
input(type="imptcp" address="127.0.0.1" port="{tcp}")
input(type="imptcp" path="{dir}/stream.sock" unlink="on")
input(type="imuxsock" socket="{dir}/dgram.sock" rateLimit.interval="0"
      useSysTimeStamp="off")
{tls_inputs}
template(name="raw" type="string" string="%rawmsg%\\n")
template(name="fields" type="string" string="%inputname%|%pri%|%timereported:::date-rfc3339%|\\
%hostname%|%app-name%|%procid%|%msgid%|%msg%\\n")
action(type="omfile" file="{dir}/raw.log" template="raw")
action(type="omfile" file="{dir}/fields.log" template="fields")
"""

_TLS_GLOBAL = """
       defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}\""""

_TLS_INPUTS = """\
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1"
       streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{tls}")
input(type="imtcp" address="127.0.0.1" port="{tls_auth}"
      streamDriver.authMode="x509/certvalid")"""


class Rsyslog:
    """A private rsyslogd. Use as a context manager, or ``start()``/``stop()``.

    Addresses to pass as ``syslog-address``: ``udp_address``, ``tcp_address``,
    ``tls_address`` (the client verifies the server against ``certs.ca_cert``),
    ``tls_client_auth_address`` (rsyslog also demands a certificate signed by that CA:
    ``certs.client_cert``/``certs.client_key``), ``unix_address`` (stream) and
    ``unixgram_address``. Ports are chosen once, so a restart listens where the first
    start did. Messages accumulate across restarts.
    """

    def __init__(self, directory: str | None = None, max_message_size: int = 64 * 1024,
                 tls: bool = True) -> None:
        """``tls=False`` leaves out the TLS listeners: rsyslog's gtls driver generates
        Diffie-Hellman parameters at every start, which costs 0.4–4 s of CPU."""
        self._own_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="rsyslog-")
        os.makedirs(os.path.join(self.dir, "work"), exist_ok=True)
        self.tls = tls
        self.ports = {"udp": free_port(socket.SOCK_DGRAM), "tcp": free_port()}
        tls_global = tls_inputs = ""
        if tls:
            self.certs = Certs(self.dir)
            self.ports.update(tls=free_port(), tls_auth=free_port())
            tls_global = _TLS_GLOBAL.format(ca=self.certs.ca_cert, cert=self.certs.server_cert,
                                            key=self.certs.server_key)
            tls_inputs = _TLS_INPUTS.format(**self.ports)
        self.conf = os.path.join(self.dir, "rsyslog.conf")
        with open(self.conf, "w") as f:
            f.write(_CONF.format(dir=self.dir, max_size=max_message_size, tls_global=tls_global,
                                 tls_inputs=tls_inputs, **self.ports))
        self.raw_path = os.path.join(self.dir, "raw.log")
        self.fields_path = os.path.join(self.dir, "fields.log")
        self.proc: subprocess.Popen | None = None

    udp_address = property(lambda self: f"udp://127.0.0.1:{self.ports['udp']}")
    tcp_address = property(lambda self: f"tcp://127.0.0.1:{self.ports['tcp']}")
    tls_address = property(lambda self: f"tcp+tls://127.0.0.1:{self.ports['tls']}")
    tls_client_auth_address = property(
        lambda self: f"tcp+tls://127.0.0.1:{self.ports['tls_auth']}")
    unix_address = property(lambda self: f"unix://{self.dir}/stream.sock")
    unixgram_address = property(lambda self: f"unixgram://{self.dir}/dgram.sock")

    def start(self, timeout: float = 10.0) -> "Rsyslog":
        """Start rsyslogd and return once every listener is bound."""
        if RSYSLOGD is None:
            raise RuntimeError(rsyslog_missing())
        for name in ("stream.sock", "dgram.sock"):  # their existence tells that it listens
            if os.path.exists(os.path.join(self.dir, name)):
                os.unlink(os.path.join(self.dir, name))
        with open(os.path.join(self.dir, "rsyslogd.err"), "ab") as err:
            self.proc = subprocess.Popen(
                [RSYSLOGD, "-n", "-f", self.conf, "-i", os.path.join(self.dir, "rsyslogd.pid")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while not self._listening():
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                raise RuntimeError(f"rsyslogd exited {code}: {self.errors()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rsyslogd did not listen within {timeout}s: {self.errors()}")
            time.sleep(0.01)
        return self

    def _listening(self) -> bool:
        tcp = _bound_ports("/proc/net/tcp", listen_only=True)
        udp = _bound_ports("/proc/net/udp")
        return (self.ports["udp"] in udp
                and {p for k, p in self.ports.items() if k != "udp"} <= tcp
                and os.path.exists(os.path.join(self.dir, "stream.sock"))
                and os.path.exists(os.path.join(self.dir, "dgram.sock")))

    def stop(self) -> None:
        """Stop rsyslogd (it flushes its files first); safe to call twice."""
        if self.proc is not None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def pause(self) -> None:
        """Stall the receiver: rsyslogd stops reading until ``resume``."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Rsyslog":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def errors(self) -> str:
        """What rsyslogd wrote on stderr (configuration problems, refused TLS peers)."""
        try:
            with open(os.path.join(self.dir, "rsyslogd.err"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def records(self) -> list[SyslogRecord]:
        """Everything stored so far, in arrival order."""
        raws = _lines(self.raw_path)
        fields = _lines(self.fields_path)
        out = []
        for raw, line in zip(raws, fields):
            parts = line.split(b"|", 7)
            out.append(SyslogRecord(raw, parts[0].decode(), int(parts[1]), parts[2].decode(),
                                    parts[3].decode(), parts[4].decode(), parts[5].decode(),
                                    parts[6].decode(), parts[7]))
        return out

    def wait_for(self, n: int, timeout: float = 10.0,
                 app_name: str | None = None) -> list[SyslogRecord]:
        """Poll rsyslog's files until ``n`` records (with ``app_name``, if given) are stored;
        return them. rsyslog is an external daemon writing files: polling with a deadline."""
        deadline = time.monotonic() + timeout
        while True:
            # Counting lines is cheap; parsing every record on every poll is not (benchmarks).
            enough = len(_lines(self.fields_path)) >= n and len(_lines(self.raw_path)) >= n
            if enough or time.monotonic() > deadline:
                found = [r for r in self.records() if app_name is None or r.app_name == app_name]
                if len(found) >= n or time.monotonic() > deadline:
                    return found
            time.sleep(0.01)


def _die_with_parent() -> None:
    """In the child: SIGTERM when the process that started it dies, so that a killed test
    run leaves no rsyslogd behind (Linux ``PR_SET_PDEATHSIG``)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _lines(path: str) -> list[bytes]:
    """Complete lines of a file rsyslog may be writing (a torn last line is left out)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return data.split(b"\n")[:-1]


def _bound_ports(table: str, listen_only: bool = False) -> set[int]:
    """Local ports in a /proc/net table (TCP state 0A is LISTEN)."""
    ports = set()
    for path in (table, table + "6"):
        try:
            with open(path) as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            cols = row.split()
            if not listen_only or cols[3] == "0A":
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


# -- fake receiver -------------------------------------------------------------------------

_OCTET = re.compile(rb"([1-9][0-9]*) ")


class FakeSyslogServer:
    """Stands in for a syslog receiver such as rsyslog (imudp, imtcp, imuxsock) and records
    the bytes Docker's syslog driver puts on the wire, byte for byte.

    ``transport``: ``udp``, ``tcp``, ``tls``, ``unix`` or ``unixgram``. ``framing`` (streams
    only): ``newline`` — each message ends with ``\\n`` (RFC 6587 non-transparent framing) —
    or ``octet`` — ``<length> <message>`` (RFC 5425). ``messages`` holds each message as
    framed (with its ``\\n``; without the count prefix); ``wire`` every connection's bytes
    (or every datagram); a framing error is kept in ``errors`` and fails ``wait_for``.
    """

    def __init__(self, transport: str, framing: str = "newline", certs: Certs | None = None,
                 path: str | None = None) -> None:
        assert transport in ("udp", "tcp", "tls", "unix", "unixgram"), transport
        self.transport, self.framing, self.certs = transport, framing, certs
        self.path = path
        self._own_dir: str | None = None
        self.port = 0
        self.messages: list[bytes] = []
        self.wire: list[bytes] = []
        self.errors: list[str] = []
        self.connections = 0
        self._cond = threading.Condition()
        self._reading = threading.Event()
        self._reading.set()
        self._sock: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._running = False

    @property
    def address(self) -> str:
        if self.transport in ("unix", "unixgram"):
            return f"{self.transport}://{self.path}"
        scheme = {"tls": "tcp+tls"}.get(self.transport, self.transport)
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> "FakeSyslogServer":
        """Listen (on the same port or path as before, after a ``stop``)."""
        datagram = self.transport in ("udp", "unixgram")
        kind = socket.SOCK_DGRAM if datagram else socket.SOCK_STREAM
        if self.transport in ("unix", "unixgram"):
            if self.path is None:
                self._own_dir = tempfile.mkdtemp(prefix="fake-syslog-")
                self.path = os.path.join(self._own_dir, "sock")
            if os.path.exists(self.path):
                os.unlink(self.path)
            sock = socket.socket(socket.AF_UNIX, kind)
            sock.bind(self.path)
        else:
            sock = socket.socket(socket.AF_INET, kind)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            self.port = sock.getsockname()[1]
        if not datagram:
            sock.listen(16)
        self._sock, self._running = sock, True
        self._spawn(self._datagrams if datagram else self._accept)
        return self

    def stop(self) -> None:
        """Close the listener and every connection; the sender sees the receiver gone."""
        self._running = False
        self._reading.set()
        for s in [self._sock] + self._conns:
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        for t in self._threads:
            t.join(5)
        self._sock, self._conns, self._threads = None, [], []

    def close(self) -> None:
        """Stop for good, removing the socket directory made for a unix transport."""
        self.stop()
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def pause(self) -> None:
        """Stop reading: once the socket buffers are full, the sender's writes block."""
        self._reading.clear()

    def resume(self) -> None:
        self._reading.set()

    def __enter__(self) -> "FakeSyslogServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[bytes]:
        """Wait until ``n`` messages have arrived; return all messages so far."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= n or self.errors, timeout)
            assert not self.errors, self.errors
            return list(self.messages)

    def wait_connections(self, n: int, timeout: float = 10.0) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self.connections >= n, timeout)
            return self.connections

    def _spawn(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _datagrams(self) -> None:
        while self._running:
            try:
                data = self._sock.recv(1 << 17)
            except OSError:
                return
            self._reading.wait()
            with self._cond:
                self.wire.append(data)
                self.messages.append(data)
                self._cond.notify_all()

    def _accept(self) -> None:
        while self._running:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        if self.transport == "tls":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.certs.server_cert, self.certs.server_key)
            try:
                conn = ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                return
            self._conns.append(conn)
        with self._cond:
            self.connections += 1
            index = len(self.wire)
            self.wire.append(b"")
            self._cond.notify_all()
        pending = b""
        while self._running:
            self._reading.wait()
            try:
                data = conn.recv(1 << 16)
            except OSError:
                return
            if not data:
                break
            with self._cond:
                self.wire[index] += data
                pending = self._decode(pending + data)
                self._cond.notify_all()
        if pending:
            with self._cond:
                self.errors.append(f"connection closed inside a message: {pending[:80]!r}")
                self._cond.notify_all()

    def _decode(self, buf: bytes) -> bytes:
        """Move complete messages from ``buf`` to ``messages``; return the rest."""
        if self.framing == "newline":
            *done, rest = buf.split(b"\n")
            self.messages.extend(m + b"\n" for m in done)
            return rest
        while buf:
            m = _OCTET.match(buf)
            if not m:
                if not re.fullmatch(rb"[0-9]*", buf):
                    self.errors.append(f"bad octet-counting frame: {buf[:40]!r}")
                    return b""
                return buf
            end = m.end() + int(m.group(1))
            if len(buf) < end:
                return buf
            self.messages.append(buf[m.end():end])
            buf = buf[end:]
        return b""
