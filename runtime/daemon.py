"""``logpipe daemon``: the process that serves the API on a unix socket, in the foreground.

It owns the process set-up only: configuration, one daemon per data root (a lock file), the
socket (mode 0660, a stale one replaced, a live one refused), re-adopting the containers
found in the data root (and deleting the image files of an import cut short), and a clean
exit on SIGTERM/SIGINT that ends every lasting stream (``logs -f``, ``attach``, ``wait``).
Containers are not stopped when the daemon exits: their shims do not depend on it (logpipe
always behaves like Docker's ``live-restore``), and the next daemon finds them again.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import socket
import sys

from logpipe.errors import LogpipeError

from .config import DaemonConfig, load_config

log = logging.getLogger("logpipe.daemon")
LOCK_FILE = "daemon.lock"


class DaemonError(LogpipeError):
    """The daemon cannot start (socket in use, data root locked, bad configuration)."""


def _lock_data_root(data_root: str) -> int:
    os.makedirs(data_root, mode=0o711, exist_ok=True)
    fd = os.open(os.path.join(data_root, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DaemonError(f"another logpipe daemon uses the data root {data_root} "
                          f"(it holds {os.path.join(data_root, LOCK_FILE)})") from None
    os.ftruncate(fd, 0)
    os.write(fd, b"%d\n" % os.getpid())
    return fd


def _prepare_socket(path: str) -> None:
    """Create the socket's directory; remove a stale socket, refuse a live one."""
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, mode=0o755 if os.geteuid() == 0 else 0o700, exist_ok=True)
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: left by a daemon that died
        return
    finally:
        probe.close()
    raise DaemonError(f"another daemon is already listening on unix://{path}")


async def serve(cfg: DaemonConfig, ready: "asyncio.Future[None] | None" = None) -> None:
    from aiohttp import web

    from .api import SHUTDOWN_GRACE, make_app
    from .containers import ContainerStore
    from .images import ImageStore
    from .network import netavark
    from .network import store as netstore

    images = ImageStore(cfg.data_root)
    if removed := images.clean_tmp():
        log.info("removed %d temporary image files left by an interrupted import or load",
                 removed)
    if netavark.binary() is not None and os.geteuid() == 0:
        netstore.ensure_default(cfg.data_root, cfg.bip)  # before containers start on it
    store = ContainerStore(cfg, images)
    await store.adopt()
    plugin = await _start_docker_plugin(cfg)
    # Streams (logs -f, attach, wait) end as soon as the shutdown begins; other requests get
    # a short grace: the data root stays locked until the daemon is gone.
    runner = web.AppRunner(make_app(store, images), handle_signals=False,
                           shutdown_timeout=SHUTDOWN_GRACE)
    await runner.setup()
    path = cfg.socket
    _prepare_socket(path)
    site = web.UnixSite(runner, path)
    await site.start()
    os.chmod(path, 0o660)
    log.info("API listening on unix://%s (data root %s, log driver %s, %d containers found)",
             path, cfg.data_root, cfg.log_driver, len(store.containers))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set_result(None)
    try:
        await stop.wait()
    finally:
        log.info("shutting down; containers keep running")
        store.shutdown()
        await runner.cleanup()
        if plugin is not None:
            await plugin.cleanup()
        for sock in filter(None, (path, plugin and cfg.docker_plugin_socket)):
            try:
                os.unlink(sock)
            except FileNotFoundError:
                pass


async def _start_docker_plugin(cfg: DaemonConfig):
    """``"docker-plugin": true``: Docker's logging-plugin protocol on its own socket, in this
    process (``logpipe.plugin``, imported only then); its runner, or None."""
    if not cfg.docker_plugin_socket:
        return None
    from logpipe.plugin.protocol import start_site

    _prepare_socket(cfg.docker_plugin_socket)
    runner = await start_site(cfg.docker_plugin_root, cfg.docker_plugin_socket)
    log.info("docker-plugin listening on unix://%s (logs in %s)", cfg.docker_plugin_socket,
             cfg.docker_plugin_root)
    return runner


def run(cfg: DaemonConfig) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s logpipe-daemon[%(process)d] %(levelname)s %(message)s")
    lock = _lock_data_root(cfg.data_root)
    try:
        asyncio.run(serve(cfg))
    finally:
        os.close(lock)
    return 0


def main(config_file: str = "", data_root: str = "", host: str = "", log_driver: str = "",
         log_opts: dict[str, str] | None = None, default_runtime: str = "") -> int:
    """``logpipe daemon``: errors are reported by the caller (the CLI)."""
    cfg = load_config(config_file=config_file, data_root=data_root, host=host,
                      log_driver=log_driver, log_opts=log_opts, default_runtime=default_runtime)
    return run(cfg)
