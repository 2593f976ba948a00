"""mode=non-blocking: a full buffer drops the incoming data as Docker does, and counts it."""

import threading

import pytest

from logpipe.capture import make_sink
from logpipe.message import STDOUT, Chunk
from logpipe.nonblocking import NonBlockingSink

pytestmark = pytest.mark.unit


class StuckDriver:
    """A storage driver whose disk stalls until released: records what reached it."""

    def __init__(self):
        self.release = threading.Event()
        self.entered = threading.Event()
        self.written: list[Chunk] = []

    def write(self, batch):
        self.entered.set()
        self.release.wait(10)
        self.written.extend(batch)


def chunk(lines: int, ts: int = 1) -> Chunk:
    return Chunk(STDOUT, ts, b"".join(b"line %04d\n" % i for i in range(lines)))  # 10 B/line


def test_full_buffer_drops_incoming_lines_and_counts_exactly():
    driver = StuckDriver()
    sink = NonBlockingSink(driver, max_bytes=100)
    sink.write([chunk(1)])
    assert driver.entered.wait(5)  # the drain thread now holds that one line, stuck
    sink.write([chunk(8), chunk(5)])  # 80 B fit; of the next 50 B only 20 B fit
    sink.write([chunk(3)])  # buffer full: all dropped
    driver.release.set()
    sink.close()
    kept = b"".join(c.data for c in driver.written)
    assert kept.count(b"\n") == 1 + 8 + 2
    assert sink.dropped_lines == 3 + 3 and sink.dropped_bytes == 60
    assert kept.count(b"\n") + sink.dropped_lines == 1 + 8 + 5 + 3


def test_message_larger_than_the_buffer_is_accepted_when_the_buffer_is_empty():
    driver = StuckDriver()
    driver.release.set()
    sink = NonBlockingSink(driver, max_bytes=10)
    sink.write([chunk(50)])
    sink.close()
    assert sink.dropped_lines == 0 and sum(c.count for c in driver.written) == 50


def test_blocking_mode_writes_straight_through_the_driver():
    driver = StuckDriver()
    assert make_sink(driver, {}) is driver
    assert isinstance(make_sink(driver, {"mode": "non-blocking"}), NonBlockingSink)
    make_sink(driver, {"mode": "non-blocking"}).close()
