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
