"""The shipper: delivers one container's spool to its remote driver, from a durable checkpoint.

One thread per container with a remote driver, in the daemon. It reads whole blocks from the
spool (``tail``, see ``drivers/spool.py``) starting at the checkpoint, cuts batches to the
driver's ``BatchLimits``, calls ``driver.send`` and advances the checkpoint only when ``send``
returned. A ``RetryableError`` is retried with exponential backoff and jitter, for as long as
it takes (unless the driver sets ``max_retries``, as ``fluentd-max-retries`` asks); a
``PermanentError`` counts the batch as rejected, reports it, and moves on.

Delivery is at-least-once: the checkpoint records the size of the batch in flight before it is
sent, so after a crash the records that may arrive twice are bounded by one batch and counted
(``duplicates``). Nothing here blocks a container: the shim only waits when its spool is full.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Callable, Iterator, NamedTuple, Protocol

from .checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from .driver import BatchLimits, hook
from .errors import PermanentError, RetryableError
from .message import Chunk, Message

log = logging.getLogger("logpipe.shipper")

#: Backoff between retries of one batch, unless the driver says otherwise (``retry_wait``,
#: ``retry_max_wait``): short enough that a receiver back after an outage is used at once.
RETRY_WAIT = 0.2
RETRY_MAX_WAIT = 5.0
#: Longest wait for new spool data without an inotify event (a safety net, not a poll loop).
IDLE_WAIT = 1.0


class Block(Protocol):
    seq: int
    offset: int
    end: int
    chunks: list[Chunk]


class Tail(Protocol):
    """The spool reader the shipper needs (``drivers.spool.SpoolTail``)."""

    def blocks(self, seq: int, offset: int) -> Iterator[Block]: ...

    def writer_gone(self) -> bool: ...

    def wait(self, timeout: float) -> None:
        """Until the spool may have changed, or ``timeout`` seconds."""

    def release(self, below: int) -> None:
        """The checkpoint has moved to generation ``below``: earlier ones may go."""

    def close(self) -> None: ...


class Batch(NamedTuple):
    """Records to send, and the checkpoint position right after the last of them."""

    messages: list[Message]
    nbytes: int
    seq: int
    offset: int
    skip: int


class Stats:
    """Live counters of one shipper, read by ``inspect`` and ``/metrics`` (GIL-atomic ints)."""

    __slots__ = ("shipped_lines", "shipped_bytes", "rejected_lines", "retries", "duplicates",
                 "batches", "last_error", "oldest_unshipped_ns", "events")

    def __init__(self, cp: Checkpoint) -> None:
        self.shipped_lines, self.shipped_bytes = cp.shipped_lines, cp.shipped_bytes
        self.rejected_lines, self.retries, self.duplicates = (cp.rejected_lines, cp.retries,
                                                              cp.duplicates)
        self.batches = 0
        self.last_error = ""
        self.oldest_unshipped_ns = 0
        self.events: list[str] = []

    def event(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.events = (self.events + [f"{stamp} {text}"])[-20:]


def delivery_counters(stats: Stats | None, cp: Checkpoint) -> dict[str, Any]:
    """``LogShipping``'s delivery counters (inspect, ``/metrics``; the daemon's and the
    Docker plugin's): the live shipper's ``stats``, else its durable checkpoint's when none
    runs (the lag is then unknown: 0)."""
    src = stats if stats is not None else cp
    oldest = stats.oldest_unshipped_ns if stats is not None else 0
    return {"ShippedLines": src.shipped_lines, "ShippedBytes": src.shipped_bytes,
            "RejectedLines": src.rejected_lines, "Retries": src.retries,
            "PossibleDuplicates": src.duplicates,
            "LagSeconds": round(max(0.0, time.time() - oldest / 1e9), 3) if oldest else 0.0}


class Shipper(threading.Thread):
    """Ships one container's spool until stopped, or until its writer is gone and all of it
    has been delivered."""

    def __init__(self, name: str, make_driver: Callable[[], Any], tail: Tail,
                 checkpoint: str) -> None:
        super().__init__(name=f"ship-{name}", daemon=True)
        self.make_driver, self.tail, self.checkpoint = make_driver, tail, checkpoint
        self.cp = read_checkpoint(checkpoint)
        self.stats = Stats(self.cp)
        self.stopping = threading.Event()
        #: True once it ended because everything was delivered and the writer is gone.
        self.finished = False
        self.driver: Any = None
        self.limits = BatchLimits()
        self._cache: tuple[tuple[int, int], list[Message], int] | None = None
        self._save_failed = False  # the last checkpoint write failed (disk full)

    def stop(self) -> None:
        self.stopping.set()

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        try:
            if self.cp.inflight:
                # The daemon died with a batch in flight: it is sent again and may arrive twice.
                self.stats.duplicates += self.cp.inflight
                self.stats.event(f"resent a batch of {self.cp.inflight} records that was in "
                                 "flight when the daemon stopped: they may arrive twice")
                self._save(inflight=0)
            self.driver = self.make_driver()
            self.limits = hook(self.driver, "limits")
            self._loop()
        except Exception as err:  # a bug must not pass silently: it is reported where users look
            log.exception("shipper %s stopped", self.name)
            self.stats.last_error = f"shipper stopped: {err}"
        finally:
            if self.driver is not None:
                try:
                    self.driver.close()
                except Exception:
                    log.exception("closing the driver of %s", self.name)
            self.tail.close()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            gone = self.tail.writer_gone()  # looked at before reading: nothing can follow
            batch = self._next_batch()
            if batch is None:
                break
            if not batch.messages:
                self.stats.oldest_unshipped_ns = 0
                if gone:
                    self.finished = True
                    return
                self.tail.wait(IDLE_WAIT)
                continue
            self.stats.oldest_unshipped_ns = batch.messages[0].ts
            self._deliver(batch)

    def _next_batch(self) -> Batch | None:
        """The next batch, filled up to the limits; waits ``limits.wait`` for more records
        when it is not full yet. None when stopping."""
        batch = self._cut()
        if batch.messages and self.limits.wait > 0 and not self._full(batch):
            deadline = time.monotonic() + self.limits.wait
            while not self.stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.tail.wait(left)
                batch = self._cut()
                if self._full(batch):
                    break
        return None if self.stopping.is_set() else batch

    def _full(self, batch: Batch) -> bool:
        limits = self.limits
        return (len(batch.messages) >= limits.max_count
                or batch.nbytes + len(batch.messages) * limits.overhead >= limits.max_bytes * 0.9)

    # -- cutting batches ---------------------------------------------------------------------

    def _block_messages(self, block: Block) -> tuple[list[Message], int]:
        """The block's records, decoded once even when batches cut through it."""
        key = (block.seq, block.offset)
        if self._cache is None or self._cache[0] != key:
            msgs = [m for chunk in block.chunks for m in chunk.messages()]
            self._cache = (key, msgs, block.end)
        return self._cache[1], self._cache[2]

    def _cut(self) -> Batch:
        """Records from the checkpoint on, as many as the limits allow."""
        limits = self.limits
        cp = self.cp
        out: list[Message] = []
        nbytes = 0
        seq, offset, skip = cp.seq, cp.offset, cp.skip
        first_ts = None
        for block in self.tail.blocks(seq, offset):
            if block.seq != seq or block.offset != offset:
                seq, offset, skip = block.seq, block.offset, 0  # moved on (or past a drop)
            msgs, end = self._block_messages(block)
            i = skip
            while i < len(msgs):
                msg = msgs[i]
                cost = len(msg.line) + limits.overhead
                if out and (len(out) >= limits.max_count
                            or nbytes + len(out) * limits.overhead + cost > limits.max_bytes
                            or (limits.max_span_ns and msg.ts - first_ts > limits.max_span_ns)) \
                        and not (limits.whole_lines and _inside_line(out[-1])):
                    return Batch(out, nbytes, seq, offset, i)
                if first_ts is None:
                    first_ts = msg.ts
                out.append(msg)
                nbytes += len(msg.line)
                i += 1
            seq, offset, skip = block.seq, end, 0
        return Batch(out, nbytes, seq, offset, skip)

    # -- delivering ---------------------------------------------------------------------------

    def _deliver(self, batch: Batch) -> None:
        """Send until confirmed (or rejected for good), then move the checkpoint."""
        attempt = 0
        max_retries = hook(self.driver, "max_retries")
        self._save(inflight=len(batch.messages))
        while True:
            try:
                rejected = self.driver.send(batch.messages) or 0
            except RetryableError as err:
                attempt += 1
                self.stats.retries += 1
                self.stats.last_error = str(err)
                if max_retries is not None and attempt > max_retries:
                    self._reject(batch, f"gave up after {max_retries} retries: {err}")
                    return
                if attempt == 1:
                    self.stats.event(f"delivery failed, retrying with backoff: {err}")
                if self.stopping.wait(self._backoff(attempt)):
                    self._save(inflight=0)
                    return
                continue
            except PermanentError as err:
                self._reject(batch, f"receiver refused a batch: {err}")
                return
            break
        if attempt:
            self.stats.event(f"delivered after {attempt} retries")
        self.stats.batches += 1
        self.stats.last_error = ""
        self.stats.shipped_lines += len(batch.messages) - rejected
        # Bytes as captured (newlines included), to compare with the shim's count.
        self.stats.shipped_bytes += batch.nbytes + sum(m.newline for m in batch.messages)
        self.stats.rejected_lines += rejected
        self._advance(batch)

    def _reject(self, batch: Batch, text: str) -> None:
        n = len(batch.messages)
        self.stats.rejected_lines += n
        self.stats.last_error = text
        self.stats.event(f"{n} records dropped: {text}")
        log.warning("%s: %d records dropped: %s", self.name, n, text)
        self._advance(batch)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter (half to full of the capped exponential)."""
        base = hook(self.driver, "retry_wait") or RETRY_WAIT
        cap = max(base, hook(self.driver, "retry_max_wait") or RETRY_MAX_WAIT)
        wait = min(cap, base * 2 ** min(attempt - 1, 30))
        return wait * (0.5 + random.random() / 2)

    def _advance(self, batch: Batch) -> None:
        self.cp = self.cp._replace(seq=batch.seq, offset=batch.offset, skip=batch.skip)
        self._save(inflight=0)
        self.tail.release(batch.seq)

    def _save(self, inflight: int) -> None:
        s = self.stats
        self.cp = self.cp._replace(
            shipped_lines=s.shipped_lines, shipped_bytes=s.shipped_bytes,
            rejected_lines=s.rejected_lines, retries=s.retries, duplicates=s.duplicates,
            inflight=inflight)
        try:
            write_checkpoint(self.checkpoint, self.cp)
        except OSError as err:
            # A full disk must not stop delivery: the checkpoint in memory is right and the
            # file is written again with the next batch. Until then a restarted daemon
            # resends from the older one (duplicates, never loss) and a full spool waits
            # (blocking) or counts as dropped what was in fact shipped (non-blocking).
            if not self._save_failed:
                self.stats.event(f"saving the checkpoint failed, delivery goes on: {err}")
                log.warning("shipper %s: saving the checkpoint failed, delivery goes on: %s",
                            self.name, err)
            self._save_failed = True
        else:
            self._save_failed = False


def _inside_line(msg: Message) -> bool:
    """Whether ``msg`` is a piece of a long line that more pieces continue."""
    return msg.partial is not None and not msg.partial.last and not msg.newline
