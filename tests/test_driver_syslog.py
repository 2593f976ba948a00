"""The syslog driver: Docker's options and error texts at create, Docker's four message
formats and three framings byte for byte (``FakeSyslogServer``), and delivery into a real
rsyslogd over UDP, TCP, TLS and unix sockets, checking what rsyslog stored."""

from __future__ import annotations

import calendar
import os
import socket
import tempfile
import time

import pytest

from drivers.spool import SpoolTail, SpoolWriter
from drivers.syslog import LOCAL_SOCKETS, MAX_DATAGRAM, SyslogDriver, parse_address
from logpipe.checkpoint import checkpoint_path
from logpipe.driver import LogInfo
from logpipe.errors import LogOptError, LogpipeError, RetryableError
from logpipe.message import STDOUT, Chunk, Message, PartialMeta
from logpipe.shipper import Shipper
from receivers.syslog import Certs, FakeSyslogServer, Rsyslog, free_port, rsyslog_missing
from receivers.udp import PlainUDPReceiver

pytestmark = pytest.mark.integration  # the tests of a real rsyslogd are e2e

CID = "3bdd661747b1" + "0" * 52
TAG = CID[:12]
PID = os.getpid()  # the driver runs in this process: PROCID/[pid] is ours
#: 2023-11-14T22:13:20.123456789Z, long before any test runs: proves log time, not send time.
TS = 1_700_000_000_123_456_789


def info_for(opts: dict[str, str], cid: str = CID) -> LogInfo:
    return LogInfo(cid, "/nonexistent", opts, container_name="/web1", hostname="vm")


@pytest.fixture
def drivers():
    """Drivers made by a test; closed at teardown even if the test failed."""
    made: list[SyslogDriver] = []

    def make(opts: dict[str, str], cid: str = CID) -> SyslogDriver:
        SyslogDriver.validate(opts, info_for(opts, cid))
        driver = SyslogDriver(info_for(opts, cid))
        made.append(driver)
        return driver

    yield make
    for d in made:
        d.close()


@pytest.fixture(scope="module")
def certs():
    pytest.importorskip("trustme", reason="trustme makes the test certificates")
    with tempfile.TemporaryDirectory() as d:
        yield Certs(d)


@pytest.fixture
def receivers():
    """Fake receivers started by a test; stopped at teardown."""
    started: list[FakeSyslogServer] = []

    def start(*args, **kw) -> FakeSyslogServer:
        server = FakeSyslogServer(*args, **kw).start()
        started.append(server)
        return server

    yield start
    for s in started:
        s.close()


def out(line: bytes, ts: int = TS) -> Message:
    return Message(line, "stdout", ts)


def err(line: bytes, ts: int = TS) -> Message:
    return Message(line, "stderr", ts)


# -- options at create ---------------------------------------------------------------------

def refused(opts: dict[str, str]) -> str:
    with pytest.raises(LogOptError) as e:
        SyslogDriver.validate(opts)
    return str(e.value)


def test_unknown_option_is_refused_with_dockers_text():
    assert refused({"syslog-adress": "udp://x"}) == \
        "unknown log opt 'syslog-adress' for syslog log driver"
    assert refused({"max-size": "1m"}) == "unknown log opt 'max-size' for syslog log driver"


@pytest.mark.parametrize("address", ["http://host:514", "localhost:514", "TCP://host",
                                     "tcp:/host", "udp//host"])
def test_address_must_name_a_transport(address):
    assert refused({"syslog-address": address}) == \
        f"syslog-address should be in form proto://address, got {address}"


@pytest.mark.parametrize("address, text", [
    ("tcp://[::1", 'parse "tcp://[::1": missing \']\' in host'),
    ("udp://host:abc", 'parse "udp://host:abc": invalid port ":abc" after host'),
    ("tcp://a b:514", 'parse "tcp://a b:514": invalid character " " in host name'),
    ("tcp://host%zz", 'parse "tcp://host%zz": invalid URL escape "%zz"'),
    ("tcp://ho\tst", 'parse "tcp://ho\\tst": net/url: invalid control character in URL'),
    ("tcp://::1", "address ::1: too many colons in address"),
    ("tcp://[::1]x:5", 'parse "tcp://[::1]x:5": invalid port "x:5" after host'),
    ("udp://host:70000", "dial udp: address 70000: invalid port"),
])
def test_malformed_address_is_refused_with_gos_text(address, text):
    assert refused({"syslog-address": address}) == text


def test_unix_socket_path_must_exist_at_create():
    assert refused({"syslog-address": "unix:///nonexistent/log"}) == \
        "stat /nonexistent/log: no such file or directory"
    assert refused({"syslog-address": "unixgram:///nonexistent/log"}) == \
        "stat /nonexistent/log: no such file or directory"


@pytest.mark.parametrize("address, host, port", [
    ("tcp://logs.example", "logs.example", 514),
    ("udp://10.0.0.1", "10.0.0.1", 514),
    ("tcp+tls://[::1]", "::1", 514),
    ("tcp+tls://[::1]:6514", "::1", 6514),
    ("udp://logs.example:1514/ignored/path", "logs.example", 1514),
])
def test_address_without_port_uses_514(address, host, port):
    a = parse_address(address)
    assert (a.host, a.port) == (host, port)


@pytest.mark.parametrize("facility", ["kern", "user", "daemon", "authpriv", "ftp", "local0",
                                      "local7", "0", "23", "+5"])
def test_facility_names_and_codes_0_to_23_are_accepted(facility):
    SyslogDriver.validate({"syslog-facility": facility})


@pytest.mark.parametrize("facility", ["local8", "24", "-1", "LOCAL0", "security", "1.5", " 1"])
def test_other_facilities_are_refused(facility):
    assert refused({"syslog-facility": facility}) == "invalid syslog facility"


@pytest.mark.parametrize("fmt", ["rfc5424nano", "RFC5424", "json", "unix"])
def test_unknown_format_is_refused(fmt):
    assert refused({"syslog-format": fmt}) == "Invalid syslog format"


def test_checks_run_in_dockers_order():
    """Address before facility before format, as Docker's ValidateLogOpt."""
    assert refused({"syslog-format": "x", "syslog-facility": "x", "syslog-address": "x"}) == \
        "syslog-address should be in form proto://address, got x"
    assert refused({"syslog-format": "x", "syslog-facility": "x"}) == "invalid syslog facility"


def tls_opts(**kw: str) -> dict[str, str]:
    return {"syslog-address": "tcp+tls://127.0.0.1:6514",
            **{f"syslog-tls-{k.replace('_', '-')}": v for k, v in kw.items()}}


def test_unreadable_ca_certificate_is_refused_at_create(tmp_path):
    assert refused(tls_opts(ca_cert="/nonexistent/ca.pem")) == \
        'could not read CA certificate "/nonexistent/ca.pem": ' \
        'open /nonexistent/ca.pem: no such file or directory'
    assert refused(tls_opts(ca_cert=str(tmp_path))) == \
        f'could not read CA certificate "{tmp_path}": read {tmp_path}: is a directory'


def test_ca_file_without_certificates_is_refused(tmp_path):
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    assert refused(tls_opts(ca_cert=str(junk))) == \
        f'failed to append certificates from PEM file: "{junk}"'


def test_client_key_pair_is_checked_at_create(certs, tmp_path):
    prefix = "Could not load X509 key pair: "
    assert refused(tls_opts(cert=certs.client_cert)) == \
        prefix + "open : no such file or directory"
    assert refused(tls_opts(cert=certs.client_cert, key="/nonexistent/k")) == \
        prefix + "open /nonexistent/k: no such file or directory"
    assert refused(tls_opts(cert=certs.client_key, key=certs.client_key)) == \
        prefix + "tls: failed to find any PEM data in certificate input"
    assert refused(tls_opts(cert=certs.client_cert, key=certs.client_cert)) == \
        prefix + "tls: failed to find any PEM data in key input"
    assert refused(tls_opts(cert=certs.client_cert, key=certs.server_key)) == \
        prefix + "tls: private key does not match public key"
    SyslogDriver.validate(tls_opts(ca_cert=certs.ca_cert, cert=certs.client_cert,
                                   key=certs.client_key))


def test_tls_files_are_only_read_for_tcp_tls():
    """Docker reads them only when dialling tcp+tls; with another transport they are unused."""
    SyslogDriver.validate({"syslog-address": "tcp://127.0.0.1",
                           "syslog-tls-ca-cert": "/nonexistent/ca.pem"})


def test_skip_verify_is_enabled_by_presence_alone_and_then_the_ca_is_not_read():
    """Docker: ``_, skip := cfg["syslog-tls-skip-verify"]``; ``=false`` still skips."""
    SyslogDriver.validate(tls_opts(skip_verify="false", ca_cert="/nonexistent/ca.pem"))


def test_bad_tag_template_is_refused_at_create():
    assert refused({"tag": "{{.Foo}}"}).startswith(
        'template: log-tag:1:2: executing "log-tag" at <.Foo>: can\'t evaluate field Foo')
    assert refused({"tag": "{{.ID"}) == "template: log-tag:1: unclosed action"


def test_labels_and_env_are_accepted_and_unused_as_in_docker():
    SyslogDriver.validate({"labels": "a", "env": "B", "labels-regex": "x", "env-regex": "y"})


# -- bytes on the wire (FakeSyslogServer) --------------------------------------------------

HEADERS = {
    "": f"<30>Nov 14 22:13:20 {TAG}[{PID}]: ",
    "rfc3164": f"<30>Nov 14 22:13:20 vm {TAG}[{PID}]: ",
    "rfc5424": f"<30>1 2023-11-14T22:13:20Z vm {TAG} {PID} {TAG} - ",
    "rfc5424micro": f"<30>1 2023-11-14T22:13:20.123456Z vm {TAG} {PID} {TAG} - ",
}


@pytest.fixture
def utc(monkeypatch):
    """Run with TZ=UTC: the RFC 3164 stamp is local time, as Docker's."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("fmt", list(HEADERS))
def test_tcp_sends_each_format_newline_framed(utc, receivers, drivers, fmt):
    server = receivers("tcp")
    driver = drivers({"syslog-address": server.address, "syslog-format": fmt})
    driver.send([out(b"out1"), err(b"err1")])
    server.wait_for(2)
    head = HEADERS[fmt].encode()
    assert server.wire == [head + b"out1\n" + head.replace(b"<30>", b"<27>") + b"err1\n"]


@pytest.mark.parametrize("fmt", ["rfc5424", "rfc5424micro"])
def test_tls_with_rfc5424_uses_octet_counting_and_the_count_includes_the_newline(
        utc, receivers, drivers, certs, fmt):
    server = receivers("tls", "octet", certs)
    driver = drivers({"syslog-address": server.address, "syslog-format": fmt,
                      "syslog-tls-ca-cert": certs.ca_cert})
    driver.send([out(b"out1"), out(b"12 looks like a count")])
    first = HEADERS[fmt].encode() + b"out1\n"
    second = HEADERS[fmt].encode() + b"12 looks like a count\n"
    assert server.wait_for(2) == [first, second]
    assert server.wire == [b"%d %s%d %s" % (len(first), first, len(second), second)]
    assert server.wire[0].startswith(b"%d <30>1 " % (len(HEADERS[fmt]) + 5))


@pytest.mark.parametrize("fmt", ["", "rfc3164"])
def test_tls_with_rfc3164_formats_stays_newline_framed(utc, receivers, drivers, certs, fmt):
    server = receivers("tls", "newline", certs)
    driver = drivers({"syslog-address": server.address, "syslog-format": fmt,
                      "syslog-tls-ca-cert": certs.ca_cert})
    driver.send([out(b"out1")])
    server.wait_for(1)
    assert server.wire == [HEADERS[fmt].encode() + b"out1\n"]


def test_plain_tcp_is_newline_framed_even_for_rfc5424(utc, receivers, drivers):
    server = receivers("tcp")
    drivers({"syslog-address": server.address, "syslog-format": "rfc5424"}).send([out(b"x")])
    server.wait_for(1)
    assert server.wire == [HEADERS["rfc5424"].encode() + b"x\n"]


def test_udp_sends_one_datagram_per_message_each_ending_in_newline(utc, receivers, drivers):
    server = receivers("udp")
    driver = drivers({"syslog-address": server.address, "syslog-format": "rfc3164"})
    driver.send([out(b"one"), out(b""), err(b"two"), out(b" ")])
    head = HEADERS["rfc3164"].encode()
    assert server.wait_for(3) == [head + b"one\n", head.replace(b"<30>", b"<27>") + b"two\n",
                                  head + b" \n"]


def test_empty_lines_are_dropped_and_partial_pieces_are_separate_messages(
        utc, receivers, drivers):
    server = receivers("tcp")
    driver = drivers({"syslog-address": server.address, "syslog-format": "rfc5424"})
    pid = "f" * 64
    driver.send([out(b""), Message(b"a" * 16384, "stdout", TS, False, PartialMeta(pid, 1, False)),
                 Message(b"bbb", "stdout", TS, True, PartialMeta(pid, 2, True)),
                 Message(b"noeol", "stdout", TS, False, PartialMeta("e" * 64, 1, False))])
    head = HEADERS["rfc5424"].encode()
    assert server.wait_for(3) == [head + b"a" * 16384 + b"\n", head + b"bbb\n",
                                  head + b"noeol\n"]


def test_every_byte_of_a_line_is_sent_unchanged(utc, receivers, drivers):
    line = b"tab\t nul\x00 cr\r bad\xff\xfe <&> " + "\u2028 é".encode()
    server = receivers("tcp")
    drivers({"syslog-address": server.address, "syslog-format": "rfc5424"}).send([out(line)])
    assert server.wait_for(1) == [HEADERS["rfc5424"].encode() + line + b"\n"]


@pytest.mark.parametrize("facility, stdout_pri, stderr_pri", [
    ("", 30, 27), ("daemon", 30, 27), ("local0", 134, 131), ("kern", 6, 3), ("23", 190, 187),
    ("authpriv", 86, 83)])
def test_pri_is_facility_times_8_plus_6_for_stdout_and_3_for_stderr(
        receivers, drivers, facility, stdout_pri, stderr_pri):
    server = receivers("udp")
    drivers({"syslog-address": server.address, "syslog-facility": facility}).send(
        [out(b"o"), err(b"e")])
    assert [m.split(b">")[0] for m in server.wait_for(2)] == \
        [b"<%d" % stdout_pri, b"<%d" % stderr_pri]


def test_timestamp_is_the_records_log_time(utc, receivers, drivers):
    """Docker stamps send time (moby#21793); records shipped late keep their own time."""
    server = receivers("udp")
    ts = calendar.timegm((2001, 3, 5, 4, 5, 6)) * 10**9 + 999_999_999
    for fmt in ("", "rfc5424", "rfc5424micro"):
        drivers({"syslog-address": server.address, "syslog-format": fmt}).send([out(b"x", ts)])
    assert server.wait_for(3) == [
        f"<30>Mar  5 04:05:06 {TAG}[{PID}]: x\n".encode(),  # Go's "Jan _2": day padded
        f"<30>1 2001-03-05T04:05:06Z vm {TAG} {PID} {TAG} - x\n".encode(),
        # six digits, truncated as Go formats, never rounded up into the next second
        f"<30>1 2001-03-05T04:05:06.999999Z vm {TAG} {PID} {TAG} - x\n".encode()]


def test_rfc3164_stamp_is_local_time_and_rfc5424_is_utc(monkeypatch, receivers, drivers):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        server = receivers("udp")
        for fmt in ("rfc3164", "rfc5424"):
            drivers({"syslog-address": server.address, "syslog-format": fmt}).send([out(b"x")])
        assert server.wait_for(2) == [
            f"<30>Nov 15 07:13:20 vm {TAG}[{PID}]: x\n".encode(),
            f"<30>1 2023-11-14T22:13:20Z vm {TAG} {PID} {TAG} - x\n".encode()]
    finally:
        monkeypatch.undo()
        time.tzset()


def test_tag_template_names_the_app(receivers, drivers):
    server = receivers("udp")
    drivers({"syslog-address": server.address, "syslog-format": "rfc5424",
             "tag": "{{.Name}}/{{.ID}}"}).send([out(b"x")])
    assert server.wait_for(1)[0].split(b" ")[3:6] == \
        [f"web1/{TAG}".encode(), str(PID).encode(), f"web1/{TAG}".encode()]


def test_udp_line_longer_than_a_datagram_is_split_into_messages(receivers, drivers):
    server = receivers("udp")
    line = bytes(range(97, 123)) * 4000  # 104,000 bytes
    drivers({"syslog-address": server.address, "syslog-format": "rfc5424"}).send([out(line)])
    got = server.wait_for(2)
    head = got[0][:got[0].index(b" - ") + 3]
    assert len(got) == 2 and all(len(d) <= MAX_DATAGRAM for d in got)
    assert all(d.startswith(head) and d.endswith(b"\n") for d in got)
    assert b"".join(d[len(head):-1] for d in got) == line


def test_unix_stream_is_newline_framed_and_unixgram_one_datagram_per_message(
        utc, receivers, drivers):
    stream, dgram = receivers("unix"), receivers("unixgram")
    for server in (stream, dgram):
        drivers({"syslog-address": server.address}).send([out(b"a"), out(b"b")])
    head = HEADERS[""].encode()
    assert stream.wait_for(2) and stream.wire == [head + b"a\n" + head + b"b\n"]
    assert dgram.wait_for(2) == [head + b"a\n", head + b"b\n"]


def test_a_batch_of_empty_lines_sends_nothing_and_needs_no_receiver(drivers):
    driver = drivers({"syslog-address": f"tcp://127.0.0.1:{free_port()}"})
    assert driver.send([out(b""), err(b"")]) is None


def test_connection_is_kept_across_batches(receivers, drivers):
    server = receivers("tcp")
    driver = drivers({"syslog-address": server.address})
    for i in range(5):
        driver.send([out(b"line %d" % i)])
    server.wait_for(5)
    assert server.connections == 1


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_receiver_that_closed_the_connection_between_batches_loses_nothing(
        receivers, drivers, certs, transport):
    """The kernel accepts a first write into a connection the peer has closed: the driver
    must notice the close before writing, or the next batch vanishes."""
    server = receivers(transport, "newline", certs)
    driver = drivers({"syslog-address": server.address, "syslog-tls-ca-cert": certs.ca_cert})
    driver.send([out(b"before")])
    server.wait_for(1)
    server.stop()
    server.start()
    driver.send([out(b"after")])
    before, after = server.wait_for(2)
    assert before.endswith(b": before\n") and after.endswith(b": after\n")
    assert server.connections == 2


def test_receiver_down_is_retryable_and_the_batch_goes_through_once_it_is_back(
        receivers, drivers):
    server = receivers("tcp")
    driver = drivers({"syslog-address": server.address})
    server.stop()
    with pytest.raises(RetryableError) as e:
        driver.send([out(b"x")])
    assert str(e.value) == \
        f"syslog: dial tcp 127.0.0.1:{server.port}: connect: connection refused"
    server.start()
    driver.send([out(b"x")])
    assert server.wait_for(1)[0].endswith(b": x\n")


def test_udp_receiver_down_is_reported_on_a_later_send_as_retryable(drivers):
    """The ICMP port-unreachable of one batch fails the next send on the connected socket."""
    port = free_port(socket.SOCK_DGRAM)
    driver = drivers({"syslog-address": f"udp://127.0.0.1:{port}"})
    errors = []
    for _ in range(3):
        try:
            driver.send([out(b"x")])
        except RetryableError as e:
            errors.append(str(e))
    assert errors and set(errors) == {f"syslog: write 127.0.0.1:{port}: connection refused"}


# -- UDP pacing (logpipe's own: syslog-udp-rate) --------------------------------------------

def burst(n: int, start: int = 0, size: int = 100) -> list[list[Message]]:
    """``n`` distinct lines of ``size`` bytes in the shipper's batches of 1,000."""
    pad = b"x" * (size - 9)
    return [[out(b"%08d " % i + pad) for i in range(s, min(start + n, s + 1000))]
            for s in range(start, start + n, 1000)]


def test_udp_burst_into_a_plain_receiver_with_default_buffers_loses_at_most_1_percent(drivers):
    """100 k lines sent back to back overflow a default 208 KiB buffer many times over
    (unpaced, a Python receiver loses ~30 %): the pacer waits for room in it."""
    with PlainUDPReceiver(keep=False) as rx:
        driver = drivers({"syslog-address": rx.address, "syslog-format": "rfc5424"})
        for batch in burst(100_000):
            driver.send(batch)
        assert rx.wait_for(100_000) >= 99_000


def test_udp_burst_shipped_from_the_spool_by_the_shipper_reaches_a_plain_receiver(tmp_path):
    """The daemon's path: 100 k lines in a container's spool, one Shipper, the default pace."""
    (tmp_path / "ship").mkdir()
    with PlainUDPReceiver(keep=False) as rx:
        opts = {"syslog-address": rx.address, "syslog-format": "rfc5424",
                "cache-max-size": "100m"}
        info = LogInfo(CID, str(tmp_path), opts, container_name="/web1", hostname="vm")
        writer = SpoolWriter(info, "syslog")
        pad = b"x" * 91
        for start in range(0, 100_000, 2000):
            writer.write([Chunk(STDOUT, TS, b"".join(b"%08d " % i + pad + b"\n"
                                                     for i in range(start, start + 2000)))])
        writer.close()
        shipper = Shipper("udp", lambda: SyslogDriver(info),
                          SpoolTail(SpoolWriter.log_path(info), warn=lambda text: None),
                          checkpoint_path(str(tmp_path), "syslog"))
        shipper.start()
        shipper.join(120)
        assert not shipper.is_alive()
        assert shipper.stats.shipped_lines == 100_000, shipper.stats.last_error
        assert rx.wait_for(100_000) >= 99_000


def test_udp_rate_caps_datagrams_per_second(drivers):
    with PlainUDPReceiver(keep=False) as rx:
        driver = drivers({"syslog-address": rx.address, "syslog-udp-rate": "10000"})
        started = time.monotonic()
        for batch in burst(3000):
            driver.send(batch)
        elapsed = time.monotonic() - started
        assert rx.wait_for(3000) == 3000
    assert elapsed >= (3000 - 50) / 10000  # 50: the bucket's 5 ms of burst


def test_udp_receiver_that_stops_reading_is_retryable_and_the_retry_sends_only_the_rest(
        drivers, monkeypatch):
    monkeypatch.setattr(SyslogDriver, "udp_patience", 0.3)
    with PlainUDPReceiver() as rx:
        driver = drivers({"syslog-address": rx.address, "syslog-format": "rfc5424"})
        rx.pause()
        [batch] = burst(1000)
        started = time.monotonic()
        with pytest.raises(RetryableError, match="the receiver read nothing for 0.3s"):
            driver.send(batch)
        assert time.monotonic() - started < 5
        rx.resume()
        driver.send(batch)  # the shipper's retry of the same batch
        assert rx.wait_for(1000) == 1000
        assert len(rx.distinct) == 1000  # nothing lost, nothing sent twice


@pytest.mark.parametrize("opts, text", [
    ({"syslog-address": "tcp://127.0.0.1:1", "syslog-udp-rate": "5"},
     '"syslog-udp-rate" is only valid for UDP'),
    ({"syslog-address": "udp://127.0.0.1:1", "syslog-udp-rate": "fast"},
     "invalid value 'fast' for log opt 'syslog-udp-rate': expected datagrams per second"),
    ({"syslog-address": "udp://127.0.0.1:1", "syslog-udp-rate": "-1"},
     "invalid value '-1' for log opt 'syslog-udp-rate'"),
])
def test_udp_rate_option_is_checked_at_create(opts, text):
    assert refused(opts).startswith(text)


def test_stalled_receiver_makes_send_retryable_after_the_io_timeout(receivers, drivers):
    server = receivers("tcp")
    driver = drivers({"syslog-address": server.address})
    driver.io_timeout = 0.3
    server.pause()
    batch = [out(b"z" * 16000)] * 1000  # 16 MB: more than loopback socket buffers hold
    started = time.monotonic()
    with pytest.raises(RetryableError, match="i/o timeout"):
        driver.send(batch)
    assert time.monotonic() - started < 5
    server.resume()


# -- dialling at start (probe) -------------------------------------------------------------

def probe_error(opts: dict[str, str]) -> str:
    with pytest.raises(LogpipeError) as e:
        SyslogDriver.probe(info_for(opts))
    return str(e.value)


def test_probe_refuses_a_tcp_receiver_that_is_down_with_gos_dial_text():
    port = free_port()
    assert probe_error({"syslog-address": f"tcp://127.0.0.1:{port}"}) == \
        f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    assert probe_error({"syslog-address": f"tcp+tls://127.0.0.1:{port}",
                        "syslog-tls-skip-verify": ""}) == \
        f"dial tcp 127.0.0.1:{port}: connect: connection refused"


def test_probe_never_fails_for_udp():
    SyslogDriver.probe(info_for({"syslog-address": f"udp://127.0.0.1:{free_port()}"}))


def test_probe_refuses_a_unix_socket_nobody_listens_on(tmp_path):
    path = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)  # the file exists (create passes), nobody accepts
    assert probe_error({"syslog-address": f"unix://{path}"}) == \
        f"dial unix {path}: connect: connection refused"


def test_probe_without_address_needs_a_local_syslog_socket(drivers):
    import stat

    if any(os.path.exists(p) and stat.S_ISSOCK(os.stat(p).st_mode) for p in LOCAL_SOCKETS):
        pytest.skip("this host has a local syslog socket")
    assert probe_error({}) == "Unix syslog delivery error"
    with pytest.raises(RetryableError, match="Unix syslog delivery error"):
        drivers({}).send([out(b"x")])


def test_tls_receiver_with_an_unknown_authority_is_refused(receivers, drivers, certs):
    server = receivers("tls", "octet", certs)
    assert probe_error({"syslog-address": server.address}) == \
        "x509: certificate signed by unknown authority"
    with pytest.raises(RetryableError, match="x509: certificate signed by unknown authority"):
        drivers({"syslog-address": server.address}).send([out(b"x")])
    SyslogDriver.probe(info_for({"syslog-address": server.address,
                                 "syslog-tls-ca-cert": certs.ca_cert}))


def test_skip_verify_accepts_any_server_certificate(receivers, drivers, certs):
    server = receivers("tls", "octet", certs)
    drivers({"syslog-address": server.address, "syslog-format": "rfc5424",
             "syslog-tls-skip-verify": "false"}).send([out(b"x")])
    assert server.wait_for(1)[0].endswith(b" - x\n")


# -- a real rsyslogd -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def rsyslog():
    why = rsyslog_missing()
    if why:
        pytest.skip(why)
    pytest.importorskip("trustme", reason="trustme makes the test certificates")
    with Rsyslog() as r:
        yield r


@pytest.fixture
def own_rsyslog():
    """A receiver of the test's own, for stopping and starting (without TLS: rsyslog's TLS
    listeners take seconds to start)."""
    why = rsyslog_missing(tls=False)
    if why:
        pytest.skip(why)
    with Rsyslog(tls=False) as r:
        yield r


def new_cid() -> str:
    return os.urandom(32).hex()


def stored(rsyslog: Rsyslog, cid: str, n: int) -> list:
    records = rsyslog.wait_for(n, app_name=cid[:12])
    assert len(records) == n, (records, rsyslog.errors())
    return records


@pytest.mark.e2e
def test_rsyslog_parses_each_format_sent_over_udp(utc, rsyslog, drivers):
    cid = new_cid()
    tag = cid[:12]
    for fmt in HEADERS:
        drivers({"syslog-address": rsyslog.udp_address, "syslog-format": fmt,
                 "syslog-facility": "local3"}, cid).send([out(fmt.encode() or b"unix")])
    records = stored(rsyslog, cid, 4)
    assert [r.raw for r in records] == [
        f"<158>Nov 14 22:13:20 {tag}[{PID}]: unix".encode(),
        f"<158>Nov 14 22:13:20 vm {tag}[{PID}]: rfc3164".encode(),
        f"<158>1 2023-11-14T22:13:20Z vm {tag} {PID} {tag} - rfc5424".encode(),
        f"<158>1 2023-11-14T22:13:20.123456Z vm {tag} {PID} {tag} - rfc5424micro".encode()]
    assert {(r.pri, r.app_name, r.procid) for r in records} == {(158, tag, str(PID))}
    assert [r.hostname for r in records[1:]] == ["vm"] * 3  # the unix format has none
    assert [r.msgid for r in records] == ["-", "-", tag, tag]
    assert [r.timestamp for r in records[2:]] == ["2023-11-14T22:13:20Z",
                                                  "2023-11-14T22:13:20.123456Z"]
    assert [r.msg for r in records] == [b" unix", b" rfc3164", b"rfc5424", b"rfc5424micro"]


@pytest.mark.e2e
def test_rsyslog_over_udp_stores_at_least_99_percent_of_a_20k_line_burst(rsyslog, drivers):
    """rsyslog's imudp with the default buffer lost half of such a burst sent unpaced."""
    cid = new_cid()
    driver = drivers({"syslog-address": rsyslog.udp_address, "syslog-format": "rfc5424"}, cid)
    for batch in burst(20_000):
        driver.send(batch)
    records = rsyslog.wait_for(20_000, timeout=20, app_name=cid[:12])
    assert len(records) >= 19_800, rsyslog.errors()


@pytest.mark.e2e
def test_rsyslog_over_tcp_stores_a_batch_in_order_with_every_byte(rsyslog, drivers):
    cid = new_cid()
    tricky = b"tab\t ctl\x01 cr\r bad\xff\xfe <&> " + "\u2028 é".encode()
    lines = [b"line %04d" % i for i in range(998)] + [tricky, b"x" * 16384]
    drivers({"syslog-address": rsyslog.tcp_address, "syslog-format": "rfc5424"}, cid).send(
        [err(line) if i % 2 else out(line) for i, line in enumerate(lines)])
    records = stored(rsyslog, cid, 1000)
    assert [r.msg for r in records] == lines
    assert [r.pri for r in records[:4]] == [30, 27, 30, 27]
    assert records[998].raw.endswith(b" - " + tricky)


@pytest.mark.e2e
def test_rsyslog_over_tls_reads_octet_counted_frames(rsyslog, drivers):
    cid = new_cid()
    driver = drivers({"syslog-address": rsyslog.tls_address, "syslog-format": "rfc5424micro",
                      "syslog-tls-ca-cert": rsyslog.certs.ca_cert}, cid)
    driver.send([out(b"first"), out(b"99 not a frame length"), err(b"third")])
    driver.send([out(b"next batch")])
    records = stored(rsyslog, cid, 4)
    assert [(r.input, r.pri, r.msg) for r in records] == [
        ("imtcp", 30, b"first"), ("imtcp", 30, b"99 not a frame length"),
        ("imtcp", 27, b"third"), ("imtcp", 30, b"next batch")]
    assert records[0].raw == \
        f"<30>1 2023-11-14T22:13:20.123456Z vm {cid[:12]} {PID} {cid[:12]} - first".encode()


@pytest.mark.e2e
def test_rsyslog_accepts_the_client_certificate(rsyslog, drivers):
    cid = new_cid()
    c = rsyslog.certs
    drivers({"syslog-address": rsyslog.tls_client_auth_address, "syslog-format": "rfc5424",
             "syslog-tls-ca-cert": c.ca_cert, "syslog-tls-cert": c.client_cert,
             "syslog-tls-key": c.client_key}, cid).send([out(b"authenticated")])
    assert [r.msg for r in stored(rsyslog, cid, 1)] == [b"authenticated"]


@pytest.mark.e2e
def test_rsyslog_dropping_a_client_without_certificate_is_retryable_not_silent(rsyslog, drivers):
    """rsyslog checks the client certificate after the TLS handshake and drops the
    connection: a batch written at once would be lost, so the driver must notice."""
    cid = new_cid()
    opts = {"syslog-address": rsyslog.tls_client_auth_address, "syslog-format": "rfc5424",
            "syslog-tls-ca-cert": rsyslog.certs.ca_cert}
    assert "closed the TLS connection after the handshake" in probe_error(opts)
    with pytest.raises(RetryableError, match="closed the TLS connection after the handshake"):
        drivers(opts, cid).send([out(b"never stored")])


@pytest.mark.e2e
def test_rsyslog_over_unixgram_reads_the_default_local_format(utc, rsyslog, drivers):
    cid = new_cid()
    drivers({"syslog-address": rsyslog.unixgram_address}, cid).send([out(b"local"), err(b"e")])
    records = stored(rsyslog, cid, 2)
    assert [(r.input, r.raw) for r in records] == [
        ("imuxsock", f"<30>Nov 14 22:13:20 {cid[:12]}[{PID}]: local".encode()),
        ("imuxsock", f"<27>Nov 14 22:13:20 {cid[:12]}[{PID}]: e".encode())]


@pytest.mark.e2e
def test_rsyslog_over_a_unix_stream_socket(rsyslog, drivers):
    cid = new_cid()
    drivers({"syslog-address": rsyslog.unix_address, "syslog-format": "rfc3164"}, cid).send(
        [out(b"a"), out(b"b")])
    assert [r.msg for r in stored(rsyslog, cid, 2)] == [b" a", b" b"]


@pytest.mark.e2e
def test_rsyslog_restarted_between_batches_gets_the_next_batch(own_rsyslog, drivers):
    cid = new_cid()
    driver = drivers({"syslog-address": own_rsyslog.tcp_address, "syslog-format": "rfc5424"},
                     cid)
    driver.send([out(b"before restart")])
    stored(own_rsyslog, cid, 1)
    own_rsyslog.stop()
    own_rsyslog.start()
    driver.send([out(b"after restart")])
    assert [r.msg for r in stored(own_rsyslog, cid, 2)] == [b"before restart", b"after restart"]


@pytest.mark.e2e
def test_rsyslog_down_is_retryable_and_the_retried_batch_is_stored_once(own_rsyslog, drivers):
    cid = new_cid()
    driver = drivers({"syslog-address": own_rsyslog.tcp_address, "syslog-format": "rfc5424"},
                     cid)
    own_rsyslog.stop()
    batch = [out(b"retried %d" % i) for i in range(3)]
    with pytest.raises(RetryableError, match="connection refused"):
        driver.send(batch)
    own_rsyslog.start()
    driver.send(batch)
    assert [r.msg for r in stored(own_rsyslog, cid, 3)] == [m.line for m in batch]
