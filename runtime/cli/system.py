"""``version``, ``info`` and ``daemon``: the CLI, the daemon it talks to, and starting one.

``daemon`` is the one command that imports the runtime's server (aiohttp and all), and only
when it runs: every other command starts without it.
"""

from __future__ import annotations

import argparse
import os
import sys

from logpipe.errors import LogpipeError
from logpipe.units import human_size

from .client import Client, client_of
from .errors import daemon_command
from .flags import key_values
from .tables import go_render


def cmd_version(args: argparse.Namespace) -> int:
    from logpipe import __version__

    print(f"Client:\n Version:           logpipe-{__version__}\n API version:       1.41\n"
          f" Python version:    {sys.version.split()[0]}\n OS/Arch:           linux/{os.uname().machine}")
    try:
        v = Client(getattr(args, "global_host", None) or None, autostart=False).json("GET", "/version")
    except LogpipeError as err:
        sys.stderr.write(f"{err}\n")
        return 1
    print(f"\nServer:\n Engine:\n  Version:          {v['Version']}\n"
          f"  API version:      {v['ApiVersion']} (minimum version {v['MinAPIVersion']})\n"
          f"  OS/Arch:          {v['Os']}/{v['Arch']}")
    return 0


@daemon_command()
def cmd_info(args: argparse.Namespace) -> int:
    i = client_of(args).json("GET", "/info")
    if args.format:
        print(go_render(args.format, i))
        return 0
    print(f"Server:\n Containers: {i['Containers']}\n  Running: {i['ContainersRunning']}\n"
          f"  Paused: {i['ContainersPaused']}\n  Stopped: {i['ContainersStopped']}\n"
          f" Images: {i['Images']}\n Server Version: {i['ServerVersion']}\n"
          f" Logging Driver: {i['LoggingDriver']}\n Plugins:\n  Log: {' '.join(i['Plugins']['Log'])}\n"
          f" Runtimes: {' '.join(i['Runtimes'])}\n Default Runtime: {i['DefaultRuntime']}\n"
          f" Kernel Version: {i['KernelVersion']}\n Operating System: {i['OperatingSystem']}\n"
          f" Architecture: {i['Architecture']}\n CPUs: {i['NCPU']}\n"
          f" Total Memory: {human_size(i['MemTotal'])}\n Name: {i['Name']}\n"
          f" Logpipe Root Dir: {i['DockerRootDir']}\n Live Restore Enabled: true")
    return 0


def cmd_daemon(args: argparse.Namespace) -> int:
    from ..daemon import main as daemon_main

    try:
        return daemon_main(config_file=args.config_file, data_root=args.data_root,
                           host=args.host or args.global_host or "", log_driver=args.log_driver,
                           log_opts=key_values(args.log_opt, "--log-opt") or None,
                           default_runtime=args.default_runtime)
    except LogpipeError as err:
        sys.stderr.write(f"logpipe daemon: {err}\n")
        return 1


def size4(size: float) -> str:
    """go-units' ``HumanSize`` (four significant digits), what ``system df`` and the prune
    commands print."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.4g}{units[i]}"


def _percent(part: int, total: int) -> str:
    """docker/cli's RECLAIMABLE cell: ``size (N%)`` when there is a total."""
    return f"{size4(part)} ({part * 100 // total}%)" if total > 0 else size4(part)


def df_rows(df: dict) -> list[list[str]]:
    """``docker system df``'s summary: TYPE TOTAL ACTIVE SIZE RECLAIMABLE (docker/cli's
    ``formatter/disk_usage.go``)."""
    images = df.get("Images") or []
    layers = df.get("LayersSize") or 0
    used = sum(i["Size"] - i["SharedSize"] for i in images if i.get("Containers"))
    containers = df.get("Containers") or []
    active_c = [c for c in containers if c.get("State") in ("running", "paused")]
    c_size = sum(c.get("SizeRw") or 0 for c in containers)
    c_free = sum(c.get("SizeRw") or 0 for c in containers if c not in active_c)
    volumes = df.get("Volumes") or []
    sizes = [(v["UsageData"]["Size"], v["UsageData"]["RefCount"]) for v in volumes]
    v_size = sum(s for s, _ in sizes if s != -1)
    v_free = sum(s for s, refs in sizes if refs == 0 and s != -1)
    cache = df.get("BuildCache") or []
    return [
        ["Images", str(len(images)), str(sum(1 for i in images if i.get("Containers"))),
         size4(layers), _percent(layers - used, layers)],
        ["Containers", str(len(containers)), str(len(active_c)), size4(c_size),
         _percent(c_free, c_size)],
        ["Local Volumes", str(len(volumes)), str(sum(1 for _, refs in sizes if refs)),
         size4(v_size), _percent(v_free, v_size)],
        ["Build Cache", str(len(cache)), "0", "0B", "0B"],
    ]


@daemon_command()
def cmd_df(args: argparse.Namespace) -> int:
    from .tables import ago, print_table

    df = client_of(args).json("GET", "/system/df")
    if args.format:
        for row in df_rows(df):
            print(go_render(args.format, dict(zip(("Type", "TotalCount", "Active", "Size",
                                                   "Reclaimable"), row))))
        return 0
    if not args.verbose:
        print_table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], df_rows(df))
        return 0
    print("Images space usage:\n")
    rows = []
    for im in df.get("Images") or []:
        for tag in im.get("RepoTags") or ["<none>:<none>"]:
            repo, _, tag_name = tag.rpartition(":")
            rows.append([repo, tag_name, im["Id"].split(":", 1)[-1][:12], ago(im["Created"]),
                         human_size(im["Size"]), human_size(im["SharedSize"]),
                         size4(im["Size"] - im["SharedSize"]), str(im["Containers"])])
    print_table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE",
                 "UNIQUE SIZE", "CONTAINERS"], rows)
    print("\nContainers space usage:\n")
    print_table(["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED",
                 "STATUS", "NAMES"],
                [[c["Id"][:12], c["Image"], '"' + c["Command"][:20] + '"',
                  str(sum(1 for m in c.get("Mounts") or [] if m.get("Type") == "volume")),
                  human_size(c.get("SizeRw") or 0), ago(c["Created"]), c["Status"],
                  ",".join(n.lstrip("/") for n in c["Names"])]
                 for c in df.get("Containers") or []])
    print("\nLocal Volumes space usage:\n")
    print_table(["VOLUME NAME", "LINKS", "SIZE"],
                [[v["Name"], str(v["UsageData"]["RefCount"]), size4(v["UsageData"]["Size"])]
                 for v in df.get("Volumes") or []])
    print("\nBuild cache usage: 0B\n")
    print_table(["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"],
                [])
    return 0
