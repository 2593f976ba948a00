"""Shipping end to end: real daemon, real containers, a receiver that goes down, is slow, or
outlives the daemon — and no line lost where Docker loses them.

The containers are real (runc + busybox as root, else the ``process`` runtime; see
``test_reliability.py``). The receiver is ``FakeFluentd`` (``tests/receivers/fluentd.py``): a
Forward-protocol server decoding the real msgpack wire format, standing in for Fluentd, which
cannot be installed from PyPI, Debian or npm. The fluentd driver is used because it is the
one Docker blocks containers with and loses lines with (moby#15757, #40063); the spool and
shipper under test are the same for every remote driver.
"""

from __future__ import annotations

import collections
import json
import time

import pytest

from conftest import IMAGE, wait_until
from drivers.fluentd import MAX_BATCH_COUNT
from receivers.fluentd import FakeFluentd

pytestmark = pytest.mark.e2e


@pytest.fixture
def daemon(engine_daemon):
    """This module's tests run on ``engine_daemon`` (conftest.py)."""
    return engine_daemon


def writer(n: int, width: int = 0) -> str:
    """A container command writing lines ``1..n`` (zero-padded to ``width`` with a filler)."""
    if not width:
        return f"seq 1 {n}"
    return (f"awk 'BEGIN {{ for (i = 1; i <= {n}; i++) printf \"%08d %0{width - 9}d\\n\", i, 0 }}'")


def shipping(daemon, name: str) -> dict:
    return json.loads(daemon.inspect(name, "{{json .LogShipping}}"))


def logs_of(events) -> list[str]:
    return [e.record["log"] for e in events]


def fluentd_run(daemon, name: str, rx: FakeFluentd, command: str, *opts: str) -> str:
    args = ["run", "-d", "--name", name, "--log-driver", "fluentd",
            "--log-opt", f"fluentd-address={rx.address}", "--log-opt", "fluentd-async=true"]
    for opt in opts:
        args += ["--log-opt", opt]
    return daemon.ok(*args, IMAGE, "sh", "-c", command).decode().strip()


@pytest.mark.slow
def test_receiver_down_while_200k_lines_are_written_loses_nothing_and_never_blocks(daemon):
    rx = FakeFluentd()
    rx.start()
    port = rx.port
    rx.stop()  # down before the container starts; back once the shipper has retried a while
    try:
        # A short retry wait: the outage must outlast several retries, not minutes of backoff.
        fluentd_run(daemon, "outage", rx, writer(200_000), "fluentd-retry-wait=100ms")
        # The container finishes while the receiver is still down: it never waited for it.
        assert daemon.ok("wait", "outage") == b"0\n"
        st = shipping(daemon, "outage")
        assert st["CapturedLines"] == 200_000 and st["ShippedLines"] == 0
        assert st["Retries"] > 0 and "refused" in st["LastError"]
        wait_until(lambda: shipping(daemon, "outage")["Retries"] >= 5, timeout=30,
                   what="the shipper to retry through the outage")
        assert shipping(daemon, "outage")["ShippedLines"] == 0
        rx = FakeFluentd(port=port).start()
        got = rx.wait_for(200_000, timeout=60)
        assert logs_of(got) == [str(i) for i in range(1, 200_001)]
        wait_until(lambda: shipping(daemon, "outage")["BacklogLines"] == 0, timeout=30,
                   what="the backlog to drain")
        st = shipping(daemon, "outage")
        assert st["ShippedLines"] == 200_000 and st["DroppedLines"] == 0
    finally:
        rx.stop()


@pytest.mark.slow
def test_daemon_sigkill_mid_shipping_200k_lines_every_line_arrives_duplicates_reported(daemon):
    with FakeFluentd(rate=40_000) as rx:  # shipping takes ~5 s: the kill lands in the middle
        # With acks the checkpoint means "processed", so order holds across the restart too
        # (without, a batch still queued in the dead daemon's socket may be processed after
        # the new daemon's first batch).
        fluentd_run(daemon, "shipper", rx, writer(200_000), "fluentd-request-ack=true")
        assert daemon.ok("wait", "shipper") == b"0\n"
        wait_until(lambda: len(rx.events) >= 50_000, timeout=60, what="50 k lines shipped")
        daemon.sigkill()
        at_kill = len(rx.events)
        assert at_kill < 200_000, "shipping was over before the kill"
        daemon.start()
        wait_until(lambda: len(set(logs_of(rx.events))) >= 200_000, timeout=120,
                   what="every line after the restart")
        wait_until(lambda: shipping(daemon, "shipper")["BacklogLines"] == 0, timeout=30,
                   what="the backlog to drain")
        got = logs_of(rx.events)
        assert set(got) == {str(i) for i in range(1, 200_001)}
        repeated = len(got) - 200_000
        st = shipping(daemon, "shipper")
        assert repeated <= st["PossibleDuplicates"], (repeated, st)
        assert st["PossibleDuplicates"] <= MAX_BATCH_COUNT  # one batch at most
        # Order is kept: each line first arrives after the lines before it.
        firsts = [got.index(str(i)) for i in range(1, 200_001, 997)]
        assert firsts == sorted(firsts)


@pytest.mark.slow
def test_slow_receiver_with_non_blocking_small_spool_counts_drops_exactly(daemon):
    with FakeFluentd(rate=1_000) as rx:
        fluentd_run(daemon, "slowrx", rx, writer(20_000, width=100), "mode=non-blocking",
                    "cache-max-size=50k", "cache-max-file=2", "cache-compress=false")
        assert daemon.ok("wait", "slowrx") == b"0\n"  # never blocked by the slow receiver
        wait_until(lambda: not shipping(daemon, "slowrx")["Running"], timeout=60,
                   what="the shipper to finish the spool")
        st = shipping(daemon, "slowrx")
        assert st["CapturedLines"] == 20_000
        assert st["DroppedLines"] > 0
        assert st["ShippedLines"] + st["DroppedLines"] == 20_000, st
        got = logs_of(rx.wait_for(st["ShippedLines"]))
        assert len(got) == st["ShippedLines"]
        numbers = [int(line[:8]) for line in got]
        assert numbers == sorted(set(numbers))  # each once, in order; the oldest went first
        assert numbers[-1] == 20_000  # the newest data is kept
        assert any("dropped" in event and "unshipped records" in event for event in st["Events"])


@pytest.mark.slow
def test_container_exit_with_100k_unshipped_lines_all_arrive_after_exit(daemon):
    # 9 k lines/s: the last line arrives ~11 s after the container exited; Docker gives up
    # on a driver 10 s after exit and loses what it has not sent.
    with FakeFluentd(rate=9_000) as rx:
        fluentd_run(daemon, "exiter", rx, writer(100_000))
        assert daemon.ok("wait", "exiter") == b"0\n"
        exited = time.monotonic()
        assert len(rx.events) < 100_000
        got = rx.wait_for(100_000, timeout=60)
        assert time.monotonic() - exited > 5
        assert logs_of(got) == [str(i) for i in range(1, 100_001)]
        assert collections.Counter(e.record["source"] for e in got) == {"stdout": 100_000}


@pytest.mark.slow
def test_rm_of_a_container_with_unshipped_lines_still_delivers_them_then_frees_the_disk(daemon):
    import os

    with FakeFluentd(rate=10_000) as rx:
        cid = daemon.ok("run", "--rm", "--log-driver", "fluentd",
                        "--log-opt", f"fluentd-address={rx.address}", IMAGE,
                        "seq", "1", "30000").decode()
        assert cid.count("\n") == 30_000  # attached: it ran to the end
        assert daemon.ok("ps", "-aq") == b""  # removed at once, as --rm does
        assert len(rx.events) < 30_000
        got = rx.wait_for(30_000, timeout=60)
        assert logs_of(got) == [str(i) for i in range(1, 30_001)]
        cdir = os.path.join(daemon.root, "containers")
        wait_until(lambda: os.listdir(cdir) == [], timeout=30,
                   what="the removed container's directory to go once shipped")
