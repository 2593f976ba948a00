"""The plugin's counters, in the daemon's terms (``LogShipping`` of ``inspect``, and the
series of ``/metrics``, rendered by ``logpipe.metrics``): what each container's FIFO gave
(this run), what was stored and dropped, and, for a remote driver, what its shipper
delivered, what the receiver refused, what may have been sent twice and what the spool
still holds. Served as ``GET /metrics`` on the plugin's socket."""

from __future__ import annotations

import os
from typing import Any, Mapping

from logpipe.metrics import container_labels, render

from .store import Logger, container_dir, load_meta, log_info


def capture_values(logger: Logger | None) -> dict[str, Any]:
    """Captured, stored and dropped lines and bytes of one container in this run (zero
    when it has not logged since the plugin started)."""
    if logger is None:
        return {"CapturedLines": 0, "CapturedBytes": 0, "StoredLines": 0, "StoredBytes": 0,
                "DroppedLines": 0, "DroppedBytes": 0, "Failing": 0}
    guard, sink, spool = logger.guard, logger.sink, logger.spool
    lost_lines = guard.lines_dropped if guard is not None else 0     # disk full or failing
    lost_bytes = guard.bytes_dropped if guard is not None else 0
    if sink is not None and sink is not guard:                         # mode=non-blocking
        lost_lines += sink.dropped_lines
        lost_bytes += sink.dropped_bytes
    return {"CapturedLines": logger.lines, "CapturedBytes": logger.bytes,
            "StoredLines": logger.lines - lost_lines, "StoredBytes": logger.bytes - lost_bytes,
            "DroppedLines": lost_lines + (spool.dropped_lines if spool else 0),
            "DroppedBytes": lost_bytes + (spool.dropped_bytes if spool else 0),
            "Failing": int(guard is not None and guard.failing)}


def shipping_values(meta: Mapping[str, Any], log_dir: str, shipper) -> dict[str, Any]:
    """The shipper's counters (live, or from its durable checkpoint when none runs) and the
    spool's backlog, as ``LogShipping`` names them."""
    from drivers.remote import spool_path
    from drivers.spool import spool_backlog
    from logpipe.checkpoint import checkpoint_path, read_checkpoint
    from logpipe.shipper import delivery_counters

    cp = read_checkpoint(checkpoint_path(log_dir, meta["Driver"]))
    lines, nbytes = spool_backlog(spool_path(log_info(meta["DockerInfo"], log_dir,
                                                      meta["Opts"])), cp)
    return {**delivery_counters(shipper.stats if shipper is not None else None, cp),
            "BacklogLines": lines, "BacklogBytes": nbytes}


def container_values(data_root: str, cid: str, logger: Logger | None,
                     shipper) -> tuple[str, dict[str, Any]] | None:
    """One container's labels and values; None when its directory is gone or unreadable."""
    from logpipe.errors import LogpipeError
    from logpipe.registry import log_plan

    try:
        meta = load_meta(data_root, cid)
        values = capture_values(logger)
        if log_plan(meta["Driver"]).ships:
            values.update(shipping_values(meta, container_dir(data_root, cid), shipper))
    except (OSError, KeyError, ValueError, LogpipeError):
        return None
    name = (meta.get("DockerInfo") or {}).get("ContainerName") or ""
    return container_labels(cid, name, meta["Driver"]), values


def metrics(data_root: str, loggers: Mapping[str, Logger], shippers: Mapping[str, Any]) -> str:
    """The exposition of every container directory: ``loggers`` and ``shippers`` by
    container id are this run's (a snapshot, taken on the event loop)."""
    root = os.path.join(data_root, "containers")
    rows = []
    for cid in sorted(os.listdir(root)) if os.path.isdir(root) else ():
        logger = loggers.get(cid)
        shipper = shippers.get(cid) or (logger.shipper if logger is not None else None)
        row = container_values(data_root, cid, logger, shipper)
        if row is not None:
            rows.append(row)
    return render(rows)
