"""A container run's state: what ``state.json`` in its directory holds, written by its shim.

The JSON has the shape of Docker's ``State`` in ``inspect`` (``Status``, ``Running``, ``Pid``,
``ExitCode``, ``Error``, ``OOMKilled``, ``StartedAt``, ``FinishedAt``) plus what only logpipe
knows: the shim's pid and the capture counters. ``LinesLogged``/``BytesLogged`` count what
reached the storage driver; ``LinesDropped``/``BytesDropped`` what ``mode=non-blocking``
dropped because its buffer was full (Docker counts none, moby#45953). ``PipesOpenAtExit`` says
that some process still held the container's stdout or stderr 2 s after its main process
exited, so the shim stopped reading and later output of that process was not logged.

Only the shim writes this file, atomically; the daemon reads it (``runtime/shimclient.py``),
and writes it once for a run whose shim died before recording the exit (``settle_run``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Mapping, NamedTuple

from logpipe.timespec import format_rfc3339nano

from .spec import STATE_FILE, write_json_atomic

#: Go's zero ``time.Time`` in RFC 3339, what Docker shows for a time that never happened.
ZERO_TIME = "0001-01-01T00:00:00Z"

CREATED, RUNNING, EXITED, DEAD = "created", "running", "exited", "dead"

_FIELDS = (  # (json key, attribute) in Docker's order, then logpipe's own
    ("Status", "status"), ("Running", "running"), ("Pid", "pid"), ("ShimPid", "shim_pid"),
    ("ExitCode", "exit_code"), ("Error", "error"), ("OOMKilled", "oom_killed"),
    ("StartedAt", "started_at"), ("FinishedAt", "finished_at"),
    ("LinesLogged", "lines_logged"), ("BytesLogged", "bytes_logged"),
    ("LinesDropped", "lines_dropped"), ("BytesDropped", "bytes_dropped"),
    ("PipesOpenAtExit", "pipes_open_at_exit"))


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

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, attr) for key, attr in _FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "State":
        return cls(**{attr: data[key] for key, attr in _FIELDS if key in data})


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


def write_state(directory: str, state: State) -> None:
    write_json_atomic(os.path.join(directory, STATE_FILE), state.to_json())
