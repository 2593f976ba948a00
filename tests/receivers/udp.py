"""The plainest UDP receiver: one socket with the kernel's default buffer, read in a loop.

What a small collector or a script does, and the hardest case for a UDP sender: the default
``SO_RCVBUF`` (``net.core.rmem_default``, 208 KiB) holds only ~160 datagrams of 300 bytes,
so a burst sent faster than the loop reads is lost. ``PlainUDPReceiver`` counts datagrams
and keeps the distinct ones (so that duplicates show), and its reading can be paused.
No pytest needed: ``with PlainUDPReceiver() as rx: ... rx.wait_for(n)``.
"""

from __future__ import annotations

import socket
import threading
import time


class PlainUDPReceiver:
    """Datagrams arriving at ``127.0.0.1:port`` (``address``: ``udp://127.0.0.1:port``)."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.count = 0
        self.distinct: set[bytes] = set()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))  # no SO_RCVBUF: the default is the point
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self.address = f"udp://127.0.0.1:{self.port}"
        self._reading = threading.Event()
        self._reading.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"PlainUDPReceiver-{self.port}")

    def start(self) -> "PlainUDPReceiver":
        self._thread.start()
        return self

    def _loop(self) -> None:
        recv, keep = self._sock.recv, self.keep
        while not self._stop.is_set():
            if not self._reading.wait(0.05):
                continue
            try:
                data = recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.count += 1
            if keep:
                self.distinct.add(data)

    def pause(self) -> None:
        """Stop reading (the socket stays bound: the kernel queues, then drops)."""
        self._reading.clear()

    def resume(self) -> None:
        self._reading.set()

    def wait_for(self, n: int, timeout: float = 10.0, quiet: float = 0.3) -> int:
        """Poll until ``n`` datagrams arrived, or nothing arrived for ``quiet`` seconds, or
        ``timeout``; the count. (A UDP receiver has no other signal that a sender is done.)"""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while self.count < n and time.monotonic() < deadline:
            if self.count != last:
                last, since = self.count, time.monotonic()
            elif time.monotonic() - since > quiet:
                break
            time.sleep(0.01)
        return self.count

    def close(self) -> None:
        self._stop.set()
        self._reading.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> "PlainUDPReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
