"""The driver registry: every driver, built-in or third-party, comes from one entry-point group.

Entry points are resolved lazily so that looking up ``json-file`` in the shim never imports a
remote driver's client library. A driver that cannot be imported, or whose client library
(its ``libraries``) is not installed, is a ``MissingLibrary`` (400) naming what to install:
never an ``ImportError`` escaping as a 500.

The registry is also where a container's logging is decided, once, at create: ``log_plan``
says which kind of driver it has and what the shim loads (``LogPlan``, stored in the
container's ``config.json``). Nothing else asks a driver for its kind.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Mapping, NamedTuple

from .driver import REMOTE, hook
from .errors import LogpipeError, MissingLibrary, UnknownDriver

GROUP = "logpipe.drivers"


@cache
def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points  # 30 ms of imports: only when needed

    return {ep.name: ep for ep in entry_points(group=GROUP)}


def driver_names() -> list[str]:
    """Names of every registered driver, sorted (what ``info`` lists under Plugins.Log)."""
    return sorted(_entry_points())


@cache
def get_driver(name: str) -> Any:
    """The driver class registered as ``name``; Docker's wording when there is none."""
    ep = _entry_points().get(name)
    if ep is None:
        raise UnknownDriver(f'error looking up logging plugin {name}: plugin "{name}" not found')
    try:
        return ep.load()
    except ImportError as err:  # not cached: installing the package fixes it without restart
        raise MissingLibrary(f"{name} log driver cannot be loaded from {ep.value}: {err}") \
            from None


def check_libraries(name: str) -> None:
    """Raise ``MissingLibrary`` if a client library of driver ``name`` is not installed
    (looked up, not imported). At create and at start: a container never reaches a driver
    that would fail at its first import."""
    for library in hook(get_driver(name), "libraries"):
        library.check(name)


def driver_ref(name: str) -> str:
    """Where the driver registered as ``name`` lives (``module:Class``), to be stored with a
    log so that readers can load it without scanning every installed package's metadata."""
    get_driver(name)
    return _entry_points()[name].value


def load_driver(name: str, ref: str | None = None) -> Any:
    """The driver for a stored log: from its recorded ``ref`` when that still resolves (fast,
    no metadata scan), else through the registry."""
    if ref:
        module, _, attr = ref.partition(":")
        try:
            cls = getattr(__import__(module, fromlist=[attr]), attr)
        except (ImportError, AttributeError):
            cls = None
        if cls is not None and getattr(cls, "name", None) == name:
            return cls
    return get_driver(name)


def validate_log_config(name: str, opts: Mapping[str, str], info: Any = None) -> Any:
    """Everything Docker checks at create time, in Docker's order; returns the driver class."""
    from .options import driver_opts, validate_pipeline_opts

    validate_pipeline_opts(opts)
    driver = get_driver(name)
    hook(driver, "validate_spool")(opts)  # remote drivers: the cache-* options size their spool
    driver.validate(driver_opts(opts), info)
    check_libraries(name)
    return driver


class LogPlan(NamedTuple):
    """How a container logs, decided once by ``log_plan`` and stored with the container.

    ``kind`` is the driver's (``logpipe.driver.STORAGE``, ``REMOTE`` or ``NONE``; "" when
    the driver could not be loaded: the shim then reports why at start). ``ref`` is where
    the driver lives (``module:Class``), so that the shim loads it without scanning entry
    points. ``ships``: a shipper in the daemon delivers the container's spool."""

    driver: str
    kind: str
    ref: str
    ships: bool

    def to_json(self) -> dict[str, Any]:
        return {"Driver": self.driver, "Kind": self.kind, "Ref": self.ref, "Ships": self.ships}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "LogPlan":
        return cls(data["Driver"], data["Kind"], data["Ref"], bool(data["Ships"]))


def log_plan(name: str) -> LogPlan:
    """The plan for driver ``name``; ``UnknownDriver``/``MissingLibrary`` when it has none."""
    kind = hook(get_driver(name), "kind")
    return LogPlan(name, kind, driver_ref(name), kind == REMOTE)


def stored_plan(name: str, data: Mapping[str, Any] | None) -> LogPlan:
    """The plan stored with a container, or, for a container created before plans were
    stored, the one the registry gives now (kind "" when the driver cannot be loaded)."""
    if data:
        return LogPlan.from_json(data)
    try:
        return log_plan(name)
    except LogpipeError:
        return LogPlan(name, "", "", False)
