"""The json-file driver: Docker's exact bytes for every escaping rule, lines decoded back
past damage, tail/since seeks that agree with a brute-force scan, and Docker's option texts.

Expected bytes are written out literally from shared/reference/docker-logging.md §4.1, never
computed by the encoder under test. Property tests compare against a per-rune transcription
of Docker's encoder (jsonlog.ffjsonWriteJSONBytesAsString) and Go's utf8.DecodeRune.
"""

import gzip
import io
import json
import os
import random
import stat
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import drivers.json_file.seek as json_file
from drivers.json_file import JSONFileDriver
from drivers.json_file.encode import encode_attrs, encode_batch, encode_blocks
from drivers.json_file.reader import JSONFileFormat
from drivers.json_file.timestamps import parse_time
from logpipe.driver import LogInfo
from logpipe.errors import LogOptError
from logpipe.message import Chunk, PartialMeta
from logpipe.reading import ReadConfig, iter_decoded
from logpipe.registry import get_driver
from logpipe.timespec import parse_rfc3339

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z
TIME = b"2023-11-14T22:13:20.123456789Z"
PIECE = PartialMeta("ab" * 32, 1, False)


def line(log: bytes, stream: bytes = b"stdout", time: bytes = TIME, attrs: bytes = b"") -> bytes:
    """One expected record, assembled from literal parts."""
    a = b'"attrs":' + attrs + b"," if attrs else b""
    return b'{"log":"' + log + b'","stream":"' + stream + b'",' + a + b'"time":"' + time + b'"}\n'


def decode_all(data: bytes, final: bool = True):
    warnings = []
    chunks, used = JSONFileFormat().decode(data, final, warnings.append)
    return chunks, used, warnings


# -- a transcription of Docker's encoder, rune by rune -----------------------------------------

def go_decode_rune(b: bytes, i: int) -> tuple[int | None, int]:
    """Go's utf8.DecodeRune: (rune, size); (None, 1) for each byte of an invalid sequence."""
    c = b[i]
    if c < 0x80:
        return c, 1
    if 0xC2 <= c <= 0xDF:
        need, lo, hi = 1, 0x80, 0xBF
    elif c == 0xE0:
        need, lo, hi = 2, 0xA0, 0xBF
    elif 0xE1 <= c <= 0xEC or c in (0xEE, 0xEF):
        need, lo, hi = 2, 0x80, 0xBF
    elif c == 0xED:
        need, lo, hi = 2, 0x80, 0x9F
    elif c == 0xF0:
        need, lo, hi = 3, 0x90, 0xBF
    elif 0xF1 <= c <= 0xF3:
        need, lo, hi = 3, 0x80, 0xBF
    elif c == 0xF4:
        need, lo, hi = 3, 0x80, 0x8F
    else:
        return None, 1
    if i + need >= len(b):
        return None, 1
    if not lo <= b[i + 1] <= hi or any(not 0x80 <= x <= 0xBF for x in b[i + 2:i + need + 1]):
        return None, 1
    return ord(b[i:i + need + 1].decode()), need + 1


def docker_escape(data: bytes) -> bytes:
    """ffjsonWriteJSONBytesAsString without the quotes."""
    out, i = bytearray(), 0
    while i < len(data):
        c = data[i]
        if c < 0x80:
            if c >= 0x20 and c not in b'\\"<>&':
                out.append(c)
            elif c in b'\\"':
                out += b"\\" + bytes([c])
            elif c == 0x0A:
                out += b"\\n"
            elif c == 0x0D:
                out += b"\\r"
            else:
                out += b"\\u00%02x" % c
            i += 1
            continue
        r, size = go_decode_rune(data, i)
        if r is None:
            out += b"\\ufffd"
        elif r in (0x2028, 0x2029):
            out += b"\\u%04x" % r
        else:
            out += data[i:i + size]
        i += size
    return bytes(out)


def go_visible(data: bytes) -> bytes:
    """What a reader gets back: each invalid byte became U+FFFD."""
    out, i = bytearray(), 0
    while i < len(data):
        r, size = go_decode_rune(data, i)
        out += "\ufffd".encode() if r is None else data[i:i + size]
        i += size
    return bytes(out)


def test_transcription_of_go_decode_rune_agrees_with_the_table():
    assert go_decode_rune(b"\xe2\x82A", 0) == (None, 1)
    assert go_decode_rune("€".encode(), 0) == (0x20AC, 3)
    assert go_decode_rune(b"\xed\xa0\x80", 0) == (None, 1)
    assert go_decode_rune(b"\xf4\x90\x80\x80", 0) == (None, 1)
    assert go_decode_rune(b"\xf0\x9f\x98\x80", 0) == (0x1F600, 4)


# -- encoding: Docker's escaping table, row by row ---------------------------------------------

@pytest.mark.parametrize("data, log", [
    (b'say "hi"\n', rb'say \"hi\"\n'),
    (b"C:\\dir\n", rb"C:\\dir\n"),
    (b"crlf\r\n", rb"crlf\r\n"),
    (b"a\tb\n", rb"a\u0009b\n"),
    (b"nul\x00\n", rb"nul\u0000\n"),
    (b"\x1b[31mred\n", rb"\u001b[31mred\n"),
    (b"\x01\x08\x0b\x0c\x1f\n", rb"\u0001\u0008\u000b\u000c\u001f\n"),
    (b"<a href=x>&amp;\n", rb"\u003ca href=x\u003e\u0026amp;\n"),
    (b"del\x7f\n", b"del\x7f" + rb"\n"),
    (b"\xff\xfe\n", rb"\ufffd\ufffd\n"),
    (b"ls\xe2\x80\xa8ps\xe2\x80\xa9\n", rb"ls\u2028ps\u2029\n"),
    ("café 日本 😀\n".encode(), "café 日本 😀".encode() + rb"\n"),
])
def test_each_row_of_dockers_escaping_table(data, log):
    assert encode_batch([Chunk("stdout", T0, data)]) == line(log)


def test_invalid_utf8_becomes_one_replacement_escape_per_byte():
    cases = [
        (b"\x80", rb"\ufffd"),                            # lone continuation byte
        (b"\xe2\x82A", rb"\ufffd\ufffdA"),                # truncated sequence
        (b"\xed\xa0\x80", rb"\ufffd\ufffd\ufffd"),        # UTF-8-encoded surrogate
        (b"\xc0\xaf", rb"\ufffd\ufffd"),                  # overlong "/"
        (b"\xf4\x90\x80\x80", rb"\ufffd" * 4),            # above U+10FFFF
        (b"ok\xff<", rb"ok\ufffd\u003c"),
    ]
    for data, log in cases:
        assert encode_batch([Chunk("stdout", T0, data + b"\n")]) == line(log + rb"\n"), data


def test_a_valid_replacement_character_in_the_input_stays_raw():
    assert encode_batch([Chunk("stdout", T0, b"\xef\xbf\xbd\n")]) == line(b"\xef\xbf\xbd\\n")


def test_lines_of_one_chunk_share_stream_and_time_each_with_its_newline():
    out = encode_batch([Chunk("stderr", T0, b"one\ntwo\n\nthree\n")])
    assert out == (line(rb"one\n", b"stderr") + line(rb"two\n", b"stderr")
                   + line(rb"\n", b"stderr") + line(rb"three\n", b"stderr"))


def test_time_is_rfc3339nano_with_trailing_zeros_trimmed():
    out = encode_batch([Chunk("stdout", 1_700_000_000_050_482_200, b"a\n"),
                        Chunk("stdout", 1_700_000_000_000_000_000, b"b\n"),
                        Chunk("stdout", 1_700_000_000_100_000_000, b"c\n")])
    assert out == (line(rb"a\n", time=b"2023-11-14T22:13:20.0504822Z")
                   + line(rb"b\n", time=b"2023-11-14T22:13:20Z")
                   + line(rb"c\n", time=b"2023-11-14T22:13:20.1Z"))


def test_partial_pieces_keep_no_newline_until_the_last():
    out = encode_batch([Chunk("stdout", T0, b'x"y', PIECE),
                        Chunk("stdout", T0, b"end\n", PartialMeta("ab" * 32, 2, True)),
                        Chunk("stdout", T0, b"noeol", PartialMeta("cd" * 32, 1, False))])
    assert out == line(rb'x\"y') + line(rb"end\n") + line(b"noeol")


def test_an_empty_piece_has_no_log_key_at_all():
    assert encode_batch([Chunk("stdout", T0, b"", PIECE)]) == (
        b'{"stream":"stdout","time":"2023-11-14T22:13:20.123456789Z"}\n')


def test_attrs_are_go_json_with_sorted_keys_after_stream():
    attrs = encode_attrs({"zeta": "1", "a": "<b>&", "tag": "x\ty", "m": "l\u2028s", "k": "\udcff"})
    assert attrs == (rb'{"a":"\u003cb\u003e\u0026","k":"\ufffd","m":"l\u2028s",'
                     rb'"tag":"x\ty","zeta":"1"}')
    out = encode_batch([Chunk("stdout", T0, b"hi\n")], attrs)
    assert out == line(rb"hi\n", attrs=attrs)
    assert json.loads(out)["attrs"]["tag"] == "x\ty"


def test_no_attrs_means_no_attrs_key():
    assert encode_attrs({}) == b""
    assert b"attrs" not in encode_batch([Chunk("stdout", T0, b"hi\n")], encode_attrs({}))


def test_blocks_are_the_same_bytes_cut_between_records_from_bounded_input():
    batch = [Chunk("stdout", T0, b"".join(b"%05d\n" % i for i in range(500))),
             Chunk("stderr", T0 + 1, b"piece", PIECE)]
    batch += [Chunk("stdout", T0 + 2 + i, b"short %d\n" % i) for i in range(100)]
    attrs = encode_attrs({"k": "v"})
    blocks = list(encode_blocks(batch, attrs, size=256))
    assert b"".join(blocks) == encode_batch(batch, attrs)
    assert len(blocks) > 10 and all(b.endswith(b"}\n") for b in blocks)
    assert max(b.count(b"\n") for b in blocks) <= 256 // 6 + 1


fragments = st.sampled_from([b'"', b"\\", b"\\n", b"n", b"<", b">", b"&", b"\t", b"\r", b"\x00",
                             b"\x1b", b"\x7f", b"\xff", b"\x80", b"\xe2\x80\xa8", b"\xe2\x80\xa9",
                             "é".encode(), "日".encode(), b"\xed\xa0\x80", b"\xef\xbf\xbd",
                             b"\xf0\x9f\x98\x80", b"\xe2\x82", b"\xf4\x90", b"\xc0\xaf",
                             b'"time":"', b'","stream":"'])
line_text = st.lists(st.one_of(st.binary(max_size=6), fragments), max_size=8).map(
    lambda parts: b"".join(parts).replace(b"\n", b""))


@settings(max_examples=150, deadline=None)
@given(st.lists(line_text, min_size=1, max_size=5))
def test_encoding_agrees_with_a_transcription_of_dockers_encoder(lines):
    data = b"".join(text + b"\n" for text in lines)
    expected = b"".join(line(docker_escape(text) + rb"\n") for text in lines)
    assert encode_batch([Chunk("stdout", T0, data)]) == expected


# -- decoding ----------------------------------------------------------------------------------

chunk_specs = st.lists(st.tuples(st.sampled_from(["stdout", "stderr"]),
                                 st.integers(0, 3),          # time step: 0 repeats the time
                                 st.booleans(),              # a partial piece?
                                 st.lists(line_text, min_size=1, max_size=4)),
                       min_size=1, max_size=12)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk_specs, st.integers(1, 400))
def test_round_trip_gives_back_every_stream_and_record_whatever_the_bytes(specs, piece_size):
    chunks, ts = [], T0
    for source, step, partial, texts in specs:
        ts += step * 1_000
        if partial:
            chunks.append(Chunk(source, ts, texts[0], PIECE))
        else:
            chunks.append(Chunk(source, ts, b"".join(t + b"\n" for t in texts)))
    data = encode_batch(chunks)
    warnings = []
    pieces = [data[i:i + piece_size] for i in range(0, len(data), piece_size)]
    got = list(iter_decoded(JSONFileFormat(), pieces, "x", warnings.append))
    assert not warnings
    for source in ("stdout", "stderr"):
        want = b"".join(go_visible(c.data) for c in chunks if c.source == source)
        assert b"".join(c.data for c in got if c.source == source) == want
    assert sum(c.count for c in got) == sum(c.count for c in chunks)
    assert [c.ts for c in got] == sorted(c.ts for c in got)


def test_consecutive_lines_with_the_same_stream_time_and_attrs_become_one_chunk():
    data = (encode_batch([Chunk("stdout", T0, b"a\nb\n"), Chunk("stdout", T0, b"c\n"),
                          Chunk("stderr", T0, b"e\n"), Chunk("stdout", T0 + 1, b"d\n")])
            + encode_batch([Chunk("stdout", T0 + 1, b"f\n")], encode_attrs({"k": "v"})))
    chunks, used, warnings = decode_all(data)
    assert used == len(data) and not warnings
    assert [(c.source, c.ts, c.data, c.attrs) for c in chunks] == [
        ("stdout", T0, b"a\nb\nc\n", None), ("stderr", T0, b"e\n", None),
        ("stdout", T0 + 1, b"d\n", None), ("stdout", T0 + 1, b"f\n", {"k": "v"})]


def test_a_log_without_newline_is_a_piece_of_its_own_even_if_it_ends_in_backslash_n():
    data = encode_batch([Chunk("stdout", T0, b"one\n"), Chunk("stdout", T0, b"ends in \\n", PIECE),
                         Chunk("stdout", T0, b"slash\\\n"), Chunk("stdout", T0, b"two\n")])
    assert rb'"log":"ends in \\n"' in data and rb'"log":"slash\\\n"' in data
    chunks, _, _ = decode_all(data)
    assert [(c.data, c.partial) for c in chunks] == [
        (b"one\n", None), (b"ends in \\n", PartialMeta("", 0, False)),
        (b"slash\\\ntwo\n", None)]


def test_garbage_line_in_the_middle_is_skipped_reported_and_the_next_line_survives():
    good = encode_batch([Chunk("stdout", T0, b"before\n")])
    after = encode_batch([Chunk("stdout", T0 + 5, b"after\n")])
    data = good + b'{"log":"broken\n' + b"\x00" * 10 + b"\n" + after
    chunks, used, warnings = decode_all(data)
    assert [c.data for c in chunks] == [b"before\n", b"after\n"]
    assert used == len(data)
    assert len(warnings) == 1
    assert f"at byte {len(good)} " in warnings[0] and "2 lines" in warnings[0]


def test_a_record_glued_behind_nul_padding_or_a_torn_write_is_kept():
    rec = encode_batch([Chunk("stdout", T0, b"kept\n")])
    for junk in (b"\x00" * 100, b'{"log":"torn wri'):
        chunks, _, warnings = decode_all(junk + rec)
        assert [c.data for c in chunks] == [b"kept\n"]
        assert len(warnings) == 1 and f"({len(junk)} bytes)" in warnings[0]


def test_damage_inside_a_run_of_one_chunk_loses_only_the_damaged_line():
    data = bytearray(encode_batch([Chunk("stdout", T0, b"".join(b"line %d\n" % i
                                                                 for i in range(3000)))]))
    at = data.index(b"line 2000")
    data[at:at + 4] = b'li"e'  # an unescaped quote: not JSON any more
    chunks, _, warnings = decode_all(bytes(data))
    text = b"".join(c.data for c in chunks)
    assert b"line 2000\n" not in text and text.count(b"\n") == 2999
    assert b"line 1999\nline 2001\n" in text and len(warnings) == 1


def test_lines_ending_in_a_backslash_inside_a_long_run_decode_exactly():
    lines = [b"path C:\\dir\\\n" if i % 700 == 3 else b"plain %d\n" % i for i in range(3000)]
    data = encode_batch([Chunk("stdout", T0, b"".join(lines))])
    chunks, _, warnings = decode_all(data)
    assert not warnings and [c.data for c in chunks] == [b"".join(lines)]


def test_blank_lines_are_skipped_silently_like_gos_decoder():
    rec = encode_batch([Chunk("stdout", T0, b"x\n")])
    chunks, _, warnings = decode_all(b"\n  \n" + rec + b"\r\n")
    assert [c.data for c in chunks] == [b"x\n"] and not warnings


def test_unterminated_last_line_is_decoded_at_the_end_only_if_it_is_a_whole_record():
    rec = encode_batch([Chunk("stdout", T0, b"x\n")])
    chunks, used, _ = decode_all(rec + rec[:-1], final=False)
    assert used == len(rec) and len(chunks) == 1
    chunks, used, _ = decode_all(rec + rec[:-1], final=True)
    assert used == len(rec) * 2 - 1 and chunks[0].data == b"x\nx\n"
    chunks, used, _ = decode_all(rec + rec[:-9], final=True)
    assert used == len(rec) and [c.data for c in chunks] == [b"x\n"]


def test_lines_written_by_others_decode_whatever_their_key_order_and_time_zone():
    data = (b'{"time":"2023-11-14T23:13:20.5+01:00","log":"a\\tb\\n","stream":"stderr"}\n'
            b'{"log":"bad \xff utf8\\n","stream":"stdout","time":"2023-11-14T22:13:20Z",'
            b'"attrs":{"k":"v"}}\n'
            b'{"log":"lone \\ud800\\n","stream":"stdout","time":"2023-11-14T22:13:20Z"}\n')
    chunks, used, warnings = decode_all(data)
    assert not warnings and used == len(data)
    assert [(c.source, c.ts, c.data, c.attrs) for c in chunks] == [
        ("stderr", 1_700_000_000_500_000_000, b"a\tb\n", None),
        ("stdout", 1_700_000_000_000_000_000, "bad \ufffd utf8\n".encode(), {"k": "v"}),
        ("stdout", 1_700_000_000_000_000_000, "lone \ufffd\n".encode(), None)]


def test_lines_that_are_json_but_not_records_are_reported():
    data = b'[1,2]\n{"log":"x\\n","stream":"stdout"}\n{"log":1,"time":"2023-11-14T22:13:20Z"}\n'
    chunks, used, warnings = decode_all(data)
    assert chunks == [] and used == len(data) and "3 lines" in warnings[0]


@pytest.mark.parametrize("text, ns", [
    (b"2023-11-14T22:13:20Z", 1_700_000_000_000_000_000),
    (b"2023-11-14T22:13:20.1Z", 1_700_000_000_100_000_000),
    (b"2023-11-14T22:13:20.123456789Z", 1_700_000_000_123_456_789),
    (b"2023-11-14T22:13:20.1234567891Z", 1_700_000_000_123_456_789),
    (b"2023-11-14T23:13:20.5+01:00", 1_700_000_000_500_000_000),
    (b"2023-11-14T21:43:20-00:30", 1_700_000_000_000_000_000),
    (b"2024-02-29T00:00:00Z", 1_709_164_800_000_000_000),
    (b"1969-12-31T23:59:59.5Z", -500_000_000),
])
def test_times_parse_with_any_fraction_and_zone(text, ns):
    minutes = {}
    assert parse_time(text) == ns
    assert parse_time(text, minutes) == ns and parse_time(text, minutes) == ns


@pytest.mark.parametrize("text", [b"2023-02-29T00:00:00Z", b"2023-11-14T24:00:00Z",
                                  b"2023-11-14T22:60:00Z", b"2023-11-14T22:13:60Z",
                                  b"2023-13-14T22:13:20Z", b"2023-11-14 22:13:20", b"yesterday"])
def test_impossible_times_are_rejected(text):
    minutes = {}
    parse_time(b"2023-11-14T22:13:20Z", minutes)
    assert parse_time(text) is None and parse_time(text, minutes) is None


# -- seeking: tail, since, last time -----------------------------------------------------------

def make_log(n_chunks: int, seed: int = 7) -> tuple[bytes, list[int]]:
    """A json-file log with many equal timestamps, pieces and both streams; its line times."""
    rnd = random.Random(seed)
    chunks, ts = [], T0
    for _ in range(n_chunks):
        ts += rnd.choice([0, 0, 0, 1, 1_000, 1_000_000_000])
        source = rnd.choice(["stdout", "stderr"])
        if rnd.random() < 0.1:
            chunks.append(Chunk(source, ts, b"p" * rnd.randrange(1, 300), PIECE))
        else:
            chunks.append(Chunk(source, ts, b"".join(b"l" * rnd.randrange(0, 200) + b"\n"
                                                     for _ in range(rnd.randrange(1, 6)))))
    data = encode_batch(chunks)
    times = [parse_rfc3339(json.loads(x)["time"]) for x in data.split(b"\n")[:-1]]
    return data, times


def line_starts(data: bytes) -> list[int]:
    starts = [0]
    starts += [i + 1 for i in range(len(data)) if data[i] == 0x0A]
    return starts  # the last one is len(data)


@pytest.fixture(params=["1 MiB blocks", "small blocks"])
def block_sizes(request, monkeypatch):
    """Run seek tests with the real block sizes and with tiny ones that force lines across
    block boundaries."""
    if request.param == "small blocks":
        monkeypatch.setattr(json_file, "_SCAN", 997)
        monkeypatch.setattr(json_file, "_PROBE", 257)


@pytest.fixture(scope="module")
def big_log():
    return make_log(6000)


def test_tail_offset_is_the_start_of_the_last_n_lines(big_log, block_sizes, tmp_path):
    data, times = big_log
    starts = line_starts(data)
    path = tmp_path / "x-json.log"
    path.write_bytes(data)
    fmt = JSONFileFormat()
    total = len(times)
    with open(path, "rb") as f:
        for n in (1, 2, 63, 64, 65, 1000, total - 1, total, total + 5):
            off, found = fmt.tail_offset(f, len(data), n)
            k = min(n, total)
            assert (off, found) == (starts[total - k], k), n
        assert fmt.tail_offset(f, len(data), 0) == (len(data), 0)


def test_tail_offset_counts_a_trailing_fragment_only_if_it_is_a_record():
    first = encode_batch([Chunk("stdout", T0, b"a\n")])
    second = encode_batch([Chunk("stdout", T0, b"b\n")])
    fmt = JSONFileFormat()
    whole = first + second + first + second[:-1]  # the last record lacks only its newline
    base = len(first + second)
    assert fmt.tail_offset(io.BytesIO(whole), len(whole), 1) == (base + len(first), 1)
    assert fmt.tail_offset(io.BytesIO(whole), len(whole), 2) == (base, 2)
    torn = first + second + first[:10]
    assert fmt.tail_offset(io.BytesIO(torn), len(torn), 1) == (len(first), 1)
    assert fmt.tail_offset(io.BytesIO(b""), 0, 3) == (0, 0)


def test_since_offset_bisects_to_a_line_start_just_before_the_first_match(big_log, block_sizes,
                                                                         tmp_path):
    data, times = big_log
    starts = line_starts(data)
    path = tmp_path / "x-json.log"
    path.write_bytes(data)
    fmt = JSONFileFormat()
    probe = json_file._PROBE
    longest = max(b - a for a, b in zip(starts, starts[1:]))
    rnd = random.Random(3)
    candidates = [times[0] - 1, times[0], times[-1], times[-1] + 1]
    candidates += [times[rnd.randrange(len(times))] + rnd.choice([-1, 0, 1]) for _ in range(40)]
    with open(path, "rb") as f:
        for since in candidates:
            off = fmt.since_offset(f, len(data), since)
            first = next((starts[i] for i, t in enumerate(times) if t >= since), len(data))
            assert off in starts and off <= first, since
            assert first - off <= probe + longest, since


def test_last_ts_is_the_time_of_the_last_whole_record_past_damage(block_sizes):
    fmt = JSONFileFormat()
    a = encode_batch([Chunk("stdout", T0, b"a\n")])
    b = encode_batch([Chunk("stderr", T0 + 7, b"b" * 3000 + b"\n")])
    other = b'{"time":"2023-11-14T22:13:21Z","stream":"stdout","log":"x\\n"}\n'
    for data, want in [(a + b, T0 + 7), (a + b + b"garbage\n", T0 + 7),
                       (a + other, 1_700_000_001_000_000_000),
                       (a + b + b'{"log":"torn', T0 + 7), (b + b"\x00" * 50, T0 + 7),
                       (a, T0), (b"", None), (b"junk\n", None)]:
        assert fmt.last_ts(io.BytesIO(data), len(data)) == want


# -- options -----------------------------------------------------------------------------------

@pytest.mark.parametrize("opts, message", [
    ({"foo": "bar"}, "unknown log opt 'foo' for json-file log driver"),
    ({"max-size": "abc"}, "invalid size: 'abc'"),
    ({"max-size": "-1"}, "invalid size: '-1'"),
    ({"max-size": "0"}, "max-size must be a positive number"),
    ({"max-file": "abc"}, 'strconv.Atoi: parsing "abc": invalid syntax'),
    ({"max-file": "0"}, "max-file cannot be less than 1"),
    ({"compress": "maybe"}, 'strconv.ParseBool: parsing "maybe": invalid syntax'),
    ({"compress": "true"},
     "compress cannot be true when max-file is less than 2 or max-size is not set"),
    ({"compress": "true", "max-size": "1k"},
     "compress cannot be true when max-file is less than 2 or max-size is not set"),
    ({"compress": "true", "max-file": "3"},
     "compress cannot be true when max-file is less than 2 or max-size is not set"),
])
def test_option_errors_use_dockers_wording(opts, message):
    with pytest.raises(LogOptError) as err:
        JSONFileDriver.validate(opts)
    assert str(err.value) == message


def test_accepted_options_pass_validation():
    JSONFileDriver.validate({})
    JSONFileDriver.validate({"max-size": "10m", "max-file": "3", "compress": "true"})
    JSONFileDriver.validate({"max-size": "1KiB", "max-file": "1", "compress": "false"})


# -- the driver: files, attrs, rotation, reading back ------------------------------------------

CID = "c" * 64


def info_for(tmp_path, config=None, **kw) -> LogInfo:
    return LogInfo(container_id=CID, log_dir=str(tmp_path / "containers" / CID),
                   config=config or {}, **kw)


@pytest.fixture
def driver_for():
    """Drivers opened by a test; closed at teardown even if the test failed."""
    opened = []

    def make(info):
        drv = JSONFileDriver(info)
        opened.append(drv)
        return drv
    yield make
    for drv in opened:
        drv.close()


def records(info, **cfg) -> list[bytes]:
    return [m.line for c in JSONFileDriver.read(info, ReadConfig(**cfg)) for m in c.messages()]


def test_the_log_is_id_json_log_in_a_0710_directory_and_registered_as_json_file(tmp_path,
                                                                               driver_for):
    info = info_for(tmp_path)
    drv = driver_for(info)
    drv.write([Chunk("stdout", T0, b"hello\n")])
    path = JSONFileDriver.log_path(info)
    assert path == str(tmp_path / "containers" / CID / f"{CID}-json.log")
    assert stat.S_IMODE(os.stat(info.log_dir).st_mode) == 0o710
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert open(path, "rb").read() == line(rb"hello\n")
    assert get_driver("json-file") is JSONFileDriver


WRITE_AND_LIST_MODULES = """
import sys
from drivers.json_file import JSONFileDriver
from logpipe.driver import LogInfo
from logpipe.message import Chunk
drv = JSONFileDriver(LogInfo(container_id=sys.argv[1], log_dir=sys.argv[2],
                             config={"max-size": "1k", "max-file": "3"}))
for i in range(100):
    drv.write([Chunk("stdout", 1_700_000_000_000_000_000 + i, b"line %d\\n" % i)])
drv.close()
print(" ".join(sorted(sys.modules)))
"""


def test_writing_and_rotating_never_imports_the_reader(tmp_path):
    """The shim only writes, and its memory is the per-container cost: writing and rotating
    (without a follower or compress, which need the decoder) loads neither the reader nor
    a JSON parser. What was written reads back whole."""
    info = info_for(tmp_path)
    run = subprocess.run([sys.executable, "-c", WRITE_AND_LIST_MODULES, CID, info.log_dir],
                         capture_output=True, text=True, timeout=60, check=True)
    loaded = set(run.stdout.split())
    assert "drivers.json_file.writer" in loaded
    assert not {"drivers.json_file.reader", "drivers.json_file.seek", "json", "orjson"} & loaded
    assert os.path.exists(JSONFileDriver.log_path(info) + ".2")  # it did rotate
    got = b"".join(c.data for c in JSONFileDriver.read(info, ReadConfig(tail=3)))
    assert got == b"line 97\nline 98\nline 99\n"


def test_attrs_from_labels_env_and_tag_are_on_every_line_and_tag_wins(tmp_path, driver_for):
    opts = {"labels": "team,tag", "env-regex": "^APP_", "tag": "{{.Name}}/{{.ID}}"}
    info = info_for(tmp_path, opts, container_name="/web1",
                    labels={"team": "a&b", "tag": "from-label"},
                    env=("APP_MODE=prod", "HOME=/root"))
    JSONFileDriver.validate(info.config, info)
    drv = driver_for(info)
    drv.write([Chunk("stdout", T0, b"one\ntwo\n")])
    attrs = rb'{"APP_MODE":"prod","tag":"web1/cccccccccccc","team":"a\u0026b"}'
    assert open(JSONFileDriver.log_path(info), "rb").read() == (
        line(rb"one\n", attrs=attrs) + line(rb"two\n", attrs=attrs))
    (chunk,) = JSONFileDriver.read(info, ReadConfig())
    assert chunk.attrs == {"APP_MODE": "prod", "tag": "web1/cccccccccccc", "team": "a&b"}


def test_an_empty_tag_adds_no_tag_attr(tmp_path, driver_for):
    info = info_for(tmp_path, {"tag": "{{.Name}}"})
    driver_for(info).write([Chunk("stdout", T0, b"x\n")])
    assert open(JSONFileDriver.log_path(info), "rb").read() == line(rb"x\n")


def test_rotation_cuts_between_records_and_reading_walks_the_set_oldest_first(tmp_path,
                                                                              driver_for):
    info = info_for(tmp_path, {"max-size": "1k", "max-file": "3"})
    drv = driver_for(info)
    sent = [b"line %03d" % i for i in range(40)]
    for k in range(0, 40, 8):
        drv.write([Chunk("stdout", T0 + k, b"".join(s + b"\n" for s in sent[k:k + 8]))])
    drv.close()
    names = sorted(os.listdir(info.log_dir))
    assert names == [f"{CID}-json.log", f"{CID}-json.log.1", f"{CID}-json.log.2",
                     f"{CID}-json.log.lock"]
    kept = []
    for name in names[2:0:-1] + names[:1]:
        data = open(os.path.join(info.log_dir, name), "rb").read()
        assert data.endswith(b"}\n") and all(x.startswith(b'{"log":"') for x in data.splitlines())
        kept += [json.loads(x)["log"].encode()[:-1] for x in data.splitlines()]
    assert kept == sent[-len(kept):] and len(kept) > 8
    assert records(info) == kept
    assert records(info, tail=3) == sent[-3:]
    assert records(info, since=T0 + 32) == sent[32:]


def test_compressed_rotations_carry_the_last_time_of_their_records(tmp_path, driver_for):
    info = info_for(tmp_path, {"max-size": "1k", "max-file": "3", "compress": "true"})
    drv = driver_for(info)
    for k in range(30):
        drv.write([Chunk("stderr", T0 + k * 1_000_000_000, b"record %02d\n" % k)])
    drv.close()
    gz = os.path.join(info.log_dir, f"{CID}-json.log.1.gz")
    with open(gz, "rb") as f:
        head = f.read(12 + 64)
    extra = head[12:12 + int.from_bytes(head[10:12], "little")]
    body = gzip.decompress(open(gz, "rb").read())
    last = json.loads(body.splitlines()[-1])["time"]
    assert extra == b'{"lastTime":"%s"}' % last.encode()
    assert records(info)[-1] == b"record 29"


@pytest.mark.parametrize("opts, message", [
    ({"labels-regex": "["}, "error parsing regexp: missing closing ]: `[`"),
    ({"env-regex": "a)"}, "error parsing regexp: unexpected ): `a)`"),
    ({"tag": "{{.ID"}, "template: log-tag:1: unclosed action"),
    ({"tag": "{{.Foo}}"}, 'template: log-tag:1:2: executing "log-tag" at <.Foo>: '
                          "can't evaluate field Foo in type *logger.Info"),
])
def test_bad_regex_and_template_are_refused_with_gos_wording(tmp_path, opts, message):
    for info in (None, info_for(tmp_path, opts)):
        with pytest.raises(LogOptError) as err:
            JSONFileDriver.validate(opts, info)
        assert str(err.value) == message


def test_both_json_parsers_refuse_the_same_lone_surrogate_escape(monkeypatch):
    """The standard parser runs first, orjson after a megabyte: a line orjson refuses (a
    lone surrogate escape) must take the same lenient path either way."""
    import drivers.json_file.reader as jf

    data = (b'{"log":"x\\ud800y\\n","stream":"stdout","time":"2026-11-23T12:00:00Z"}\n'
            b'{"log":"ok\\n","stream":"stdout","time":"2026-11-23T12:00:00Z"}\n')
    results = []
    for parsed_so_far in (0, jf._ORJSON_AFTER + 1):
        monkeypatch.setattr(jf, "_parsed", parsed_so_far)
        chunks, used = jf.JSONFileFormat().decode(data, True, lambda _: None)
        results.append((b"".join(c.data for c in chunks), used))
    assert results[0] == results[1]
    assert results[0][0].endswith(b"ok\n") and results[0][1] == len(data)
