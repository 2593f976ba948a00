"""A container's start, run by the shim in a short-lived child of its own.

Preparing the root filesystem, the OCI bundle and the network, and running ``runc``, touch
most of what a shim has imported. A shim forked by the shim parent (``runtime.shim_parent``)
shares its pages with every other shim until it writes to them, and whatever the start
writes there (reference counts, caches, freed buffers) would stay private to a shim that
idles for days: about 0.9 MiB each. So the start runs in a child that reports and exits.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Callable

from .executors import EXIT_START_FAILED, ExecutorError

def start_in_worker(start: Callable[[], tuple[int, int]]) -> tuple[int, int]:
    """``start()`` — the executor's start, returning (pid, descriptor or -1) — run in a child
    that exits afterwards. Preparing the root filesystem, the OCI bundle, the network and
    running ``runc`` touch most of what the shim has imported; done here, they would copy
    into a shim forked by the shim parent every page they write (reference counts, caches,
    freed buffers): megabytes that a shim would keep while it idles for days. The
    container's process is orphaned when the child (or runc) exits, and the shim, a child
    subreaper, adopts it: it reaps it as before. A pty master comes back over the socket."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        worker = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        return start()
    if worker == 0:  # the worker: report, then leave without running any of the shim's code
        status = 1
        try:
            ours.close()
            try:
                pid, fd = start()
                reply = {"pid": pid}
            except ExecutorError as err:
                fd, reply = -1, {"error": str(err), "exit_code": err.exit_code}
            except Exception as err:  # noqa: BLE001 - reported by the shim as a failed start
                fd, reply = -1, {"error": str(err) or type(err).__name__}
            socket.send_fds(theirs, [json.dumps(reply).encode()], [fd] if fd >= 0 else [])
            status = 0
        finally:
            os._exit(status)
    theirs.close()
    with ours:
        data, fds, _, _ = socket.recv_fds(ours, 65536, 1)
    _wait_for(worker)
    if not data:
        for fd in fds:
            os.close(fd)
        raise ExecutorError("the container's start was interrupted")
    reply = json.loads(data)
    if "error" in reply:
        for fd in fds:
            os.close(fd)
        raise ExecutorError(reply["error"], reply.get("exit_code", EXIT_START_FAILED))
    return reply["pid"], fds[0] if fds else -1


def _wait_for(pid: int) -> None:
    """Reap the worker (``waitpid`` is retried across signals; the shim's own reaping may
    have been first)."""
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
