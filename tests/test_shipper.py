"""The spool and its shipper: every record delivered once, in order, across rotations,
receiver failures, shipper restarts and a full spool (blocking waits, non-blocking drops
exactly what it counts).

The driver here is ``RecordingDriver``, an in-process implementation of the remote-driver
contract whose failures the tests script; the real drivers and receivers are tested end to
end in ``test_shipping_e2e.py``.
"""

from __future__ import annotations

import os
import threading

import pytest

from drivers.spool import SpoolTail, SpoolWriter, spool_config
from logpipe.checkpoint import Checkpoint, checkpoint_path, read_checkpoint, write_checkpoint
from logpipe.driver import BatchLimits, LogInfo
from logpipe.errors import LogOptError, PermanentError, RetryableError
from logpipe.message import STDOUT, Chunk
from logpipe.shipper import Shipper

pytestmark = pytest.mark.unit


class RecordingDriver:
    """Keeps what it is sent; ``fail`` scripts the answer to each send (an exception to
    raise, or None to accept)."""

    kind = "remote"

    def __init__(self, limits: BatchLimits = BatchLimits(max_count=100), fail=None,
                 gate: threading.Event | None = None, delay: float = 0.0) -> None:
        self.limits = limits
        self.retry_wait = 0.001
        self.retry_max_wait = 0.01
        self.fail = list(fail or [])
        self.gate = gate
        self.delay = delay  # a slow receiver: each send takes this long
        self.got: list[bytes] = []
        self.calls = 0

    def send(self, batch):
        self.calls += 1
        if self.gate is not None:
            self.gate.wait()
        if self.delay:
            threading.Event().wait(self.delay)
        if self.fail:
            err = self.fail.pop(0)
            if err is not None:
                raise err
        self.got.extend(m.line for m in batch)
        return None

    def close(self):
        pass


def info_for(tmp_path, **opts) -> LogInfo:
    return LogInfo(container_id="c" * 64, log_dir=str(tmp_path), config=opts)


def lines(start: int, n: int, width: int = 40) -> list[bytes]:
    return [b"%08d " % i + b"x" * (width - 9) for i in range(start, start + n)]


def write_lines(writer: SpoolWriter, start: int, n: int, per_batch: int = 50) -> None:
    for i in range(start, start + n, per_batch):
        batch = lines(i, min(per_batch, start + n - i))
        writer.write([Chunk(STDOUT, 1_000_000 + i, b"\n".join(batch) + b"\n")])


def ship(tmp_path, driver) -> Shipper:
    info = info_for(tmp_path)
    tail = SpoolTail(SpoolWriter.log_path(info), warn=lambda t: None)
    shipper = Shipper("test", lambda: driver, tail, checkpoint_path(str(tmp_path), "rec"))
    shipper.start()
    return shipper


@pytest.fixture
def ship_dir(tmp_path):
    os.mkdir(tmp_path / "ship")
    return tmp_path


def test_every_record_arrives_once_in_order_across_many_rotations(ship_dir):
    writer = SpoolWriter(info_for(ship_dir, **{"cache-max-size": "20k", "cache-max-file": "100"}),
                         "rec")
    write_lines(writer, 0, 20_000)
    writer.close()
    driver = RecordingDriver()
    shipper = ship(ship_dir, driver)
    shipper.join(30)
    assert not shipper.is_alive()
    assert driver.got == lines(0, 20_000)
    cp = read_checkpoint(checkpoint_path(str(ship_dir), "rec"))
    assert cp.shipped_lines == 20_000 and cp.inflight == 0
    assert driver.calls == 200  # batches cut at max_count=100


def test_retryable_errors_are_retried_until_delivered_without_loss_or_reordering(ship_dir):
    writer = SpoolWriter(info_for(ship_dir), "rec")
    write_lines(writer, 0, 1_000)
    writer.close()
    driver = RecordingDriver(fail=[RetryableError("down")] * 5 + [None, RetryableError("503")])
    shipper = ship(ship_dir, driver)
    shipper.join(30)
    assert driver.got == lines(0, 1_000)
    assert shipper.stats.retries == 6
    assert shipper.stats.shipped_lines == 1_000


def test_a_permanently_refused_batch_is_counted_and_shipping_goes_on(ship_dir):
    writer = SpoolWriter(info_for(ship_dir), "rec")
    write_lines(writer, 0, 300)
    writer.close()
    driver = RecordingDriver(fail=[None, PermanentError("400 bad request")])
    shipper = ship(ship_dir, driver)
    shipper.join(30)
    assert driver.got == lines(0, 100) + lines(200, 100)
    assert shipper.stats.rejected_lines == 100
    assert any("400 bad request" in e for e in shipper.stats.events)


def test_a_restarted_shipper_resumes_at_its_checkpoint(ship_dir):
    writer = SpoolWriter(info_for(ship_dir, **{"cache-max-size": "10k"}), "rec")
    write_lines(writer, 0, 2_000)
    writer.close()
    gate = threading.Event()
    first = RecordingDriver(gate=gate)
    shipper = ship(ship_dir, first)
    gate.set()
    while first.calls < 5:
        shipper.join(0.01)
    shipper.stop()
    shipper.join(10)
    done = len(first.got)
    second = RecordingDriver()
    ship(ship_dir, second).join(30)
    assert first.got + second.got == lines(0, 2_000)
    assert done >= 400


def test_a_batch_in_flight_at_a_crash_is_sent_again_and_counted_as_duplicates(ship_dir):
    writer = SpoolWriter(info_for(ship_dir), "rec")
    write_lines(writer, 0, 500)
    writer.close()
    path = checkpoint_path(str(ship_dir), "rec")
    # What a daemon killed during its first send leaves behind.
    write_checkpoint(path, Checkpoint(inflight=100))
    driver = RecordingDriver()
    shipper = ship(ship_dir, driver)
    shipper.join(30)
    assert driver.got == lines(0, 500)
    assert shipper.stats.duplicates == 100
    assert read_checkpoint(path).duplicates == 100


def test_blocking_spool_waits_for_the_shipper_and_loses_nothing(ship_dir):
    info = info_for(ship_dir, **{"cache-max-size": "8k", "cache-max-file": "2"})
    blocked = threading.Event()

    def idle(timeout):
        blocked.set()
        threading.Event().wait(timeout)

    writer = SpoolWriter(info, "rec", idle=idle)
    t = threading.Thread(target=write_lines, args=(writer, 0, 5_000))
    t.start()
    assert blocked.wait(10), "the writer never had to wait although nothing was shipped"
    driver = RecordingDriver()
    shipper = ship(ship_dir, driver)
    t.join(60)
    writer.close()
    shipper.join(60)
    assert driver.got == lines(0, 5_000)
    assert writer.dropped_lines == 0 and writer.blocked_seconds > 0


def test_blocking_spool_stops_waiting_once_its_container_exited_and_keeps_every_line(ship_dir):
    # The shim's idle answers False once the container has exited: the writer must neither
    # wait for a shipper that is not coming nor delete an unshipped generation.
    info = info_for(ship_dir, **{"cache-max-size": "8k", "cache-max-file": "2",
                                 "cache-compress": "false"})
    waits = []

    def idle(timeout):
        waits.append(timeout)
        return False

    writer = SpoolWriter(info, "rec", idle=idle)
    done = threading.Thread(target=write_lines, args=(writer, 0, 2_000), daemon=True)
    done.start()
    done.join(10)
    assert not done.is_alive(), "the writer kept waiting for the shipper"
    assert waits and writer.dropped_lines == 0
    spool = SpoolWriter.log_path(info)
    assert sum(os.stat(f).st_size for f in (spool, spool + ".1")) > 2 * 8_000  # past budget
    writer.close()
    driver = RecordingDriver()
    ship(ship_dir, driver).join(60)
    assert driver.got == lines(0, 2_000)


def test_non_blocking_spool_drops_the_oldest_and_counts_exactly(ship_dir):
    info = info_for(ship_dir, **{"cache-max-size": "8k", "cache-max-file": "2",
                                 "mode": "non-blocking"})
    writer = SpoolWriter(info, "rec")
    driver = RecordingDriver(limits=BatchLimits(max_count=37), delay=0.002)
    shipper = ship(ship_dir, driver)
    write_lines(writer, 0, 20_000, per_batch=20)
    writer.close()
    shipper.join(60)
    assert writer.dropped_lines > 0
    assert len(driver.got) + writer.dropped_lines == 20_000
    assert len(set(driver.got)) == len(driver.got) and driver.got == sorted(driver.got)


def test_cache_options_are_validated_with_a_clear_message():
    with pytest.raises(LogOptError, match="invalid value for cache-max-size: abc"):
        spool_config({"cache-max-size": "abc"})
    with pytest.raises(LogOptError, match="cache-max-file cannot be less than 1"):
        spool_config({"cache-max-file": "0"})
    assert spool_config({}).max_size == 20_000_000


def test_whole_lines_keeps_the_pieces_of_a_long_line_in_one_batch(ship_dir):
    from logpipe.message import PartialMeta

    writer = SpoolWriter(info_for(ship_dir), "rec")
    pid = "p" * 64
    pieces = [Chunk(STDOUT, 5, b"a" * 100, PartialMeta(pid, k, False)) for k in (1, 2, 3)]
    pieces.append(Chunk(STDOUT, 5, b"end\n", PartialMeta(pid, 4, True)))
    writer.write([Chunk(STDOUT, 1, b"one\ntwo\n")] + pieces + [Chunk(STDOUT, 6, b"after\n")])
    writer.close()
    batches = []

    class Batching(RecordingDriver):
        def send(self, batch):
            batches.append([m.line for m in batch])
            return super().send(batch)

    driver = Batching(limits=BatchLimits(max_count=3, whole_lines=True))
    ship(ship_dir, driver).join(30)
    # max_count=3 would cut after the first piece; the batch runs on to the line's end.
    assert batches == [[b"one", b"two"] + [b"a" * 100] * 3 + [b"end"], [b"after"]]


# -- the writer's rotation against the tail, interleaved step by step ---------------------------

def _spool_in_generation_2(ship_dir) -> tuple[SpoolWriter, int]:
    """A non-blocking spool of 2 × 8k whose writer has just started generation 2; returns
    the writer and how many lines it wrote."""
    writer = SpoolWriter(info_for(ship_dir, **{"cache-max-size": "8k", "cache-max-file": "2",
                                               "mode": "non-blocking"}), "rec")
    written = 0
    while writer._file.seq < 2 or writer._file.size == 0:
        write_lines(writer, written, 20, per_batch=20)
        written += 20
    return writer, written


@pytest.mark.parametrize("rotations", [1, 2])
@pytest.mark.parametrize("step", range(1, 13))
def test_rotations_while_the_tail_moves_to_the_next_generation_lose_nothing(
        ship_dir, monkeypatch, step, rotations):
    # The tail has read generation 1 and goes on to generation 2 (it checks that the writer
    # moved on, looks for the file, locks it, checks it again). At its ``step``-th look at
    # a file's generation the writer rotates once (generation 1, which the tail holds, goes
    # uncounted; 2 becomes ``.1``) or twice (2 goes too: counted, unless the tail holds it
    # by then). Whatever the moment: delivered + dropped == written, each line once, in order.
    import drivers.spool as spool

    writer, written = _spool_in_generation_2(ship_dir)
    tail = SpoolTail(writer.path, warn=lambda t: None)
    end_of_1 = os.stat(writer.path + ".1").st_size
    real_read_seq = spool.read_seq
    looks, armed, inside = [0], [False], [False]

    def read_seq(target):
        if armed[0] and not inside[0]:
            looks[0] += 1
            if looks[0] == step:
                inside[0] = True  # the writer's own looks do not count
                nonlocal written
                target_seq = writer._file.seq + rotations
                while writer._file.seq < target_seq:
                    write_lines(writer, written, 20, per_batch=20)
                    written += 20
                inside[0] = False
        return real_read_seq(target)

    monkeypatch.setattr(spool, "read_seq", read_seq)
    got: list[bytes] = []
    position = (1, 0)
    while True:  # as the shipper reads: again from where the last pass ended, until done
        before = len(got)
        for block in tail.blocks(*position):
            got += [m.line for chunk in block.chunks for m in chunk.messages()]
            position = (block.seq, block.end)
            armed[0] = armed[0] or position == (1, end_of_1)
        if len(got) == before and looks[0] >= step:
            break
    monkeypatch.undo()
    tail.close()
    writer.close()
    assert len(got) + writer.dropped_lines == written, (len(got), writer.dropped_lines, written)
    assert got == sorted(set(got))
    assert got[-1] == lines(written - 1, 1)[0]


@pytest.mark.parametrize("moment", ["batch in flight", "checkpoint just moved"])
@pytest.mark.parametrize("rotations", [1, 2, 3])
def test_rotations_at_each_moment_of_a_delivery_lose_nothing(ship_dir, monkeypatch, moment,
                                                            rotations):
    # The writer fills the spool and rotates ``rotations`` times at one moment of each of the
    # first deliveries: while the batch is with the receiver, or right after the checkpoint
    # moved (before the shipper let go of the generations behind it).
    import logpipe.shipper as shipper_module

    writer, written = _spool_in_generation_2(ship_dir)
    hooks, done = [0], threading.Event()

    def rotate():
        nonlocal written
        hooks[0] += 1
        if hooks[0] > 12:
            done.set()
            return
        target = writer._file.seq + rotations
        while writer._file.seq < target:
            write_lines(writer, written, 20, per_batch=20)
            written += 20

    real_write_checkpoint = shipper_module.write_checkpoint

    def write_checkpoint(path, cp):
        real_write_checkpoint(path, cp)
        if moment == "checkpoint just moved" and cp.inflight == 0:
            rotate()

    monkeypatch.setattr(shipper_module, "write_checkpoint", write_checkpoint)
    driver = RecordingDriver(limits=BatchLimits(max_count=150))
    if moment == "batch in flight":
        real_send = driver.send
        driver.send = lambda batch: (rotate(), real_send(batch))[1]
    shipper = ship(ship_dir, driver)
    assert done.wait(30)
    writer.close()
    shipper.join(30)
    assert not shipper.is_alive()
    assert writer.dropped_lines > 0
    assert len(driver.got) + writer.dropped_lines == written
    assert driver.got == sorted(set(driver.got))
    assert driver.got[-1] == lines(written - 1, 1)[0]


def test_a_tail_that_found_the_first_generation_empty_keeps_it_until_it_is_read(ship_dir):
    # The shipper starts with the container: its checkpoint says generation 0 and the first
    # generation is still empty. While it waits for data, the writer fills generations 1
    # and 2 and rotates twice: generation 1, which the tail holds, goes uncounted, so the
    # tail must read it from its descriptor, not look for it again and take it for dropped.
    writer = SpoolWriter(info_for(ship_dir, **{"cache-max-size": "8k", "cache-max-file": "2",
                                               "mode": "non-blocking"}), "rec")
    tail = SpoolTail(writer.path, warn=lambda t: None)
    assert list(tail.blocks(0, 0)) == []  # generation 1 exists, empty: opened and held
    written = 0
    while writer._file.seq < 3 or writer._file.size == 0:
        write_lines(writer, written, 20, per_batch=20)
        written += 20
    got = [m.line for block in tail.blocks(0, 0) for chunk in block.chunks
           for m in chunk.messages()]
    tail.close()
    writer.close()
    assert len(got) + writer.dropped_lines == written, (len(got), writer.dropped_lines, written)
    assert got == sorted(set(got)) and got[0] == lines(0, 1)[0]
