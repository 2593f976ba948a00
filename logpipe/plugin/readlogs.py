"""``ReadLogs``' request (Docker's ``logger.ReadConfig``) → the storage driver's reader."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from logpipe.errors import InvalidParameter
from logpipe.message import Chunk

ZERO_TIME = "0001-01-01T00:00:00Z"


def _time_ns(value: Any, name: str) -> int:
    """Go's zero ``time.Time`` (or nothing) is 0, unbounded; else an RFC 3339 time."""
    if not value or value == ZERO_TIME or str(value).startswith("0001-01-01T00:00:00"):
        return 0
    from logpipe.timespec import parse_rfc3339

    try:
        return parse_rfc3339(str(value))
    except ValueError as err:
        raise InvalidParameter(f"{name}: {err}") from None


def read_config(config: Mapping[str, Any]):
    """Docker's ``{"Since", "Until", "Tail", "Follow"}`` as logpipe's ``ReadConfig``."""
    from logpipe.reading import ReadConfig

    tail = config.get("Tail", -1)
    if not isinstance(tail, int) or isinstance(tail, bool):
        raise InvalidParameter(f"Tail must be an integer, not {tail!r}")
    return ReadConfig(tail=tail if tail >= 0 else -1, since=_time_ns(config.get("Since"), "Since"),
                      until=_time_ns(config.get("Until"), "Until"),
                      follow=bool(config.get("Follow")), warn=lambda text: None)


def open_reader(meta: Mapping[str, Any], config: Mapping[str, Any]) -> Iterator[Chunk]:
    """The stored records of a container, from the driver that stored them."""
    from logpipe.driver import LogInfo
    from logpipe.registry import load_driver

    cfg = read_config(config)
    info = LogInfo(**{**meta["Info"], "args": tuple(meta["Info"].get("args") or ()),
                      "env": tuple(meta["Info"].get("env") or ())})
    return load_driver(meta["Driver"], meta.get("Ref")).read(info, cfg)


def log_file(meta: Mapping[str, Any]) -> str | None:
    """The file the container's records go to (a remote driver's: its spool); the plugin
    creates it at the first record."""
    from logpipe.driver import LogInfo, hook
    from logpipe.registry import load_driver, log_plan

    info = LogInfo(**{**meta["Info"], "args": tuple(meta["Info"].get("args") or ()),
                      "env": tuple(meta["Info"].get("env") or ())})
    if log_plan(meta["Driver"]).ships:
        from drivers.remote import spool_path

        return spool_path(info)
    return hook(load_driver(meta["Driver"], meta.get("Ref")), "log_path")(info)
