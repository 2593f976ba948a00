"""Where the daemon listens: the default socket per user, and Docker's ``-H`` values.

Both sides read it: the daemon to bind (``config.py``), the CLI to connect (``cli/client.py``).
It imports only ``os`` so that the CLI's start-up stays cheap.
"""

from __future__ import annotations

import os

from logpipe.errors import LogpipeError


def default_socket() -> str:
    """``/run/logpipe/logpipe.sock`` for root, ``$XDG_RUNTIME_DIR/logpipe.sock`` otherwise
    (``/tmp/logpipe-<uid>/logpipe.sock`` when there is no runtime directory)."""
    if os.geteuid() == 0:
        return "/run/logpipe/logpipe.sock"
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/logpipe-{os.getuid()}"
    return os.path.join(runtime_dir, "logpipe.sock")


def default_host() -> str:
    return "unix://" + default_socket()


def socket_path(host: str) -> str:
    """``unix:///path`` (or a bare path) → the path; other schemes are refused."""
    if host.startswith("unix://"):
        path = host[len("unix://"):]
    elif "://" in host:
        raise LogpipeError(f"unsupported host {host!r}: only unix:// sockets are supported")
    else:
        path = host
    if not path:
        raise LogpipeError(f"invalid host {host!r}: no socket path")
    return path
