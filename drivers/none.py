"""The ``none`` driver: output is discarded and nothing can be read back (as Docker).

Docker's daemon accepts any option with ``none`` (its CLI refuses them client-side); logpipe
rejects options, because an option that silently does nothing is a user's mistake.
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

from logpipe.driver import LogInfo
from logpipe.errors import LogOptError, ReadNotSupported
from logpipe.message import Chunk


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
