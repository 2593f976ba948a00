"""The gelf driver against ``FakeGraylog`` (tests/receivers/gelf.py), which decodes the real
GELF wire format: the JSON byte for byte as Docker's Go encoder writes it, gzip/zlib/none,
UDP chunking and reassembly, TCP NUL framing, receivers going down and coming back, and
Docker's option errors.
"""

from __future__ import annotations

import collections
import gzip
import json
import random
import socket
import zlib

import pytest

from drivers.gelf import (CHUNK_DATA, CHUNK_SIZE, MAX_PAYLOAD, GelfDriver, _char_boundary,
                          chunk_payload)
from logpipe.driver import LogInfo
from logpipe.errors import LogOptError, LogpipeError, RetryableError
from logpipe.message import Message, PartialMeta
from receivers.gelf import FakeGraylog
from receivers.udp import PlainUDPReceiver

pytestmark = pytest.mark.integration

CID = "0123456789ab" + "c" * 52
IMAGE_ID = "sha256:" + "b" * 64
TS = 1795343786_721_999_999  # ms precision, truncated: 1795343786.721
FIXED = (b'"_command":"sh -c echo x","_container_id":"' + CID.encode() + b'",'
         b'"_container_name":"web-1","_created":"2026-01-02T03:04:05.123456789Z",'
         b'"_image_id":"' + IMAGE_ID.encode() + b'","_image_name":"bb:latest",'
         b'"_tag":"0123456789ab"}')
HEAD = b'{"version":"1.1","host":"gelf-host","short_message":"'


def info_for(address: str, container_env: tuple[str, ...] = (),
             container_labels: dict | None = None, **opts: str) -> LogInfo:
    """A container's info whose log opts are ``gelf-address`` and ``opts`` (``_`` -> ``-``)."""
    config = {"gelf-address": address, **{k.replace("_", "-"): v for k, v in opts.items()}}
    return LogInfo(container_id=CID, log_dir="/nonexistent", config=config,
                   container_name="/web-1", image_id=IMAGE_ID, image_name="bb:latest",
                   entrypoint="sh", args=("-c", "echo x"),
                   created="2026-01-02T03:04:05.123456789Z", env=container_env,
                   labels=container_labels or {},
                   hostname="gelf-host")


def msg(line: bytes, ts: int = TS, source: str = "stdout", partial=None) -> Message:
    return Message(line, source, ts, partial is None or partial.last, partial)


@pytest.fixture
def drivers():
    """Drivers made by a test, closed at teardown."""
    made: list[GelfDriver] = []

    def make(info: LogInfo) -> GelfDriver:
        GelfDriver.validate(dict(info.config), info)
        made.append(GelfDriver(info))
        return made[-1]

    yield make
    for d in made:
        d.close()


@pytest.fixture
def udp():
    with FakeGraylog("udp") as g:
        yield g
    assert not g.errors


@pytest.fixture
def tcp():
    with FakeGraylog("tcp") as g:
        yield g


# -- the JSON --------------------------------------------------------------------------------

TRICKY = (b'<a href="x">&</a> \\ \x00\x08\x0c\t\r\x1f\x7f|\xe2\x80\xa8\xe2\x80\xa9|'
          b'\xe2\x82(|\xff|\xed\xa0\x80|\xc3\xa9\xf0\x9f\x98\x80')
TRICKY_JSON = (b'\\u003ca href=\\"x\\"\\u003e\\u0026\\u003c/a\\u003e \\\\ '
               b'\\u0000\\u0008\\u000c\\t\\r\\u001f\x7f|\\u2028\\u2029|'
               b'\\ufffd\\ufffd(|\\ufffd|\\ufffd\\ufffd\\ufffd|\xc3\xa9\xf0\x9f\x98\x80')


def test_json_is_byte_for_byte_what_docker_sends_for_tricky_input(tcp, drivers):
    d = drivers(info_for(tcp.address))
    d.send([msg(TRICKY), msg(b"plain", ts=1795343786_480_000_000, source="stderr"),
            msg(b"whole second", ts=1795343786_000_999_999)])
    tcp.wait_for(3)
    assert tcp.documents == [
        HEAD + TRICKY_JSON + b'","timestamp":1795343786.721,"level":6,' + FIXED,
        HEAD + b'plain","timestamp":1795343786.48,"level":3,' + FIXED,
        HEAD + b'whole second","timestamp":1795343786,"level":6,' + FIXED,
    ]
    assert tcp.records[0]["short_message"].startswith('<a href="x">&</a> \\ \x00\x08\x0c\t\r')


def test_invalid_utf8_becomes_one_replacement_per_byte_as_in_go_not_per_sequence(tcp, drivers):
    # e2 82 is the start of a 3-byte character cut short: Go replaces each byte, Python's
    # errors="replace" would give a single U+FFFD for both.
    line = b"a\xe2\x82b\xf0\x9f\x98"
    assert line.decode("utf-8", "replace").count("\ufffd") == 2
    d = drivers(info_for(tcp.address))
    d.send([msg(line)])
    assert tcp.wait_for(1)[0]["short_message"] == "a\ufffd\ufffdb\ufffd\ufffd\ufffd"


def test_line_with_a_newline_inside_is_escaped_like_go(tcp, drivers):
    # capture never produces one (lines are split at "\n"), but the batch escaping must not
    # be misled by it
    d = drivers(info_for(tcp.address))
    d.send([msg(b"a\nb<"), msg(b"c")])
    tcp.wait_for(2)
    assert [doc[len(HEAD):doc.index(b'","timestamp"')] for doc in tcp.documents] == [
        b"a\\nb\\u003c", b"c"]


def test_long_line_pieces_are_separate_messages_and_empty_lines_are_not_sent(tcp, drivers):
    d = drivers(info_for(tcp.address))
    pid = "f" * 64
    assert d.send([msg(b""), msg(b"")]) is None  # nothing to send: nothing sent
    d.send([msg(b"x" * 16384, partial=PartialMeta(pid, 1, False)),
            msg(b"y" * 3616, partial=PartialMeta(pid, 2, True)),
            msg(b""), msg(b" ")])
    records = tcp.wait_for(3)
    assert [r["short_message"] for r in records] == ["x" * 16384, "y" * 3616, " "]
    assert tcp.connections == 1


def test_fields_sorted_bytewise_with_labels_env_and_tag(tcp, drivers):
    labels = {"com.example.team": "ops", "_private": "p", "container_id": "from-label"}
    d = drivers(info_for(tcp.address, container_env=("REGION=eu", "app=shop", "NOEQUALS"),
                         container_labels=labels,
                         labels="com.example.team,_private,container_id,missing",
                         env_regex="^(REG|app)", tag="{{.Name}}/{{.ImageName}}"))
    d.send([msg(b"hello")])
    tcp.wait_for(1)
    pairs = json.loads(tcp.documents[0], object_pairs_hook=lambda kv: kv)
    keys = [k for k, _ in pairs]
    assert keys[:5] == ["version", "host", "short_message", "timestamp", "level"]
    assert keys[5:] == ["_REGION", "_app", "_com.example.team", "_command", "_container_id",
                        "_container_name", "_created", "_image_id", "_image_name", "_private",
                        "_tag"]
    fields = dict(pairs)
    assert fields["_container_id"] == "from-label"  # extras win over the built-in fields
    assert fields["_tag"] == "web-1/bb:latest"
    assert (fields["_REGION"], fields["_app"], fields["_private"]) == ("eu", "shop", "p")


def test_batch_limits_overhead_is_the_size_of_a_record_besides_its_line(tcp, drivers):
    d = drivers(info_for(tcp.address))
    d.send([msg(b"abc")])
    tcp.wait_for(1)
    assert d.limits.overhead == len(tcp.documents[0]) + 1 - 3  # + the NUL


# -- UDP: compression and chunking -----------------------------------------------------------

@pytest.mark.parametrize("kind, level, magic", [
    (None, None, b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"),  # Docker's default: gzip, 1
    ("gzip", "9", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"),
    ("gzip", "-1", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"),
    ("zlib", None, b"\x78\x01"),
    ("zlib", "6", b"\x78\x9c"),
    ("none", None, HEAD),
])
def test_udp_payload_is_compressed_as_docker_frames_it(udp, drivers, kind, level, magic):
    opts = {}
    if kind:
        opts["gelf_compression_type"] = kind
    if level:
        opts["gelf_compression_level"] = level
    d = drivers(info_for(udp.address, **opts))
    d.send([msg(TRICKY)])
    udp.wait_for(1)
    (datagram,) = udp.datagrams
    assert datagram.startswith(magic)
    unpacked = {"gzip": gzip.decompress, "zlib": zlib.decompress}.get(kind or "gzip",
                                                                       lambda b: b)(datagram)
    assert unpacked == HEAD + TRICKY_JSON + b'","timestamp":1795343786.721,"level":6,' + FIXED


def test_message_compressing_past_1420_bytes_is_chunked(udp, drivers):
    rng = random.Random(7)
    line = bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(16384))
    d = drivers(info_for(udp.address))
    d.send([msg(line), msg(b"small")])
    records = udp.wait_for(2)
    assert [r["short_message"] for r in records] == [line.decode(), "small"]
    *chunks, small = udp.datagrams
    payload = b"".join(c[12:] for c in chunks)
    assert gzip.decompress(payload) == udp.documents[0]
    assert len(chunks) == -(-len(payload) // CHUNK_DATA) > 5
    assert {len(c) for c in chunks[:-1]} == {CHUNK_SIZE} and len(chunks[-1]) <= CHUNK_SIZE
    assert all(c[:2] == b"\x1e\x0f" and c[2:10] == chunks[0][2:10] for c in chunks)
    assert [(c[10], c[11]) for c in chunks] == [(i, len(chunks)) for i in range(len(chunks))]
    assert small.startswith(b"\x1f\x8b")  # a message that fits is never chunked


def test_chunk_count_is_rounded_up_without_the_empty_chunk_go_gelf_adds():
    # go-gelf counts len // 1408 + 1 chunks: 3 for 2816 bytes, the last one empty
    chunks = chunk_payload(b"z" * (2 * CHUNK_DATA), b"12345678")
    assert [len(c) for c in chunks] == [CHUNK_SIZE, CHUNK_SIZE]
    assert [c[:12] for c in chunks] == [b"\x1e\x0f12345678\x00\x02", b"\x1e\x0f12345678\x01\x02"]


def test_receiver_reassembles_chunks_of_interleaved_messages_in_any_order(udp):
    docs = [json.dumps({"version": "1.1", "host": "h", "short_message": f"m{i}" + "x" * 5000})
            .encode() for i in range(2)]
    datagrams = chunk_payload(docs[0], b"AAAAAAAA") + chunk_payload(gzip.compress(docs[1]),
                                                                    b"BBBBBBBB")
    random.Random(3).shuffle(datagrams)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for datagram in datagrams:
            s.sendto(datagram, ("127.0.0.1", udp.port))
    records = udp.wait_for(2)
    assert sorted(r["short_message"][:2] for r in records) == ["m0", "m1"]


def test_message_too_large_for_128_chunks_is_split_not_dropped(udp, drivers):
    # 170 kB of env in every message, uncompressed, leaves too little room for a 16 KiB
    # line of mostly "<" (each 6 bytes once escaped): Docker drops it ("msg too large").
    # Pieces are cut between characters: no "é" becomes two replacement characters.
    line = "<<<é".encode() * 3276
    d = drivers(info_for(udp.address, container_env=("BIG=" + "v" * 170_000,), env="BIG",
                         gelf_compression_type="none"))
    assert d.send([msg(line), msg(b"end")]) is None
    *pieces, end = udp.wait_until(lambda records: records[-1:] and
                                  records[-1]["short_message"] == "end")
    assert len(pieces) >= 2 and "".join(r["short_message"] for r in pieces) == line.decode()
    assert all(len(doc) <= MAX_PAYLOAD for doc in udp.documents)
    assert all(r["_BIG"] == "v" * 170_000 for r in pieces)
    assert not any("\ufffd" in r["short_message"] for r in pieces)


def test_split_points_fall_between_utf8_characters():
    line = "é😀".encode()  # c3 a9 | f0 9f 98 80
    assert [_char_boundary(line, cut) for cut in range(1, 6)] == [2, 2, 2, 2, 2]
    assert _char_boundary(b"ab", 1) == 1 and _char_boundary("é".encode(), 1) == 1


def test_message_that_cannot_fit_even_empty_is_counted_as_rejected(udp, drivers):
    d = drivers(info_for(udp.address, container_env=("BIG=" + "v" * MAX_PAYLOAD,), env="BIG",
                         gelf_compression_type="none"))
    assert d.send([msg(b"a"), msg(b"b")]) == 2
    drivers(info_for(udp.address)).send([msg(b"marker")])
    assert [r["short_message"] for r in udp.wait_for(1)] == ["marker"]
    assert len(udp.datagrams) == 1


def test_udp_receiver_down_raises_retryable_then_delivers_after_restart(udp, drivers):
    d = drivers(info_for(udp.address))
    d.send([msg(b"before")])
    udp.wait_for(1)
    udp.stop()
    refused = (r"^gelf: cannot send GELF message: write udp 127\.0\.0\.1:\d+->"
               rf"127\.0\.0\.1:{udp.port}: write: connection refused$")
    with pytest.raises(RetryableError, match=refused):
        for _ in range(3):  # the kernel reports the unreachable port on a later send
            d.send([msg(b"lost?"), msg(b"lost?")])
    udp.start()
    d.send([msg(b"after")])
    assert udp.wait_for(2)[-1]["short_message"] == "after"


# -- UDP pacing (logpipe's own: gelf-udp-rate) ----------------------------------------------

def lines(n: int, size: int = 100) -> list[Message]:
    pad = b"x" * (size - 9)
    return [msg(b"%08d " % i + pad) for i in range(n)]


def test_udp_burst_into_a_plain_receiver_with_default_buffers_loses_at_most_1_percent(drivers):
    """Uncompressed, the driver sends faster than a Python receiver reads (unpaced, ~30 % of
    100 k lines are lost in a default 208 KiB buffer): the pacer waits for room in it."""
    with PlainUDPReceiver(keep=False) as rx:
        d = drivers(info_for(rx.address, gelf_compression_type="none"))
        records = lines(100_000)
        for start in range(0, len(records), 2000):  # the driver's max_count
            d.send(records[start:start + 2000])
        assert rx.wait_for(100_000) >= 99_000


def test_udp_receiver_that_stops_reading_is_retryable_and_the_retry_resends_no_chunk(
        drivers, monkeypatch):
    """The retry of the same batch sends the rest of the datagrams made the first time: a
    message cut by the stall is completed under its own chunk id, none is sent twice."""
    monkeypatch.setattr(GelfDriver, "udp_patience", 0.3)
    with PlainUDPReceiver() as rx:
        d = drivers(info_for(rx.address, gelf_compression_type="none"))
        batch = lines(500, size=2000)  # two chunks each
        rx.pause()
        with pytest.raises(RetryableError, match="the receiver read nothing for 0.3s"):
            d.send(batch)
        rx.resume()
        d.send(batch)
        assert rx.wait_for(1000) == 1000
    chunks = collections.defaultdict(set)
    for datagram in rx.distinct:
        assert datagram[:2] == b"\x1e\x0f"
        chunks[datagram[2:10]].add((datagram[10], datagram[11]))
    assert len(chunks) == 500
    assert all(seen == {(0, 2), (1, 2)} for seen in chunks.values())


def test_udp_rate_zero_sends_unpaced(drivers):
    with PlainUDPReceiver() as rx:
        d = drivers(info_for(rx.address, gelf_udp_rate="0"))
        d.send([msg(b"unpaced")])
        assert rx.wait_for(1) == 1


# -- TCP -------------------------------------------------------------------------------------

def test_tcp_is_uncompressed_json_each_ended_by_nul_in_one_connection():
    with socket.create_server(("127.0.0.1", 0)) as server:
        d = GelfDriver(info_for(f"tcp://127.0.0.1:{server.getsockname()[1]}"))
        try:
            d.send([msg(b"one"), msg(b"two", source="stderr")])
            d.send([msg(b"three")])
        finally:
            d.close()
        conn, _ = server.accept()
        with conn:
            stream = b"".join(iter(lambda: conn.recv(65536), b""))
    stamp = b'","timestamp":1795343786.721,"level":'
    assert stream == (HEAD + b"one" + stamp + b"6," + FIXED + b"\0" +
                      HEAD + b"two" + stamp + b"3," + FIXED + b"\0" +
                      HEAD + b"three" + stamp + b"6," + FIXED + b"\0")


def test_tcp_receiver_down_raises_retryable_then_same_batch_is_delivered(tcp, drivers):
    d = drivers(info_for(tcp.address))
    tcp.stop()
    batch = [msg(b"kept %d" % i) for i in range(100)]
    with pytest.raises(RetryableError, match=r"^gelf: cannot send GELF message: dial tcp "
                       rf"127\.0\.0\.1:{tcp.port}: connect: connection refused$"):
        d.send(batch)
    tcp.start()
    d.send(batch)
    assert [r["short_message"] for r in tcp.wait_for(100)] == [f"kept {i}" for i in range(100)]
    assert not tcp.errors


def test_tcp_receiver_restart_between_batches_loses_nothing(tcp, drivers):
    d = drivers(info_for(tcp.address))
    d.send([msg(b"first")])
    tcp.wait_for(1)
    tcp.restart()  # the kept connection is now closed by the peer
    d.send([msg(b"second")])
    assert [r["short_message"] for r in tcp.wait_for(2)] == ["first", "second"]
    assert tcp.connections == 2 and not tcp.errors


def test_tcp_slow_receiver_still_gets_everything(drivers):
    with FakeGraylog("tcp", read_delay=0.002) as slow:
        d = drivers(info_for(slow.address))
        for i in range(10):
            d.send([msg(b"%d-%d" % (i, j) + b"." * 1000) for j in range(1000)])
        assert len(slow.wait_for(10_000, timeout=20)) == 10_000


def test_tcp_receiver_that_stops_reading_fails_the_write_then_the_retry_delivers(tcp, drivers):
    d = drivers(info_for(tcp.address))
    d._tcp.write_timeout = 0.3
    batch = [msg(b"%d" % i + b"." * 4000) for i in range(5000)]  # 20 MB: more than buffers
    tcp.pause()
    with pytest.raises(RetryableError, match=r"^gelf: cannot send GELF message: write tcp "
                       r".*: i/o timeout$"):
        d.send(batch)
    tcp.resume()
    d._tcp.write_timeout = 30
    d.send(batch)
    lines = {m.line.decode() for m in batch}
    records = tcp.wait_until(lambda rs: len({r["short_message"] for r in rs}) == len(lines))
    # what the first attempt had written arrives twice; the frame it cut is dropped
    seen = collections.Counter(r["short_message"] for r in records)
    assert set(seen) == lines and max(seen.values()) <= 2
    assert len(tcp.errors) <= 1 and all("inside a frame" in e for e in tcp.errors)


def test_retry_settings_are_docker_reconnect_options(drivers):
    d = drivers(info_for("tcp://127.0.0.1:1", gelf_tcp_max_reconnect="5",
                         gelf_tcp_reconnect_delay="2"))
    assert (d.max_retries, d.retry_wait) == (5, 2.0)
    d = drivers(info_for("tcp://127.0.0.1:1"))  # constructing never dials
    assert (d.max_retries, d.retry_wait) == (None, 1.0)  # unset: retried until delivered


def test_probe_tcp_fails_with_dockers_text_and_udp_never_does(tcp):
    with pytest.raises(LogpipeError) as err:
        GelfDriver.probe(info_for("tcp://127.0.0.1:1"))
    assert str(err.value) == ("gelf: cannot connect to GELF endpoint: 127.0.0.1:1 "
                              "dial tcp 127.0.0.1:1: connect: connection refused")
    GelfDriver.probe(info_for(tcp.address))
    GelfDriver.probe(info_for("udp://127.0.0.1:1"))
    GelfDriver.probe(info_for("udp://no-such-host.invalid:12201"))


# -- options ---------------------------------------------------------------------------------

@pytest.mark.parametrize("opts, error", [
    ({}, "gelf-address is a required parameter"),
    ({"gelf-address": ""}, "gelf-address is a required parameter"),
    ({"gelf-address": "graylog:12201"},
     "gelf-address should be in form proto://address, got graylog:12201"),
    ({"gelf-address": "http://graylog:12201"},
     "gelf-address should be in form proto://address, got http://graylog:12201"),
    ({"gelf-address": "unix:///run/gelf.sock"}, "gelf: endpoint needs to be TCP or UDP"),
    ({"gelf-address": "tcp+tls://graylog:12201"}, "gelf: endpoint needs to be TCP or UDP"),
    ({"gelf-address": "udp://graylog"}, "gelf: please provide gelf-address as proto://host:port"),
    ({"gelf-address": "udp://::1:12201"},
     "gelf: please provide gelf-address as proto://host:port"),
    ({"gelf-address": "udp://graylog:x"},
     'parse "udp://graylog:x": invalid port ":x" after host'),
    ({"gelf-address": "udp://[::1"}, "parse \"udp://[::1\": missing ']' in host"),
    ({"gelf-address": "udp://graylog:12201", "foo": "1"},
     'unknown log opt "foo" for gelf log driver'),
    ({"gelf-address": "udp://graylog:12201", "max-size": "1m"},
     'unknown log opt "max-size" for gelf log driver'),
    ({"gelf-address": "tcp://graylog:12201", "gelf-compression-type": "gzip"},
     "compression is only supported on UDP"),
    ({"gelf-address": "tcp://graylog:12201", "gelf-compression-level": "1"},
     "compression is only supported on UDP"),
    ({"gelf-address": "udp://graylog:12201", "gelf-compression-type": "lz4"},
     'unknown value "lz4" for log opt "gelf-compression-type" for gelf log driver'),
    ({"gelf-address": "udp://graylog:12201", "gelf-compression-level": "10"},
     'unknown value "10" for log opt "gelf-compression-level" for gelf log driver'),
    ({"gelf-address": "udp://graylog:12201", "gelf-compression-level": "-2"},
     'unknown value "-2" for log opt "gelf-compression-level" for gelf log driver'),
    ({"gelf-address": "udp://graylog:12201", "gelf-compression-level": "fast"},
     'unknown value "fast" for log opt "gelf-compression-level" for gelf log driver'),
    ({"gelf-address": "udp://graylog:12201", "gelf-tcp-max-reconnect": "3"},
     '"gelf-tcp-max-reconnect" is only valid for TCP'),
    ({"gelf-address": "udp://graylog:12201", "gelf-tcp-reconnect-delay": "1"},
     '"gelf-tcp-reconnect-delay" is only valid for TCP'),
    ({"gelf-address": "tcp://graylog:12201", "gelf-tcp-max-reconnect": "-1"},
     '"gelf-tcp-max-reconnect" must be a positive integer'),
    ({"gelf-address": "tcp://graylog:12201", "gelf-tcp-reconnect-delay": "1s"},
     '"gelf-tcp-reconnect-delay" must be a positive integer'),
    ({"gelf-address": "udp://graylog:12201", "tag": "{{.Foo}}"},
     'template: log-tag:1:2: executing "log-tag" at <.Foo>: '
     "can't evaluate field Foo in type *logger.Info"),
    ({"gelf-address": "udp://graylog:12201", "labels-regex": "["},
     "error parsing regexp: missing closing ]: `[`"),
    ({"gelf-address": "tcp://graylog:12201", "gelf-udp-rate": "1000"},
     '"gelf-udp-rate" is only valid for UDP'),
    ({"gelf-address": "udp://graylog:12201", "gelf-udp-rate": "1e5"},
     "invalid value '1e5' for log opt 'gelf-udp-rate': expected datagrams per second, an "
     "integer from 0 (no pacing) to 1000000000"),
])
def test_invalid_options_are_refused_with_dockers_text(opts, error):
    with pytest.raises(LogOptError) as err:
        GelfDriver.validate(opts)
    assert str(err.value) == error
    if opts.get("gelf-address"):
        with pytest.raises(LogOptError):
            GelfDriver.validate(opts, info_for(opts["gelf-address"]))


def test_port_docker_would_accept_but_cannot_dial_is_refused_at_create():
    for address in ("udp://graylog:", "udp://graylog:0", "tcp://graylog:70000"):
        with pytest.raises(LogOptError, match="please provide|must be in 1..65535"):
            GelfDriver.validate({"gelf-address": address})


@pytest.mark.parametrize("opts", [
    {"gelf-address": "udp://graylog:12201"},
    {"gelf-address": "udp://user@[::1]:12201/path", "gelf-compression-type": "none",
     "gelf-compression-level": "-1", "gelf-udp-rate": "50000"},
    {"gelf-address": "tcp://10.0.0.1:12201", "gelf-tcp-max-reconnect": "0",
     "gelf-tcp-reconnect-delay": "+5", "tag": "{{.ID}}", "labels": "a", "env": "B",
     "labels-regex": "^x", "env-regex": "y$"},
])
def test_valid_options_are_accepted(opts):
    GelfDriver.validate(opts)
    GelfDriver.validate(opts, info_for(opts["gelf-address"]))
