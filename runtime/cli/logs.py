"""``logpipe logs``: a container's log through the daemon, or a captured log read straight
from its directory (``--log-dir``). Both read Docker's ``logs`` flags the same way and print
through the same writer (``logpipe.output.write_streams``).
"""

from __future__ import annotations

import sys

from logpipe.errors import LogpipeError
from logpipe.timespec import NS, parse_since

from .client import client_of, read_frames, ref
from .errors import CommandError, daemon_command

TYPE_CHECKING = False  # typing costs milliseconds at every start: for the checker only
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from logpipe.reading import ReadConfig


def read_config(args: argparse.Namespace) -> ReadConfig:
    """Docker's ``logs`` flags as a ``ReadConfig``; ``--tail all`` or any non-integer is all."""
    from logpipe.reading import ReadConfig  # the reader of log files: --log-dir only

    try:
        tail = int(args.tail)
    except ValueError:
        tail = -1
    since = parse_since(args.since, "since")
    until = parse_since(args.until, "until")
    return ReadConfig(tail=tail if tail >= 0 else -1, since=since, until=until,
                      follow=args.follow, timestamps=args.timestamps, details=args.details)


def cmd_logs(args: argparse.Namespace) -> int:
    """``logpipe logs CONTAINER`` or ``logpipe logs --log-dir DIR``."""
    if args.container:
        return _daemon_logs(args)
    if not args.log_dir:
        raise LogpipeError("logs needs a container name, or --log-dir DIR for a captured log")
    return _dir_logs(args)


def _dir_logs(args: argparse.Namespace) -> int:
    """A captured log, read with the driver that wrote it."""
    from logpipe.driver import LogInfo
    from logpipe.message import STDERR
    from logpipe.output import render, write_streams
    from logpipe.registry import load_driver

    from .capture import load_meta

    meta = load_meta(args.log_dir)
    info = LogInfo(container_id=meta["id"], log_dir=args.log_dir, config=meta.get("opts", {}))
    cfg = read_config(args)
    chunks = load_driver(meta["driver"], meta.get("driver_ref")).read(info, cfg)
    write_streams(((2 if c.source == STDERR else 1, render(c, cfg.timestamps, cfg.details))
                   for c in chunks), sys.stdout.buffer, sys.stderr.buffer, cfg.follow)
    return 0


def _api_time(ns: int) -> str:
    return f"{ns // NS}.{ns % NS:09d}"


@daemon_command()
def _daemon_logs(args: argparse.Namespace) -> int:
    """Docker's ``logs`` through the daemon: the flags are read here, the records rendered
    by the daemon."""
    from logpipe.output import write_streams

    try:  # the bounds as ``read_config`` reads them, without the file reader it builds
        since = parse_since(args.since, "since")
        until = parse_since(args.until, "until")
    except ValueError as err:
        raise CommandError(str(err)) from None
    query: dict[str, Any] = {"stdout": 1, "stderr": 1, "follow": int(args.follow),
                             "timestamps": int(args.timestamps), "details": int(args.details),
                             "tail": args.tail}
    if since:
        query["since"] = _api_time(since)
    if until:
        query["until"] = _api_time(until)
    client = client_of(args)
    # As the docker CLI: a container with a terminal answers raw bytes, not frames.
    tty = bool((client.container(args.container).get("Config") or {}).get("Tty"))
    resp = client.stream("GET", f"/containers/{ref(args.container)}/logs", query)
    streams = ((1, data) for data in iter(lambda: resp.read1(65536), b"")) if tty \
        else read_frames(resp)
    write_streams(streams, sys.stdout.buffer, sys.stderr.buffer, args.follow)
    return 0
