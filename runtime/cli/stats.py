"""``logpipe stats`` and ``logpipe top``: the docker CLI's columns and arithmetic over the
daemon's ``/stats`` and ``/top`` answers.

``stats`` computes what the docker CLI computes (cli ``command/container/stats_helpers.go``):
CPU % from the difference between a sample and the one before it, memory without the page
cache (``total_inactive_file`` on cgroup v1, ``inactive_file`` on v2), network and block
I/O summed over interfaces and devices. Without ``--no-stream`` it redraws the table each
second, one reader thread per container.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from logpipe.errors import LogpipeError
from logpipe.units import human_size

from .client import Client, client_of, ref
from .errors import daemon_command
from .tables import table_format

_HEADERS = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME",
            "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
            "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
DEFAULT_FORMAT = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
                  "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")


def bytes_size(size: float) -> str:
    """go-units ``BytesSize``: binary units, 4 significant digits (``248KiB``)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024.0
        i += 1
    return f"{size:.4g}{units[i]}"


def cpu_percent(doc: dict[str, Any]) -> float:
    cpu, pre = doc.get("cpu_stats") or {}, doc.get("precpu_stats") or {}
    delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - \
        (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    ncpu = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage")
                                         or []) or 1
    return delta / system * ncpu * 100.0 if system > 0 and delta > 0 else 0.0


def memory_usage(mem: dict[str, Any]) -> float:
    usage, stats = mem.get("usage", 0), mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        if key in stats and stats[key] < usage:
            return usage - stats[key]
    return usage


def row(doc: dict[str, Any], name: str, no_trunc: bool) -> dict[str, str]:
    """One container's columns, as the docker CLI shows them."""
    mem = doc.get("memory_stats") or {}
    usage, limit = memory_usage(mem), mem.get("limit", 0)
    rx = sum(n.get("rx_bytes", 0) for n in (doc.get("networks") or {}).values())
    tx = sum(n.get("tx_bytes", 0) for n in (doc.get("networks") or {}).values())
    read = write = 0
    for entry in (doc.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = entry.get("op", "")[:1].lower()
        read += entry.get("value", 0) if op == "r" else 0
        write += entry.get("value", 0) if op == "w" else 0
    cid = doc.get("id", "")
    # A stopped container's sample is all zeros: the docker CLI prints them as they are.
    return {"Container": name, "ID": cid if no_trunc else cid[:12],
            "Name": (doc.get("name") or "").lstrip("/") or "--",
            "CPUPerc": f"{cpu_percent(doc):.2f}%",
            "MemUsage": f"{bytes_size(usage)} / {bytes_size(limit)}",
            "MemPerc": f"{usage / limit * 100 if limit else 0:.2f}%",
            "NetIO": f"{human_size(rx)} / {human_size(tx)}",
            "BlockIO": f"{human_size(read)} / {human_size(write)}",
            "PIDs": str((doc.get("pids_stats") or {}).get("current", 0))}


def _targets(client: Client, args: argparse.Namespace) -> list[str]:
    if args.containers:
        return list(args.containers)
    items = client.json("GET", "/containers/json", {"all": 1 if args.all else 0})
    return [c["Id"] for c in items]


def _print(rows: list[dict[str, str]], fmt: str) -> None:
    table_format(fmt or DEFAULT_FORMAT, rows, _HEADERS)


@daemon_command()
def cmd_stats(args: argparse.Namespace) -> int:
    client = client_of(args)
    names = _targets(client, args)
    if args.no_stream:
        rows = []
        for name in names:  # one request each, as the CLI's --no-stream
            doc = client.json("GET", f"/containers/{ref(name)}/stats", {"stream": 0})
            rows.append(row(doc, name, args.no_trunc))
        _print(rows, args.format)
        return 0
    latest: dict[str, dict[str, Any]] = {}

    def follow(name: str) -> None:
        try:
            resp = client.request("GET", f"/containers/{ref(name)}/stats", {"stream": 1})
            for line in resp:
                latest[name] = json.loads(line)
        except (OSError, ValueError, LogpipeError):  # that container is gone: its row stays
            return

    for name in names:
        threading.Thread(target=follow, args=(name,), daemon=True).start()
    while True:
        time.sleep(1.0)
        sys.stdout.write("\033[2J\033[H")
        _print([row(latest[n], n, args.no_trunc) for n in names if n in latest], args.format)
        sys.stdout.flush()


def _tabwriter(lines: list[list[str]]) -> None:
    """The docker CLI's ``top`` table: tabwriter with cells of at least 20, padding 3."""
    if not lines:
        return
    ncol = len(lines[0])
    widths = [max(20, max(len(r[i]) for r in lines if i < len(r)) + 3) for i in range(ncol)]
    for r in lines:
        print("".join(c.ljust(widths[i]) for i, c in enumerate(r[:-1])) + (r[-1] if r else ""))


@daemon_command()
def cmd_top(args: argparse.Namespace) -> int:
    query = {"ps_args": " ".join(args.ps_args)} if args.ps_args else None
    doc = client_of(args).json("GET", f"/containers/{ref(args.container)}/top", query)
    _tabwriter([doc.get("Titles") or []] + (doc.get("Processes") or []))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="Display a live stream of container(s) resource usage")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", default="")
    p.add_argument("containers", nargs="*")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("top", help="Display the running processes of a container")
    p.add_argument("container")
    p.add_argument("ps_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_top)
