"""The daemon's container store and lifecycle: create, start, stop, kill, restart, wait, remove.

Size: longer than 500 lines on purpose: the lifecycle operations share one lock and one set of
waiters per container, and the rules below about who may wait while holding what are only
checkable when every operation is read together. What is not lifecycle lives elsewhere:
create's checks (``runtime.create``), the restart policy (``runtime.restart``), the watcher
threads (``runtime.watcher``), the API's JSON (``runtime.views``), the errors
(``runtime.errors``).

A container is a directory ``<data-root>/containers/<id>/`` holding ``config.json`` (its
``ContainerSpec``, written here at create time; ``rename`` and ``update`` rewrite it, and
the next start reads it), ``state.json`` (written
by its shim, only), its logs (written by its shim), and ``lifecycle.json``: what only the
daemon decides — ``RestartCount`` and whether the user stopped it (Docker's
``HasBeenManuallyStopped``, which disables ``always``/``on-failure`` restarts).

Each running container has one watcher thread blocked in the shim's ``wait`` operation; its
answer is an event on the daemon's loop, which wakes ``wait`` requests, applies the restart
policy and ``--rm``. A shim that dies (SIGKILL, a crash) is noticed by its watcher, which
cleans up after it (``settle_run``). The daemon never reads a container's pipes and never
writes its logs.

Nothing here waits unboundedly while holding a container's lock: ``stop`` and ``restart``
wait for the exit after releasing it, so ``kill`` and ``rm -f`` pre-empt a long ``stop -t``,
and every wait after a SIGKILL is bounded (``KILL_WAIT``, then a kill without the shim).

Everything a user typed is validated (``runtime.create``) before anything is written; a
create that fails leaves no directory and no name behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import shutil
import signal
import time
from typing import Any, Callable, Mapping

from logpipe.units import human_duration
from logpipe.errors import InvalidParameter, LogpipeError, NotModified
from logpipe.registry import check_libraries, get_driver
from logpipe.timespec import parse_rfc3339

from . import schema
from .config import DaemonConfig
from .create import container_name, container_spec, requested_image
from .errors import ContainerConflict, NameConflict, NoSuchContainer, StartFailed, StartInvalidConfig
from .events import Events, container_attributes
from .executors import get_executor
from .images import ImageStore
from .network import aardvark, netavark
from .network import store as netstore
from .resources import cannot_update, check_request, updated
from .restart import next_backoff, should_restart
from .rootfs import writable_size
from .shim_parent_client import ShimParent
from .shimclient import ShimClient, ShimError, recover_state, settle_run, spawn_shim
from .shipping import Shipping
from .network.early import EarlySetup
from .spec import ContainerSpec, read_json_object, write_json_atomic
from .state import CREATED, EXITED, RUNNING, ZERO_TIME, State, now_rfc3339, read_state
from .volumes import VolumeStore
from .watcher import watch_run

log = logging.getLogger("logpipe.daemon")
#: How long ``--rm`` waits for attached clients to finish reading the log.
AUTO_REMOVE_ATTACH_WAIT = 30.0

ID_RE = re.compile(r"[0-9a-f]{64}")
LIFECYCLE_FILE = "lifecycle.json"
#: Docker's ``Kill``: how long to wait for the exit after SIGKILL through the shim, then after
#: a SIGKILL sent without it (daemon/kill.go: 10 s, then 2 s).
KILL_WAIT, KILL_DIRECT_WAIT = 10.0, 2.0


# -- small helpers ------------------------------------------------------------------------


def parse_signal(value: str | int | None, default: int = signal.SIGKILL) -> int:
    """``9``, ``KILL`` or ``SIGKILL`` → 9; Docker's ``Invalid signal: X`` otherwise."""
    if value is None or value == "":
        return int(default)
    text = str(value).strip()
    if text.isdigit():
        num = int(text)
        if 0 < num < signal.NSIG:
            return num
        raise InvalidParameter(f"Invalid signal: {value}")
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidParameter(f"Invalid signal: {value}") from None


def _since(rfc3339: str) -> float:
    if not rfc3339 or rfc3339 == ZERO_TIME:
        return 0.0
    try:
        return max(0.0, time.time() - parse_rfc3339(rfc3339) / 1e9)
    except ValueError:
        return 0.0


_ADJECTIVES = ("admiring", "brave", "clever", "dazzling", "eager", "focused", "gallant",
               "happy", "jolly", "keen", "lucid", "modest", "nifty", "optimistic", "quirky",
               "relaxed", "serene", "tender", "upbeat", "vibrant", "wizardly", "zealous")
_SURNAMES = ("babbage", "curie", "dijkstra", "euler", "feynman", "gauss", "hopper",
             "johnson", "knuth", "lovelace", "mccarthy", "noether", "pike", "ritchie",
             "shannon", "thompson", "turing", "wozniak")


# -- one container --------------------------------------------------------------------------


class Container:
    """A container as the daemon knows it: its spec, its last state, and its waiters."""

    def __init__(self, spec: ContainerSpec, state: State | None, restart_count: int = 0,
                 manually_stopped: bool = False) -> None:
        self.spec = spec
        self.state = state or State()
        self.restart_count = restart_count
        self.manually_stopped = manually_stopped
        self.removing = False
        self.removed = False
        # A manual ``restart`` is stopping it: that exit neither applies the restart policy
        # nor ``--rm`` (Docker's HasBeenManuallyRestarted). Not persisted: a daemon that dies
        # mid-restart leaves it to the policy, which is what the user asked for.
        self.restarting_manually = False
        self.paused = False
        self.restart_task: asyncio.Task | None = None
        self.backoff = 0.0
        self.run_began = 0.0  # monotonic time of the current run's start
        self.run_token: object | None = None  # identifies the run a watcher reports on
        self.exit_waiters: list[asyncio.Future] = []
        self.start_waiters: list[asyncio.Future] = []
        self.remove_waiters: list[asyncio.Future] = []
        self.lock = asyncio.Lock()
        # Attached streams read the log: --rm waits for them before deleting it.
        self.attached = 0
        self.attach_idle = asyncio.Event()
        self.attach_idle.set()
        # Its exec instances not finished yet (``runtime.execs``): inspect's ``ExecIDs``.
        self.exec_ids: list[str] = []

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def name(self) -> str:
        return self.spec.name.lstrip("/")

    @property
    def restarting(self) -> bool:
        return self.restart_task is not None

    @property
    def running(self) -> bool:
        """Docker counts a restarting container as running (State.Running and Restarting)."""
        return self.state.status == RUNNING or self.restarting

    @property
    def start_failed(self) -> bool:
        return self.state.status == EXITED and self.state.started_at == ZERO_TIME

    @property
    def status(self) -> str:
        """Docker's ``State.Status``."""
        if self.removing:
            return "removing"
        if self.restarting:
            return "restarting"
        if self.start_failed:
            return CREATED  # Docker: a container that failed to start stays "created"
        if self.paused and self.state.status == RUNNING:
            return "paused"
        return self.state.status

    def status_text(self) -> str:
        """``docker ps``'s Status column."""
        st = self.state
        status = self.status
        if status == "removing":
            return "Removal In Progress"
        if status == "restarting":
            return f"Restarting ({st.exit_code}) {human_duration(_since(st.finished_at))} ago"
        if status == RUNNING:
            return f"Up {human_duration(_since(st.started_at))}"
        if status == "paused":
            return f"Up {human_duration(_since(st.started_at))} (Paused)"
        if status == EXITED:
            return f"Exited ({st.exit_code}) {human_duration(_since(st.finished_at))} ago"
        return "Created"

    def save_lifecycle(self) -> None:
        try:
            write_json_atomic(os.path.join(self.spec.dir, LIFECYCLE_FILE),
                              {"RestartCount": self.restart_count,
                               "ManuallyStopped": self.manually_stopped,
                               "Paused": self.paused})
        except FileNotFoundError:
            pass  # removed meanwhile
        except OSError as err:  # a full disk: the daemon knows; only a restart would forget
            log.warning("container %s: saving %s failed: %s", self.id[:12], LIFECYCLE_FILE, err)


def _resolve(waiters: list[asyncio.Future], value: Any) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_result(value)
    waiters.clear()


# -- the store ------------------------------------------------------------------------------


class ContainerStore:
    """Every container of one data root, and the operations on them (called by the API)."""

    def __init__(self, config: DaemonConfig, images: ImageStore) -> None:
        self.config = config
        self.images = images
        self.dir = os.path.join(config.data_root, "containers")
        os.makedirs(self.dir, mode=0o710, exist_ok=True)
        self.containers: dict[str, Container] = {}
        self.names: dict[str, str] = {}  # name without "/" → id
        self.creating: dict[str, ContainerSpec] = {}  # id → spec, while its volumes fill
        self.shutting_down = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.shipping = Shipping()
        self.volumes = VolumeStore(config.data_root, self.volume_users)
        self.events = Events(config.data_root)
        # Forks every shim: shared pages instead of an interpreter per container.
        self.shim_parent = ShimParent(config.data_root)

    def container_event(self, c: Container, action: str,
                        extra: Mapping[str, str] | None = None) -> None:
        """A container event with Docker's attributes (labels, ``image``, ``name``)."""
        self.events.emit("container", action, c.id,
                         container_attributes(c.spec.name, c.spec.image, c.spec.labels, extra))

    def exec_event(self, container_id: str, action: str, extra: Mapping[str, str]) -> None:
        """An exec's event (``runtime.execs``), as an event of its container."""
        c = self.containers.get(container_id)
        if c is not None:
            self.container_event(c, action, extra)

    def _volume_events(self, c: Container, action: str) -> None:
        """``mount`` at start, ``unmount`` at exit, for each volume of ``c`` (Docker's)."""
        for m in c.spec.mounts:
            if m.type != "volume":
                continue
            attrs = {"driver": "local", "container": c.id}
            if action == "mount":
                attrs.update({"destination": m.target, "read/write": str(not m.readonly).lower(),
                              "propagation": ""})
            self.events.emit("volume", action, m.source, attrs)

    def _network_event(self, c: Container, action: str) -> None:
        """``connect`` at start, ``disconnect`` at exit, for the bridge network ``c`` runs
        on (Docker's, with the network's id and name)."""
        if not netavark.uses_netns(c.spec):
            return
        try:
            net = netstore.resolve(self.config.data_root, c.spec.network_mode)
        except LogpipeError:
            return  # removed meanwhile: nothing to name
        self.events.emit("network", action, net.id,
                         {"container": c.id, "name": net.name, "type": "bridge"})

    # -- lookup ---------------------------------------------------------------------------

    def get(self, ref: str) -> Container:
        """By full id, name (with or without "/"), or unique id prefix — Docker's order."""
        c = self.containers.get(ref)
        if c is not None:
            return c
        cid = self.names.get(ref.lstrip("/")) if ref else None
        if cid is not None:
            return self.containers[cid]
        if ref and all(ch in "0123456789abcdef" for ch in ref):
            found = [c for i, c in self.containers.items() if i.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidParameter(f"Multiple IDs found with provided prefix: {ref}")
        raise NoSuchContainer(ref)

    def list(self, all: bool = False, filters: Mapping[str, Any] | None = None) -> list[Container]:
        """``docker ps``: running ones (or all), newest first, filtered."""
        items = sorted(self.containers.values(), key=lambda c: c.spec.created, reverse=True)
        if not all and not (filters and "status" in filters):
            items = [c for c in items if c.status in (RUNNING, "paused", "restarting")]
        for key, values in (filters or {}).items():
            if isinstance(values, dict):  # the old {"name": {"x": true}} form
                values = [v for v, on in values.items() if on]
            if isinstance(values, str):
                values = [values]
            items = [c for c in items if self._matches(c, key, list(values))]
        return items

    @staticmethod
    def _matches(c: Container, key: str, values: list[str]) -> bool:
        if key == "name":
            return any(re.search(v, c.spec.name) or re.search(v, c.name) for v in values)
        if key == "id":
            return any(c.id.startswith(v) for v in values)
        if key == "status":
            allowed = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
            for v in values:
                if v not in allowed:
                    raise InvalidParameter(f"Invalid filter 'status={v}'")
            return c.status in values
        if key == "label":
            for v in values:
                k, eq, want = v.partition("=")
                if k not in c.spec.labels or (eq and c.spec.labels[k] != want):
                    return False
            return True
        if key == "ancestor":
            return any(v in (c.spec.image, c.spec.image_id) for v in values)
        raise InvalidParameter(f"invalid filter '{key}'")

    def volume_users(self, name: str) -> list[str]:
        """The ids of the containers that mount the volume ``name`` (rm refuses while any)."""
        specs = [c.spec for c in self.containers.values()] + list(self.creating.values())
        return [s.id for s in specs
                if any(m.type == "volume" and m.source == name for m in s.mounts)]

    def image_user(self, image_id: str) -> str | None:
        """The id of a container created from ``image_id`` (rmi refuses while one exists)."""
        for c in self.containers.values():
            if c.spec.image_id == image_id:
                return c.id
        return None

    # -- create ---------------------------------------------------------------------------

    def _new_name(self) -> str:
        for _ in range(100):
            name = f"{random.choice(_ADJECTIVES)}_{random.choice(_SURNAMES)}"
            if name not in self.names and not self._reserved(name):
                return name
        return f"{name}{random.randint(0, 9999)}"

    def _new_id(self) -> str:
        while True:
            cid = os.urandom(32).hex()
            # Docker avoids short ids that look like numbers (they would parse as one).
            if not cid[:12].isdigit() and cid not in self.containers:
                return cid

    async def create(self, body: Any, name: str = "") -> tuple[Container, list[str]]:
        """``POST /containers/create``: validate everything, then write the container.

        ``body`` is the parsed JSON; its shape is checked against ``schema.ContainerCreate``
        first (Docker decodes it before anything else), then its values here. The name is
        held (``creating``) while the volumes are copied up in a thread, so that neither a
        second create of that name nor a ``volume rm`` slips in meanwhile."""
        req = schema.container_create(body)
        if name:
            name = container_name(name)
            self._check_name(name)
        else:
            name = self._new_name()
        image_ref = requested_image(req)
        image = self.images.resolve(image_ref)
        cid = self._new_id()
        cdir = os.path.join(self.dir, cid)
        spec, warnings = container_spec(req, name, image_ref, image, cid, cdir, self.config)
        self._check_name(name)
        self.creating[cid] = spec
        try:
            # Docker makes a missing volume at create, and copies up: disk work, off the loop
            await asyncio.to_thread(self._make_volumes, spec)
            os.mkdir(cdir, 0o710)
            try:
                spec.save()
                c = Container(spec, None)
                c.save_lifecycle()
            except BaseException:
                shutil.rmtree(cdir, ignore_errors=True)
                raise
        finally:
            del self.creating[cid]
        self.containers[cid] = c
        self.names[name] = cid
        self.container_event(c, "create")
        return c, warnings

    def _make_volumes(self, spec: ContainerSpec) -> None:
        for m in spec.mounts:
            if m.type == "volume":
                self.volumes.create(m.source, labels=m.labels, anonymous=m.anonymous)
                self.events.emit("volume", "create", m.source, {"driver": "local"})
                if not m.nocopy:
                    self.volumes.copy_up(m.source, spec.rootfs, m.target)

    def _reserved(self, name: str) -> bool:
        return any(s.name == "/" + name for s in self.creating.values())

    def _check_name(self, name: str) -> None:
        other = self.names.get(name) or next(
            (cid for cid, s in self.creating.items() if s.name == "/" + name), None)
        if other is not None:
            raise NameConflict(f'Conflict. The container name "/{name}" is already in use by '
                               f'container "{other}". You have to remove (or rename) that '
                               "container to be able to reuse that name.")

    # -- start / exit / restart policy ----------------------------------------------------

    async def start(self, c: Container) -> None:
        async with c.lock:
            if c.removing or c.removed:
                raise ContainerConflict(f"removal of container {c.id} is already in progress")
            if c.running:
                raise NotModified()
            c.manually_stopped = False
            c.restart_count = 0  # Docker's ResetRestartManager(true) on a user's start
            c.save_lifecycle()
            try:
                await self._spawn(c)
                return
            except StartFailed as err:
                failure = err
        # Docker removes an AutoRemove container whose start failed before it answers
        # (daemon/start.go), so that ``run --rm``'s ``wait?condition=removed`` returns.
        if c.spec.auto_remove and not (c.removing or c.removed):
            try:
                await self.remove(c, force=True)
            except LogpipeError as err:
                log.warning("auto-removing container %s failed: %s", c.id[:12], err)
        raise failure

    async def _spawn(self, c: Container) -> None:
        if c.spec.plan().ships:
            await self._probe(c)
        self._volume_events(c, "mount")
        early = EarlySetup.begin(c.spec)  # the network's setup, beside the shim's start-up
        try:
            await asyncio.to_thread(spawn_shim, c.spec.dir, parent=self.shim_parent)
        except ShimError as err:
            c.state = recover_state(c.spec.dir) or State(status=EXITED, exit_code=128,
                                                         error=str(err), finished_at=now_rfc3339())
            _resolve(c.start_waiters, None)
            if early is not None:
                await asyncio.to_thread(early.finish, False)
            raise StartFailed(str(err)) from None
        c.state = read_state(c.spec.dir) or c.state
        if early is not None:
            await asyncio.to_thread(early.finish, not c.start_failed)
        if c.start_failed:
            # Whoever attached before the start gets the end of its stream (Docker closes
            # the container's streams when a start fails).
            _resolve(c.start_waiters, None)
            error = StartInvalidConfig if c.state.exit_code in (126, 127) else StartFailed
            raise error(c.state.error or "the container failed to start")
        c.run_began = time.monotonic()
        self.shipping.ensure(c.spec)  # after the shim holds the spool: see Shipper's exit rule
        self._network_event(c, "connect")
        self.container_event(c, "start")
        _resolve(c.start_waiters, c.state)
        self._watch(c)

    async def _probe(self, c: Container) -> None:
        """Docker refuses to start a container whose receiver it cannot reach when its driver
        dials at start (fluentd without fluentd-async, syslog and GELF over TCP): so do we.
        A client library missing since create is the request's 400, not a failed start."""
        driver = get_driver(c.spec.log_type)
        check_libraries(c.spec.log_type)
        try:
            await asyncio.to_thread(driver.probe, c.spec.log_info())
        except LogpipeError as err:
            message = f"failed to initialize logging driver: {err}"
            c.state = c.state._replace(exit_code=128, error=message)
            raise StartFailed(message) from None

    def _watch(self, c: Container) -> None:
        """One thread per run, blocked in the shim's ``wait``; reports on the loop."""
        token = object()
        c.run_token = token
        loop = asyncio.get_running_loop()
        directory = c.spec.dir

        def report(state: State) -> None:
            try:
                loop.call_soon_threadsafe(self._exited, c, token, state)
            except RuntimeError:
                pass  # the loop is closed: the daemon is exiting

        watch_run(directory, report, name=f"watch-{c.id[:12]}")

    def _exited(self, c: Container, token: object, state: State) -> None:
        if token is not c.run_token:
            return
        c.run_token = None
        c.state = state
        if state.oom_killed:  # Docker reports the kernel's OOM kill before the exit
            self.container_event(c, "oom")
        self._network_event(c, "disconnect")
        self._volume_events(c, "unmount")
        self.container_event(c, "die", {"exitCode": str(state.exit_code)})
        if c.paused:
            c.paused = False
            c.save_lifecycle()
        _resolve(c.exit_waiters, state)
        if c.removing or c.removed or self.shutting_down or c.restarting_manually:
            return
        if should_restart(c.spec.restart_policy, c.spec.restart_max, c.state.exit_code,
                          c.restart_count, c.manually_stopped):
            c.backoff = next_backoff(c.backoff, time.monotonic() - c.run_began)
            c.restart_task = asyncio.get_running_loop().create_task(self._restart_later(c))
        elif c.spec.auto_remove:
            asyncio.get_running_loop().create_task(self._auto_remove(c))

    async def _restart_later(self, c: Container) -> None:
        try:
            await asyncio.sleep(c.backoff)
            async with c.lock:
                if c.restart_task is not asyncio.current_task():
                    return
                c.restart_task = None
                c.restart_count += 1
                c.save_lifecycle()
                await self._spawn(c)
        except asyncio.CancelledError:
            raise
        except LogpipeError as err:
            log.warning("restarting container %s failed: %s", c.id[:12], err)
        finally:
            if c.restart_task is asyncio.current_task():
                c.restart_task = None

    def _cancel_restart(self, c: Container) -> bool:
        task, c.restart_task = c.restart_task, None
        if task is None:
            return False
        task.cancel()
        return True

    async def _auto_remove(self, c: Container) -> None:
        try:
            # An attached ``run --rm`` must get every line before the log is deleted.
            await asyncio.wait_for(c.attach_idle.wait(), AUTO_REMOVE_ATTACH_WAIT)
        except TimeoutError:
            log.warning("removing container %s while a client is still attached", c.id[:12])
        try:
            await self.remove(c, force=True, volumes=True)  # --rm takes anonymous volumes
        except LogpipeError as err:
            log.warning("auto-removing container %s failed: %s", c.id[:12], err)

    # -- stop / kill / restart --------------------------------------------------------------

    def _next_exit(self, c: Container) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        c.exit_waiters.append(fut)
        return fut

    async def _signal(self, c: Container, sig: int) -> None:
        # Before the signal goes: its ``die`` must not be reported ahead of it.
        self.container_event(c, "kill", {"signal": str(int(sig))})
        try:
            await asyncio.to_thread(ShimClient(c.spec.dir).signal, sig)
        except ShimError as err:  # exited meanwhile: the watcher reports it
            log.info("signal %d to %s: %s", sig, c.id[:12], err)

    async def stop(self, c: Container, timeout: float | None = None) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds (10; negative: wait forever).

        The wait happens after the lock is released: a ``kill`` or ``rm -f`` meanwhile ends
        it (Docker's stop, too, returns once the container has stopped, whoever stopped it)."""
        timeout = _stop_timeout(c) if timeout is None else timeout
        async with c.lock:
            if self._cancel_restart(c):
                c.manually_stopped = True
                c.save_lifecycle()
                return
            if not c.running:
                raise NotModified()
            c.manually_stopped = True
            c.save_lifecycle()
            exited = await self._send_stop(c)
        await self._wait_stopped(c, exited, timeout)
        self.container_event(c, "stop")

    async def _send_stop(self, c: Container) -> asyncio.Future:
        """SIGTERM (thawing a paused container); the future of the exit it asks for."""
        exited = self._next_exit(c)
        await self._signal(c, parse_signal(c.spec.stop_signal, signal.SIGTERM))
        await self._thaw(c)
        return exited

    async def _wait_stopped(self, c: Container, exited: asyncio.Future, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(exited), None if timeout < 0 else timeout)
        except asyncio.TimeoutError:
            await self._signal(c, signal.SIGKILL)
            await self._wait_killed(c, exited)

    async def _wait_killed(self, c: Container, exited: asyncio.Future) -> None:
        """After a SIGKILL: the exit, within ``KILL_WAIT``; else (a shim that does not
        report) SIGKILL the container without the shim and wait ``KILL_DIRECT_WAIT`` more."""
        try:
            await asyncio.wait_for(asyncio.shield(exited), KILL_WAIT)
            return
        except asyncio.TimeoutError:
            log.warning("container %s did not exit %g s after SIGKILL: killing it directly",
                        c.id[:12], KILL_WAIT)
        await asyncio.to_thread(self._kill_directly, c)
        try:
            await asyncio.wait_for(asyncio.shield(exited), KILL_DIRECT_WAIT)
        except asyncio.TimeoutError:
            raise LogpipeError(f"Cannot kill container {c.id}: it did not exit "
                               f"{KILL_WAIT + KILL_DIRECT_WAIT:g} s after SIGKILL") from None

    def _kill_directly(self, c: Container) -> None:
        """SIGKILL to the container's process through its executor (the pid is still the
        shim's unreaped child if the shim lives), or the dead shim's cleanup (blocking)."""
        try:
            state = settle_run(c.spec.dir)
        except (OSError, LogpipeError):  # a live shim that does not answer: use what we know
            state = c.state
        if state is None or state.status == EXITED or not state.pid:
            return
        try:
            get_executor(c.spec.runtime).kill(c.spec, state.pid, signal.SIGKILL)
        except (OSError, LogpipeError) as err:
            log.warning("killing %s directly: %s", c.id[:12], err)

    async def pause(self, c: Container, paused: bool) -> None:
        """``pause``/``unpause`` with Docker's refusals (409)."""
        async with c.lock:
            if c.state.status != RUNNING or c.restarting:
                raise ContainerConflict(f"Container {c.id} is not running")
            if paused and c.paused:
                raise ContainerConflict(f"Container {c.id} is already paused")
            if not paused and not c.paused:
                raise ContainerConflict(f"Container {c.id} is not paused")
            executor = get_executor(c.spec.runtime)
            try:
                await asyncio.to_thread(executor.pause, c.spec, c.state.pid, paused)
            except LogpipeError as err:
                raise LogpipeError(f"Cannot {'pause' if paused else 'unpause'} container "
                                   f"{c.id}: {err}") from None
            c.paused = paused
            c.save_lifecycle()
        self.container_event(c, "pause" if paused else "unpause")

    # -- rename / update / prune ------------------------------------------------------------

    async def rename(self, c: Container, new: str) -> None:
        """``POST /containers/{id}/rename``, running or not: Docker's checks and texts. The
        name is taken before anything is written, so no create can race for it."""
        if not new:
            raise InvalidParameter("Neither old nor new names may be empty")
        if new.lstrip("/") == c.name:
            raise InvalidParameter("Renaming a container with the same name as its current "
                                   "name")
        new = container_name(new)
        try:
            self._check_name(new)
        except NameConflict as err:
            raise NameConflict(f"Error when allocating new name: {err}") from None
        old = c.spec.name
        self.names[new] = c.id
        try:
            async with c.lock:
                c.spec = c.spec._replace(name="/" + new)
                await asyncio.to_thread(c.spec.save)
        except BaseException:
            del self.names[new]
            c.spec = c.spec._replace(name=old)
            raise
        if self.names.get(old.lstrip("/")) == c.id:
            del self.names[old.lstrip("/")]
        if c.state.status == RUNNING:  # its DNS name on a user-defined network follows
            try:
                await asyncio.to_thread(aardvark.rename, c.spec, old)
            except OSError as err:
                log.warning("renaming %s in aardvark-dns: %s", c.id[:12], err)
        self.container_event(c, "rename", {"oldName": old})

    async def update(self, c: Container, body: Any) -> list[str]:
        """``POST /containers/{id}/update``: new limits and restart policy, kept in the
        spec; a running container gets its limits now (``runc update``). The warnings."""
        req = schema.container_update(body)
        check_request(req)
        async with c.lock:
            if c.removing or c.removed:
                raise cannot_update(c.id, 'container is marked for removal and cannot be '
                                          '"update"')
            spec, limits = updated(c.spec, req)
            if limits.any() and c.state.status == RUNNING and not c.restarting:
                try:
                    await asyncio.to_thread(get_executor(c.spec.runtime).update, c.spec, limits)
                except LogpipeError as err:
                    raise cannot_update(c.id, str(err)) from None
            c.spec = spec
            await asyncio.to_thread(spec.save)
        self.container_event(c, "update")
        return []

    async def prune(self, keep: Callable[[Container], bool]) -> tuple[list[str], int]:
        """``POST /containers/prune``: every container not running (nor paused, nor
        restarting) that ``keep`` does not protect is removed; its ids and the bytes of
        writable layers freed. One that cannot be removed is skipped (Docker logs it)."""
        deleted, reclaimed = [], 0
        for c in list(self.containers.values()):
            if c.running or c.removing or c.removed or keep(c):
                continue
            size = await asyncio.to_thread(writable_size, c.spec)
            try:
                await self.remove(c)
            except LogpipeError as err:
                log.warning("prune: removing %s failed: %s", c.id[:12], err)
                continue
            deleted.append(c.id)
            reclaimed += size
        self.events.emit("container", "prune", "", {"reclaimed": str(reclaimed)})
        return deleted, reclaimed

    async def _thaw(self, c: Container) -> None:
        """A signal to a paused container is delivered when it thaws: Docker unpauses it
        after a stop or kill signal so that it can act on it."""
        if c.paused:
            try:
                await asyncio.to_thread(get_executor(c.spec.runtime).pause, c.spec,
                                        c.state.pid, False)
            except LogpipeError as err:
                log.warning("unpausing %s: %s", c.id[:12], err)
            c.paused = False
            c.save_lifecycle()

    async def kill(self, c: Container, sig: int) -> None:
        """Send ``sig``; for SIGKILL (the default) return once the container has exited, as
        Docker's ``Kill`` does (bounded: ``_wait_killed``). Needs no lock: it pre-empts a
        pending ``stop``."""
        if not c.running or c.restarting:
            raise ContainerConflict(f"Container {c.id} is not running")
        # Docker's killWithSignal marks the container manually stopped: no policy restart.
        c.manually_stopped = True
        c.save_lifecycle()
        exited = self._next_exit(c) if sig == signal.SIGKILL else None
        await self._signal(c, sig)
        await self._thaw(c)
        if exited is not None:
            await self._wait_killed(c, exited)

    async def restart(self, c: Container, timeout: float | None = None) -> None:
        """Stop (without the lock held while waiting, as ``stop``), then start. The exit it
        causes applies neither the restart policy nor ``--rm``; like a user's ``start`` it
        resets ``RestartCount`` (Docker)."""
        timeout = _stop_timeout(c) if timeout is None else timeout
        async with c.lock:
            if c.removing or c.removed:
                raise ContainerConflict(f"removal of container {c.id} is already in progress")
            self._cancel_restart(c)
            c.restarting_manually = True
            exited = await self._send_stop(c) if c.state.status == RUNNING else None
        try:
            if exited is not None:
                await self._wait_stopped(c, exited, timeout)
                self.container_event(c, "stop")
            async with c.lock:
                if c.removing or c.removed:
                    raise ContainerConflict(f"removal of container {c.id} is already in "
                                            "progress")
                c.restarting_manually = False
                if c.running:
                    return  # started by another request meanwhile
                c.manually_stopped = False
                c.restart_count = 0
                c.save_lifecycle()
                await self._spawn(c)
            self.container_event(c, "restart")
        finally:
            c.restarting_manually = False

    # -- wait / remove ----------------------------------------------------------------------

    async def wait(self, c: Container, condition: str = "not-running") -> State:
        """Block until the condition holds; the state that ended the wait."""
        return await self.waiter(c, condition)

    def waiter(self, c: Container, condition: str) -> "asyncio.Future[State]":
        """``wait`` registered now (before the caller tells its client it is waiting)."""
        condition = condition or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidParameter(f"invalid condition: {condition}")
        loop = asyncio.get_running_loop()
        if condition == "removed":
            fut = loop.create_future()
            c.remove_waiters.append(fut)
            return fut
        if condition == "not-running" and not c.running:
            fut = loop.create_future()
            fut.set_result(c.state)
            return fut
        return self._next_exit(c)

    def start_waiter(self, c: Container) -> "asyncio.Future[State]":
        fut = asyncio.get_running_loop().create_future()
        c.start_waiters.append(fut)
        return fut

    async def remove(self, c: Container, force: bool = False, volumes: bool = False) -> None:
        if c.removing or c.removed:
            raise ContainerConflict(f"removal of container {c.id} is already in progress")
        if c.running and not force:
            raise ContainerConflict(f"You cannot remove a running container {c.id}. Stop the "
                                    "container before attempting removal or force remove")
        c.removing = True
        try:
            async with c.lock:  # held only briefly by others: a pending stop does not hold it
                self._cancel_restart(c)
                if c.state.status == RUNNING:
                    exited = self._next_exit(c)
                    if c.spec.plan().ships:
                        await self._discard_spool_wait(c)
                    await self._signal(c, signal.SIGKILL)
                    await self._thaw(c)
                    await self._wait_killed(c, exited)
                # Whatever a run left behind (a dead shim's container, runtime state, the
                # overlay mount) goes before the directory: rm always cleans up completely.
                await asyncio.to_thread(_clean_up_run, c.spec)
        except BaseException:
            c.removing = False
            raise
        self.containers.pop(c.id, None)
        if self.names.get(c.name) == c.id:
            del self.names[c.name]
        c.removed = True
        self.container_event(c, "destroy")
        if c.spec.plan().ships:
            # The logs it wrote are still delivered (Docker gives up 10 s after exit): the
            # directory goes once its spool is shipped, even across a daemon restart.
            await asyncio.to_thread(_mark_removed, c.spec.dir)
            self.shipping.drain_then_remove(c.spec, _remove_dir)
        else:
            await asyncio.to_thread(_remove_dir, c.spec.dir)
        if volumes:  # ``rm -v``: its anonymous volumes go with it, named ones stay
            for m in c.spec.mounts:
                if m.type == "volume" and m.anonymous:
                    try:
                        await asyncio.to_thread(self.volumes.remove, m.source, True)
                        self.events.emit("volume", "destroy", m.source, {"driver": "local"})
                    except LogpipeError as err:
                        log.info("keeping volume %s: %s", m.source, err)
        _resolve(c.start_waiters, None)
        _resolve(c.exit_waiters, c.state)
        _resolve(c.remove_waiters, c.state)

    async def _discard_spool_wait(self, c: Container) -> None:
        """A removed container's shim must not wait for its shipper any more."""
        try:
            await asyncio.to_thread(ShimClient(c.spec.dir).discard)
        except ShimError as err:
            log.info("discard to %s: %s", c.id[:12], err)

    # -- daemon start and stop --------------------------------------------------------------

    async def adopt(self) -> None:
        """Find every container again: live shims are watched, dead ones are ``exited`` with
        what is known (what a dead shim left running is killed and cleaned up);
        ``always``/``unless-stopped`` ones the user did not stop are started, exited ``--rm``
        ones removed (Docker's restore)."""
        self.loop = asyncio.get_running_loop()
        self.events.bind(self.loop)
        for entry in sorted(os.listdir(self.dir)):
            cdir = os.path.join(self.dir, entry)
            if not ID_RE.fullmatch(entry):
                continue
            if os.path.exists(os.path.join(cdir, REMOVED_MARK)):
                self._finish_removal(cdir)
                continue
            try:
                spec = ContainerSpec.load(cdir)
            except (OSError, ValueError, KeyError) as err:
                log.warning("ignoring container directory %s: %s", cdir, err)
                continue
            spec = _with_plan(spec)
            # A shim that died while no daemon was watching is cleaned up after here.
            state = await asyncio.to_thread(settle_run, cdir)
            life = read_json_object(os.path.join(cdir, LIFECYCLE_FILE))
            c = Container(spec, state, life.get("RestartCount", 0),
                          life.get("ManuallyStopped", False))
            c.paused = bool(life.get("Paused")) and c.state.status == RUNNING
            self.containers[c.id] = c
            self.names[c.name] = c.id
            self.shipping.ensure(spec)  # undelivered spool from before the restart
            if c.state.status == RUNNING:
                c.run_began = time.monotonic()
                self._watch(c)
        for c in list(self.containers.values()):
            if c.state.status == RUNNING:
                continue
            if c.spec.auto_remove and c.state.status == EXITED:
                await self._auto_remove(c)
            elif c.spec.restart_policy in ("always", "unless-stopped") and not c.manually_stopped:
                try:
                    async with c.lock:
                        await self._spawn(c)
                except LogpipeError as err:
                    log.warning("restarting container %s failed: %s", c.id[:12], err)

    def _finish_removal(self, cdir: str) -> None:
        """A container removed before the daemon stopped: ship what is left, then delete."""
        try:
            spec = ContainerSpec.load(cdir)
        except (OSError, ValueError, KeyError):
            _remove_dir(cdir)
            return
        self.shipping.drain_then_remove(spec, _remove_dir)

    def shutdown(self) -> None:
        """The daemon is exiting: containers keep running (their shims do not need us)."""
        self.shutting_down = True
        for c in self.containers.values():
            self._cancel_restart(c)
        self.shipping.shutdown()
        self.events.close()
        self.shim_parent.stop()  # started again by the next daemon's first start

    def counts(self) -> dict[str, int]:
        statuses = [c.status for c in self.containers.values()]
        return {"Containers": len(statuses),
                "ContainersRunning": sum(s in (RUNNING, "restarting") for s in statuses),
                "ContainersPaused": sum(s == "paused" for s in statuses),
                "ContainersStopped": sum(s not in (RUNNING, "restarting", "paused")
                                         for s in statuses)}


def _stop_timeout(c: Container) -> float:
    """How long a ``stop`` without ``-t`` waits: the container's ``StopTimeout``, else 10 s."""
    return 10.0 if c.spec.stop_timeout is None else float(c.spec.stop_timeout)


def _with_plan(spec: ContainerSpec) -> ContainerSpec:
    """A container created before log plans were stored gets its plan now, kept in its
    ``config.json`` (when the disk allows: else it is computed again when needed)."""
    if spec.log_plan is not None:
        return spec
    plan = spec.plan()
    if not plan.kind:
        return spec  # its driver cannot be loaded: the start reports why
    spec = spec._replace(log_plan=plan)
    try:
        spec.save()
    except OSError as err:
        log.warning("container %s: saving its log plan failed: %s", spec.id[:12], err)
    return spec


#: In the directory of a removed container whose spool is still being shipped.
REMOVED_MARK = "removed"


def _mark_removed(path: str) -> None:
    with open(os.path.join(path, REMOVED_MARK), "w"):
        pass


def _clean_up_run(spec: ContainerSpec) -> None:
    """``rm``'s last look: a shim that died is settled (its container killed), then the
    executor deletes the runtime's state and unmounts the root, if anything is left."""
    try:
        settle_run(spec.dir)
    except (OSError, LogpipeError) as err:  # a shim too busy to answer: the cleanup still runs
        log.warning("settling the run of %s: %s", spec.id[:12], err)
    get_executor(spec.runtime).cleanup(spec)


def _remove_dir(path: str) -> None:
    """``rm``: the container's directory, logs included. A shim finishing its last writes
    (state.json, its socket) may recreate an entry while we delete: try again briefly."""
    for _ in range(50):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            return
        time.sleep(0.02)
    shutil.rmtree(path)
