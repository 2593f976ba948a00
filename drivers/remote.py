"""What every remote driver shares: the spool it is read back from, and contract defaults.

A remote driver (``logpipe.driver.RemoteDriver``) only sends. The container's output reaches
it through the spool, a rotated set in the ``local`` format under ``local-logs/`` that the
shim writes (``drivers.spool``) and the daemon's shipper reads from a durable checkpoint.
That spool is also Docker's "dual logging" cache: ``logs`` reads it, whatever the driver,
unless ``cache-disabled=true`` (then, as in Docker, reading is refused; the spool still
exists, because shipping needs it).

This module must not import any driver's client library.
"""

from __future__ import annotations

from typing import ClassVar, Iterator, Mapping, Sequence

from logpipe import reading
from logpipe.driver import LogInfo, RemoteHooks
from logpipe.errors import ReadNotSupported
from logpipe.message import Chunk, Message
from logpipe.options import driver_opts, parse_bool

from .local import LocalDriver


def spool_path(info: LogInfo) -> str:
    """Where the spool of a remote driver lives: the ``local`` driver's own path."""
    return LocalDriver.log_path(info)


def cache_disabled(config: Mapping[str, str]) -> bool:
    """Docker's ``cache-disabled`` (already validated as a bool at create)."""
    value = config.get("cache-disabled")
    return bool(value) and parse_bool(value)


class RemoteDriverBase(RemoteHooks):
    """Defaults for the ``RemoteDriver`` contract (its optional hooks declared, with their
    defaults, by ``logpipe.driver.RemoteHooks``); drivers override what they need."""

    name: ClassVar[str] = ""

    def __init__(self, info: LogInfo) -> None:
        self.info = info
        #: The driver's own options (Docker's pipeline keys such as ``mode`` removed).
        self.opts = driver_opts(info.config)

    @staticmethod
    def validate_spool(opts: Mapping[str, str]) -> None:
        """The ``cache-*`` options (Docker's dual-logging cache) size the spool: checked at
        create like every other option (Docker 20.10 ignores their values, moby#45668)."""
        from .spool import spool_config

        spool_config(opts)

    def send(self, batch: Sequence[Message]) -> int | None:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing held by default."""

    @classmethod
    def read(cls, info: LogInfo, config: reading.ReadConfig) -> Iterator[Chunk]:
        """``logs`` reads the spool (Docker's dual-logging cache)."""
        if cache_disabled(info.config):
            raise ReadNotSupported()
        from .spool import read_spool

        return read_spool(info, config)
