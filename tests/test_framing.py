"""The framer reproduces Docker's copier: newline splitting, 16 KiB partials, EOF remainder."""

import re

import pytest
from hypothesis import given, settings, strategies as st

from logpipe.framing import Clock, Framer
from logpipe.message import PARTIAL_SIZE, STDOUT, Chunk, count_lines

pytestmark = pytest.mark.unit


def frame(*reads: bytes) -> list:
    framer = Framer(STDOUT, Clock())
    out = []
    for data in reads:
        out.extend(framer.feed(data))
    out.extend(framer.close())
    return out


def test_complete_lines_of_one_read_become_one_chunk_with_newlines_kept():
    chunks = frame(b"a\nbb\n\nccc\n")
    assert len(chunks) == 1
    assert chunks[0].data == b"a\nbb\n\nccc\n"
    assert chunks[0].partial is None and chunks[0].count == 4


def test_carriage_return_is_data_not_a_line_end():
    [chunk] = frame(b"progress 10%\rprogress 20%\r\n")
    assert chunk.data == b"progress 10%\rprogress 20%\r\n" and chunk.count == 1


def test_line_split_across_reads_is_joined():
    chunks = frame(b"hel", b"lo\nwor", b"ld\n")
    assert [c.data for c in chunks] == [b"hello\n", b"world\n"]


def test_36000_byte_line_splits_like_docker_16384_16384_3232():
    line = b"x" * 36000
    chunks = frame(line + b"\n")
    assert [len(c.data) for c in chunks] == [16384, 16384, 3233]
    ids = {c.partial.id for c in chunks}
    assert len(ids) == 1 and re.fullmatch(r"[0-9a-f]{64}", ids.pop())
    assert [c.partial.ordinal for c in chunks] == [1, 2, 3]
    assert [c.partial.last for c in chunks] == [False, False, True]
    assert b"".join(c.data for c in chunks) == line + b"\n"


def test_line_of_exactly_16384_bytes_ends_with_an_empty_last_piece():
    chunks = frame(b"y" * PARTIAL_SIZE + b"\n")
    assert [c.data for c in chunks] == [b"y" * PARTIAL_SIZE, b"\n"]
    assert [c.partial.last for c in chunks] == [False, True]


def test_line_of_16383_bytes_is_not_split():
    [chunk] = frame(b"z" * (PARTIAL_SIZE - 1) + b"\n")
    assert chunk.partial is None


def test_long_line_between_short_lines_keeps_order_and_short_runs_unsplit():
    data = b"a\nb\n" + b"L" * 20000 + b"\nc\n"
    chunks = frame(data)
    assert b"".join(c.data for c in chunks) == data
    assert chunks[0].data == b"a\nb\n" and chunks[0].partial is None
    assert chunks[-1].data == b"c\n" and chunks[-1].partial is None


def test_long_line_arriving_in_small_reads_is_emitted_as_it_grows():
    framer = Framer(STDOUT, Clock())
    emitted = []
    for _ in range(40):
        emitted.extend(framer.feed(b"q" * 1000))
    assert [len(c.data) for c in emitted] == [16384, 16384]
    rest = framer.feed(b"\n") + framer.close()
    assert [c.partial.ordinal for c in emitted + rest] == [1, 2, 3]
    assert rest[-1].partial.last and rest[-1].data == b"q" * (40000 - 32768) + b"\n"


def test_unterminated_last_line_at_eof_is_a_partial_never_completed():
    chunks = frame(b"one\nnoeol")
    assert chunks[-1].data == b"noeol"
    assert chunks[-1].partial.ordinal == 1 and chunks[-1].partial.last is False


def test_timestamps_never_decrease_even_if_the_clock_steps_back(monkeypatch):
    times = iter([5_000, 4_000, 6_000])
    monkeypatch.setattr("logpipe.framing.time.time_ns", lambda: next(times))
    clock = Clock()
    assert [clock.now(), clock.now(), clock.now()] == [5_000, 5_000, 6_000]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40000).map(lambda b: b.replace(b"\x00", b"\n", 1)), max_size=8))
def test_any_byte_stream_comes_back_exactly_and_no_piece_exceeds_16k(reads):
    chunks = frame(*reads)
    assert b"".join(c.data for c in chunks) == b"".join(reads)
    for c in chunks:
        if c.partial is None:
            assert c.data.endswith(b"\n")
            assert max(len(line) for line in c.data.split(b"\n")) < PARTIAL_SIZE
        else:
            assert len(c.data.rstrip(b"\n")) <= PARTIAL_SIZE


@given(st.binary(max_size=2000))
def test_a_chunk_counts_its_lines_as_the_newlines_it_holds(data):
    assert count_lines(data) == data.count(b"\n")
    assert Chunk(STDOUT, 1, data).count == data.count(b"\n")
