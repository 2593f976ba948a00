"""Where a container's FIFO goes: one ``Logger`` per ``StartLogging``, draining the FIFO in a
thread into a logpipe storage driver through the same ``StorageGuard`` and ``make_sink`` as
the shim's capture (``logpipe.capture``), so a full disk or ``mode=non-blocking`` behave as
they do under ``logpipe run``. A remote driver's output goes, as in the shim, into the
disk-first spool (``drivers.spool``), delivered by a ``logpipe.shipper.Shipper`` in this
process.

Each container's log lives in ``<data-root>/containers/<id>/`` with ``plugin.json`` (driver,
options, Docker's Info) beside it, so that ``ReadLogs`` can find it after a plugin restart.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Mapping

from logpipe.driver import LogInfo
from logpipe.errors import InvalidParameter, LogpipeError

from .fifo import FlushRequest, drain

#: The option that picks logpipe's driver; every other ``--log-opt`` is that driver's.
DRIVER_OPT = "logpipe-driver"
DEFAULT_DRIVER = "local"
META = "plugin.json"


def log_info(info: Mapping[str, Any], log_dir: str, opts: Mapping[str, str]) -> LogInfo:
    """Docker's ``logger.Info`` (as StartLogging sends it) as logpipe's ``LogInfo``."""
    return LogInfo(container_id=info.get("ContainerID") or "", log_dir=log_dir,
                   config=dict(opts), container_name=info.get("ContainerName") or "",
                   image_id=info.get("ContainerImageID") or "",
                   image_name=info.get("ContainerImageName") or "",
                   entrypoint=info.get("ContainerEntrypoint") or "",
                   args=tuple(info.get("ContainerArgs") or ()),
                   created=str(info.get("ContainerCreated") or ""),
                   env=tuple(info.get("ContainerEnv") or ()),
                   labels=dict(info.get("ContainerLabels") or {}),
                   daemon_name=info.get("DaemonName") or "docker")


def split_opts(config: Mapping[str, str] | None) -> tuple[str, dict[str, str]]:
    """``--log-opt``s → (logpipe driver name, that driver's options)."""
    opts = dict(config or {})
    return opts.pop(DRIVER_OPT, DEFAULT_DRIVER) or DEFAULT_DRIVER, opts


def container_dir(data_root: str, container_id: str) -> str:
    """The container's log directory; an id that is not a plain name is refused."""
    if not container_id or "/" in container_id or container_id in (".", ".."):
        raise InvalidParameter(f"invalid container id {container_id!r}")
    return os.path.join(data_root, "containers", container_id)


def check_config(name: str, opts: Mapping[str, str], info: LogInfo):
    """The validation of ``logpipe run`` (registry), and, as at a container's start there,
    a remote driver's ``probe`` (fluentd without ``fluentd-async`` refuses a receiver that
    is down). Returns the driver class."""
    from logpipe.driver import hook
    from logpipe.registry import log_plan, validate_log_config

    driver_cls = validate_log_config(name, opts, info)
    if log_plan(name).ships:
        hook(driver_cls, "probe")(info)
    return driver_cls


def start_shipper(name: str, driver_cls, info: LogInfo):
    """The daemon's shipper for a remote driver (``logpipe.shipper``): from the spool in the
    log directory to the receiver, from a durable checkpoint; it ends once everything is
    delivered and the spool's writer has closed it."""
    from drivers.remote import spool_path
    from drivers.spool import SpoolTail
    from logpipe.checkpoint import SHIP_DIR, checkpoint_path
    from logpipe.shipper import Shipper

    os.makedirs(os.path.join(info.log_dir, SHIP_DIR), mode=0o700, exist_ok=True)
    tail = SpoolTail(spool_path(info), warn=lambda text: os.write(
        2, f"logpipe docker-plugin: {info.container_id[:12]} spool: {text}\n".encode()))
    shipper = Shipper(info.container_id[:12], lambda: driver_cls(info), tail,
                      checkpoint_path(info.log_dir, name))
    shipper.start()
    return shipper


class Logger:
    """One container's FIFO → storage driver. ``start`` returns at once (Docker waits for
    StartLogging before it starts the container); the thread ends at the FIFO's EOF, which
    comes when Docker closes its end (the container is gone, or StopLogging follows)."""

    def __init__(self, data_root: str, fifo: str, info: Mapping[str, Any],
                 adopted: bool = False) -> None:
        self.fifo, self.docker_info, self.adopted = fifo, dict(info), adopted
        self.fd: int | None = None
        if adopted:  # Docker's end is open already: read from before the socket answers
            self.fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.set_blocking(self.fd, True)
        name, opts = split_opts(info.get("Config"))
        self.log_dir = container_dir(data_root, info.get("ContainerID") or "")
        self.info = log_info(info, self.log_dir, opts)
        self.driver_cls = check_config(name, opts, self.info)
        self.name, self.opts = name, opts
        from logpipe.registry import log_plan

        self.ships = log_plan(name).ships
        self.shipper = self.spool = None
        self.sink = self.guard = None
        self.error = ""
        self.lines = self.bytes = 0
        self.flush_request = FlushRequest()
        self.thread = threading.Thread(target=self._run, name=f"fifo {os.path.basename(fifo)}",
                                       daemon=True)

    def start(self) -> None:
        """Create the log directory and its metadata, start draining. The driver is opened
        at the first record (``_open``): ``docker logs`` of a stopped container starts a
        logger only to read, and Docker may start the next one before it has stopped the
        last, which must not take the log's writer lock."""
        from logpipe.registry import driver_ref

        os.makedirs(self.log_dir, mode=0o700, exist_ok=True)
        save_meta(self.log_dir, {"Driver": self.name, "Ref": driver_ref(self.name),
                                 "Opts": self.opts, "Info": self.info._asdict(),
                                 "Fifo": self.fifo, "DockerInfo": self.docker_info,
                                 "Stopped": False})
        self.thread.start()

    def _open(self):
        """The sink the first records go to: the storage driver behind the shim's guard, or
        (remote drivers) the spool, with its shipper."""
        from logpipe.capture import make_sink
        from logpipe.storage_guard import StorageGuard

        if self.ships:  # the shim's way: a disk-first spool, and a shipper reading it
            from drivers.spool import SpoolWriter

            driver = self.spool = SpoolWriter(self.info, self.name, report=self._report)
            self.shipper = start_shipper(self.name, self.driver_cls, self.info)
        else:
            driver = self.driver_cls(self.info)
        self.guard = StorageGuard(driver, report=self._report)
        # A spool has its own answer to ``mode`` (what to do when it is full), as in the shim.
        return self.guard if self.ships else make_sink(self.guard, self.opts)

    def write(self, batch) -> None:
        """``drain``'s sink: the driver's, opened on first use."""
        if self.sink is None:
            self.sink = self._open()
        self.bytes += sum(len(chunk.data) for chunk in batch)  # the counters' (``counters``)
        self.sink.write(batch)

    def _run(self) -> None:
        try:
            fd = self.fd if self.fd is not None else \
                os.open(self.fifo, os.O_RDONLY | os.O_CLOEXEC)  # waits for Docker's end
            drain(fd, self, self, self.adopted, self.flush_request)
        except (OSError, ValueError) as err:
            self._report(f"reading {self.fifo}: {err}")
        finally:
            try:
                if self.sink is not None:
                    if self.sink is not self.guard:
                        self.sink.close()
                    self.guard.close()
            finally:
                self.flush_request.end()

    def _report(self, text: str) -> None:
        self.error = text
        os.write(2, f"logpipe docker-plugin: {self.info.container_id[:12]}: {text}\n"
                 .encode(errors="replace"))

    def flush(self, timeout: float) -> bool:
        """Whether everything written so far was stored within ``timeout`` seconds: the
        FIFO read to its end, or found empty (``fifo.FlushRequest``: Docker closes its end
        only after StopLogging has answered)."""
        return self.flush_request.ask(timeout)

    def release(self) -> None:
        """StopLogging for a FIFO Docker may never have opened: ``docker logs`` of a stopped
        container starts a logger only to read, and its FIFO may never get a writer.
        Opening and closing a write end ourselves ends a thread still waiting in ``open``
        (it then reads EOF), so the log's writer closes. When Docker's end is open (it
        closes it only after StopLogging answers), this changes nothing."""
        try:
            os.close(os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        except OSError:  # no reader any more (ENXIO), or the FIFO is gone: nothing waits
            pass

    def stopped(self) -> None:
        """StopLogging: this log is never to be re-adopted (``adopt``)."""
        meta = load_meta(os.path.dirname(os.path.dirname(self.log_dir)),
                         self.info.container_id)
        meta["Stopped"] = True
        save_meta(self.log_dir, meta)


def adopt(data_root: str, shippers: dict[str, Any] | None = None) -> list[Logger]:
    """The logs of containers still running after the plugin restarted: Docker called
    StartLogging once and keeps writing into the same FIFO (while no one reads, its writes
    fill the pipe: they do not fail), so a restarted plugin opens every FIFO it was given
    and not stopped, and goes on appending to the same log. A FIFO that is gone (the
    container ended) is left alone, but its spool's shipper runs again until delivered
    (recorded in ``shippers`` by id)."""
    loggers = []
    root = os.path.join(data_root, "containers")
    for cid in sorted(os.listdir(root)) if os.path.isdir(root) else ():
        try:
            meta = load_meta(data_root, cid)
            if meta.get("Stopped") or not _is_fifo(meta["Fifo"]):
                shipper = _ship_rest(data_root, meta)
                if shipper is not None and shippers is not None:
                    shippers[cid] = shipper
                continue
            logger = Logger(data_root, meta["Fifo"], meta["DockerInfo"], adopted=True)
            logger.start()
        except (OSError, KeyError, ValueError, LogpipeError) as err:
            os.write(2, f"logpipe docker-plugin: not re-adopting {cid}: {err}\n".encode())
            continue
        loggers.append(logger)
    return loggers


def _is_fifo(path: str) -> bool:
    import stat

    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def _ship_rest(data_root: str, meta: Mapping[str, Any]):
    """A container that ended (while the plugin was down, or before its spool was
    delivered): its shipper runs again until the spool is delivered."""
    from drivers.spool import spool_drained
    from logpipe.registry import load_driver, log_plan

    name = meta["Driver"]
    if not log_plan(name).ships:
        return None
    info = log_info(meta["DockerInfo"], container_dir(data_root, meta["Info"]["container_id"]),
                    meta["Opts"])
    if spool_drained(info, name):
        return None
    return start_shipper(name, load_driver(name, meta.get("Ref")), info)


def save_meta(log_dir: str, meta: Mapping[str, Any]) -> None:
    """Write-then-rename, so that a reader never sees half a file."""
    path = os.path.join(log_dir, META)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(meta, f)
    os.replace(tmp, path)


def load_meta(data_root: str, container_id: str) -> dict[str, Any]:
    """What ``start`` saved for a container; ``NotFound`` when it never logged here."""
    from logpipe.errors import NotFound

    try:
        with open(os.path.join(container_dir(data_root, container_id), META)) as f:
            return json.load(f)
    except FileNotFoundError:
        raise NotFound(f"no logs stored for container {container_id}") from None
