"""The driver contracts and the container information every driver is given.

Modelled on Docker's ``logger.Info``/``logger.Logger``: a small interface per kind of driver.
Storage drivers write files and read them back; remote drivers only send, and are fed by the
daemon's shipper, never by the shim. ``validate`` is static and runs at create time, so
constructors may assume validated options.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Iterator, Mapping, Protocol, Sequence

from .message import Chunk

if TYPE_CHECKING:
    from .reading import ReadConfig


@dataclass(slots=True, frozen=True)
class LogInfo:
    """What a driver may know about the container it logs for (Docker's ``logger.Info``)."""

    container_id: str
    log_dir: str
    config: Mapping[str, str] = field(default_factory=dict)
    container_name: str = ""
    image_id: str = ""
    image_name: str = ""
    entrypoint: str = ""
    args: tuple[str, ...] = ()
    created: str = ""
    env: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    daemon_name: str = "logpipe"
    hostname: str = field(default_factory=socket.gethostname)

    @property
    def name(self) -> str:
        """The container name without Docker's leading ``/``."""
        return self.container_name.lstrip("/")

    @property
    def command(self) -> str:
        """Entrypoint and arguments joined by spaces, as Docker's ``{{.Command}}``."""
        return " ".join(([self.entrypoint] if self.entrypoint else []) + list(self.args))


class StorageDriver(Protocol):
    """A driver whose files are the log: json-file and local.

    A writer is constructed per container run and owns the files until ``close``; reading is
    a class method so that any process can read while the writer runs.
    """

    name: ClassVar[str]
    kind: ClassVar[str]  # "storage"

    @staticmethod
    def validate(opts: Mapping[str, str], info: LogInfo | None = None) -> None: ...

    def write(self, batch: Sequence[Chunk]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

    @classmethod
    def read(cls, info: LogInfo, config: "ReadConfig") -> Iterator[Chunk]: ...
