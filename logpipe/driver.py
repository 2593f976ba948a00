"""The driver contracts and the container information every driver is given.

Modelled on Docker's ``logger.Info``/``logger.Logger``: a small interface per kind of driver.
Storage drivers write files and read them back; remote drivers only send, and are fed by the
daemon's shipper, never by the shim. ``validate`` is static and runs at create time, so
constructors may assume validated options.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, Iterator, Mapping, NamedTuple, Protocol, Sequence

from .message import Chunk

if TYPE_CHECKING:
    from .reading import ReadConfig


_EMPTY: Mapping[str, str] = MappingProxyType({})


class LogInfo(NamedTuple):
    """What a driver may know about the container it logs for (Docker's ``logger.Info``).

    Values that travel are immutable; a NamedTuple rather than a frozen dataclass because
    ``logs`` imports this module and ``dataclasses`` alone costs it 17 ms of start-up.
    """

    container_id: str
    log_dir: str
    config: Mapping[str, str] = _EMPTY
    container_name: str = ""
    image_id: str = ""
    image_name: str = ""
    entrypoint: str = ""
    args: tuple[str, ...] = ()
    created: str = ""
    env: tuple[str, ...] = ()
    labels: Mapping[str, str] = _EMPTY
    daemon_name: str = "logpipe"
    hostname: str = ""

    @property
    def name(self) -> str:
        """The container name without Docker's leading ``/``."""
        return self.container_name.lstrip("/")

    def host_name(self) -> str:
        """The daemon host's name (Docker's ``{{.Hostname}}``): ``hostname`` if set, else looked
        up when first needed (importing ``socket`` up front would slow every ``logs``)."""
        if self.hostname:
            return self.hostname
        import socket

        return socket.gethostname()

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
