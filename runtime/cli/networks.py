"""``network create|ls|inspect|rm|prune|connect|disconnect``: the network commands, clients of the Engine API's
``/networks`` (the docker CLI's flags, columns and texts)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .client import APIError, client_of, ref
from .errors import daemon_command
from .flags import key_values
from .tables import print_documents, print_table, table_format

_LS_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
               "Labels": "LABELS", "Internal": "INTERNAL", "CreatedAt": "CREATED AT"}


@daemon_command()
def cmd_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"Name": args.name, "Driver": args.driver or "bridge",
                            "Internal": bool(args.internal), "CheckDuplicate": True,
                            "Labels": key_values(args.label, "--label")}
    if args.subnet:
        config = {"Subnet": args.subnet}
        if args.gateway:
            config["Gateway"] = args.gateway
        if args.ip_range:
            config["IPRange"] = args.ip_range
        body["IPAM"] = {"Driver": "default", "Config": [config]}
    print(client_of(args).json("POST", "/networks/create", None, body)["Id"])
    return 0


@daemon_command()
def cmd_ls(args: argparse.Namespace) -> int:
    filters: dict[str, list[str]] = {}
    for f in args.filter:
        key, _, value = f.partition("=")
        filters.setdefault(key, []).append(value)
    query = {"filters": json.dumps(filters)} if filters else None
    nets = sorted(client_of(args).json("GET", "/networks", query), key=lambda n: n["Name"])
    items = [{"ID": n["Id"] if args.no_trunc else n["Id"][:12], "Name": n["Name"],
              "Driver": n["Driver"], "Scope": n["Scope"], "Internal": n["Internal"],
              "CreatedAt": n["Created"],
              "Labels": ",".join(f"{k}={v}" for k, v in sorted(n["Labels"].items()))}
             for n in nets]
    if args.quiet:
        for it in items:
            print(it["ID"])
    elif args.format:
        table_format(args.format, items, _LS_HEADERS)
    else:
        print_table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                    [[it["ID"], it["Name"], it["Driver"], it["Scope"]] for it in items])
    return 0


@daemon_command()
def cmd_inspect(args: argparse.Namespace) -> int:
    client, docs, failed = client_of(args), [], False
    for name in args.networks:
        try:
            docs.append(client.json("GET", f"/networks/{ref(name)}"))
        except APIError as err:
            print(f"Error response from daemon: {err}", file=sys.stderr)
            failed = True
    print_documents(docs, args.format)
    return 1 if failed else 0


@daemon_command()
def cmd_rm(args: argparse.Namespace) -> int:
    client, failed = client_of(args), False
    for name in args.networks:
        try:
            client.request("DELETE", f"/networks/{ref(name)}").read()
            print(name)
        except APIError as err:
            print(f"Error response from daemon: {err}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


@daemon_command()
def cmd_prune(args: argparse.Namespace) -> int:
    filters: dict[str, list[str]] = {}
    for f in args.filter:
        key, _, value = f.partition("=")
        filters.setdefault(key, []).append(value)
    query = {"filters": json.dumps(filters)} if filters else None
    deleted = client_of(args).json("POST", "/networks/prune", query).get("NetworksDeleted")
    if deleted:
        print("Deleted Networks:")
        for name in deleted:
            print(name)
    return 0


@daemon_command()
def cmd_connect(args: argparse.Namespace) -> int:
    endpoint: dict[str, Any] = {"Aliases": args.alias or None}
    if args.ip:
        endpoint["IPAMConfig"] = {"IPv4Address": args.ip}
    client_of(args).request("POST", f"/networks/{ref(args.network)}/connect", None,
                            {"Container": args.container, "EndpointConfig": endpoint}).read()
    return 0


@daemon_command()
def cmd_disconnect(args: argparse.Namespace) -> int:
    client_of(args).request("POST", f"/networks/{ref(args.network)}/disconnect", None,
                            {"Container": args.container, "Force": bool(args.force)}).read()
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``logpipe network ...``."""
    net = sub.add_parser("network", help="Manage networks")
    nsub = net.add_subparsers(dest="network_cmd", metavar="COMMAND", required=True)
    p = nsub.add_parser("create", help="Create a network")
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("--subnet", default="")
    p.add_argument("--gateway", default="")
    p.add_argument("--ip-range", default="", help="Allocate container ip from a sub-range")
    p.add_argument("--internal", action="store_true")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("name")
    p.set_defaults(func=cmd_create)
    p = nsub.add_parser("ls", aliases=["list"], help="List networks")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format", default="")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.set_defaults(func=cmd_ls)
    p = nsub.add_parser("inspect", help="Display detailed information on one or more networks")
    p.add_argument("-f", "--format", default="")
    p.add_argument("networks", nargs="+")
    p.set_defaults(func=cmd_inspect)
    p = nsub.add_parser("rm", aliases=["remove"], help="Remove one or more networks")
    p.add_argument("networks", nargs="+")
    p.set_defaults(func=cmd_rm)
    p = nsub.add_parser("prune", help="Remove all unused networks")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    p.set_defaults(func=cmd_prune)
    p = nsub.add_parser("connect", help="Connect a container to a network")
    p.add_argument("--alias", action="append", default=[],
                   help="Add network-scoped alias for the container")
    p.add_argument("--ip", default="", help="IPv4 address (e.g., 172.30.100.104)")
    p.add_argument("network")
    p.add_argument("container")
    p.set_defaults(func=cmd_connect)
    p = nsub.add_parser("disconnect", help="Disconnect a container from a network")
    p.add_argument("-f", "--force", action="store_true",
                   help="Force the container to disconnect from a network")
    p.add_argument("network")
    p.add_argument("container")
    p.set_defaults(func=cmd_disconnect)
