"""The driver registry: every driver, built-in or third-party, comes from one entry-point group.

Entry points are resolved lazily so that looking up ``json-file`` in the shim never imports a
remote driver's client library.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any, Mapping

from .errors import UnknownDriver

GROUP = "logpipe.drivers"


@cache
def _entry_points() -> dict[str, Any]:
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
    return ep.load()


def validate_log_config(name: str, opts: Mapping[str, str], info: Any = None) -> Any:
    """Everything Docker checks at create time, in Docker's order; returns the driver class."""
    from .options import driver_opts, validate_pipeline_opts

    validate_pipeline_opts(opts)
    driver = get_driver(name)
    driver.validate(driver_opts(opts), info)
    return driver
