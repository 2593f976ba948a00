"""``ps`` and ``inspect``: the commonest commands, read-only views of the daemon's containers
(and images, for ``inspect``), with the docker CLI's columns, ``--format`` and error texts.

Apart from the lifecycle commands (``containers``) so that they start with the client and
the table writer alone: no terminal handling, no threads, no runtime module (the ``PORTS``
column's formatter is imported only when a container publishes ports).
"""

from __future__ import annotations

import json
import sys
import time

from .client import APIError, client_of, ref
from .errors import daemon_command
from .tables import ago, print_documents, print_table, table_format

TYPE_CHECKING = False  # typing costs milliseconds at every start: for the checker only
if TYPE_CHECKING:
    import argparse
    from typing import Any

_PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
               "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
               "Status": "STATUS", "State": "STATE", "Names": "NAMES", "Labels": "LABELS",
               "Mounts": "MOUNTS", "Networks": "NETWORKS", "Size": "SIZE"}


def _ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _ps_item(c: dict[str, Any], no_trunc: bool) -> dict[str, Any]:
    command = c.get("Command", "")
    created = c.get("Created", 0)
    return {
        "ID": c["Id"] if no_trunc else c["Id"][:12],
        "Image": c.get("Image", ""),
        "Command": json.dumps(command if no_trunc else _ellipsis(command, 20), ensure_ascii=False),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created)),
        "RunningFor": ago(created), "Ports": _ports_column(c.get("Ports")),
        "Status": c.get("Status", ""),
        "State": c.get("State", ""),
        "Names": ",".join(n.lstrip("/") for n in c.get("Names") or []),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted((c.get("Labels") or {}).items())),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in c.get("Mounts") or []),
        "Networks": ",".join((c.get("NetworkSettings") or {}).get("Networks") or {}),
        "Size": ""}


def _ports_column(ports: list[dict[str, Any]] | None) -> str:
    if not ports:
        return ""
    from runtime.network.ports import ps_column

    return ps_column(ports)


@daemon_command()
def cmd_ps(args: argparse.Namespace) -> int:
    filters: dict[str, list[str]] = {}
    for f in args.filter:
        key, _, value = f.partition("=")
        filters.setdefault(key, []).append(value)
    query = {"all": 1 if args.all else 0}
    if filters:
        query["filters"] = json.dumps(filters)
    if args.last:
        query["limit"] = args.last
    items = [_ps_item(c, args.no_trunc) for c in client_of(args).json("GET", "/containers/json", query)]
    if args.quiet:
        for it in items:
            print(it["ID"])
        return 0
    if args.format:
        table_format(args.format, items, _PS_HEADERS)
        return 0
    cols = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]
    print_table([_PS_HEADERS[c] for c in cols], [[it[c] for c in cols] for it in items])
    return 0


@daemon_command()
def cmd_inspect(args: argparse.Namespace) -> int:
    client = client_of(args)
    results, failed = [], False
    for name in args.names:
        obj = None
        for kind in ([args.type] if args.type else ["container", "image"]):
            path = f"/containers/{ref(name)}/json" if kind == "container" else f"/images/{ref(name)}/json"
            try:
                obj = client.json("GET", path)
                break
            except APIError as err:
                if err.status != 404:
                    raise
        if obj is None:
            sys.stderr.write(f"Error: No such object: {name}\n")
            failed = True
            continue
        results.append(obj)
    print_documents(results, args.format)
    return 1 if failed else 0
