"""``logpipe docker-plugin``: serve logpipe's storage drivers to Docker as a logging plugin
(``logpipe.plugin``). The socket's name is the driver's name for Docker:
``/run/docker/plugins/logpipe.sock`` is ``--log-driver logpipe``."""

from __future__ import annotations

import argparse
import os

DEFAULT_SOCKET = "/run/docker/plugins/logpipe.sock"
DEFAULT_DATA_ROOT = "/var/lib/logpipe/docker-plugin"


def add_parser(sub) -> None:
    """The ``docker-plugin`` command and its flags."""
    p = sub.add_parser("docker-plugin", help="Serve logpipe's log drivers to Docker as a "
                                             "logging plugin")
    p.add_argument("--socket", default=DEFAULT_SOCKET,
                   help=f"Unix socket Docker finds the plugin at (default {DEFAULT_SOCKET})")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT,
                   help=f"Where containers' logs are stored (default {DEFAULT_DATA_ROOT})")
    # Their defaults live in logpipe.plugin.removal (not imported by the CLI's start-up).
    p.add_argument("--docker-host", default=None,
                   help="Docker's API, asked which containers still exist so that the logs "
                        "of removed ones go (default unix:///var/run/docker.sock)")
    p.add_argument("--cleanup-interval", type=float, default=None,
                   help="Seconds between two removals of removed containers' logs; 0: never "
                        "(default 30)")
    p.set_defaults(func=cmd_docker_plugin)


def tune_gc() -> None:
    """Each FIFO read makes thousands of short-lived chunk tuples, which trigger the cyclic
    collector every 700 allocations, and its full passes walk every module loaded at start.
    Freezing what exists after start-up and collecting the young generation every 50,000
    allocations took the plugin's CPU per GB from 23 to 15-16 s (tests/perf/bench_plugin.py,
    FIFO → local). Only in this process: the daemon's collector is left alone."""
    import gc

    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def cmd_docker_plugin(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT. A socket left by a killed plugin is replaced: Docker
    finds the plugin by this path alone."""
    import logging

    from aiohttp import web

    from logpipe.plugin.protocol import Plugin, make_app

    logging.basicConfig(level=logging.INFO, format="logpipe docker-plugin: %(message)s")
    os.makedirs(os.path.dirname(os.path.abspath(args.socket)), exist_ok=True)
    os.makedirs(args.data_root, mode=0o700, exist_ok=True)
    try:
        os.unlink(args.socket)
    except FileNotFoundError:
        pass
    plugin = Plugin(args.data_root, **{k: v for k, v in (
        ("docker_host", args.docker_host), ("sweep_interval", args.cleanup_interval))
        if v is not None})
    plugin.adopt()
    tune_gc()
    web.run_app(make_app(plugin), path=args.socket, print=None, access_log=None)
    return 0
