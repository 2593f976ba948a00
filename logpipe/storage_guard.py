"""Between the capture and a storage driver: a failing disk never stops the capture.

When a write fails with an ``OSError`` (``ENOSPC`` on a full disk, ``EDQUOT``, ``EIO`` …) the
capture goes on: the batch is counted as dropped (lines and bytes) and the pipes keep being
drained, so the container never blocks on a full disk and nothing propagates up to kill the
shim. Storage is then tried again at most every ``RETRY_INTERVAL`` seconds (a failing
``write`` costs an encode and a syscall; doing it for every read of a fast logger would burn a
core for nothing), and batches that arrive in between are only counted.

When a write works again, the gap is written into the log itself, just before the batch that
resumed it, as one ``stderr`` record::

    logpipe: 1234 lines (56789 bytes) of output were not stored between
    2026-12-07T14:00:00.1Z and 2026-12-07T14:00:09.9Z: [Errno 28] No space left on device

(on one line), stamped with the time of the batch that follows it, so ``--since`` and ``-f``
see it in order. Every driver's write leaves whole records only (a failed write is truncated
back, see ``drivers/rotation.py``), so a batch is either stored or counted, never half-written
and unreadable.

This module only counts and retries; it must not log to the same disk (``report`` is the
caller's, and must not raise) and it must not block.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

from .errors import PartlyStored
from .message import STDERR, Chunk
from .timespec import format_rfc3339nano

#: Seconds between attempts to store while storage fails.
RETRY_INTERVAL = 0.25
#: The prefix of the records logpipe itself writes into a container's log.
NOTICE_PREFIX = b"logpipe: "


class StorageGuard:
    """Wraps a storage driver (``write``/``flush``/``close``); never raises ``OSError`` from
    ``write``. Counters: ``lines_dropped``, ``bytes_dropped`` (everything this guard could not
    store), ``last_error`` and ``last_drop_ns`` (wall clock of the last dropped batch)."""

    def __init__(self, driver, report: Callable[[str], None] | None = None,
                 retry_interval: float = RETRY_INTERVAL) -> None:
        self.driver = driver
        self.report = report or (lambda text: None)
        self.retry_interval = retry_interval
        self.error: OSError | None = None  # set while storage fails
        self.last_error = ""
        self.lines_dropped = self.bytes_dropped = 0
        self.last_drop_ns = 0
        # The current gap (since storage last worked): what the notice record will say.
        self.gap_lines = self.gap_bytes = 0
        self.gap_first_ts = self.gap_last_ts = 0
        self.next_try = 0.0

    @property
    def failing(self) -> bool:
        return self.error is not None

    def write(self, batch: Sequence[Chunk]) -> None:
        if self.error is None:  # the hot path: one test and a try block
            try:
                self.driver.write(batch)
            except OSError as err:
                self._dropped(batch, err)
            return
        if time.monotonic() < self.next_try:
            self._count(batch)
            return
        try:
            self.driver.write([self._notice(batch[0].ts), *batch])
        except PartlyStored as err:  # the notice was stored: the gap starts again after it
            self._resumed()
            self._dropped(batch, PartlyStored(err, err.records - 1))
        except OSError as err:
            self._dropped(batch, err)
        else:
            self._resumed()

    def flush(self) -> None:
        self.driver.flush()

    def close(self) -> None:
        """Store the pending gap notice (one last try), then close the driver."""
        if self.gap_lines:
            try:
                self.driver.write([self._notice(max(time.time_ns(), self.gap_last_ts))])
            except OSError as err:
                self.report(f"storing the log still fails at the end of the run, the notice of "
                            f"{self.gap_lines} dropped lines is not in the log: {err}")
            else:
                self._resumed()
        self.driver.close()

    def _dropped(self, batch: Sequence[Chunk], err: OSError) -> None:
        """A write failed: count what it did not store; the next try is in a while."""
        self.next_try = time.monotonic() + self.retry_interval
        if self.error is None:
            self.report(f"storing the log failed, output is counted and dropped until storage "
                        f"works again (tried every {self.retry_interval:g} s): {err}")
        self.error = err
        self.last_error = str(err)
        if isinstance(err, PartlyStored):
            batch = unstored(batch, err.records)
        if batch:
            self._count(batch)

    def _count(self, batch: Sequence[Chunk]) -> None:
        lines = sum(chunk.count for chunk in batch)
        nbytes = sum(len(chunk.data) for chunk in batch)
        self.lines_dropped += lines
        self.bytes_dropped += nbytes
        self.gap_lines += lines
        self.gap_bytes += nbytes
        if not self.gap_first_ts:
            self.gap_first_ts = batch[0].ts
        self.gap_last_ts = batch[-1].ts
        self.last_drop_ns = time.time_ns()

    def _resumed(self) -> None:
        self.report(f"storing the log works again; {self.gap_lines} lines "
                    f"({self.gap_bytes} bytes) were dropped")
        self.error = None
        self.gap_lines = self.gap_bytes = self.gap_first_ts = self.gap_last_ts = 0

    def _notice(self, ts: int) -> Chunk:
        """The record that tells readers of the log about the gap."""
        text = (f"{self.gap_lines} lines ({self.gap_bytes} bytes) of output were not stored "
                f"between {format_rfc3339nano(self.gap_first_ts)} and "
                f"{format_rfc3339nano(self.gap_last_ts)}: {self.last_error}")
        return Chunk(STDERR, ts, NOTICE_PREFIX + text.encode("utf-8", "replace") + b"\n")


def unstored(batch: Sequence[Chunk], records: int) -> list[Chunk]:
    """What remains of ``batch`` after its first ``records`` records (a failed write stored
    those). Runs on the failure path only."""
    out = list(batch)
    while out and records > 0:
        first = out[0]
        n = first.count
        if n <= records:
            records -= n
            out.pop(0)
            continue
        pos = 0
        for _ in range(records):
            pos = first.data.index(b"\n", pos) + 1
        out[0] = first._replace(data=first.data[pos:])
        records = 0
    return out
