"""Exec instances: what ``docker exec`` creates, starts and inspects, kept by the daemon.

An exec is created for a running container (``POST /containers/{id}/exec``), started once
(``POST /exec/{id}/start``), and inspected until it is forgotten. The registry lives in the
daemon's memory only, as Docker's does: a daemon restart forgets every exec (their
processes end with the daemon: see ``runtime.exec_process``), and the container keeps
running. It is bounded: a finished exec is forgotten ``KEEP_FINISHED`` seconds after its
end (Docker's exec GC runs every 5 minutes), at most ``MAX_EXECS`` are kept, and a removed
container's execs go with it (when the next exec is created, or one of them is asked for).

Owns: the exec's Docker-visible state (Running, ExitCode, Pid, CanRemove), Docker's
refusals and their words, and the one call site of exec events. Must not: drive processes
(``runtime.exec_process``) or speak HTTP (``runtime.api.exec``).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Callable

from logpipe.errors import Conflict, InvalidParameter, NotFound

from .exec_process import ExecConfig, ExecProcess
from .state import RUNNING

if TYPE_CHECKING:
    from .containers import Container

#: How long a finished exec stays inspectable (Docker: its GC, every 5 minutes).
KEEP_FINISHED = 300.0
#: At most this many execs are kept; the oldest finished ones go first.
MAX_EXECS = 4096


class NoSuchExec(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No such exec instance: {ref}")


class ExecConflict(Conflict):
    """The exec or its container is not in a state that allows the request."""


class Exec:
    """One exec instance, as ``GET /exec/{id}/json`` shows it."""

    def __init__(self, exec_id: str, container_id: str, config: ExecConfig) -> None:
        self.id = exec_id
        self.container_id = container_id
        self.config = config
        self.running = False
        self.started = False  # start was asked once: a second start is refused
        self.exit_code: int | None = None
        self.process: ExecProcess | None = None
        self.finished_at = 0.0  # monotonic, 0 while not finished
        self.size: tuple[int, int] | None = None  # a resize before the start

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    @property
    def command(self) -> str:
        return " ".join(self.config.cmd)


def exec_config(body: Any) -> ExecConfig:
    """The create body (``schema.ExecCreate``) as an ``ExecConfig``; Docker refuses an exec
    without a command."""
    cmd = body.Cmd
    if isinstance(cmd, str):
        cmd = [cmd]
    if not cmd:
        raise InvalidParameter("No exec command specified")
    return ExecConfig(cmd=tuple(cmd), env=tuple(body.Env or ()),
                      working_dir=body.WorkingDir or "", user=body.User or "",
                      privileged=bool(body.Privileged), tty=bool(body.Tty),
                      attach_stdin=bool(body.AttachStdin),
                      attach_stdout=bool(body.AttachStdout),
                      attach_stderr=bool(body.AttachStderr),
                      detach_keys=body.DetachKeys or "")


def check_running(c: "Container", ref: str) -> None:
    """Docker's ``getActiveContainer``: an exec needs a running, unpaused container."""
    if c.restarting:
        raise ExecConflict(f"Container {c.id} is restarting, wait until the container is "
                           "running")
    if c.state.status != RUNNING or c.removing:
        raise ExecConflict(f"Container {c.id} is not running")
    if c.paused:
        raise ExecConflict(f"Container {ref} is paused, unpause the container before exec")


class ExecRegistry:
    """Every exec of the daemon by id; each container lists its own in ``exec_ids``."""

    def __init__(self, notify: "Callable[[str, str, dict[str, str]], None] | None" = None) -> None:
        self.execs: dict[str, Exec] = {}
        #: ``notify(container_id, action, attributes)``: the daemon's event stream.
        self.notify = notify

    def announce(self, action: str, e: Exec, **attributes: str) -> None:
        """The one call site of exec events (``exec_create: CMD``, ``exec_start: CMD``,
        ``exec_die``), with Docker's attributes (``execID``, ``exitCode``)."""
        if self.notify is not None:
            self.notify(e.container_id, action, attributes)

    def create(self, c: "Container", ref: str, config: ExecConfig,
               alive: "dict[str, Container]") -> Exec:
        check_running(c, ref)
        self._collect(alive)
        e = Exec(os.urandom(32).hex(), c.id, config)
        self.execs[e.id] = e
        c.exec_ids.append(e.id)
        self.announce(f"exec_create: {e.command}", e, execID=e.id)
        return e

    def get(self, ref: str, alive: "dict[str, Container]") -> Exec:
        """By full id (Docker's exec store is keyed so); an exec of a removed container is
        gone with it."""
        e = self.execs.get(ref)
        if e is None:
            raise NoSuchExec(ref)
        if e.container_id not in alive:
            del self.execs[ref]
            raise NoSuchExec(ref)
        return e

    def begin(self, e: Exec, c: "Container") -> None:
        """Docker's checks of ``ContainerExecStart``, then the exec counts as running."""
        if e.running:
            raise ExecConflict(f"Error: Exec command {e.id} is already running")
        if e.started:
            raise ExecConflict(f"Error: Exec command {e.id} has already run")
        check_running(c, c.id)
        e.started = e.running = True
        self.announce(f"exec_start: {e.command}", e, execID=e.id)

    def finish(self, e: Exec, c: "Container | None", exit_code: int) -> None:
        """The exec ended: its code is recorded, the container no longer lists it (Docker
        keeps it inspectable in the daemon's store until its GC)."""
        e.exit_code = exit_code
        e.running = False
        e.finished_at = time.monotonic()
        if c is not None and e.id in c.exec_ids:
            c.exec_ids.remove(e.id)
        self.announce("exec_die", e, execID=e.id, exitCode=str(exit_code))

    def _collect(self, alive: "dict[str, Container]") -> None:
        """Forget the execs of removed containers, finished ones older than
        ``KEEP_FINISHED``, and the oldest finished ones beyond ``MAX_EXECS``."""
        now = time.monotonic()
        for eid in [i for i, e in self.execs.items() if e.container_id not in alive
                    or e.finished_at and now - e.finished_at > KEEP_FINISHED]:
            del self.execs[eid]
        excess = len(self.execs) - MAX_EXECS + 1
        if excess <= 0:
            return
        victims = [i for i, e in self.execs.items() if e.finished_at]
        for eid in victims[:excess]:
            self.execs.pop(eid, None)
