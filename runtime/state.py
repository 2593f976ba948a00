"""A container run's state: what ``state.json`` in its directory holds, written by its shim.

The JSON has the shape of Docker's ``State`` in ``inspect`` (``Status``, ``Running``, ``Pid``,
``ExitCode``, ``Error``, ``OOMKilled``, ``StartedAt``, ``FinishedAt``) plus what only logpipe
knows: the shim's pid and the capture counters. ``LinesLogged``/``BytesLogged`` count what
were stored; ``LinesDropped``/``BytesDropped`` what was not: dropped by ``mode=non-blocking``
because its buffer was full (Docker counts none, moby#45953), or not stored because the disk
was full or failing (``StorageFailing`` says it still is, ``StorageError`` and ``LastDropAt``
say why and when). While the container runs the shim answers these counters live on its
control socket; the file has them as of the last write (start and exit). ``PipesOpenAtExit`` says
that some process still held the container's stdout or stderr 2 s after its main process
exited, so the shim stopped reading and later output of that process was not logged.

Only the shim writes this file, atomically; the daemon reads it (``runtime/shimclient.py``),
and writes it once for a run whose shim died before recording the exit (``settle_run``).
"""

from __future__ import annotations

import errno
import json
import os
import time
from typing import Any, Mapping, NamedTuple

from logpipe.timespec import format_rfc3339nano

from .spec import STATE_FILE

#: Go's zero ``time.Time`` in RFC 3339, what Docker shows for a time that never happened.
ZERO_TIME = "0001-01-01T00:00:00Z"

CREATED, RUNNING, EXITED, DEAD = "created", "running", "exited", "dead"

_FIELDS = (  # (json key, attribute) in Docker's order, then logpipe's own
    ("Status", "status"), ("Running", "running"), ("Pid", "pid"), ("ShimPid", "shim_pid"),
    ("ExitCode", "exit_code"), ("Error", "error"), ("OOMKilled", "oom_killed"),
    ("StartedAt", "started_at"), ("FinishedAt", "finished_at"),
    ("LinesLogged", "lines_logged"), ("BytesLogged", "bytes_logged"),
    ("LinesDropped", "lines_dropped"), ("BytesDropped", "bytes_dropped"),
    ("PipesOpenAtExit", "pipes_open_at_exit"), ("StorageFailing", "storage_failing"),
    ("StorageError", "storage_error"), ("LastDropAt", "last_drop_at"))


class State(NamedTuple):
    """One container run as its shim last recorded it."""

    status: str = CREATED  # created | running | exited | dead
    running: bool = False
    pid: int = 0  # the container's main process, on the host; 0 when not running
    shim_pid: int = 0
    exit_code: int = 0  # the status, or 128 + signal number (Docker)
    error: str = ""
    oom_killed: bool = False
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    lines_logged: int = 0
    bytes_logged: int = 0
    lines_dropped: int = 0
    bytes_dropped: int = 0
    pipes_open_at_exit: bool = False
    storage_failing: bool = False  # the last write to the log failed (disk full, I/O error)
    storage_error: str = ""  # the last error storing the log, kept after it works again
    last_drop_at: str = ZERO_TIME  # when output could last not be stored (disk full, I/O)

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, attr) for key, attr in _FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "State":
        return cls(**{attr: data[key] for key, attr in _FIELDS if key in data})

    def counters(self) -> dict[str, Any]:
        """The keys of ``to_json`` that the shim updates while the container runs."""
        return {key: getattr(self, attr) for key, attr in _FIELDS[9:]}


def now_rfc3339() -> str:
    """The current time as Docker prints ``StartedAt``: Go's ``RFC3339Nano`` in UTC."""
    return format_rfc3339nano(time.time_ns())


def read_state(directory: str) -> State | None:
    """The last state the shim wrote, or None if no shim ever ran for this container."""
    try:
        with open(os.path.join(directory, STATE_FILE)) as f:
            return State.from_json(json.load(f))
    except FileNotFoundError:
        return None


#: ``state.json`` is padded with spaces to at least this size, so that a later state always
#: fits in the space the file already has (see ``write_state``).
STATE_PAD = 1024


def write_state(directory: str, state: State) -> None:
    """Write ``state.json`` atomically (write and rename). On a full disk (or quota) the new
    file cannot be made: the state is then written over the existing file, whose blocks are
    already allocated — padding makes every state fit — so the exit of a container whose disk
    is full is still recorded. (Not atomic; readers only read it when the shim is gone.)"""
    path = os.path.join(directory, STATE_FILE)
    text = json.dumps(state.to_json())
    text = text.ljust(STATE_PAD - 1) + "\n"
    try:
        _write_atomic(path, text)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        data = text.encode()
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_size < len(data):
                raise
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
