"""The errors of the container store, in Docker's words.

Each is one of ``logpipe.errors``' categories (``NotFound``, ``Conflict``,
``InvalidParameter``, …), which carry the HTTP status: no class here sets one.
"""

from __future__ import annotations

from logpipe.errors import Conflict, InvalidParameter, LogpipeError, NotFound


class NoSuchContainer(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No such container: {ref}")


class NameConflict(Conflict):
    """The name is in use by another container."""


class ContainerConflict(Conflict):
    """The request does not fit the container's state (running, being removed, …)."""


class StartFailed(LogpipeError):
    """The shim could not start the container; Docker answers 500 with the runtime's error."""


class StartInvalidConfig(StartFailed, InvalidParameter):
    """The container's command was not found or cannot be invoked (exit code 127/126):
    Docker's ``startInvalidConfigError``, a 400."""
