"""The fluentd driver: Docker's records and options, sent as Forward PackedForward batches.

The receiver is ``FakeFluentd`` (tests/receivers/fluentd.py), standing in for Fluentd's
``in_forward``: Fluentd is a Ruby gem, and neither it nor Fluent Bit is packaged in Debian 12
or on PyPI. Its decoding is itself checked against frames written by hand and by the
fluent-logger client library.
"""

from __future__ import annotations

import base64
import gzip
import socket
import struct
import threading

import msgpack
import pytest

from drivers.fluentd import Address, FluentdDriver, parse_address
from logpipe.driver import LogInfo
from logpipe.errors import LogOptError, LogpipeError, RetryableError
from logpipe.message import Message, PartialMeta
from receivers.fluentd import EventTime, FakeFluentd

pytestmark = pytest.mark.integration

CID = "565eb619b2ca" + "0123456789abcdef" * 3 + "0123"
TS = 1_000_000_000_250_000_000  # 2001-09-09: log time, far from any send time
SEC = TS // 10**9


@pytest.fixture
def fluentd():
    with FakeFluentd(keep_raw=True) as receiver:
        yield receiver
        assert receiver.errors == []


@pytest.fixture
def make_driver(tmp_path):
    drivers: list[FluentdDriver] = []

    def make(receiver: FakeFluentd | None = None, container_labels=None, container_env=(),
             **opts: str):
        config = dict(opts)
        if receiver is not None:
            config.setdefault("fluentd-address", receiver.address)
        info = LogInfo(CID, str(tmp_path), config, "/web1", labels=container_labels or {},
                       env=container_env)
        driver = FluentdDriver(info)
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.close()


def lines(*texts: bytes, source: str = "stdout", ts: int = TS) -> list[Message]:
    return [Message(t, source, ts) for t in texts]


# -- the bytes on the wire ---------------------------------------------------------------------

def test_packed_forward_frame_is_byte_exact(fluentd, make_driver):
    make_driver(fluentd).send([Message(b"hello", "stdout", TS),
                               Message(b"", "stderr", TS + 10**9)])
    frame = fluentd.wait_for_frames(1)[0]

    def record(source: bytes, log: bytes) -> bytes:
        return (b"\x84" + b"\xaccontainer_id" + b"\xd9\x40" + CID.encode()
                + b"\xaecontainer_name" + b"\xa5/web1"
                + b"\xa6source" + bytes((0xA0 | len(source),)) + source
                + b"\xa3log" + bytes((0xA0 | len(log),)) + log)

    entries = (b"\x92" + b"\xd2" + SEC.to_bytes(4, "big") + record(b"stdout", b"hello")
               + b"\x92" + b"\xd2" + (SEC + 1).to_bytes(4, "big") + record(b"stderr", b""))
    assert 256 <= len(entries) < 65536  # so bin 16 is the right header
    assert frame.raw == (b"\x93" + b"\xac565eb619b2ca"
                         + b"\xc5" + len(entries).to_bytes(2, "big") + entries
                         + b"\x81\xa4size\x02")
    assert frame.mode == "PackedForward"


def test_invalid_utf8_and_nul_travel_as_msgpack_str_with_dockers_headers(fluentd, make_driver):
    odd, str8, str16 = b"a\xff\x00b\xc3", b"x" * 40, b"y" * 300
    make_driver(fluentd).send(lines(odd, str8, str16))
    raw = fluentd.wait_for_frames(1)[0].raw
    assert b"\xa3log\xa5a\xff\x00b\xc3" in raw  # fixstr, bytes untouched
    assert b"\xa3log\xd9\x28" + str8 in raw  # str8, as Go's msgp writes it
    assert b"\xa3log\xda\x01\x2c" + str16 in raw  # str16
    logs = [e.record["log"] for e in fluentd.wait_for(3)]
    assert all(isinstance(v, str) for v in logs)  # str, never bin
    assert [v.encode("utf-8", "surrogateescape") for v in logs] == [odd, str8, str16]


def test_time_is_the_records_log_time_in_whole_seconds(fluentd, make_driver):
    make_driver(fluentd).send(lines(b"a") + lines(b"b", ts=TS + 1_999_999_999))
    assert [e.time for e in fluentd.wait_for(2)] == [SEC, SEC + 2]


def test_sub_second_precision_sends_event_time_ext_0(fluentd, make_driver):
    from fluent.sender import EventTime as LibraryEventTime

    make_driver(fluentd, **{"fluentd-sub-second-precision": "true"}).send(
        lines(b"a", ts=TS + 123))
    raw = fluentd.wait_for_frames(1)[0].raw
    packed = b"\xd7\x00" + struct.pack(">II", SEC, 250_000_123)  # fixext 8, type 0
    assert msgpack.packb(LibraryEventTime.from_unix_nano(TS + 123)) == packed
    assert b"\x92" + packed + b"\x84" in raw
    event = fluentd.wait_for(1)[0]
    assert event.time == EventTime(SEC, 250_000_123) and event.time.ns == TS + 123


def test_partial_pieces_all_say_partial_message_true_with_id_ordinal_and_last(
        fluentd, make_driver):
    pid = "ab" * 32
    pieces = [Message(b"x" * 16384, "stdout", TS, False, PartialMeta(pid, 1, False)),
              Message(b"y" * 16384, "stdout", TS, False, PartialMeta(pid, 2, False)),
              Message(b"z", "stdout", TS, True, PartialMeta(pid, 3, True))]
    make_driver(fluentd).send(pieces + lines(b"whole"))
    records = [e.record for e in fluentd.wait_for(4)]
    for n, (record, piece) in enumerate(zip(records, pieces), 1):
        assert record["log"].encode() == piece.line
        assert {k: v for k, v in record.items() if k.startswith("partial_")} == {
            "partial_message": "true", "partial_id": pid, "partial_ordinal": str(n),
            "partial_last": "true" if n == 3 else "false"}
    assert not any(k.startswith("partial_") for k in records[3])


def test_extras_follow_the_builtin_keys_and_a_label_named_log_overwrites_the_line(
        fluentd, make_driver):
    driver = make_driver(fluentd, container_labels={"app": "web", "log": "from-label"},
                         container_env=("REGION=eu", "OTHER=1"), labels="app,log",
                         env="REGION")
    driver.send(lines(b"the line"))
    record = fluentd.wait_for(1)[0].record
    assert list(record) == ["container_id", "container_name", "source", "log", "app",
                            "REGION"]
    assert record["log"] == "from-label" and record["app"] == "web"
    assert record["REGION"] == "eu" and record["container_name"] == "/web1"


def test_default_tag_is_the_short_id_and_tag_is_a_template(fluentd, make_driver):
    make_driver(fluentd).send(lines(b"a"))
    fluentd.wait_for(1)  # two connections: keep the order
    make_driver(fluentd, tag="docker.{{.Name}}.{{.ID}}").send(lines(b"b"))
    assert [e.tag for e in fluentd.wait_for(2)] == ["565eb619b2ca",
                                                    "docker.web1.565eb619b2ca"]


def test_option_map_holds_size_and_with_ack_a_fresh_random_chunk_id(fluentd, make_driver):
    make_driver(fluentd).send(lines(b"a", b"b", b"c"))
    fluentd.wait_for_frames(1)
    acked = make_driver(fluentd, **{"fluentd-request-ack": "true"})
    acked.send(lines(b"d"))
    acked.send(lines(b"e"))
    options = [f.option for f in fluentd.wait_for_frames(3)]
    assert options[0] == {"size": 3}
    assert [set(o) for o in options[1:]] == [{"size", "chunk"}] * 2
    chunks = [o["chunk"] for o in options[1:]]
    assert [len(base64.b64decode(c, validate=True)) for c in chunks] == [16, 16]
    assert chunks[0] != chunks[1]


# -- the receiver decodes every Forward mode -------------------------------------------------

def _client(receiver: FakeFluentd) -> socket.socket:
    return socket.create_connection(("127.0.0.1", receiver.port), timeout=5)


def test_receiver_decodes_message_mode_from_the_fluent_logger_library(fluentd):
    from fluent.sender import FluentSender

    sender = FluentSender("app", host="127.0.0.1", port=fluentd.port)
    precise = FluentSender("app", host="127.0.0.1", port=fluentd.port,
                           nanosecond_precision=True)
    try:
        assert sender.emit_with_time("web", 1234, {"msg": "one"})
        assert precise.emit_with_time("web", 1234.5, {"msg": "two"})
    finally:
        sender.close()
        precise.close()
    events = sorted(fluentd.wait_for(2), key=lambda e: e.record["msg"])  # two connections
    assert [(e.tag, e.time, e.record, e.mode) for e in events] == [
        ("app.web", 1234, {"msg": "one"}, "Message"),
        ("app.web", EventTime(1234, 500_000_000), {"msg": "two"}, "Message")]


def test_receiver_decodes_forward_packed_and_gzip_compressed_modes_and_acks(fluentd):
    entry = [msgpack.packb([t, {"n": str(t)}]) for t in range(1, 6)]
    frames = [
        msgpack.packb(["fwd", [[1, {"n": "1"}], [2, {"n": "2"}]], {}]),
        # PackedForward whose entries are a str, as clients of the old msgpack spec send it
        msgpack.packb(["old", b"".join(entry[:2]), {}], use_bin_type=False),
        msgpack.packb(["gz", gzip.compress(b"".join(entry[:2])) + gzip.compress(entry[2]),
                       {"compressed": "gzip", "size": 3, "chunk": "c1"}]),
        msgpack.packb(["msg", 7, {"n": "7"}, {"chunk": "c2"}]),
    ]
    assert 0xA0 <= frames[1][5] <= 0xBF  # the entries really are a (fix)str, not a bin
    with _client(fluentd) as conn:
        conn.sendall(b"".join(frames))
        unpacker = msgpack.Unpacker(raw=False)
        acks: list = []
        while len(acks) < 2:
            unpacker.feed(conn.recv(4096))
            acks.extend(unpacker)
    assert acks == [{"ack": "c1"}, {"ack": "c2"}]
    events = fluentd.wait_for(8)
    assert [(e.mode, e.tag, e.time) for e in events] == (
        [("Forward", "fwd", 1), ("Forward", "fwd", 2)]
        + [("PackedForward", "old", t) for t in (1, 2)]
        + [("CompressedPackedForward", "gz", t) for t in (1, 2, 3)]
        + [("Message", "msg", 7)])
    assert all(e.record == {"n": str(e.time)} for e in events)


def test_receiver_reports_a_frame_that_is_not_forward():
    with FakeFluentd() as receiver:
        with _client(receiver) as conn:
            conn.sendall(msgpack.packb({"not": "forward"}))
            conn.settimeout(5)
            assert conn.recv(10) == b""  # the receiver hangs up, as in_forward does
        assert receiver.events == [] and "not a Forward message" in receiver.errors[0]


# -- delivery ------------------------------------------------------------------------------

def test_with_ack_send_returns_only_after_the_receiver_recorded_the_batch(fluentd, make_driver):
    make_driver(fluentd, **{"fluentd-request-ack": "true"}).send(lines(b"a", b"b"))
    # No waiting: the receiver records a frame before it acks it.
    assert [e.record["log"] for e in fluentd.events] == ["a", "b"]


def test_connection_dropped_before_ack_is_retried_and_the_batch_arrives_once(
        fluentd, make_driver):
    driver = make_driver(fluentd, **{"fluentd-request-ack": "true"})
    batch = lines(b"one", b"two", b"three")
    fluentd.drop_before_ack(1)
    with pytest.raises(RetryableError, match="connection closed before the ack"):
        driver.send(batch)
    assert fluentd.events == []
    driver.send(batch)  # what the shipper does after a RetryableError
    assert [e.record["log"] for e in fluentd.wait_for(3)] == ["one", "two", "three"]
    assert fluentd.connections == 2


def test_a_wrong_ack_is_retryable_and_drops_the_connection(make_driver):
    with FakeFluentd(ack_mode="bad") as receiver:
        driver = make_driver(receiver, **{"fluentd-request-ack": "true"})
        with pytest.raises(RetryableError, match="expected ack for chunk"):
            driver.send(lines(b"a"))
        receiver.ack_mode = "ack"
        driver.send(lines(b"a"))
        assert receiver.connections == 2
        assert len(receiver.wait_for(2)) == 2  # at-least-once: the first copy had arrived


def test_a_missing_ack_times_out_as_retryable(make_driver):
    with FakeFluentd(ack_mode="none") as receiver:
        driver = make_driver(receiver, **{"fluentd-request-ack": "true"})
        driver.io_timeout = 0.3
        with pytest.raises(RetryableError, match=r"no ack for chunk .* within 0.3s"):
            driver.send(lines(b"a"))


def test_a_receiver_that_stops_reading_fails_the_write_after_the_stall_timeout(make_driver):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # never accepts, never reads
        driver = make_driver(**{"fluentd-address": "127.0.0.1:%d" % silent.getsockname()[1]})
        driver.io_timeout = 0.3
        with pytest.raises(RetryableError, match=r"^write tcp 127\.0\.0\.1:\d+: i/o timeout$"):
            driver.send(lines(*[b"x" * 16384] * 2000))  # 32 MiB: more than socket buffers


def test_receiver_down_is_retryable_in_gos_words_then_up_delivers(make_driver):
    receiver = FakeFluentd().start()
    receiver.stop()  # a port that was free a moment ago, now refused
    try:
        driver = make_driver(receiver)
        with pytest.raises(RetryableError) as err:
            driver.send(lines(b"a"))
        assert str(err.value) == (f"dial tcp 127.0.0.1:{receiver.port}: "
                                  "connect: connection refused")
        receiver.start()
        driver.send(lines(b"a"))
        assert [e.record["log"] for e in receiver.wait_for(1)] == ["a"]
    finally:
        receiver.stop()


@pytest.mark.parametrize("ack", ["false", "true"])
def test_receiver_restart_between_batches_loses_nothing(fluentd, make_driver, ack):
    driver = make_driver(fluentd, **{"fluentd-request-ack": ack})
    driver.send(lines(b"before"))
    fluentd.wait_for(1)
    fluentd.restart()
    driver.send(lines(b"after"))  # the dead connection is noticed, not written into
    assert [e.record["log"] for e in fluentd.wait_for(2)] == ["before", "after"]
    assert fluentd.connections == 2


def test_one_connection_is_kept_across_batches(fluentd, make_driver):
    driver = make_driver(fluentd, **{"fluentd-request-ack": "true"})
    for n in range(5):
        driver.send(lines(str(n).encode()))
    assert len(fluentd.wait_for(5)) == 5 and fluentd.connections == 1


def test_unix_socket_transport(tmp_path, make_driver):
    with FakeFluentd(unix_path=str(tmp_path / "fluent.sock")) as receiver:
        driver = make_driver(receiver, **{"fluentd-request-ack": "true"})
        assert driver.address == Address("unix", path=str(tmp_path / "fluent.sock"))
        driver.send(lines(b"over unix"))
        assert receiver.wait_for(1)[0].record["log"] == "over unix"
        receiver.restart()
        driver.send(lines(b"again"))
        assert len(receiver.wait_for(2)) == 2


def test_concurrent_sends_never_read_each_others_acks(fluentd, make_driver):
    driver = make_driver(fluentd, **{"fluentd-request-ack": "true"})
    failures: list[BaseException] = []

    def writer(source: str) -> None:
        try:
            for n in range(20):
                driver.send(lines(b"%d" % n, source=source))
        except BaseException as err:  # reported below
            failures.append(err)

    threads = [threading.Thread(target=writer, args=(s,)) for s in ("stdout", "stderr")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    events = fluentd.wait_for(40)
    for source in ("stdout", "stderr"):
        assert [e.record["log"] for e in events if e.record["source"] == source] == [
            str(n) for n in range(20)]
    assert fluentd.connections == 1


def test_a_slow_receiver_holds_send_back_until_it_has_taken_the_batch(make_driver):
    with FakeFluentd(rate=20_000) as receiver:
        driver = make_driver(receiver, **{"fluentd-request-ack": "true"})
        batch = lines(*[b"%05d" % n for n in range(2000)])
        driver.send(batch)
        assert len(receiver.events) == 2000


# -- start-time probe ------------------------------------------------------------------------

def _info(tmp_path, **opts: str) -> LogInfo:
    return LogInfo(CID, str(tmp_path), opts, "/web1")


def test_probe_refuses_an_unreachable_receiver_in_sync_mode_with_dockers_text(tmp_path):
    receiver = FakeFluentd().start()
    receiver.stop()
    with pytest.raises(LogpipeError) as err:
        FluentdDriver.probe(_info(tmp_path, **{"fluentd-address": receiver.address}))
    assert str(err.value) == (f"dial tcp 127.0.0.1:{receiver.port}: "
                              "connect: connection refused")
    path = tmp_path / "missing.sock"
    with pytest.raises(LogpipeError, match=f"^dial unix {path}: connect: no such file or "
                                           "directory$"):
        FluentdDriver.probe(_info(tmp_path, **{"fluentd-address": f"unix://{path}"}))


@pytest.mark.parametrize("key", ["fluentd-async", "fluentd-async-connect"])
def test_probe_does_not_dial_in_async_mode(tmp_path, key):
    receiver = FakeFluentd().start()
    receiver.stop()
    FluentdDriver.probe(_info(tmp_path, **{"fluentd-address": receiver.address, key: "true"}))


def test_probe_passes_when_the_receiver_listens(tmp_path, fluentd):
    FluentdDriver.probe(_info(tmp_path, **{"fluentd-address": fluentd.address}))


# -- options ---------------------------------------------------------------------------------

@pytest.mark.parametrize("opts,message", [
    ({"foo": "1"}, "unknown log opt 'foo' for fluentd log driver"),
    ({"fluentd-address": "127.0.0.1:abc"},
     'invalid fluentd-address 127.0.0.1:abc: strconv.Atoi: parsing "abc": invalid syntax'),
    ({"fluentd-address": "foo://fluent:24224"},
     "invalid fluentd-address foo://fluent:24224: address foo://fluent:24224: "
     "too many colons in address"),
    ({"fluentd-address": "tcp://fluent:abc"},
     'invalid fluentd-address tcp://fluent:abc: parse "tcp://fluent:abc": '
     'invalid port ":abc" after host'),
    ({"fluentd-address": "tcp://[::1"},
     "invalid fluentd-address tcp://[::1: parse \"tcp://[::1\": missing ']' in host"),
    ({"fluentd-address": "[::1:24224"},
     "invalid fluentd-address [::1:24224: address [::1:24224: missing ']' in address"),
    ({"fluentd-address": "[::1]x:1"},
     "invalid fluentd-address [::1]x:1: address [::1]x:1: missing port in address"),
    ({"fluentd-address": "fluent:"},
     'invalid fluentd-address fluent:: strconv.Atoi: parsing "": invalid syntax'),
    ({"fluentd-address": "fluent:70000"},
     "dial tcp: address 70000: invalid port"),
    ({"fluentd-address": "udp://fluent:24224"},
     "invalid fluentd-address udp://fluent:24224: logpipe sends to fluentd over tcp:// or "
     "unix:// only, not udp://"),
    ({"fluentd-address": "unix://"},
     "invalid fluentd-address unix://: no socket path (write unix:///absolute/path)"),
    ({"fluentd-buffer-limit": "abc"}, "invalid size: 'abc'"),
    ({"fluentd-buffer-limit": "-1"}, "invalid size: '-1'"),
    ({"fluentd-retry-wait": "abc"}, 'time: invalid duration "abc"'),
    ({"fluentd-max-retries": "-1"}, 'strconv.ParseUint: parsing "-1": invalid syntax'),
    ({"fluentd-max-retries": "18446744073709551616"},
     'strconv.ParseUint: parsing "18446744073709551616": value out of range'),
    ({"fluentd-async": "true", "fluentd-async-connect": "true"},
     "conflicting options: cannot specify both 'fluentd-async' and 'fluentd-async-connect"),
    ({"fluentd-async": "maybe"}, 'strconv.ParseBool: parsing "maybe": invalid syntax'),
    ({"fluentd-async-connect": "maybe"}, 'strconv.ParseBool: parsing "maybe": invalid syntax'),
    ({"fluentd-sub-second-precision": "yes"},
     'strconv.ParseBool: parsing "yes": invalid syntax'),
    ({"fluentd-request-ack": "2"}, 'strconv.ParseBool: parsing "2": invalid syntax'),
    ({"tag": "{{.Foo}}"}, 'template: log-tag:1:2: executing "log-tag" at <.Foo>: '
                          "can't evaluate field Foo in type *logger.Info"),
    ({"labels-regex": "["}, "error parsing regexp: missing closing ]: `[`"),
    # Docker's order: the address is checked before the other values.
    ({"fluentd-buffer-limit": "abc", "fluentd-address": "h:x"},
     'invalid fluentd-address h:x: strconv.Atoi: parsing "x": invalid syntax'),
])
def test_options_are_validated_at_create_with_dockers_texts(tmp_path, opts, message):
    for info in (None, _info(tmp_path)):
        with pytest.raises(LogOptError) as err:
            FluentdDriver.validate(opts, info)
        assert str(err.value) == message


def test_empty_values_mean_the_defaults_as_in_docker():
    FluentdDriver.validate({"fluentd-async": "", "fluentd-async-connect": "true",
                            "fluentd-address": "", "fluentd-max-retries": ""})


@pytest.mark.parametrize("value,address", [
    ("", Address("tcp", "127.0.0.1", 24224)),
    ("fluent:24225", Address("tcp", "fluent", 24225)),
    ("tcp://fluent:24225/", Address("tcp", "fluent", 24225)),
    ("[::1]:24226", Address("tcp", "::1", 24226)),
    (":24227", Address("tcp", "127.0.0.1", 24227)),
    ("fluent", Address("tcp", "fluent", 24224)),  # Docker would dial 127.0.0.1 (its bug)
    ("tcp://fluent", Address("tcp", "fluent", 24224)),
    ("unix:///run/fluent%20d.sock", Address("unix", path="/run/fluent d.sock")),
])
def test_accepted_address_forms(value, address):
    assert parse_address(value) == address


def test_batch_limits_follow_the_buffer_limit_and_retry_options_are_exposed(make_driver):
    default = make_driver()
    assert default.limits.max_bytes == 1 << 20 and default.limits.overhead > 0
    assert (default.retry_wait, default.max_retries, default.retry_max_wait) == (1.0, None, 60.0)
    assert make_driver(**{"fluentd-buffer-limit": "4m"}).limits.max_bytes == 4 << 20
    assert make_driver(**{"fluentd-buffer-limit": "1g"}).limits.max_bytes == 8 << 20
    assert make_driver(**{"fluentd-buffer-limit": "1k"}).limits.max_bytes > 16384
    tuned = make_driver(**{"fluentd-retry-wait": "250ms", "fluentd-max-retries": "5"})
    assert (tuned.retry_wait, tuned.max_retries) == (0.25, 5)


def test_overhead_bounds_the_frame_the_shipper_cuts(make_driver):
    driver = make_driver(container_labels={"app": "web"}, labels="app",
                         **{"fluentd-request-ack": "true"})
    batch = lines(b"", b"x" * 100, b"y" * 1000) + lines(b"z" * 70000, source="stderr")
    frame, _chunk = driver.frame(batch)
    budget = sum(len(m.line) + driver.limits.overhead for m in batch)
    # The shipper's count never falls short: the rest is the tag, bin header and option map.
    assert budget - 4 * 4 <= len(frame) <= budget + 64
