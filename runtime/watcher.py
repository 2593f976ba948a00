"""Watcher threads: one per container run, blocked in its shim's ``wait``.

A watcher learns how a run ended, whatever happened to the shim: its answer to ``wait``;
else what it recorded (``state.json``); else, for a shim that died, what ``settle_run``
finds after killing and cleaning up what the shim left behind. It hands that final state to
``report`` (the store's, which moves it onto the daemon's loop) and ends. It decides nothing:
the restart policy and ``--rm`` belong to the store.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from logpipe.errors import LogpipeError

from .shimclient import ShimClient, ShimError, recover_state, settle_run
from .state import EXITED, State, now_rfc3339

log = logging.getLogger("logpipe.daemon")


def watch_run(directory: str, report: Callable[[State], None], name: str) -> None:
    """Start the watcher of the run of the container in ``directory``."""
    threading.Thread(target=_watch, args=(directory, report), name=name, daemon=True).start()


def _watch(directory: str, report: Callable[[State], None]) -> None:
    client = ShimClient(directory, timeout=None)
    while True:
        try:
            state = client.wait(None)
            break
        except ShimError:
            state = recover_state(directory)
            if state is None or state.status == EXITED or not os.path.isdir(directory):
                break
        except OSError:
            state = recover_state(directory)
            break
        time.sleep(0.05)  # the shim is between states: ask again
    # A shim that died left its container running, mounted and known to runc: kill
    # and clean up what is left, and record the exit (a no-op after a normal exit).
    try:
        settled = settle_run(directory) if os.path.isdir(directory) else None
    except (OSError, LogpipeError) as err:  # e.g. a shim too busy to answer status
        log.warning("cleaning up after the shim of %s: %s", directory, err)
        settled = None
    if settled is not None and settled.status == EXITED:
        state = settled
    state = state or State(status=EXITED, exit_code=255, error="shim died",
                           finished_at=now_rfc3339())
    report(state)

