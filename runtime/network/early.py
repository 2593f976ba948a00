"""The endpoint setup run by the daemon while the shim starts up.

A container's start on a bridge network spends most of its extra time in netavark's setup
(a few dozen ``iptables`` calls). Run by the shim, after Python's start-up, the log driver
and the root filesystem, it adds up; run by the daemon in a thread from the moment it
spawns the shim, it overlaps them. The shim's ``netavark.attach`` waits for it and takes
its outcome, so that the container's process still starts with its network up.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from typing import Any

from logpipe.errors import LogpipeError

from runtime.spec import ContainerSpec

from .netavark import NetworkError, data_root_of, detach, records, setup_all, uses_netns


class EarlySetup:
    """The endpoint setup run by the daemon in a thread while the shim starts up (Python's
    start-up, the log driver, the root filesystem), instead of after, by the shim: netavark's
    setup (a few dozen iptables calls) then costs the start little.

    The daemon locks ``<container-dir>/network.setup`` *before* it spawns the shim and
    writes the outcome there (``{"ok": true}`` or ``{"error": ...}``) before unlocking; the
    shim's ``attach`` blocks on that lock, then takes the outcome. A daemon killed half-way
    leaves no outcome (and its lock goes with it): the shim then sets up on its own."""

    FILE = "network.setup"

    def __init__(self, spec: ContainerSpec) -> None:
        self.spec = spec
        path = os.path.join(spec.dir, self.FILE)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.ok = False
        self.thread = threading.Thread(target=self._run, name=f"netsetup-{spec.id[:12]}",
                                       daemon=True)
        self.thread.start()

    @classmethod
    def begin(cls, spec: ContainerSpec) -> "EarlySetup | None":
        """Started for a container on a bridge network (None otherwise)."""
        return cls(spec) if uses_netns(spec) else None

    def _run(self) -> None:
        try:
            setup_all(self.spec)
            outcome: dict[str, Any] = {"ok": True}
            self.ok = True
        except LogpipeError as err:
            outcome = {"error": str(err)}
        except Exception as err:  # the shim reports it as a failed start
            outcome = {"error": f"network setup failed: {err}"}
        try:
            os.write(self.fd, json.dumps(outcome).encode())
        finally:
            os.close(self.fd)  # unlocks: the shim goes on

    def finish(self, started: bool) -> None:
        """After the shim answered: a start that failed before the shim took the setup
        (a log driver that would not open) must not leave the endpoint behind."""
        self.thread.join()
        if not started:
            detach(self.spec)
        try:
            os.unlink(os.path.join(self.spec.dir, self.FILE))
        except FileNotFoundError:
            pass

    @classmethod
    def outcome(cls, spec: ContainerSpec) -> dict[str, dict[str, Any]] | None:
        """In the shim: the daemon's setup, waited for; None when there is none to take."""
        path = os.path.join(spec.dir, cls.FILE)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            data = os.read(fd, 65536)
        finally:
            os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        try:
            result = json.loads(data) if data else {}
        except ValueError:
            result = {}
        if result.get("error"):
            raise NetworkError(result["error"])
        if not result.get("ok"):
            return None
        return records(data_root_of(spec), spec.id)
