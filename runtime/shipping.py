"""The daemon's shippers: one per container with a remote driver, and their counters.

A shipper (``logpipe.shipper``) runs while its container runs and afterwards until the spool
is delivered; it is started again by the daemon on start (re-adoption), on every container
start; a removed container's directory goes once its spool is delivered. Counters for ``inspect`` (``LogShipping``)
and ``GET /metrics`` combine what the shim counted (captured, stored, dropped when the disk
or the spool was full) with what the shipper counted (shipped, rejected, retried, possible
duplicates). ``/metrics`` has the shim's counters for every container, whatever its driver.

Remote drivers and their client libraries are imported here, in the daemon, never in a shim.
Whether a container ships is its ``LogPlan``'s ``ships``, decided at create. A shipper that
cannot be started (its driver cannot be loaded any more, the disk refuses its checkpoint
directory) is a fault: counted (``StartFailures``), its error shown in ``LastError`` of
``inspect``'s ``LogShipping`` and in ``/metrics``, and logged once per container and error;
the next start of the container, or of the daemon, tries again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Iterable

from drivers.spool import SpoolTail, recent_events, spool_backlog
from drivers.remote import spool_path
from logpipe.checkpoint import SHIP_DIR, checkpoint_path, read_checkpoint
from logpipe.metrics import container_labels, render
from logpipe.registry import LogPlan, load_driver
from logpipe.shipper import Shipper, delivery_counters

from .spec import ContainerSpec
from .shimclient import live_state
from .state import State
from .views import log_storage

log = logging.getLogger("logpipe.shipping")


class Shipping:
    """Every shipper of the daemon, by container id."""

    def __init__(self) -> None:
        self.shippers: dict[str, Shipper] = {}
        #: Shippers that could not be started, by container id: (count, last error).
        self.faults: dict[str, tuple[int, str]] = {}
        self.lock = threading.Lock()

    def ensure(self, spec: ContainerSpec) -> None:
        """A shipper for this container, unless one is running already; a shipper that
        cannot be started is a fault (see the module's docstring), never an exception for
        the container's start."""
        plan = spec.plan()
        if not plan.ships:
            return
        with self.lock:
            current = self.shippers.get(spec.id)
            if current is not None and current.is_alive():
                return
            try:
                self._start(spec, plan, current)
            except Exception as err:
                self._fault(spec, err)

    def _start(self, spec: ContainerSpec, plan: LogPlan, current: Shipper | None) -> None:
        """Start the shipper (under ``self.lock``)."""
        os.makedirs(os.path.join(spec.dir, SHIP_DIR), mode=0o700, exist_ok=True)
        info = spec.log_info()
        driver_cls = load_driver(plan.driver, plan.ref)
        tail = SpoolTail(spool_path(info), warn=lambda text: log.warning(
            "container %s spool: %s", spec.id[:12], text))
        shipper = Shipper(spec.id[:12], lambda: driver_cls(info), tail,
                          checkpoint_path(spec.dir, spec.log_type))
        if current is not None:
            shipper.stats.events = current.stats.events
        self.shippers[spec.id] = shipper
        shipper.start()
        if spec.id in self.faults:  # the count stays: it is a counter
            self.faults[spec.id] = (self.faults[spec.id][0], "")

    def _fault(self, spec: ContainerSpec, err: Exception) -> None:
        """Count a shipper that did not start; log it once per container and error."""
        text = f"shipper did not start: {err}"
        count, last = self.faults.get(spec.id, (0, ""))
        if text != last:
            log.error("container %s: %s", spec.id[:12], text, exc_info=err)
        self.faults[spec.id] = (count + 1, text)

    def drain_then_remove(self, spec: ContainerSpec, remove: Callable[[str], None]) -> None:
        """A removed container: ship its spool to the end, then ``remove(directory)``. If the
        daemon stops first, the directory stays (marked) and the next daemon finishes."""
        self.ensure(spec)
        with self.lock:
            shipper = self.shippers.get(spec.id)

        def finish() -> None:
            if shipper is not None:
                shipper.join()
                if not shipper.finished:
                    return  # stopped by a daemon shutdown: the next daemon goes on
            with self.lock:
                if self.shippers.get(spec.id) is shipper:
                    del self.shippers[spec.id]
            remove(spec.dir)

        threading.Thread(target=finish, name=f"remove-{spec.id[:12]}", daemon=True).start()

    def shutdown(self) -> None:
        with self.lock:
            shippers = list(self.shippers.values())
        for shipper in shippers:
            shipper.stop()
        # 2 s for all of them: one stuck in a send (a receiver that does not answer) must
        # not hold the daemon's exit; its batch is sent again by the next daemon.
        deadline = time.monotonic() + 2.0
        for shipper in shippers:
            shipper.join(max(0.0, deadline - time.monotonic()))

    def stats(self, spec: ContainerSpec, state: State) -> dict[str, Any] | None:
        """``LogShipping`` of ``inspect``: None for drivers that do not ship."""
        if not spec.plan().ships:
            return None
        shipper = self.shippers.get(spec.id)
        cp = read_checkpoint(checkpoint_path(spec.dir, spec.log_type))
        stats = shipper.stats if shipper is not None else None
        events, error = (stats.events, stats.last_error) if stats is not None else ([], "")
        start_failures, fault = self.faults.get(spec.id, (0, ""))
        if fault and not (shipper is not None and shipper.is_alive()):
            error = fault
        captured = state.lines_logged + state.lines_dropped
        dropped = state.lines_dropped
        backlog_lines, backlog_bytes = _backlog(spec, cp)
        delivery = delivery_counters(stats, cp)
        return {
            "Driver": spec.log_type,
            "Running": shipper is not None and shipper.is_alive(),
            "CapturedLines": captured, "CapturedBytes": state.bytes_logged + state.bytes_dropped,
            "ShippedLines": delivery["ShippedLines"], "ShippedBytes": delivery["ShippedBytes"],
            "DroppedLines": dropped, "DroppedBytes": state.bytes_dropped,
            "RejectedLines": delivery["RejectedLines"], "Retries": delivery["Retries"],
            "PossibleDuplicates": delivery["PossibleDuplicates"],
            "BacklogLines": backlog_lines, "BacklogBytes": backlog_bytes,
            "LagSeconds": delivery["LagSeconds"],
            "LastError": error, "StartFailures": start_failures,
            "Events": sorted(recent_events(os.path.join(spec.dir, SHIP_DIR)) + list(events))[-20:],
        }

    def metrics(self, items: Iterable[tuple[ContainerSpec, State]]) -> str:
        """The Prometheus text exposition: capture, storage and drop counters of every
        container (any driver), and the shipping counters of those with a remote driver.

        A running container's counters are asked from its shim (live: the shim keeps them in
        memory); the whole scrape spends at most ``SCRAPE_BUDGET`` seconds asking, a shim that
        does not answer in time shows what the daemon last knew."""
        deadline = time.monotonic() + SCRAPE_BUDGET
        rows = []
        for spec, state in items:
            state = live_state(spec.dir, state, min(1.0, deadline - time.monotonic()))
            values = log_storage(state, spec.log_type)
            values["Failing"] = int(values["Failing"])
            shipping = self.stats(spec, state)
            if shipping is not None:
                values.update(shipping)
            rows.append((container_labels(spec.id, spec.name, spec.log_type), values))
        return render(rows)


#: Seconds a ``/metrics`` scrape may spend asking shims for their live counters.
SCRAPE_BUDGET = 2.0

def _backlog(spec: ContainerSpec, cp) -> tuple[int, int]:
    """Records and spool bytes from the checkpoint on: the shim's counters restart with
    every run, the spool does not."""
    return spool_backlog(spool_path(spec.log_info()), cp)
