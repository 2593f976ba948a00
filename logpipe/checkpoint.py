"""The shipper's checkpoint: how far a container's spool has been delivered, durably.

One small JSON file per container and driver, ``<container dir>/ship/<driver>.pos``, replaced
atomically. The daemon's shipper writes it after the receiver confirmed a batch; the shim
reads it when its spool is full, to know whether the oldest generation may go. Kept apart
from the shipper so that the shim imports only this.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

SHIP_DIR = "ship"



class Checkpoint(NamedTuple):
    """Where shipping stands, durably: generation ``seq``, the block at ``offset`` in it, of
    which the first ``skip`` records are shipped. Counters ride along so that they survive a
    daemon restart. ``inflight`` is the number of records of a batch being sent: after a crash
    they may reach the receiver twice, and are counted as possible duplicates on restart.
    """

    seq: int = 0
    offset: int = 0
    skip: int = 0
    shipped_lines: int = 0
    shipped_bytes: int = 0
    rejected_lines: int = 0
    retries: int = 0
    duplicates: int = 0
    inflight: int = 0  # records of the batch in flight (0: none)


def checkpoint_path(log_dir: str, driver: str) -> str:
    return os.path.join(log_dir, SHIP_DIR, f"{driver}.pos")


def read_checkpoint(path: str) -> Checkpoint:
    """The checkpoint at ``path``; none yet means nothing has been shipped."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
        return Checkpoint(**{k: int(v) for k, v in data.items() if k in Checkpoint._fields})
    except (FileNotFoundError, ValueError, TypeError):
        return Checkpoint()


def write_checkpoint(path: str, cp: Checkpoint) -> None:
    """Atomically (write + rename): a crash leaves the old or the new checkpoint, never half.

    No fsync: the checkpoint must survive the daemon's death, which the page cache does; after
    a power loss an older checkpoint means duplicates, never loss."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(cp._asdict()))
        os.rename(tmp, path)
    except OSError:  # a full disk: no half-written temporary file is left behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
