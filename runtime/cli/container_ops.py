"""``rename``, ``update`` and ``container prune``: the container commands that change a
container's name, limits or existence in bulk, as the docker CLI prints them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .client import APIError, client_of, ref
from .containers import each
from .errors import CommandError, daemon_command


@daemon_command()
def cmd_rename(args: argparse.Namespace) -> int:
    """``docker rename OLD NEW``: the daemon's refusal, then the CLI's own line."""
    old, new = args.container.strip(), args.new_name.strip()
    if not old or not new:
        raise CommandError("Neither old nor new names may be empty")
    try:
        client_of(args).post(f"/containers/{ref(old)}/rename", {"name": new})
    except APIError as err:
        sys.stderr.write(f"Error response from daemon: {err}\n"
                         f"Error: failed to rename container named {old}\n")
        return 1
    return 0


def _update_body(args: argparse.Namespace) -> dict[str, Any]:
    """docker/cli's ``container update`` flags as an ``UpdateConfig`` (only those given)."""
    from .hostflags import nano_cpus, ram_size

    body: dict[str, Any] = {}
    for flag, key, value in (("--memory", "Memory", args.memory),
                             ("--memory-swap", "MemorySwap", args.memory_swap)):
        if value:
            body[key] = ram_size(flag, value, minus_one=key == "MemorySwap")
    if args.cpus:
        body["NanoCpus"] = nano_cpus(args.cpus)
    for key, value in (("CpuShares", args.cpu_shares), ("CpuPeriod", args.cpu_period),
                       ("CpuQuota", args.cpu_quota), ("PidsLimit", args.pids_limit)):
        if value is not None:
            body[key] = value
    if args.restart:
        name, _, count = args.restart.partition(":")
        try:
            body["RestartPolicy"] = {"Name": name, "MaximumRetryCount": int(count or 0)}
        except ValueError:
            raise CommandError(f"invalid restart policy format: maximum retry count must be "
                               f"an integer: {count}") from None
    if not body:
        raise CommandError("you must provide one or more flags when using this command")
    return body


@daemon_command()
def cmd_update(args: argparse.Namespace) -> int:
    body = _update_body(args)
    return each(args, lambda c, n: (c.json("POST", f"/containers/{ref(n)}/update", None,
                                            body), n)[1])


def confirm(warning: str) -> bool:
    """docker/cli's ``PromptForConfirmation``: only ``y``/``Y`` goes on."""
    sys.stdout.write(f"WARNING! {warning}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() == "y"


@daemon_command()
def cmd_container_prune(args: argparse.Namespace) -> int:
    from .system import size4

    reclaimed = 0
    if args.force or confirm("This will remove all stopped containers."):
        filters: dict[str, list[str]] = {}
        for f in args.filter:
            key, _, value = f.partition("=")
            filters.setdefault(key, []).append(value)
        query = {"filters": json.dumps(filters)} if filters else None
        report = client_of(args).json("POST", "/containers/prune", query)
        if report.get("ContainersDeleted"):
            print("Deleted Containers:\n" + "".join(f"{cid}\n" for cid in
                                                   report["ContainersDeleted"]))
            reclaimed = report.get("SpaceReclaimed") or 0
    print(f"Total reclaimed space: {size4(reclaimed)}")
    return 0
