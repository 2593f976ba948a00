"""The ``run``/``create`` flags of ``HostConfig`` options beyond mounts, networks and logging
(``runtime.hostopts`` checks and applies them): docker's names, and docker's parsing of
their values (sizes, ``--ulimit NAME=SOFT[:HARD]``, ``--sysctl KEY=VALUE``)."""

from __future__ import annotations

import argparse
from typing import Any

from .errors import CommandError
from .flags import key_values


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--group-add", action="append", default=[],
                   help="Add additional groups to join")
    p.add_argument("--pid", default="", help="PID namespace to use (host)")
    p.add_argument("--init", action="store_true",
                   help="Run an init inside the container that forwards signals and reaps "
                        "processes")
    p.add_argument("--link", action="append", default=[], help="Add link to another container")
    p.add_argument("--cap-add", action="append", default=[], help="Add Linux capabilities")
    p.add_argument("--cap-drop", action="append", default=[], help="Drop Linux capabilities")
    p.add_argument("--read-only", action="store_true",
                   help="Mount the container's root filesystem as read only")
    p.add_argument("--ipc", default="", help="IPC mode to use")
    p.add_argument("--uts", default="", help="UTS namespace to use")
    p.add_argument("--cgroupns", default="", help="Cgroup namespace to use (host|private)")
    p.add_argument("--shm-size", default="", help="Size of /dev/shm")
    p.add_argument("--memory-swap", default="",
                   help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
    p.add_argument("--memory-swappiness", type=int, default=-1,
                   help="Tune container memory swappiness (0 to 100)")
    p.add_argument("--oom-score-adj", type=int, default=0, help="Tune host's OOM preferences")
    p.add_argument("--ulimit", action="append", default=[], help="Ulimit options")
    p.add_argument("--sysctl", action="append", default=[], help="Sysctl options")
    p.add_argument("-c", "--cpu-shares", type=int, default=0, help="CPU shares (relative weight)")
    p.add_argument("--cpu-period", type=int, default=0, help="Limit CPU CFS period")
    p.add_argument("--cpu-quota", type=int, default=0, help="Limit CPU CFS quota")
    p.add_argument("--cpuset-cpus", default="", help="CPUs in which to allow execution (0-3, 0,1)")
    p.add_argument("--cpuset-mems", default="", help="MEMs in which to allow execution")
    p.add_argument("--memory-reservation", default="", help="Memory soft limit")
    p.add_argument("--oom-kill-disable", action="store_true", help="Disable OOM Killer")
    p.add_argument("--blkio-weight", type=int, default=0,
                   help="Block IO (relative weight), between 10 and 1000")
    p.add_argument("--privileged", action="store_true",
                   help="Give extended privileges to this container (refused by logpipe)")


def ram_size(flag: str, value: str, minus_one: bool = True) -> int:
    """A size flag's bytes (``512m``), or ``-1`` ("unlimited") where the flag takes it;
    refused with the docker CLI's words, naming ``flag``."""
    from logpipe.units import parse_ram_size

    if minus_one and value == "-1":
        return -1
    try:
        return parse_ram_size(value)
    except ValueError as err:
        raise CommandError(f'invalid argument "{value}" for "{flag}" flag: {err}') from None


def nano_cpus(value: str) -> int:
    """``--cpus 1.5`` as the API's ``NanoCpus``."""
    try:
        return int(round(float(value) * 1e9))
    except ValueError:
        raise CommandError(f'invalid argument "{value}" for "--cpus" flag') from None


def _ulimit(text: str) -> dict[str, Any]:
    name, eq, limits = text.partition("=")
    soft, _, hard = limits.partition(":")
    try:
        return {"Name": name, "Soft": int(soft), "Hard": int(hard or soft)}
    except ValueError:
        raise CommandError(f'invalid argument "{text}" for "--ulimit" flag: invalid ulimit '
                           f"argument: {text}") from None


def host_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``HostConfig`` fields of these flags, as the docker CLI sends them."""
    out: dict[str, Any] = {
        "GroupAdd": args.group_add or None, "PidMode": args.pid, "Links": args.link or None,
        "CapAdd": args.cap_add or None, "CapDrop": args.cap_drop or None,
        "ReadonlyRootfs": args.read_only, "IpcMode": args.ipc, "UTSMode": args.uts,
        "CgroupnsMode": args.cgroupns, "MemorySwappiness": args.memory_swappiness,
        "OomScoreAdj": args.oom_score_adj, "Privileged": args.privileged,
        "Ulimits": [_ulimit(u) for u in args.ulimit] or None,
        "Sysctls": key_values(args.sysctl, "--sysctl") or None,
        "CpuShares": args.cpu_shares, "CpuPeriod": args.cpu_period, "CpuQuota": args.cpu_quota,
        "CpusetCpus": args.cpuset_cpus, "CpusetMems": args.cpuset_mems,
        "OomKillDisable": args.oom_kill_disable, "BlkioWeight": args.blkio_weight}
    if args.memory_reservation:
        out["MemoryReservation"] = ram_size("--memory-reservation", args.memory_reservation)
    if args.init:
        out["Init"] = True
    if args.shm_size:
        out["ShmSize"] = ram_size("--shm-size", args.shm_size)
    if args.memory_swap:
        out["MemorySwap"] = ram_size("--memory-swap", args.memory_swap)
    return out
