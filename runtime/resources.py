"""``docker update``, as pure functions: which changes a container's limits and restart policy
may take, with Docker's checks and texts, and the spec they lead to.

Docker checks an update twice (daemon/update.go): the request alone first
(``verifyContainerSettings``: a 400), then against what the container already has
(``Container.UpdateContainer``: a 409, worded ``Cannot update container <id>: …``). A zero
value means "unchanged", as in Docker; the docker CLI sends every field. Applying the new
limits to a running container is the executor's job (``runc update``); nothing here runs
anything.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from logpipe.errors import Conflict, InvalidParameter

from . import schema
from .restart import restart_policy
from .spec import ContainerSpec

MIN_MEMORY = 6 * 1024 * 1024
#: Resources logpipe does not manage: a non-zero value is refused rather than ignored.
UNSUPPORTED = ("BlkioWeight", "CpusetCpus", "CpusetMems", "CpuRealtimePeriod",
               "CpuRealtimeRuntime", "KernelMemory", "KernelMemoryTCP", "MemoryReservation",
               "MemorySwappiness", "OomKillDisable", "CgroupParent")


class Limits(NamedTuple):
    """What ``runc update`` is told for a running container (0: leave as it is)."""

    memory: int = 0
    memory_swap: int = 0
    cpu_shares: int = 0
    cpu_quota: int = 0
    cpu_period: int = 0
    pids_limit: int = 0  # -1: unlimited

    def any(self) -> bool:
        return any(self)


def cannot_update(cid: str, why: str) -> Conflict:
    return Conflict(f"Cannot update container {cid}: {why}")


def check_request(req: schema.ContainerUpdate) -> None:
    """Docker's ``verifyContainerSettings`` on the request alone (400s)."""
    for field in UNSUPPORTED:
        if getattr(req, field, None) not in (None, 0, "", False):
            raise InvalidParameter(f"logpipe cannot update {field}: it does not manage it")
    memory, swap = req.Memory or 0, req.MemorySwap or 0
    if 0 < memory < MIN_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    if memory > 0 and swap > 0 and swap < memory:
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, "
                               "see usage")
    nano = req.NanoCpus or 0
    ncpu = os.cpu_count() or 1
    if nano < 0 or nano > ncpu * 10**9:
        raise InvalidParameter(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only "
                               f"{ncpu} CPUs available")
    if nano and req.CpuPeriod:
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano and req.CpuQuota:
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    period, quota = req.CpuPeriod or 0, req.CpuQuota or 0
    if period and not 1000 <= period <= 1_000_000:
        raise InvalidParameter("CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                               "than 1s (i.e. 1000000)")
    if 0 < quota < 1000:
        raise InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if req.RestartPolicy is not None and req.RestartPolicy.Name:
        restart_policy(req.RestartPolicy)


def updated(spec: ContainerSpec, req: schema.ContainerUpdate) -> tuple[ContainerSpec, Limits]:
    """The spec after the update, and the limits a running container must be given;
    Docker's ``UpdateContainer`` refusals (409) against what the container has."""
    cid = spec.id
    nano, period, quota = req.NanoCpus or 0, req.CpuPeriod or 0, req.CpuQuota or 0
    if nano > 0 and spec.cpu_period > 0:
        raise cannot_update(cid, "Conflicting options: Nano CPUs cannot be updated as CPU "
                                 "Period has already been set")
    if nano > 0 and spec.cpu_quota > 0:
        raise cannot_update(cid, "Conflicting options: Nano CPUs cannot be updated as CPU "
                                 "Quota has already been set")
    if period > 0 and spec.nano_cpus > 0:
        raise cannot_update(cid, "Conflicting options: CPU Period cannot be updated as "
                                 "NanoCPUs has already been set")
    if quota > 0 and spec.nano_cpus > 0:
        raise cannot_update(cid, "Conflicting options: CPU Quota cannot be updated as "
                                 "NanoCPUs has already been set")
    memory, swap = req.Memory or 0, req.MemorySwap or 0
    if memory and spec.memory_swap > 0 and memory > spec.memory_swap and not swap:
        raise cannot_update(cid, "Memory limit should be smaller than already set memoryswap "
                                 "limit, update the memoryswap at the same time")
    changes: dict[str, object] = {}
    for field, value in (("memory", memory), ("memory_swap", swap), ("nano_cpus", nano),
                         ("cpu_period", period), ("cpu_quota", quota),
                         ("cpu_shares", req.CpuShares or 0)):
        if value:
            changes[field] = value
    pids = None
    if req.PidsLimit is not None:
        pids = req.PidsLimit if req.PidsLimit > 0 else -1
        changes["pids_limit"] = max(0, req.PidsLimit)
    policy = req.RestartPolicy
    if policy is not None and policy.Name:
        if spec.auto_remove and policy.Name != "no":
            raise cannot_update(cid, "Restart policy cannot be updated because AutoRemove is "
                                     "enabled for the container")
        changes["restart_policy"], changes["restart_max"] = restart_policy(policy)
    new = spec._replace(**changes)
    limits = Limits(memory=memory, memory_swap=swap, cpu_shares=req.CpuShares or 0,
                    cpu_quota=(nano * 100_000 // 10**9) if nano else quota,
                    cpu_period=100_000 if nano else period, pids_limit=pids or 0)
    return new, limits
