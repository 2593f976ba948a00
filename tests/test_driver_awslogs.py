"""The awslogs driver against the real CloudWatch Logs API as moto serves it (server mode, on
loopback), reached over HTTP through ``FakeFaultProxy`` (tests/receivers/cloudwatch.py),
which records the wire and stands in for the failures moto never gives (throttling, 5xx,
sequence-token errors). Events are read back with ``get_log_events`` and compared.

What is cleaner without a server (option checks, the strftime table, grouping, encoding,
cutting into PutLogEvents calls) is tested on the functions themselves.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
import uuid

import pytest

pytest.importorskip("botocore", reason="awslogs needs botocore (pip install boto3)")
pytest.importorskip("moto.server",
                    reason="the CloudWatch receiver is moto (pip install 'moto[server]')")

from drivers import awslogs  # noqa: E402
from drivers.awslogs import (  # noqa: E402
    MAX_EVENT_BYTES,
    AWSLogsDriver,
    cut_requests,
    encode_events,
    rejected_records,
)
from drivers.multiline import group_lines, start_pattern, strftime_to_regex  # noqa: E402
from logpipe.driver import LogInfo  # noqa: E402
from logpipe.errors import (  # noqa: E402
    LogOptError,
    LogpipeError,
    PermanentError,
    RetryableError,
    TemplateError,
)
from logpipe.message import Message, PartialMeta  # noqa: E402
from logpipe.options import driver_opts  # noqa: E402
from receivers.cloudwatch import CloudWatchReceiver, FakeCredentialsEndpoint  # noqa: E402

pytestmark = pytest.mark.integration

CID = "565eb619b2ca" + "0123456789abcdef" * 3 + "0123"
MS = 1_000_000
KEY_ID = "AKIDLOGPIPETEST0001"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRET-KEY-42"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE-SESSION-TOKEN-SECRET"


def now_ms() -> int:
    return time.time_ns() // MS - 60_000  # a minute ago: well inside CloudWatch's window


def msgs(*lines: bytes, start_ms: int | None = None, step_ms: int = 1,
         source: str = "stdout") -> list[Message]:
    start = now_ms() if start_ms is None else start_ms
    return [Message(line, source, (start + i * step_ms) * MS) for i, line in enumerate(lines)]


def pieces(data: bytes, ts_ms: int, size: int = 16384, pid: str = "p" * 64,
           last: bool = True) -> list[Message]:
    """A long line as the spool hands it over: 16 KiB partial pieces sharing a timestamp."""
    chunks = [data[i:i + size] for i in range(0, len(data), size)]
    return [Message(chunk, "stdout", ts_ms * MS, last and i == len(chunks),
                    PartialMeta(pid, i, last and i == len(chunks)))
            for i, chunk in enumerate(chunks, 1)]


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    """Fake credentials in the environment, and nothing else AWS-related (no profile files,
    no instance metadata lookups), for every test."""
    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="module")
def cw_server():
    with CloudWatchReceiver() as receiver:
        yield receiver


@pytest.fixture
def cw(cw_server):
    cw_server.heal()
    cw_server.slow(0)
    cw_server.proxy.requests.clear()
    yield cw_server
    cw_server.heal()


@pytest.fixture
def group() -> str:
    return f"logpipe-test-{uuid.uuid4().hex[:12]}"


def info_for(config: dict[str, str], **kw) -> LogInfo:
    kw.setdefault("container_name", "/web1")
    return LogInfo(CID, "/nonexistent", config, **kw)


@pytest.fixture
def make(cw, group):
    """Build validated drivers aimed at the receiver; closed at teardown."""
    made: list[AWSLogsDriver] = []

    def build(extra: dict[str, str | None] | None = None, endpoint: str | None = None
              ) -> AWSLogsDriver:
        config = {"awslogs-group": group, "awslogs-region": "us-east-1",
                  "awslogs-endpoint": endpoint or cw.endpoint, "awslogs-create-group": "true"}
        for key, value in (extra or {}).items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        info = info_for(config)
        AWSLogsDriver.validate(driver_opts(config), info)
        driver = AWSLogsDriver(info)
        made.append(driver)
        return driver

    yield build
    for driver in made:
        driver.close()


def operations(cw) -> list[str]:
    return [r.operation for r in cw.proxy.requests]


# -- options ------------------------------------------------------------------------------

BASE = {"awslogs-group": "grp", "awslogs-region": "eu-west-1"}


@pytest.mark.parametrize("opts, text", [
    ({"awslogs-region": "x"}, "must specify a value for log opt 'awslogs-group'"),
    ({**BASE, "foo": "1"}, "unknown log opt 'foo' for awslogs log driver"),
    ({**BASE, "awslogs-create-group": "x"},
     "must specify valid value for log opt 'awslogs-create-group': "
     'strconv.ParseBool: parsing "x": invalid syntax'),
    ({**BASE, "awslogs-create-stream": "maybe"},
     "must specify valid value for log opt 'awslogs-create-stream': "
     'strconv.ParseBool: parsing "maybe": invalid syntax'),
    ({**BASE, "awslogs-force-flush-interval-seconds": "0"},
     "must specify a positive integer for log opt 'awslogs-force-flush-interval-seconds': 0"),
    ({**BASE, "awslogs-force-flush-interval-seconds": "1.5"},
     "must specify a positive integer for log opt 'awslogs-force-flush-interval-seconds': 1.5"),
    ({**BASE, "awslogs-max-buffered-events": "-3"},
     "must specify a positive integer for log opt 'awslogs-max-buffered-events': -3"),
    ({**BASE, "awslogs-datetime-format": "%Y", "awslogs-multiline-pattern": "^x"},
     "you cannot configure log opt 'awslogs-datetime-format' and "
     "'awslogs-multiline-pattern' at the same time"),
    ({**BASE, "awslogs-format": "json"}, "unsupported log format 'json'"),
    ({**BASE, "awslogs-format": "json/emf", "awslogs-multiline-pattern": "^x"},
     "you cannot configure log opt 'awslogs-datetime-format' or 'awslogs-multiline-pattern' "
     "when log opt 'awslogs-format' is set to 'json/emf'"),
    ({**BASE, "awslogs-multiline-pattern": "["},
     'awslogs could not parse multiline pattern key "[": '
     "error parsing regexp: missing closing ]: `[`"),
    ({**BASE, "awslogs-datetime-format": "%Y ["},
     'awslogs could not parse multiline pattern key "\\\\d{4} [": '
     "error parsing regexp: missing closing ]: `[`"),
    ({"awslogs-group": "grp"}, "Cannot determine region for awslogs driver"),
])
def test_validate_rejects_with_dockers_text(opts, text):
    for info in (None, info_for(opts)):
        with pytest.raises(LogOptError) as err:
            AWSLogsDriver.validate(opts, info)
        assert str(err.value) == text


@pytest.mark.parametrize("opts, text", [
    ({**BASE, "awslogs-endpoint": "ftp://logs.example"},
     "invalid value for log opt 'awslogs-endpoint': 'ftp://logs.example': "
     "expected an http:// or https:// URL"),
    ({**BASE, "awslogs-credentials-endpoint": "v2/credentials/x"},
     "invalid value for log opt 'awslogs-credentials-endpoint': 'v2/credentials/x': expected "
     "a path such as /v2/credentials/<id> (it is appended to http://169.254.170.2)"),
    ({**BASE, "awslogs-group": "my group"},
     "invalid value for log opt 'awslogs-group': 'my group': a CloudWatch Logs group name is "
     "1 to 512 characters from a-z, A-Z, 0-9, '_', '-', '/', '.' and '#'"),
    ({**BASE, "awslogs-stream": "a:b"},
     "invalid log stream name 'a:b': a CloudWatch Logs stream name is 1 to 512 characters "
     "and cannot contain ':' or '*'"),
])
def test_validate_rejects_what_cloudwatch_would_refuse_later(opts, text):
    with pytest.raises(LogOptError) as err:
        AWSLogsDriver.validate(opts, info_for(opts))
    assert str(err.value) == text


def test_validate_renders_the_stream_tag_with_the_container_and_checks_the_name():
    opts = {**BASE, "tag": "{{.Name}}:{{.ID}}"}
    AWSLogsDriver.validate(opts)  # daemon defaults: the tag is only parsed
    with pytest.raises(LogOptError, match="invalid log stream name 'web1:565eb619b2ca'"):
        AWSLogsDriver.validate(opts, info_for(opts))
    with pytest.raises(TemplateError, match=r"^template: log-tag:1: unclosed action$"):
        AWSLogsDriver.validate({**BASE, "tag": "{{"}, info_for(BASE))


def test_region_comes_from_the_option_then_aws_region_then_aws_default_region(monkeypatch):
    opts = {"awslogs-group": "grp"}
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert AWSLogsDriver(info_for(opts)).cfg.region == "ap-south-1"
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    assert AWSLogsDriver(info_for(opts)).cfg.region == "us-west-2"
    opts["awslogs-region"] = "eu-central-1"
    AWSLogsDriver.validate(opts, info_for(opts))
    assert AWSLogsDriver(info_for(opts)).cfg.region == "eu-central-1"


def test_settings_defaults_and_docker_spellings():
    cfg = AWSLogsDriver(info_for(BASE)).cfg
    assert (cfg.stream, cfg.create_group, cfg.create_stream, cfg.flush_interval, cfg.emf,
            cfg.endpoint, cfg.pattern) == (CID, False, True, 5, False, None, None)
    opts = {**BASE, "tag": "{{.Name}}", "awslogs-endpoint": "logs.eu-west-1.amazonaws.com",
            "awslogs-format": "json/emf", "awslogs-create-stream": "false"}
    AWSLogsDriver.validate(opts, info_for(opts))
    cfg = AWSLogsDriver(info_for(opts)).cfg
    # aws-sdk-go prepends https:// to a bare host; the tag names the stream
    assert (cfg.stream, cfg.endpoint, cfg.emf, cfg.create_stream) == (
        "web1", "https://logs.eu-west-1.amazonaws.com", True, False)
    assert AWSLogsDriver(info_for({**opts, "awslogs-stream": "s1"})).cfg.stream == "s1"


def test_limits_are_cloudwatchs_and_the_flush_interval_is_the_batch_wait():
    limits = AWSLogsDriver(info_for(BASE)).limits
    assert (limits.max_count, limits.max_bytes, limits.overhead, limits.wait) == (
        10_000, 1_048_576, 26, 5.0)
    assert 23 * 3600 * 10**9 < limits.max_span_ns < 24 * 3600 * 10**9
    opts = {**BASE, "awslogs-force-flush-interval-seconds": "2"}
    assert AWSLogsDriver(info_for(opts)).limits.wait == 2.0


def test_constructor_does_no_network_io(cw):
    opts = {**BASE, "awslogs-endpoint": cw.endpoint}
    AWSLogsDriver(info_for(opts)).close()
    assert operations(cw) == []


# -- multi-line grouping (Docker's §4.7 / §8 rules) ---------------------------------------

def test_strftime_formats_become_dockers_regex():
    assert strftime_to_regex("%Y-%m-%d %H:%M:%S%L") == (
        r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[1,2][0-9]|3[0,1]) (?:[0,1][0-9]|2[0-3])"
        r":[0-5][0-9]:[0-5][0-9]\.\d{3}")
    assert strftime_to_regex("[%b %d %y %I%p %z %Z %j %a/%A %w %f]") == (
        r"[(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (?:0[1-9]|[1,2][0-9]|3[0,1]) "
        r"\d{2} (?:0[0-9]|1[0-2])[A,P]M [+-]\d{4} [A-Z]{1,4}T "
        r"(?:0[0-9][1-9]|[1,2][0-9][0-9]|3[0-5][0-9]|36[0-6]) "
        r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)/(?:Monday|Tuesday|Wednesday|Thursday|Friday|"
        r"Saturday|Sunday) [0-6] \d{6}]")
    assert strftime_to_regex("%Q%%x%e") == "x"  # unknown sequences vanish, as in Docker
    assert start_pattern("%Y-%m-%d", None).search("at 2024-01-31 boom")  # unanchored Match
    assert start_pattern(None, "") is None


def grouped(lines: list[str], pattern: str, max_size: int = MAX_EVENT_BYTES):
    ev = group_lines(lines, list(range(100, 100 + len(lines))),
                     [len(x.encode()) for x in lines], [1] * len(lines),
                     start_pattern(None, pattern), max_size)
    return list(zip(ev.messages, ev.ts, ev.records))


def test_grouping_keeps_every_newline_and_the_first_lines_timestamp():
    # §8's capture: "2024-01-01 first\n  cont a\n  cont b\n" with awslogs-datetime-format
    pattern = strftime_to_regex("%Y-%m-%d")
    assert grouped(["2024-01-01 first", "  cont a", "  cont b"], pattern) == [
        ("2024-01-01 first\n  cont a\n  cont b\n", 100, 3)]
    # lines before the first match are an event of their own; empty lines are kept
    assert grouped(["boot", "", "2024-01-02 a", "2024-01-03 b", "  x"], pattern) == [
        ("boot\n\n", 100, 2), ("2024-01-02 a\n", 102, 1), ("2024-01-03 b\n  x\n", 103, 2)]


def test_grouping_ends_an_event_before_it_would_exceed_the_maximum_size():
    assert grouped(["ab", "cdefgh", "ij"], "^START", max_size=10) == [
        ("ab\ncdefgh\n", 100, 2), ("ij\n", 102, 1)]
    # a line of the maximum size alone gets no newline (Docker: "less than max event size")
    assert grouped(["a", "0123456789", "b"], "^START", max_size=10) == [
        ("a\n", 100, 1), ("0123456789", 101, 1), ("b\n", 102, 1)]


# -- encoding and cutting (no server) ------------------------------------------------------

def test_encoding_drops_empty_lines_and_rejoins_pieces_of_a_long_line():
    t = now_ms()
    long = bytes(range(97, 123)) * 1000  # 26,000 bytes: pieces of 16,384 + 9,616
    batch = (msgs(b"first", b"", start_ms=t) + pieces(long, t + 1)[:1]
             + msgs(b"err", start_ms=t + 1, source="stderr") + pieces(long, t + 1)[1:]
             + msgs(b" ", start_ms=t + 2))
    ev = encode_events(batch, None)
    assert ev.messages == ["first", long.decode(), "err", " "]
    assert ev.ts == [t, t + 1, t + 1, t + 2]
    assert ev.records == [1, 2, 1, 1]
    assert ev.sizes == [5, 26_000, 3, 1]


def test_invalid_utf8_becomes_one_replacement_character_per_byte():
    # Go's rule: a truncated sequence is two bad bytes, two U+FFFD (Python's "replace"
    # would give one); an encoded surrogate is three.
    batch = msgs(b"ok \xe2\x82 x", b"\xff", b"\xed\xa0\x80", "é€𝄞".encode())
    ev = encode_events(batch, None)
    assert ev.messages == ["ok \ufffd\ufffd x", "\ufffd", "\ufffd" * 3, "é€𝄞"]
    assert ev.sizes == [len(m.encode()) for m in ev.messages] == [11, 3, 9, 9]


def test_events_are_stably_sorted_by_millisecond_timestamp():
    t = now_ms()
    batch = [Message(b"b", "stdout", (t + 5) * MS), Message(b"a", "stdout", t * MS + 999_999),
             Message(b"c", "stderr", (t + 5) * MS + 1), Message(b"d", "stdout", t * MS)]
    ev = encode_events(batch, None)
    assert list(zip(ev.messages, ev.ts)) == [("a", t), ("d", t), ("b", t + 5), ("c", t + 5)]


def test_lines_over_the_event_limit_split_at_character_boundaries():
    t = now_ms()
    line = "é".encode() * 140_000  # 280,000 bytes, 2 per character
    ev = encode_events(pieces(line, t), None)
    assert ev.sizes == [262_118, 280_000 - 262_118]  # 262,118 is even: a boundary
    line = b"x" + "é".encode() * 140_000  # now 262,118 falls inside a character
    ev = encode_events(pieces(line, t), None)
    assert ev.sizes == [262_117, 280_001 - 262_117]
    assert "".join(ev.messages) == line.decode() and ev.records == [18, 0]


def test_cut_requests_keeps_each_call_within_count_bytes_and_span():
    assert cut_requests([0] * 10_001, [0] * 10_001) == [(0, 10_000), (10_000, 10_001)]
    # 4 × (262,118 + 26) is exactly 1,048,576: the fifth event needs a second call
    assert cut_requests([0] * 5, [262_118] * 5) == [(0, 4), (4, 5)]
    day = 24 * 3600 * 1000
    assert cut_requests([0, day - 1, day, 2 * day - 1], [1] * 4) == [(0, 2), (2, 4)]
    assert cut_requests([0, day, 2 * day], [1] * 3) == [(0, 1), (1, 2), (2, 3)]
    assert cut_requests([], []) == []


def test_rejected_events_are_counted_as_the_records_they_hold():
    records = [1, 3, 1, 2, 1]
    assert rejected_records({}, records) == 0
    assert rejected_records({"tooOldLogEventEndIndex": 2}, records) == 4
    assert rejected_records({"tooNewLogEventStartIndex": 3}, records) == 3
    assert rejected_records({"expiredLogEventEndIndex": 1, "tooOldLogEventEndIndex": 2,
                             "tooNewLogEventStartIndex": 4}, records) == 5


# -- against CloudWatch (moto) -------------------------------------------------------------

def test_creates_group_then_stream_in_dockers_order_and_events_read_back(cw, make, group):
    driver = make()
    t = now_ms()
    lines = [b"plain", b"<>&\"\\ \t tab", "U+2028 \u2028 é €".encode(), b"last"]
    assert driver.send(msgs(*lines, start_ms=t, step_ms=7)) == 0
    assert operations(cw) == ["CreateLogStream", "CreateLogGroup", "CreateLogStream",
                              "PutLogEvents"]
    assert cw.events(group, CID) == [{"timestamp": t + 7 * i, "message": line.decode()}
                                     for i, line in enumerate(lines)]
    driver.send(msgs(b"again", start_ms=t + 100))
    assert operations(cw)[4:] == ["PutLogEvents"]  # the stream is created once
    body = cw.proxy.bodies()[0]
    assert list(body) == ["logEvents", "logGroupName", "logStreamName"]  # Docker's order
    assert body["logEvents"][0] == {"message": "plain", "timestamp": t}


def test_missing_group_without_create_group_is_a_permanent_error(make, group):
    driver = make({"awslogs-create-group": None})
    with pytest.raises(PermanentError, match=r"^failed to create Cloudwatch log stream: "
                                             r"ResourceNotFoundException: .*\(HTTP 400\)$"):
        driver.send(msgs(b"x"))


def test_create_stream_false_only_puts(cw, make, group):
    cw.client().create_log_group(logGroupName=group)
    cw.client().create_log_stream(logGroupName=group, logStreamName="given")
    driver = make({"awslogs-create-stream": "false", "awslogs-stream": "given"})
    driver.send(msgs(b"one", b"two"))
    assert operations(cw) == ["PutLogEvents"]
    assert [e["message"] for e in cw.wait_for(group, "given", 2)] == ["one", "two"]


def test_invalid_utf8_arrives_as_replacement_characters_in_a_valid_body(cw, make, group):
    make().send(msgs(b"bad \xff\xfe end", b"\xc3"))
    raw = [r.body for r in cw.proxy.requests if r.operation == "PutLogEvents"][0]
    raw.decode("utf-8")  # Docker sends these bytes raw: the service answers 500
    assert [e["message"] for e in cw.events(group, CID)] == ["bad \ufffd\ufffd end", "\ufffd"]


def test_out_of_order_records_are_sent_in_chronological_order(cw, make, group):
    t = now_ms()
    batch = msgs(b"late", start_ms=t + 10) + msgs(b"early", b"early2", start_ms=t, step_ms=0)
    make().send(batch)
    sent = cw.proxy.bodies()[0]["logEvents"]
    assert [(e["message"], e["timestamp"]) for e in sent] == [
        ("early", t), ("early2", t), ("late", t + 10)]


def test_long_lines_are_rejoined_and_split_at_the_event_limit(cw, make, group):
    t = now_ms()
    twenty = bytes(range(65, 91)) * 769 + b"abcdef"  # §8: a 20,000-byte line
    huge = "€".encode() * 100_000  # 300,000 bytes
    make().send(pieces(twenty, t) + pieces(huge, t + 1, pid="q" * 64))
    got = cw.events(group, CID)
    assert [len(e["message"].encode()) for e in got] == [20_000, 262_116, 300_000 - 262_116]
    assert got[0]["message"] == twenty.decode()
    assert got[1]["message"] + got[2]["message"] == huge.decode()
    assert [e["timestamp"] for e in got] == [t, t + 1, t + 1]


def test_a_batch_that_grows_past_one_mebibyte_goes_in_several_calls(cw, make, group):
    # 8 lines of 80,000 invalid bytes fit the shipper's 1 MiB, but are 240,000 bytes each
    # once every byte is U+FFFD: four per PutLogEvents call.
    t = now_ms()
    make().send(msgs(*[b"\xff" * 80_000] * 8, start_ms=t))
    assert [len(b["logEvents"]) for b in cw.proxy.bodies()] == [4, 4]
    got = cw.events(group, CID)
    assert [e["timestamp"] for e in got] == [t + i for i in range(8)]
    assert {e["message"] for e in got} == {"\ufffd" * 80_000}


def test_a_batch_spanning_more_than_a_day_goes_in_several_calls(cw, make, group):
    t = now_ms()
    day = 24 * 3600 * 1000
    make().send(msgs(b"old", start_ms=t - day - 5000) + msgs(b"new", b"newer", start_ms=t))
    assert [[e["message"] for e in b["logEvents"]] for b in cw.proxy.bodies()] == [
        ["old"], ["new", "newer"]]
    assert [e["message"] for e in cw.events(group, CID)] == ["old", "new", "newer"]


def test_events_cloudwatch_rejects_are_counted(cw, make, group):
    t = now_ms()
    future = t + 3 * 3600 * 1000  # more than 2 h ahead: rejected as too new
    batch = msgs(b"ok1", b"ok2", start_ms=t) + msgs(b"soon", start_ms=future)
    assert make().send(batch) == 1
    assert [e["message"] for e in cw.events(group, CID)] == ["ok1", "ok2"]


def test_multiline_datetime_format_groups_as_in_docker(cw, make, group):
    driver = make({"awslogs-datetime-format": "%Y-%m-%d"})
    t = now_ms()
    driver.send(msgs(b"2024-01-01 first", b"  cont a", b"  cont b", b"2024-01-02 next",
                     start_ms=t))
    assert cw.events(group, CID) == [
        {"timestamp": t, "message": "2024-01-01 first\n  cont a\n  cont b\n"},
        {"timestamp": t + 3, "message": "2024-01-02 next\n"}]


def test_multiline_pattern_groups_and_an_open_event_ends_with_the_batch(cw, make, group):
    driver = make({"awslogs-multiline-pattern": "^(INFO|ERROR) "})
    t = now_ms()
    driver.send(msgs(b"INFO a", b"ERROR b", b"  at x()", start_ms=t))
    driver.send(msgs(b"  at y()", b"INFO c", start_ms=t + 10))
    assert [e["message"] for e in cw.events(group, CID)] == [
        "INFO a\n", "ERROR b\n  at x()\n", "  at y()\n", "INFO c\n"]


def test_throttling_is_retryable_and_the_retry_loses_nothing(cw, make, group):
    driver = make()
    batch = msgs(b"one", b"two", b"three")
    driver.send(msgs(b"zero", start_ms=now_ms() - 10))
    cw.fail("ThrottlingException", calls=2)  # botocore's one quick retry is throttled too
    with pytest.raises(RetryableError, match=r"^PutLogEvents failed: ThrottlingException: "
                                             r"Rate exceeded \(HTTP 400\)$"):
        driver.send(batch)
    assert driver.send(batch) == 0
    assert [e["message"] for e in cw.events(group, CID)] == ["zero", "one", "two", "three"]


@pytest.mark.parametrize("code, status", [("ServiceUnavailableException", 503),
                                          ("InternalFailure", 500)])
def test_server_errors_are_retryable(cw, make, code, status):
    driver = make()
    driver.send(msgs(b"warm"))
    cw.fail(code, status, "try later", calls=2)
    with pytest.raises(RetryableError, match=f"{code}: try later \\(HTTP {status}\\)"):
        driver.send(msgs(b"x"))


def test_a_rejected_batch_is_a_permanent_error(cw, make):
    driver = make()
    driver.send(msgs(b"warm"))
    cw.fail("InvalidParameterException", 400, "Log event too large", calls=1)
    with pytest.raises(PermanentError, match=r"^PutLogEvents failed: InvalidParameterException:"
                                             r" Log event too large \(HTTP 400\)$"):
        driver.send(msgs(b"x"))


def test_a_retried_batch_resumes_after_the_calls_that_succeeded(cw, make, group):
    driver = make()
    batch = msgs(*[b"\xff" * 80_000] * 6, b"tail")  # two PutLogEvents calls
    cw.fail("ThrottlingException", calls=2, after=1)  # the second call fails
    with pytest.raises(RetryableError):
        driver.send(batch)
    driver.send(batch)
    assert [len(b["logEvents"]) for b in cw.proxy.bodies()] == [4, 3, 3, 3]
    assert len(cw.events(group, CID)) == 7  # no duplicates


def test_data_already_accepted_is_success_and_its_token_is_used_next(cw, make, group):
    driver = make()
    driver.send(msgs(b"first"))
    cw.fail("DataAlreadyAcceptedException", calls=1, message="The given batch of log events "
            "has already been accepted. The next batch can be sent with sequenceToken: 4242")
    assert driver.send(msgs(b"dup")) == 0
    driver.send(msgs(b"second"))
    assert cw.proxy.bodies()[-1]["sequenceToken"] == "4242"
    assert [e["message"] for e in cw.events(group, CID)] == ["first", "second"]


def test_invalid_sequence_token_is_retried_once_with_the_expected_token(cw, make, group):
    driver = make()
    driver.send(msgs(b"first"))
    cw.fail("InvalidSequenceTokenException", calls=1, message="The given sequenceToken is "
            "invalid. The next expected sequenceToken is: 777")
    driver.send(msgs(b"second"))
    assert cw.proxy.bodies()[-1]["sequenceToken"] == "777"
    assert [e["message"] for e in cw.events(group, CID)] == ["first", "second"]


def test_a_deleted_stream_is_created_again(cw, make, group):
    driver = make()
    driver.send(msgs(b"before"))
    cw.client().delete_log_stream(logGroupName=group, logStreamName=CID)
    driver.send(msgs(b"after"))
    assert [e["message"] for e in cw.events(group, CID)] == ["after"]


def test_receiver_down_is_retryable_and_up_again_delivers(cw, make, group):
    driver = make()
    driver.send(msgs(b"before"))
    cw.stop()
    try:
        with pytest.raises(RetryableError, match=f"^PutLogEvents failed: cannot reach "
                                                 f"{cw.endpoint}"):
            driver.send(msgs(b"during"))
    finally:
        cw.start()
    driver.send(msgs(b"during"))
    assert [e["message"] for e in cw.events(group, CID)] == ["before", "during"]


def test_json_emf_format_sets_the_header_on_every_call(cw, make):
    make({"awslogs-format": "json/emf"}).send(msgs(b'{"_aws": {}}'))
    assert [r.headers.get("x-amzn-logs-format") for r in cw.proxy.requests] == ["json/emf"] * 4
    cw.proxy.requests.clear()
    make().send(msgs(b"plain"))
    assert "x-amzn-logs-format" not in cw.proxy.requests[-1].headers


def test_error_texts_never_carry_credentials(cw, make, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    driver = make()
    cw.fail("InvalidParameterException", 400, "you sent:", operation=None, echo=True)
    with pytest.raises(PermanentError) as err:
        driver.send(msgs(b"x"))
    assert "you sent:" in str(err.value) and KEY_ID in str(err.value)  # the echo came back
    assert err.value.__cause__ is None and err.value.__context__ is None
    for text in (str(err.value), "".join(traceback.format_exception(err.value)), caplog.text):
        assert SECRET not in text and TOKEN not in text


@pytest.fixture
def creds_endpoint(monkeypatch):
    fake = FakeCredentialsEndpoint("/v2/credentials/task-1", "AKIDFROMENDPOINT",
                                   SECRET + "-task", TOKEN + "-task")
    fake.start()
    monkeypatch.setattr(awslogs, "CREDENTIALS_HOST", fake.base)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    yield fake
    fake.stop()


def test_credentials_endpoint_signs_the_requests(cw, make, group, creds_endpoint):
    driver = make({"awslogs-credentials-endpoint": "/v2/credentials/task-1"})
    driver.send(msgs(b"with task role"))
    assert creds_endpoint.paths == ["/v2/credentials/task-1"]
    put = [r for r in cw.proxy.requests if r.operation == "PutLogEvents"][0]
    assert "Credential=AKIDFROMENDPOINT/" in put.headers["authorization"]
    assert put.headers["x-amz-security-token"] == TOKEN + "-task"
    assert [e["message"] for e in cw.events(group, CID)] == ["with task role"]


def test_a_failing_credentials_endpoint_is_retryable_and_never_quoted(cw, make, group,
                                                                     creds_endpoint, caplog):
    caplog.set_level(logging.DEBUG)
    creds_endpoint.failing = True  # its 500 page contains the secret
    driver = make({"awslogs-credentials-endpoint": "/v2/credentials/task-1"})
    with pytest.raises(RetryableError) as err:
        driver.send(msgs(b"x"))
    assert str(err.value) == "awslogs: could not get AWS credentials (CredentialRetrievalError)"
    assert err.value.__cause__ is None and err.value.__context__ is None
    for text in (str(err.value), "".join(traceback.format_exception(err.value)), caplog.text):
        assert creds_endpoint.secret not in text and creds_endpoint.token not in text
    creds_endpoint.failing = False
    driver.send(msgs(b"x"))
    assert [e["message"] for e in cw.events(group, CID)] == ["x"]


# -- probe (container start) ---------------------------------------------------------------

def probe_info(cw, group, **extra) -> LogInfo:
    config = {"awslogs-group": group, "awslogs-region": "us-east-1",
              "awslogs-endpoint": cw.endpoint, **extra}
    return info_for(config)


def test_probe_creates_the_stream_at_start_like_docker(cw, group):
    AWSLogsDriver.probe(probe_info(cw, group, **{"awslogs-create-group": "true"}))
    assert cw.streams(group) == [CID]


def test_probe_refuses_a_start_that_cannot_work(cw, group, monkeypatch):
    with pytest.raises(LogpipeError, match=r"^failed to create Cloudwatch log stream: "
                                           r"ResourceNotFoundException: "):
        AWSLogsDriver.probe(probe_info(cw, group))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(LogpipeError) as err:
        AWSLogsDriver.probe(probe_info(cw, group, **{"awslogs-create-group": "true"}))
    assert str(err.value) == ("failed to create Cloudwatch log stream: "
                              "NoCredentialProviders: no valid providers in chain")


def test_probe_lets_the_container_start_when_cloudwatch_is_unreachable(cw, group, caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    info = probe_info(cw, group, **{"awslogs-endpoint": closed})
    AWSLogsDriver.probe(info)  # no error: the spool keeps the output until it is reachable
    assert "without its CloudWatch stream for now" in caplog.text
    cw.fail("ThrottlingException", operation=None)
    AWSLogsDriver.probe(probe_info(cw, group))


def test_probe_does_nothing_in_non_blocking_mode_or_without_stream_creation(cw, group):
    AWSLogsDriver.probe(probe_info(cw, group, mode="non-blocking"))
    AWSLogsDriver.probe(probe_info(cw, group, **{"awslogs-create-stream": "false"}))
    assert operations(cw) == []
