"""``events``: the daemon's events as they happen (``GET /events``), printed as the docker
CLI prints them — ``<time> <type> <action> <id> (k=v, …)`` — or through ``--format``.

``--since``/``--until`` take what the docker CLI takes (Unix seconds, RFC 3339, Go
durations back from now) and send the daemon Unix seconds; ``--filter k=v`` repeats.
Without ``--until`` it follows until interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from logpipe.timespec import NS, format_fixed, parse_time_arg

from .client import client_of
from .errors import CommandError, daemon_command
from .tables import go_render


def api_time(value: str, name: str) -> str:
    """The docker CLI's ``GetTimestamp``: ``<seconds>.<nanoseconds>``."""
    try:
        ns = parse_time_arg(value, name=name)
    except ValueError as err:
        raise CommandError(str(err)) from None
    return f"{ns // NS}.{ns % NS:09d}"


def event_line(msg: dict[str, Any]) -> str:
    """docker/cli's ``prettyPrintEvent``: local time with nine fraction digits."""
    ns = msg.get("timeNano") or (msg.get("time") or 0) * NS
    offset = time.localtime(ns // NS).tm_gmtoff
    stamp = format_fixed(ns + offset * NS)
    if offset:
        sign = "+" if offset > 0 else "-"
        stamp = stamp[:-1] + f"{sign}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
    actor = msg.get("Actor") or {}
    line = f"{stamp} {msg.get('Type', '')} {msg.get('Action', '')} {actor.get('ID', '')}"
    attrs = actor.get("Attributes") or {}
    if attrs:
        line += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return line


@daemon_command()
def cmd_events(args: argparse.Namespace) -> int:
    query: dict[str, Any] = {}
    if args.since:
        query["since"] = api_time(args.since, "since")
    if args.until:
        query["until"] = api_time(args.until, "until")
    filters: dict[str, dict[str, bool]] = {}
    for f in args.filter:
        key, sep, value = f.partition("=")
        if not sep:
            raise CommandError("bad format of filter (expected name=value)")
        filters.setdefault(key, {})[value] = True
    if filters:
        query["filters"] = json.dumps(filters)
    resp = client_of(args).request("GET", "/events", query)
    out = sys.stdout
    for raw in resp:
        if not raw.strip():
            continue
        msg = json.loads(raw)
        out.write((go_render(args.format, msg) if args.format else event_line(msg)) + "\n")
        out.flush()
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("events", help="Get real time events from the server")
    p.add_argument("--since", default="", help="Show all events created since timestamp")
    p.add_argument("--until", default="", help="Stream events until this timestamp")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Filter output based on conditions provided")
    p.add_argument("--format", default="", help="Format the output using the given Go template")
    p.set_defaults(func=cmd_events)
