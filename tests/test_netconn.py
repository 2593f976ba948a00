"""The socket drivers' shared network plumbing (drivers/netconn.py), on real sockets.

The drivers' own tests cover what each does with it (tests/test_driver_syslog.py, …); these
pin the shared pieces themselves: Go's texts, the two "is the kept connection still good?"
questions, dialing, and the TLS contexts' wording.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from drivers import netconn
from drivers.netconn import AddrError, NetError
from logpipe.errors import LogOptError, LogpipeError

ROOT = Path(__file__).resolve().parent.parent


def _wait_until(check, timeout: float = 5.0) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected TCP pair on 127.0.0.1: (ours, the receiver's), with a write timeout on
    ours as the drivers set one."""
    listener = socket.create_server(("127.0.0.1", 0))
    ours, _ = netconn.dial("tcp", "127.0.0.1", listener.getsockname()[1], 5.0)
    theirs, _ = listener.accept()
    listener.close()
    try:
        yield ours, theirs
    finally:
        ours.close()
        theirs.close()


def _closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the two questions about a kept connection ----------------------------------------------

def test_peer_closed_is_true_after_the_receiver_closes_and_false_while_it_is_idle(tcp_pair):
    ours, theirs = tcp_pair
    assert not netconn.peer_closed(ours)
    theirs.close()
    assert _wait_until(lambda: netconn.peer_closed(ours))
    assert ours.gettimeout() == 5.0  # the driver's timeout is left as it was


def test_peer_closed_is_true_after_a_reset(tcp_pair):
    ours, theirs = tcp_pair
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    theirs.close()  # linger 0: an RST, not a FIN
    assert _wait_until(lambda: netconn.peer_closed(ours))


def test_stray_bytes_are_no_closure_for_peer_closed_but_are_for_peer_spoke(tcp_pair):
    """syslog and GELF receivers never write: bytes from them are ignored. A Forward
    receiver writes only acks: bytes between batches mean the connection is out of step."""
    ours, theirs = tcp_pair
    assert not netconn.peer_spoke(ours)
    theirs.sendall(b"late ack")
    assert _wait_until(lambda: netconn.peer_spoke(ours))
    assert not netconn.peer_closed(ours)
    assert ours.recv(100) == b"late ack"  # peeked at, never consumed


def test_peer_spoke_is_true_after_the_receiver_closes(tcp_pair):
    ours, theirs = tcp_pair
    theirs.close()
    assert _wait_until(lambda: netconn.peer_spoke(ours))


def test_peer_closed_sees_a_tls_receiver_close_the_connection(tmp_path):
    trustme = pytest.importorskip("trustme", reason="trustme makes the test certificates")
    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client_ctx = netconn.go_connections_context(str(ca_file), "", "", skip_verify=False,
                                                system_roots=False)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        raw, _ = netconn.dial("tcp", "127.0.0.1", listener.getsockname()[1], 5.0)
        accepted, _ = listener.accept()
        served: list[ssl.SSLSocket] = []
        handshake = threading.Thread(
            target=lambda: served.append(server_ctx.wrap_socket(accepted, server_side=True)))
        handshake.start()
        ours = netconn.tls_handshake(raw, client_ctx, "127.0.0.1")
        handshake.join(5)
        try:
            assert served and not netconn.peer_closed(ours)
            served[0].close()
            assert _wait_until(lambda: netconn.peer_closed(ours))
        finally:
            netconn.close(ours)
            for s in served:
                s.close()


# -- dialing, in Go's words ------------------------------------------------------------------

def test_a_refused_dial_reads_as_gos_and_is_both_an_oserror_and_a_logpipeerror():
    port = _closed_port()
    with pytest.raises(NetError) as err:
        netconn.dial("tcp", "127.0.0.1", port, 5.0)
    assert str(err.value) == f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    assert isinstance(err.value, OSError) and isinstance(err.value, LogpipeError)


def test_a_unix_socket_that_is_not_there_reads_as_gos(tmp_path):
    path = tmp_path / "missing.sock"
    with pytest.raises(NetError, match=f"^dial unix {path}: connect: no such file or "
                                       "directory$"):
        netconn.dial_unix(str(path), socket.SOCK_STREAM, 5.0)
    with pytest.raises(NetError, match=f"^dial unixgram {path}: connect: "):
        netconn.dial_unix(str(path), socket.SOCK_DGRAM, 5.0)


def test_errnos_and_timeouts_are_worded_as_go_prints_them():
    refused = OSError(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED))
    assert netconn.go_errno(refused) == "connection refused"
    assert netconn.go_io_error(refused) == "connection refused"
    assert netconn.go_io_error(socket.timeout("timed out")) == "i/o timeout"
    assert netconn.dial_error("udp", "[::1]:514", socket.timeout()) == \
        "dial udp [::1]:514: i/o timeout"
    assert netconn.lookup_error("tcp", "graylog", "no such host") == \
        "dial tcp: lookup graylog: no such host"


# -- addresses -------------------------------------------------------------------------------

@pytest.mark.parametrize("hostport, expected", [
    ("host:514", ("host", "514")),
    ("[::1]:514", ("::1", "514")),
    ("host:", ("host", "")),
    ("host", ("host", None)),       # Go: missing port; each driver has its default
    ("[::1]", ("::1", None)),
    ("[host", ("[host", None)),     # no colon at all: Go's "missing port" comes first
])
def test_split_host_port_splits_as_go_and_leaves_the_default_port_to_the_driver(
        hostport, expected):
    assert netconn.split_host_port(hostport) == expected


@pytest.mark.parametrize("hostport, why", [
    ("::1", "too many colons in address"),
    ("[::1", "missing ']' in address"),
    ("a:b:c", "too many colons in address"),
    ("[::1]:5:6", "too many colons in address"),
    ("[::1]x:1", "missing port in address"),
    ("a]:1", "unexpected ']' in address"),
    ("[a[b]:1", "unexpected '[' in address"),
])
def test_split_host_port_refuses_with_gos_addr_error(hostport, why):
    with pytest.raises(AddrError) as err:
        netconn.split_host_port(hostport)
    assert str(err.value) == f"address {hostport}: {why}"


def test_url_host_is_the_authority_without_userinfo():
    assert netconn.url_host("user:pw@[::1]:514/path?q#f") == "[::1]:514"
    assert netconn.url_host("h:1?x/y") == "h:1"
    assert netconn.join_host_port("::1", 514) == "[::1]:514"
    assert netconn.join_host_port("host", 514) == "host:514"


# -- TLS contexts ----------------------------------------------------------------------------

def test_tls_contexts_speak_the_wording_of_each_reference_library(tmp_path):
    missing = str(tmp_path / "ca.pem")
    with pytest.raises(LogOptError) as go:
        netconn.go_connections_context(missing, "", "", skip_verify=False, system_roots=False)
    assert str(go.value) == (f'could not read CA certificate "{missing}": open {missing}: '
                             "no such file or directory")
    with pytest.raises(LogOptError, match=f"^unable to load specified CA cert {missing}: "):
        netconn.prometheus_context(missing, None, None, insecure=False)
    # skipping verification reads no CA (as Go), and verifies nothing
    ctx = netconn.go_connections_context(missing, "", "", skip_verify=True, system_roots=False)
    assert ctx.verify_mode == ssl.CERT_NONE and ctx.minimum_version == ssl.TLSVersion.TLSv1_2


# -- one home ----------------------------------------------------------------------------------

@pytest.mark.parametrize("driver", ["syslog", "gelf", "fluentd", "loki"])
def test_socket_drivers_keep_no_copy_of_the_network_plumbing(driver):
    """Errno texts, resolving, peeking at a kept connection and loading TLS files live in
    drivers/netconn.py only: a driver doing one of them again would drift from the others."""
    source = (ROOT / "drivers" / f"{driver}.py").read_text()
    for needle in ("os.strerror", "getaddrinfo", "MSG_PEEK", "load_verify_locations",
                   "load_cert_chain", "def _go_errno", "def _split_host_port"):
        assert needle not in source, f"drivers/{driver}.py does {needle} itself"
