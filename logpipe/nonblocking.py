"""``mode=non-blocking``: a bounded buffer between capture and storage.

Docker's RingLogger semantics are kept: capacity counts bytes of line data (default 1e6),
a full buffer drops the *incoming* message, and a message larger than the whole buffer is
still accepted when the buffer is empty. Unlike Docker (moby#45953), every drop is counted
and the counts are exposed (``dropped_lines``, ``dropped_bytes``).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Sequence

from .message import Chunk, count_lines


class NonBlockingSink:
    """Accepts batches without ever waiting for the driver; a thread drains them into it."""

    def __init__(self, driver, max_bytes: int) -> None:
        self.driver, self.max_bytes = driver, max_bytes
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self.error: BaseException | None = None
        self._queue: deque[Chunk] = deque()
        self._size = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._drain, name="logpipe-drain", daemon=True)
        self._thread.start()

    def write(self, batch: Sequence[Chunk]) -> None:
        with self._cond:
            for chunk in batch:
                self._admit(chunk)
            self._cond.notify()

    def _admit(self, chunk: Chunk) -> None:
        size = len(chunk.data)
        room = self.max_bytes - self._size
        if size <= room or not self._queue:
            self._queue.append(chunk)
            self._size += size
            return
        cut = chunk.data.rfind(b"\n", 0, room) + 1 if chunk.partial is None and room > 0 else 0
        if cut:
            self._queue.append(Chunk(chunk.source, chunk.ts, chunk.data[:cut], None, chunk.attrs))
            self._size += cut
        dropped = chunk.data[cut:]
        self.dropped_bytes += len(dropped)
        self.dropped_lines += 1 if chunk.partial is not None else count_lines(dropped)

    def _drain(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue and self._closed:
                    return
                batch = list(self._queue)
                self._queue.clear()
                self._size = 0
            try:
                self.driver.write(batch)
            except BaseException as err:  # Docker: stop draining at the first driver error
                self.error = err
                with self._cond:
                    self._closed = True
                    self._queue.clear()
                return

    def close(self) -> None:
        """Stop accepting, write what is queued, then return."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
