"""Pacing of UDP datagrams: what the syslog and GELF drivers send over UDP goes through here.

UDP has no back-pressure: a datagram that finds the receiver's socket buffer full is dropped
by the receiver's kernel, silently. Sent back to back, a batch of 1,000 short lines arrives
faster than any receiver reads it, and a default buffer (``net.core.rmem_default``, 208 KiB)
holds only ~160 datagrams of 300 bytes: a plain receiver loses a large share of a burst.
logpipe holds the records in a durable spool anyway, so waiting costs nothing but lag.

Two mechanisms, both used by ``UDPPacer``:

* **A receiver on this host** (a loopback address, or one of the host's own): its socket's
  queue is visible through the kernel's ``sock_diag`` netlink interface (what ``ss -m``
  shows): bytes queued, buffer size, drops. Before filling the buffer the pacer looks at
  how much room is left and sends only what fits, waiting for the receiver to read
  otherwise: real back-pressure, lossless unless the receiver itself drops. The lookup is
  the kernel's own delivery lookup (``udp_dump_one``), so it finds the socket our datagrams
  land in, wildcard and dual-stack binds included; ~7 µs per look.
* **Any receiver**: a token bucket caps the rate at ``rate`` datagrams per second (the
  ``syslog-udp-rate`` / ``gelf-udp-rate`` log opts, logpipe's own), spreading a batch over
  time instead of sending it as one burst. ``0`` turns pacing off altogether (Docker's
  behaviour: as fast as the socket takes them).

A receiver that does not read at all (stopped, wedged) is waited for ``patience`` seconds;
then ``ReceiverStalled`` is raised, which the drivers report as retryable. The datagrams of
the batch not yet sent are kept, and the shipper's retry of the same batch resumes with
them: what was sent is not sent twice.
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from typing import Any, Hashable, Mapping, NamedTuple, Sequence

from logpipe.errors import LogOptError

__all__ = ["DEFAULT_RATE", "ReceiverQueue", "ReceiverStalled", "UDPPacer", "parse_rate"]

#: Datagrams per second when the log opt is not given: above what Docker delivers into a
#: local receiver (60-75 k lines/s), well below what a sender can burst.
DEFAULT_RATE = 100_000
#: Seconds a receiver that reads nothing is waited for before ``ReceiverStalled``.
PATIENCE = 5.0

# -- sock_diag (linux/sock_diag.h, linux/inet_diag.h) --------------------------------------

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_INET_DIAG_SKMEMINFO = 7
_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_REQ = struct.Struct("=BBBxI")  # family, protocol, ext, pad, states
_INET_DIAG_MSG = 72  # family..inode: the attributes follow
_ATTR = struct.Struct("=HH")
_NO_COOKIE = struct.pack("=II", 0xFFFFFFFF, 0xFFFFFFFF)


class QueueState(NamedTuple):
    """The receiving socket's buffer as its kernel accounts it (``truesize`` bytes)."""

    queued: int
    size: int
    drops: int


class ReceiverQueue:
    """The receiving socket of a connected UDP socket whose peer is on this host."""

    def __init__(self, sock: socket.socket) -> None:
        """Raises ``OSError`` if the peer is not local or sock_diag is not available."""
        family = sock.family
        local, peer = sock.getsockname(), sock.getpeername()
        if not _is_local(local[0], peer[0]):
            raise OSError(f"{peer[0]} is not an address of this host")

        def addr(ip: str) -> bytes:
            return socket.inet_pton(family, ip.partition("%")[0]).ljust(16, b"\0")

        # The lookup is done as for a datagram arriving from us (src) at the peer (dst).
        ident = (struct.pack("!HH", local[1], peer[1]) + addr(local[0]) + addr(peer[0])
                 + struct.pack("=I", 0) + _NO_COOKIE)
        body = _REQ.pack(family, socket.IPPROTO_UDP, 1 << (_INET_DIAG_SKMEMINFO - 1),
                         0xFFFFFFFF) + ident
        self._request = _NLMSG.pack(_NLMSG.size + len(body), _SOCK_DIAG_BY_FAMILY,
                                    _NLM_F_REQUEST, 1, 0) + body
        self._nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG)
        try:
            self._nl.settimeout(1.0)
            self.state()  # fails here if the kernel has no UDP sock_diag
        except BaseException:
            self._nl.close()
            raise

    def state(self) -> QueueState | None:
        """The receiving socket's queue now; None when nothing listens there (the datagram
        would be refused: the kernel reports that on a later send)."""
        self._nl.send(self._request)
        data = self._nl.recv(8192)
        length, kind = _NLMSG.unpack_from(data)[:2]
        if kind == _NLMSG_ERROR:
            code = -struct.unpack_from("=i", data, _NLMSG.size)[0]
            if code == errno.ENOENT:  # no socket bound there
                return None
            raise OSError(code, "sock_diag lookup failed")
        offset = _NLMSG.size + _INET_DIAG_MSG
        while offset + _ATTR.size <= min(length, len(data)):
            size, kind = _ATTR.unpack_from(data, offset)
            if kind == _INET_DIAG_SKMEMINFO and size >= _ATTR.size + 8:
                # u32 SK_MEMINFO_RMEM_ALLOC, RCVBUF, ..., DROPS (the 9th; older kernels
                # report fewer)
                mem = struct.unpack_from(f"={min(9, (size - _ATTR.size) // 4)}I", data,
                                         offset + _ATTR.size)
                return QueueState(mem[0], mem[1], mem[8] if len(mem) > 8 else 0)
            if size < _ATTR.size:
                break
            offset += (size + 3) & ~3
        return None

    def close(self) -> None:
        self._nl.close()


def _is_local(source: str, peer: str) -> bool:
    """Whether ``peer`` is this host: a loopback address, or the address the kernel chose as
    our source (it routes a datagram to one of its own addresses through ``lo``)."""
    peer = peer.partition("%")[0]
    return peer.startswith("127.") or peer in ("::1", source.partition("%")[0]) \
        or peer.startswith("::ffff:127.")


class ReceiverStalled(OSError):
    """The local receiver read nothing for ``patience`` seconds while its buffer was full;
    ``done`` datagrams of the batch had been sent."""

    def __init__(self, text: str, done: int) -> None:
        super().__init__(text)
        self.done = done


def parse_rate(opts: Mapping[str, str], key: str) -> int:
    """The ``*-udp-rate`` log opt: datagrams per second, 0 for no pacing."""
    value = opts.get(key)
    if value is None:
        return DEFAULT_RATE
    if not (value.isascii() and value.isdigit()) or int(value) > 10**9:
        raise LogOptError(f"invalid value {value!r} for log opt {key!r}: expected datagrams "
                          "per second, an integer from 0 (no pacing) to 1000000000")
    return int(value)


# -- the pacer -----------------------------------------------------------------------------

def _cost(datagram: bytes) -> int:
    """What a datagram is assumed to cost in the receiver's buffer (its skb ``truesize``,
    which the buffer limit counts): measured on loopback, 832 bytes for 1 byte of payload,
    1,280 for 204, 2,304 for 652, 4,352 for 1,674; twice the payload plus 1 KiB stays above
    it for every size up to 64 KiB."""
    return 2 * len(datagram) + 1024


class _Pending(NamedTuple):
    key: Hashable
    datagrams: Sequence[bytes]
    done: int
    extra: Any


class UDPPacer:
    """Sends the datagrams of a batch at a pace the receiver can take (see the module)."""

    #: the share of the receiver's buffer the pacer may fill (halved after drops it sees)
    fill = 0.75

    def __init__(self, rate: int = DEFAULT_RATE, patience: float = PATIENCE) -> None:
        self.rate = rate
        self.patience = patience
        self.burst = max(1.0, rate / 200)  # 5 ms worth of datagrams
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._sock: socket.socket | None = None
        self._queue: ReceiverQueue | None = None
        self._drops = -1
        self._pending: _Pending | None = None

    def resume(self, key: Hashable) -> _Pending | None:
        """What is left of batch ``key`` after a stall, if that batch is sent again."""
        pending = self._pending
        return pending if pending is not None and pending.key == key else None

    def send(self, sock: socket.socket, datagrams: Sequence[bytes], key: Hashable = None,
             done: int = 0, extra: Any = None) -> None:
        """Send ``datagrams[done:]`` on the connected socket, pacing them.

        Raises ``ReceiverStalled`` (remembering where it stopped, with ``extra``, under
        ``key``) if a local receiver reads nothing for ``patience`` seconds, or the socket's
        ``OSError``.
        """
        self._pending = None
        if self.rate <= 0:
            for datagram in datagrams[done:] if done else datagrams:
                sock.send(datagram)
            return
        queue = self._watch(sock)
        try:
            self._send(sock, queue, datagrams, done)
        except ReceiverStalled as err:
            self._pending = _Pending(key, datagrams, err.done, extra)
            raise

    def _watch(self, sock: socket.socket) -> ReceiverQueue | None:
        if sock is not self._sock:
            self.close()
            self._sock = sock
            try:
                self._queue = ReceiverQueue(sock)
            except OSError:
                self._queue = None  # a remote receiver: the token bucket alone
        return self._queue

    def _send(self, sock: socket.socket, queue: ReceiverQueue | None,
              datagrams: Sequence[bytes], i: int) -> None:
        send, n = sock.send, len(datagrams)
        rate, burst = self.rate, self.burst
        room = 1 << 62
        waited_since = 0.0
        last_queued = -1
        pause = 0.0001
        while i < n:
            # the token bucket: how many datagrams may go now
            now = time.monotonic()
            tokens = min(burst, self._tokens + (now - self._stamp) * rate)
            self._stamp = now
            if tokens < 1:
                self._tokens = tokens
                time.sleep(min(burst / 2, burst - tokens) / rate)
                continue
            # the receiver's buffer: how many bytes may go now
            if queue is not None:
                try:
                    state = queue.state()
                except OSError:  # the kernel stopped answering: the token bucket alone
                    queue.close()
                    self._queue = queue = state = None
                if state is not None:
                    self._note_drops(state.drops)
                    room = int(state.size * self.fill) - state.queued
                    if room < _cost(datagrams[i]) and state.queued:
                        if state.queued < last_queued or not waited_since:
                            waited_since = now  # the receiver reads: patience anew
                        elif now - waited_since > self.patience:
                            raise ReceiverStalled(
                                f"the receiver read nothing for {self.patience:g}s", i)
                        last_queued = state.queued
                        time.sleep(pause)
                        pause = min(pause * 2, 0.01)
                        continue
                    waited_since, last_queued, pause = 0.0, -1, 0.0001
                else:
                    room = 1 << 62
            count = int(tokens)
            start = i
            while i < n and count:
                datagram = datagrams[i]
                cost = _cost(datagram)
                if cost > room and i > start:
                    break
                send(datagram)
                room -= cost
                count -= 1
                i += 1
            self._tokens = tokens - (i - start)

    def _note_drops(self, drops: int) -> None:
        if self._drops >= 0 and drops > self._drops:
            self.fill = max(0.1, self.fill / 2)  # a smaller buffer than it says, or others
        self._drops = drops

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()
        self._queue, self._sock = None, None
