"""The driver contracts and the container information every driver is given.

Modelled on Docker's ``logger.Info``/``logger.Logger``: a small interface per kind of driver.
Storage drivers write files and read them back; remote drivers only send, and are fed by the
daemon's shipper, never by the shim. ``validate`` is static and runs at create time, so
constructors may assume validated options.

Every optional hook a caller may rely on is declared here with its default (``DriverHooks``,
``RemoteHooks``; moby's optional ``logger`` interfaces): a driver author sees them all in one
place, and callers ask ``hook(driver, name)`` instead of guessing attribute names.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import (TYPE_CHECKING, Any, ClassVar, Iterator, Mapping, NamedTuple, Protocol,
                    Sequence)

from .errors import MissingLibrary
from .message import Chunk, Message

if TYPE_CHECKING:
    from .reading import ReadConfig


_EMPTY: Mapping[str, str] = MappingProxyType({})

#: A driver's ``kind``: where the shim sends a container's output. ``storage``: the driver's
#: own files; ``remote``: the spool, shipped by the daemon; ``none``: nowhere (attach only).
STORAGE, REMOTE, NONE = "storage", "remote", "none"


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
    a class method so that any process can read while the writer runs. The optional hooks
    (``log_path``, ``libraries``, ``redacted_opts``) and their defaults: ``DriverHooks``.
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


class Library(NamedTuple):
    """A client library a driver imports lazily (a driver lists them in ``libraries``).

    ``module`` is what the driver imports, ``package`` the distribution that provides it,
    ``extra`` the logpipe extra that installs it when a plain ``pip install logpipe`` does
    not (``journald``: systemd-python needs a C compiler). The registry checks every listed
    library at create and start, and ``load`` turns an ``ImportError`` at use into the same
    clear ``MissingLibrary``.
    """

    module: str
    package: str
    extra: str = ""

    def missing(self, driver: str, why: object = None) -> MissingLibrary:
        install = f"pip install 'logpipe[{self.extra}]'" if self.extra else \
            f"pip install {self.package}"
        reason = f" ({why})" if why else ""
        return MissingLibrary(f"{driver} log driver needs {self.package}, which is not "
                              f"installed: {install}{reason}")

    def check(self, driver: str) -> None:
        """Raise ``MissingLibrary`` unless ``module`` can be found (found, not imported:
        client libraries take up to a second to import)."""
        from importlib.util import find_spec

        try:
            found = find_spec(self.module) is not None
        except (ImportError, ValueError) as err:  # a parent package missing, or blocked
            raise self.missing(driver, err) from None
        if not found:
            raise self.missing(driver, f"No module named {self.module!r}")

    def load(self, driver: str) -> Any:
        """``module``, imported; ``MissingLibrary`` instead of an ``ImportError``."""
        from importlib import import_module

        try:
            return import_module(self.module)
        except ImportError as err:
            raise self.missing(driver, err) from None


class BatchLimits(NamedTuple):
    """How the shipper cuts batches for a remote driver (the receiver's own limits).

    A batch holds at most ``max_count`` records and ``max_bytes`` counted as the line length
    plus ``overhead`` per record (CloudWatch counts 26), and spans at most ``max_span_ns``
    between its first and last timestamp (0: no limit). When fewer records are waiting, the
    shipper waits up to ``wait`` seconds for more before sending what it has (Loki's
    ``loki-batch-wait``); 0 sends at once, which is what socket receivers want. With
    ``whole_lines`` a batch never ends inside a line split into 16 KiB pieces (it may then
    exceed the limits by the rest of that line): for drivers that send a line as one event
    (CloudWatch), which must then split a batch over the limits themselves.
    """

    max_count: int = 1000
    max_bytes: int = 1 << 20
    overhead: int = 0
    max_span_ns: int = 0
    wait: float = 0.0
    whole_lines: bool = False


class RemoteDriver(Protocol):
    """A driver that sends to a receiver: journald, syslog, fluentd, gelf, awslogs, gcplogs, loki.

    It lives in the daemon, is fed by the shipper from the container's spool (never by the
    shim), and is constructed once per container and shipping session. The contract:

    * ``validate(opts, info)``: static, pure, at create time; ``opts`` are the driver's own
      options (pipeline keys removed). Raises ``LogOptError`` in Docker's wording.
    * ``probe(info)``: static, at container start; the one place a driver may refuse to start
      a container because its receiver is unreachable, where Docker does the same (fluentd
      without ``fluentd-async``, syslog over TCP, GELF over TCP). Raises ``LogpipeError``.
    * ``send(batch)``: deliver the records or raise. ``RetryableError`` (receiver down,
      throttled, 5xx): the shipper retries the same batch with backoff. ``PermanentError``
      (the receiver refuses this batch for good, e.g. HTTP 400): the batch is counted as
      rejected, reported, and skipped. Returns how many records the receiver accepted but
      discarded (CloudWatch's ``rejectedLogEventsInfo``), counted as rejected, or None.
      ``send`` may be called again after any error: drivers reconnect by themselves.
    * ``close()``: release connections; never loses data (everything handed to ``send`` has
      either been confirmed or raised).
    * ``libraries``: the client libraries it imports lazily, checked by the registry at
      create and start (``Library``).

    The optional hooks (``limits``, ``max_retries``, ``retry_wait``, ``retry_max_wait``,
    ``probe``, ``redacted_opts``, ``validate_spool``) and their defaults: ``RemoteHooks``.
    """

    name: ClassVar[str]
    kind: ClassVar[str]  # "remote"
    limits: BatchLimits
    libraries: ClassVar[tuple[Library, ...]]

    @staticmethod
    def validate(opts: Mapping[str, str], info: LogInfo | None = None) -> None: ...

    @staticmethod
    def probe(info: LogInfo) -> None: ...

    def send(self, batch: Sequence[Message]) -> int | None: ...

    def close(self) -> None: ...


class DriverHooks:
    """The optional hooks of every driver, with their defaults.

    A driver may inherit from this class (``drivers.remote.RemoteDriverBase`` does) or only
    define the hooks it needs: ``hook`` falls back to the defaults declared here, so a
    driver written against the bare protocols above behaves exactly as one that inherits.
    """

    #: ``STORAGE``, ``REMOTE`` or ``NONE``; decided once per container by the registry
    #: (``logpipe.registry.log_plan``), never tested again by callers.
    kind: ClassVar[str] = STORAGE
    #: Client libraries imported lazily, checked by the registry at create and start.
    libraries: ClassVar[tuple[Library, ...]] = ()

    @staticmethod
    def redacted_opts(opts: Mapping[str, str]) -> Mapping[str, str]:
        """The options as ``inspect`` and the daemon's log may show them (no credentials)."""
        return opts

    @staticmethod
    def validate_spool(opts: Mapping[str, str]) -> None:
        """Checks of the options that size a remote driver's spool (``cache-*``), at create."""

    @staticmethod
    def log_path(info: LogInfo) -> str | None:
        """The file the shim writes, for ``attach`` to follow; None: no such file."""
        return None


class RemoteHooks(DriverHooks):
    """The optional hooks of a remote driver, read by the shipper, with their defaults."""

    kind: ClassVar[str] = REMOTE
    #: How the shipper cuts batches (the receiver's limits).
    limits: BatchLimits = BatchLimits()
    #: Retries of a batch after ``RetryableError`` before it is rejected; None: no limit.
    max_retries: int | None = None
    #: First backoff wait and its cap, in seconds; None: the shipper's defaults.
    retry_wait: float | None = None
    retry_max_wait: float | None = None

    @staticmethod
    def probe(info: LogInfo) -> None:
        """Most receivers are not dialled at start (Docker dials only some)."""


_DECLARED = frozenset(name for cls in (DriverHooks, RemoteHooks) for name in vars(cls)
                      if not name.startswith("_"))


def hook(driver: Any, name: str) -> Any:
    """``driver``'s hook ``name`` (a class or an instance), else its declared default.

    Only declared hooks can be asked for: a misspelt name is a ``KeyError`` here, not a
    default that silently hides the driver's own hook."""
    if name not in _DECLARED:
        raise KeyError(f"{name!r} is not a declared driver hook")
    value = getattr(driver, name, _MISSING)
    if value is _MISSING:
        value = getattr(RemoteHooks if name in _REMOTE_ONLY else DriverHooks, name)
    return value


_MISSING = object()
_REMOTE_ONLY = frozenset(vars(RemoteHooks)) - frozenset(vars(DriverHooks))
