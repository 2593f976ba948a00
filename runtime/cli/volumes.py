"""``volume create|ls|inspect|rm|prune`` and the ``--mount`` flag of ``run``/``create``:
clients of the Engine API, with the docker CLI's flags, output and error texts."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from logpipe.units import human_size

from .client import APIError, client_of, ref
from .errors import CommandError, daemon_command
from .flags import key_values
from .tables import print_documents, print_table, table_format

_LS_HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE",
               "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "CreatedAt": "CREATED AT"}


def _filters(items: list[str]) -> dict[str, dict[str, bool]]:
    out: dict[str, dict[str, bool]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandError("bad format of filter (expected name=value)")
        out.setdefault(key.strip().lower(), {})[value] = True
    return out


@daemon_command()
def cmd_volume_create(args: argparse.Namespace) -> int:
    if args.name and args.volume_name and args.name != args.volume_name:
        raise CommandError("conflicting options: either specify --name or provide "
                           "positional arg, not both")
    body = {"Name": args.name or args.volume_name or "", "Driver": args.driver,
            "DriverOpts": key_values(args.opt, "--opt"),
            "Labels": key_values(args.label, "--label")}
    print(client_of(args).json("POST", "/volumes/create", None, body)["Name"])
    return 0


@daemon_command()
def cmd_volume_ls(args: argparse.Namespace) -> int:
    query = {"filters": json.dumps(_filters(args.filter))} if args.filter else None
    vols = client_of(args).json("GET", "/volumes", query)["Volumes"] or []
    vols.sort(key=lambda v: v["Name"])
    if args.quiet:
        for v in vols:
            print(v["Name"])
        return 0
    if args.format:
        items = [dict(v, Labels=",".join(f"{k}={x}" for k, x in (v.get("Labels") or {}).items()))
                 for v in vols]
        table_format(args.format, items, _LS_HEADERS)
        return 0
    print_table(["DRIVER", "VOLUME NAME"], [[v["Driver"], v["Name"]] for v in vols])
    return 0


@daemon_command()
def cmd_volume_inspect(args: argparse.Namespace) -> int:
    client = client_of(args)
    results, failed = [], False
    for name in args.volumes:
        try:
            results.append(client.json("GET", f"/volumes/{ref(name)}"))
        except APIError as err:
            if err.status != 404:
                raise
            sys.stderr.write(f"Error: No such volume: {name}\n")
            failed = True
    print_documents(results, args.format)
    return 1 if failed else 0


@daemon_command()
def cmd_volume_rm(args: argparse.Namespace) -> int:
    client = client_of(args)
    failed = False
    for name in args.volumes:
        try:
            client.request("DELETE", f"/volumes/{ref(name)}",
                           {"force": 1} if args.force else None).read()
        except APIError as err:
            sys.stderr.write(f"Error response from daemon: {err}\n")
            failed = True
            continue
        print(name)
    return 1 if failed else 0


@daemon_command()
def cmd_volume_prune(args: argparse.Namespace) -> int:
    if not args.force:
        sys.stdout.write("WARNING! This will remove all local volumes not used by at least "
                         "one container.\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    query = {"filters": json.dumps(_filters(args.filter))} if args.filter else None
    report = client_of(args).json("POST", "/volumes/prune", query)
    deleted = report.get("VolumesDeleted") or []
    if deleted:
        print("Deleted Volumes:")
        for name in deleted:
            print(name)
        print()
    print(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed', 0))}")
    return 0


# -- run/create's --mount and --tmpfs ------------------------------------------------------


def _truthy(key: str, value: str, text: str) -> bool:
    if value.lower() in ("", "1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise CommandError(f'invalid argument "{text}" for "--mount" flag: invalid value for '
                       f"{key}: {value}")


def parse_mount_flag(text: str) -> dict[str, Any]:
    """One ``--mount type=…,source=…,target=…[,readonly]…`` as ``HostConfig.Mounts`` wants
    it (the docker CLI's ``opts.MountOpt``)."""
    from logpipe.units import parse_ram_size

    mount: dict[str, Any] = {"Type": "volume"}
    volume: dict[str, Any] = {}
    bind: dict[str, Any] = {}
    tmpfs: dict[str, Any] = {}
    for field in filter(None, text.split(",")):
        key, sep, value = field.partition("=")
        key = key.strip().lower()
        if not sep and key not in ("readonly", "ro", "volume-nocopy", "bind-nonrecursive"):
            raise CommandError(f'invalid argument "{text}" for "--mount" flag: invalid field '
                               f"'{field}' must be a key=value pair")
        if key == "type":
            mount["Type"] = value
        elif key in ("source", "src"):
            mount["Source"] = value
        elif key in ("target", "dst", "destination"):
            mount["Target"] = value
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = _truthy(key, value, text)
        elif key == "consistency":
            mount["Consistency"] = value
        elif key == "bind-propagation":
            bind["Propagation"] = value
        elif key == "volume-nocopy":
            volume["NoCopy"] = _truthy(key, value, text)
        elif key == "volume-label":
            k, _, v = value.partition("=")
            volume.setdefault("Labels", {})[k] = v
        elif key == "volume-driver":
            volume.setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-opt":
            k, _, v = value.partition("=")
            volume.setdefault("DriverConfig", {}).setdefault("Options", {})[k] = v
        elif key == "tmpfs-size":
            try:
                tmpfs["SizeBytes"] = parse_ram_size(value)
            except ValueError as err:
                raise CommandError(f'invalid argument "{text}" for "--mount" flag: {err}') \
                    from None
        elif key == "tmpfs-mode":
            try:
                tmpfs["Mode"] = int(value, 8)
            except ValueError:
                raise CommandError(f'invalid argument "{text}" for "--mount" flag: '
                                   f"invalid value for {key}: {value}") from None
        else:
            raise CommandError(f'invalid argument "{text}" for "--mount" flag: unexpected '
                               f"key '{key}' in '{field}'")
    if volume:
        mount["VolumeOptions"] = volume
    if bind:
        mount["BindOptions"] = bind
    if tmpfs:
        mount["TmpfsOptions"] = tmpfs
    return mount


def mount_fields(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """What ``-v``, ``--mount`` and ``--tmpfs`` put in the create body: the ``HostConfig``
    fields and ``Config.Volumes`` (``-v /path`` alone is an anonymous volume)."""
    host: dict[str, Any] = {}
    binds = [v for v in args.volume if ":" in v]
    anonymous = {v: {} for v in args.volume if ":" not in v}
    if binds:
        host["Binds"] = binds
    if args.mount:
        host["Mounts"] = [parse_mount_flag(m) for m in args.mount]
    if args.tmpfs:
        host["Tmpfs"] = {}
        for t in args.tmpfs:
            path, _, opts = t.partition(":")
            host["Tmpfs"][path] = opts
    return host, anonymous


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``volume create|ls|inspect|rm|prune`` with the docker CLI's flags."""
    vol = sub.add_parser("volume", help="Manage volumes")
    vsub = vol.add_subparsers(dest="volume_cmd", metavar="COMMAND")
    vol.set_defaults(func=lambda args: (vol.print_help(), 0)[1])

    p = vsub.add_parser("create", help="Create a volume")
    p.add_argument("-d", "--driver", default="local")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("--name", default="")
    p.add_argument("volume_name", nargs="?", default="")
    p.set_defaults(func=cmd_volume_create)

    p = vsub.add_parser("ls", aliases=["list"], help="List volumes")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format", default="")
    p.set_defaults(func=cmd_volume_ls)

    p = vsub.add_parser("inspect", help="Display detailed information on one or more volumes")
    p.add_argument("-f", "--format", default="")
    p.add_argument("volumes", nargs="+")
    p.set_defaults(func=cmd_volume_inspect)

    p = vsub.add_parser("rm", aliases=["remove"], help="Remove one or more volumes")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("volumes", nargs="+")
    p.set_defaults(func=cmd_volume_rm)

    p = vsub.add_parser("prune", help="Remove all unused local volumes")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    p.set_defaults(func=cmd_volume_prune)
