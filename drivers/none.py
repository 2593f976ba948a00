"""The ``none`` driver: output is discarded and nothing can be read back (as Docker).

Docker's daemon accepts any option with ``none`` (its CLI refuses them client-side); logpipe
rejects options, because an option that silently does nothing is a user's mistake.

Attach still shows the output, as Docker's does: Docker's attach copies the container's
streams and needs no log, while logpipe's attach follows what the shim stored (the daemon
never reads a container's pipes). So a container's shim keeps an ``AttachBuffer`` for
``none``: the output as the ``local`` driver writes it, in two files of 1 MiB at most under
``<container dir>/attach-buffer/``. It is the smallest design that keeps one data path (the
same framer, writer and follow reader as every driver, and attach before start still sees
the first line), at a bounded cost: 2 MiB of disk per container. ``logs`` never reads it: the
driver still refuses with Docker's 501.
"""

from __future__ import annotations

import os
from typing import Iterator, Mapping, Sequence

from logpipe.driver import LogInfo
from logpipe.errors import LogOptError, ReadNotSupported
from logpipe.message import Chunk

from .local.writer import LocalConfig, LocalDriver

#: Where a ``none`` container's attach buffer lives, and its bound (two files of 1 MiB).
ATTACH_BUFFER_DIR = "attach-buffer"
ATTACH_BUFFER = LocalConfig(max_size=1 << 20, max_file=2, compress=False)


class NoneDriver:
    name = "none"
    kind = "none"

    @staticmethod
    def validate(opts: Mapping[str, str], info: LogInfo | None = None) -> None:
        if opts:
            raise LogOptError("invalid logging opts for driver none")

    def __init__(self, info: LogInfo) -> None:
        self.info = info

    def write(self, batch: Sequence[Chunk]) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    @classmethod
    def read(cls, info: LogInfo, config) -> Iterator[Chunk]:
        raise ReadNotSupported()


def _attach_info(info: LogInfo) -> LogInfo:
    return info._replace(log_dir=os.path.join(info.log_dir, ATTACH_BUFFER_DIR), config={})


class AttachBuffer(LocalDriver):
    """What the shim writes for a ``none`` container: only ``attach`` reads it."""

    def __init__(self, info: LogInfo) -> None:
        attach = _attach_info(info)
        os.makedirs(attach.log_dir, mode=0o700, exist_ok=True)
        super().__init__(attach, ATTACH_BUFFER)


def attach_buffer_path(info: LogInfo) -> str:
    """The current file of the attach buffer (its writer lock is taken before it exists)."""
    return LocalDriver.log_path(_attach_info(info))


def read_attach_buffer(info: LogInfo, config) -> Iterator[Chunk]:
    """The attach buffer of a ``none`` container, read as ``logs`` reads a ``local`` log."""
    return LocalDriver.read(_attach_info(info), config)
