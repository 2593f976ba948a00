"""A real systemd-journald for tests and benchmarks, and reading its entries back.

``JournaldReceiver`` is not a fake: it uses the host's journald when one answers on
``/run/systemd/journal/socket`` and otherwise starts ``/lib/systemd/systemd-journald`` by
hand (root only). The journal has no address to choose — every client sends to that one
socket — so ``address`` is informational and tests tell their records apart by a random
container id (``CONTAINER_ID_FULL``).

A journald started here gets a drop-in ``/run/systemd/journald.conf.d/90-logpipe-tests.conf``
(journald also reads ``/run/systemd/journald.conf.d``, so ``/etc`` is never touched) that
turns rate limiting off — with Docker's defaults journald silently drops lines beyond 10,000
per 30 s per service (moby#35653), which would make any benchmark count wrong — keeps the
journal volatile (``/run/log/journal``, at most ``RUNTIME_MAX_USE``) and does not import the
kernel ring buffer. The drop-in is written before the start and removed when the receiver
stops the journald it started; a journald that was already running is used as it is and
never stopped or reconfigured.

Usable without pytest (end-to-end tests, benchmarks)::

    with JournaldReceiver() as rx:
        ...  # run a container with --log-driver=journald
        entries = rx.wait_for(container_id, 1000, timeout=30)
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import socket
import subprocess
import time
from typing import Any

JOURNALD_BINARY = "/lib/systemd/systemd-journald"
SOCKET = "/run/systemd/journal/socket"
DROP_IN = "/run/systemd/journald.conf.d/90-logpipe-tests.conf"
RUNTIME_MAX_USE = "2G"

_DROP_IN_TEXT = f"""\
# Written by logpipe's tests (tests/receivers/journald.py) for the journald they started;
# removed when they stop it.
[Journal]
Storage=volatile
RateLimitIntervalSec=0
RateLimitBurst=0
ReadKMsg=no
RuntimeMaxUse={RUNTIME_MAX_USE}
"""

Entry = dict[str, Any]  # field -> bytes, or list[bytes] for a field sent more than once


class JournaldUnavailable(RuntimeError):
    """No journald answers and none can be started here; the text says why."""


def socket_answers(path: str = SOCKET) -> bool:
    """Whether a journald takes datagrams at ``path`` (a stale file refuses the connect)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.connect(path)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def unavailable_reason() -> str | None:
    """Why neither a running nor a startable journald is there (None when one is)."""
    if os.geteuid() != 0:
        return "needs root: reading the system journal (and starting journald) requires it"
    if importlib.util.find_spec("systemd") is None:
        return "systemd-python is not installed (pip install systemd-python)"
    if socket_answers():
        return None
    if not os.access(JOURNALD_BINARY, os.X_OK):
        return f"no journald running and {JOURNALD_BINARY} is missing (apt-get install systemd)"
    return None


class JournaldReceiver:
    """The host's journald, started by hand when it is not running.

    ``stop()``/``start()`` stop and restart the journald this receiver started (a
    receiver-down test: senders then get ECONNREFUSED/ENOENT); ``pause()``/``resume()``
    freeze it with SIGSTOP, so that senders block once the socket queue is full (a slow
    receiver). Neither touches a journald this receiver did not start.
    """

    address = SOCKET

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self._wrote_drop_in = False

    @property
    def started_here(self) -> bool:
        return self.proc is not None

    def start(self, timeout: float = 10.0) -> "JournaldReceiver":
        if socket_answers():
            return self
        reason = unavailable_reason()
        if reason:
            raise JournaldUnavailable(reason)
        self._write_drop_in()
        self.proc = subprocess.Popen([JOURNALD_BINARY], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while not socket_answers():  # an external daemon: poll its socket with a deadline
            if self.proc.poll() is not None:
                self._forget(remove_drop_in=True)
                raise JournaldUnavailable(f"{JOURNALD_BINARY} exited at start")
            if time.monotonic() > deadline:
                self.stop()
                raise JournaldUnavailable(f"{JOURNALD_BINARY} did not open {SOCKET}")
            time.sleep(0.02)
        return self

    def stop(self, keep_config: bool = False) -> None:
        """Stop the journald started here (its entries stay in /run/log/journal).

        ``keep_config`` leaves the drop-in in place for an immediate ``start()``.
        """
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a paused journald cannot handle SIGTERM
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._forget(remove_drop_in=not keep_config)

    def restart(self) -> None:
        self.stop(keep_config=True)
        self.start()

    def pause(self) -> None:
        self._own().send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._own().send_signal(signal.SIGCONT)

    def __enter__(self) -> "JournaldReceiver":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading back ------------------------------------------------------------------

    def entries(self, container_id: str) -> list[Entry]:
        """The container's entries now in the journal, in journal order (systemd-python)."""
        with _open(container_id) as reader:
            return _drain(reader, [])

    def wait_for(self, container_id: str, n: int, timeout: float = 10.0) -> list[Entry]:
        """Wait until the journal holds at least ``n`` entries of the container; return all.

        Entries are readable as soon as journald has them, but its change notification
        (``sd_journal_wait``) lags by about half a second, so this also looks every 50 ms.
        Raises ``TimeoutError`` saying how many arrived.
        """
        deadline = time.monotonic() + timeout
        with _open(container_id) as reader:
            got: list[Entry] = []
            while len(_drain(reader, got)) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"journal holds {len(got)} of {n} entries for "
                                       f"CONTAINER_ID_FULL={container_id}")
                reader.wait(int(min(left, 0.05) * 1e6))  # wakes late: poll too
                # A reader that hit the end while journald was linking our entry does not
                # look at that file again until the journal's entry count changes; on a quiet
                # journal that is never. Seeking makes it look again.
                if not got:
                    reader.seek_head()
                    continue
                cursor = got[-1]["__CURSOR"]
                reader.seek_cursor(cursor)
                if reader._next() and not reader.test_cursor(cursor):
                    reader._previous()  # that entry was vacuumed: stand before the newer one
            return got

    @staticmethod
    def journalctl_json(container_id: str) -> list[Entry]:
        """The container's entries as ``journalctl -o json`` prints them, decoded to bytes.

        journalctl writes a value that is not printable UTF-8 as an array of byte values,
        and a field sent more than once as an array of such values; ``-a`` keeps values
        over 4 KiB (else printed as null).
        """
        out = subprocess.run(
            ["journalctl", "--no-pager", "-a", "-o", "json", f"CONTAINER_ID_FULL={container_id}"],
            check=True, capture_output=True).stdout
        return [{k: _json_value(v) for k, v in json.loads(line).items()}
                for line in out.splitlines() if line.strip()]

    # -- internals ---------------------------------------------------------------------

    def _own(self) -> subprocess.Popen:
        if self.proc is None:
            raise RuntimeError("this receiver did not start the running journald")
        return self.proc

    def _write_drop_in(self) -> None:
        """Idempotent: the same text every time, written atomically."""
        os.makedirs(os.path.dirname(DROP_IN), exist_ok=True)
        tmp = DROP_IN + ".tmp"
        with open(tmp, "w") as f:
            f.write(_DROP_IN_TEXT)
        os.replace(tmp, DROP_IN)
        self._wrote_drop_in = True

    def _forget(self, remove_drop_in: bool) -> None:
        self.proc = None
        if remove_drop_in and self._wrote_drop_in:
            try:
                os.unlink(DROP_IN)
            except OSError as err:
                if err.errno != errno.ENOENT:
                    raise
            self._wrote_drop_in = False


def _open(container_id: str):
    from systemd._reader import _Reader
    from systemd.journal import LOCAL_ONLY

    reader = _Reader(LOCAL_ONLY)
    reader.data_threshold = 0  # whole values (the default cuts them at 64 KiB)
    reader.add_match(f"CONTAINER_ID_FULL={container_id}")
    reader.seek_head()
    return reader


def _drain(reader: Any, out: list[Entry]) -> list[Entry]:
    """Append the entries after the reader's position to ``out``, with the receive time and
    the cursor."""
    while reader._next():
        entry = reader._get_all()
        entry["__REALTIME_TIMESTAMP"] = reader._get_realtime()
        entry["__CURSOR"] = reader._get_cursor()
        out.append(entry)
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return bytes(value)
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value
