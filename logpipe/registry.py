"""The driver registry: every driver, built-in or third-party, comes from one entry-point group.

Entry points are resolved lazily so that looking up ``json-file`` in the shim never imports a
remote driver's client library. A driver that cannot be imported, or whose client library
(its ``libraries``) is not installed, is a ``MissingLibrary`` (400) naming what to install:
never an ``ImportError`` escaping as a 500.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Mapping

from .errors import MissingLibrary, UnknownDriver

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
    for library in getattr(get_driver(name), "libraries", ()):
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
    spool = getattr(driver, "validate_spool", None)
    if spool is not None:  # remote drivers: the cache-* options size their spool
        spool(opts)
    driver.validate(driver_opts(opts), info)
    check_libraries(name)
    return driver
