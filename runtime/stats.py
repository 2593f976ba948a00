"""A running container's resource usage, read from its cgroup and its network namespace:
Docker's ``types.StatsJSON`` (``GET /containers/{id}/stats``) and the pids ``top`` lists.

The container's cgroup is found from ``/proc/<pid>/cgroup`` of its init and the host's
cgroup mounts (``/proc/self/mountinfo``), so any layout works: cgroup v1 (each controller
its own hierarchy, ``cpu`` and ``cpuacct`` apart or joined), v2 (one unified hierarchy), or a
hybrid of both, where a controller is read from v1 when it is mounted there. The files
are those Docker's collector (containerd's cgroups package) reads, with its conversions:
``cpuacct.stat`` ticks to nanoseconds, v2's microseconds to nanoseconds, a memory limit
above the machine's memory reported as the machine's memory. The network counters come
from ``/proc/<pid>/net/dev``, which shows the interfaces of the process's own namespace.

Reading only: nothing here changes a cgroup, and nothing here knows about the store; the
caller passes the container's init pid.
"""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple

from logpipe.timespec import format_rfc3339nano

from .state import ZERO_TIME

NS = 1_000_000_000
#: v1 controllers read here; v2 keeps them all in the unified hierarchy.
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio", "pids")


class Cgroup(NamedTuple):
    """Where one container's cgroup files are: a directory per v1 controller, and the v2
    directory (empty when the host has no unified hierarchy)."""

    v1: dict[str, str]
    v2: str

    def dir_of(self, controller: str) -> tuple[str, int]:
        """The directory holding ``controller``'s files and its cgroup version."""
        if controller in self.v1:
            return self.v1[controller], 1
        return self.v2, 2


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """The host's cgroup mounts: (fstype, mount root, mount point, super options)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            if len(fields) < 5 or len(rest) < 3 or rest[0] not in ("cgroup", "cgroup2"):
                continue
            out.append((rest[0], fields[3], fields[4], set(rest[2].split(","))))
    return out


def _under(mount_root: str, mount_point: str, path: str) -> str:
    """The host directory of cgroup ``path`` in a hierarchy mounted from ``mount_root``."""
    if mount_root != "/" and path.startswith(mount_root):
        path = path[len(mount_root):]
    return os.path.join(mount_point, path.lstrip("/"))


def find_cgroup(pid: int) -> Cgroup:
    """The cgroup directories of process ``pid`` (OSError when it is gone)."""
    paths: dict[str, str] = {}
    unified = None
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            num, _, rest = line.rstrip("\n").partition(":")
            names, _, path = rest.partition(":")
            if num == "0" and not names:
                unified = path
            for name in names.split(","):
                if name:
                    paths[name] = path
    v1: dict[str, str] = {}
    v2 = ""
    for fstype, root, point, opts in _mounts():
        if fstype == "cgroup2" and unified is not None and not v2:
            v2 = _under(root, point, unified)
            continue
        for name in V1_CONTROLLERS:
            if name in opts and name in paths and name not in v1:
                v1[name] = _under(root, point, paths[name])
    return Cgroup(v1, v2)


def _read(directory: str, name: str) -> str | None:
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read()
    except OSError:
        return None


def _int(text: str | None, default: int = 0) -> int:
    try:
        return int(text.strip()) if text is not None else default
    except ValueError:
        return default


def _keyed(text: str | None) -> dict[str, int]:
    """A flat keyed file (``memory.stat``, ``cpu.stat``): key → integer."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def machine_memory() -> int:
    """The host's memory in bytes (Docker's ``machineMemory``)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def system_cpu_usage() -> int:
    """The host's CPU time in nanoseconds, as Docker computes it: the first seven fields of
    ``/proc/stat``'s ``cpu`` line (user … softirq), in clock ticks, converted."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                ticks = sum(int(v) for v in line.split()[1:8])
                return ticks * NS // os.sysconf("SC_CLK_TCK")
    return 0


def online_cpus() -> int:
    try:
        return os.sysconf("SC_NPROCESSORS_ONLN")
    except (ValueError, OSError):
        return os.cpu_count() or 1


def _throttling(stat: dict[str, int], scale: int) -> dict[str, int]:
    return {"periods": stat.get("nr_periods", 0),
            "throttled_periods": stat.get("nr_throttled", 0),
            "throttled_time": stat.get("throttled_time", stat.get("throttled_usec", 0) * scale)}


def cpu_stats(cg: Cgroup) -> dict[str, Any]:
    """``cpu_stats`` without ``system_cpu_usage`` and ``online_cpus`` (the caller's)."""
    directory, version = cg.dir_of("cpuacct" if "cpuacct" in cg.v1 else "cpu")
    if version == 1:
        tick = NS // os.sysconf("SC_CLK_TCK")
        acct = _keyed(_read(directory, "cpuacct.stat"))
        usage: dict[str, Any] = {
            "total_usage": _int(_read(directory, "cpuacct.usage")),
            "usage_in_kernelmode": acct.get("system", 0) * tick,
            "usage_in_usermode": acct.get("user", 0) * tick}
        percpu = [int(v) for v in (_read(directory, "cpuacct.usage_percpu") or "").split()]
        if percpu:
            usage["percpu_usage"] = percpu
        cpu_dir, _ = cg.dir_of("cpu")
        return {"cpu_usage": usage, "throttling_data": _throttling(
            _keyed(_read(cpu_dir, "cpu.stat")), 1)}
    stat = _keyed(_read(directory, "cpu.stat"))
    return {"cpu_usage": {"total_usage": stat.get("usage_usec", 0) * 1000,
                          "usage_in_kernelmode": stat.get("system_usec", 0) * 1000,
                          "usage_in_usermode": stat.get("user_usec", 0) * 1000},
            "throttling_data": _throttling(stat, 1000)}


def memory_stats(cg: Cgroup, machine: int) -> dict[str, Any]:
    directory, version = cg.dir_of("memory")
    if version == 1:
        limit = _int(_read(directory, "memory.limit_in_bytes"))
        out = {"usage": _int(_read(directory, "memory.usage_in_bytes")),
               "max_usage": _int(_read(directory, "memory.max_usage_in_bytes")),
               "stats": _keyed(_read(directory, "memory.stat")),
               "failcnt": _int(_read(directory, "memory.failcnt"))}
    else:
        text = (_read(directory, "memory.max") or "max").strip()
        limit = int(text) if text.isdigit() else 1 << 63
        out = {"usage": _int(_read(directory, "memory.current")),
               "stats": _keyed(_read(directory, "memory.stat"))}
    # Docker: no limit (or one above the machine's memory) is shown as the machine's memory.
    out["limit"] = machine if machine and (not limit or limit > machine) else limit
    return {k: v for k, v in out.items() if v}  # Go's omitempty


def pids_stats(cg: Cgroup) -> dict[str, int]:
    directory, version = cg.dir_of("pids")
    out = {"current": _int(_read(directory, "pids.current"))}
    limit = (_read(directory, "pids.max") or "max").strip()
    if limit.isdigit():
        out["limit"] = int(limit)
    return {k: v for k, v in out.items() if v}


def _blkio_entries(text: str | None) -> list[dict[str, Any]]:
    """v1's ``MAJ:MIN Op value`` lines (the per-device ``Total`` lines are not entries)."""
    out = []
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        out.append({"major": int(major), "minor": int(minor), "op": parts[1],
                    "value": int(parts[2])})
    return out


def blkio_stats(cg: Cgroup) -> dict[str, Any]:
    keys = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
            "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
            "io_time_recursive", "sectors_recursive")
    out: dict[str, Any] = dict.fromkeys(keys)
    directory, version = cg.dir_of("blkio")
    if version == 1:
        for key, name in (("io_service_bytes_recursive", "io_service_bytes_recursive"),
                          ("io_serviced_recursive", "io_serviced_recursive")):
            entries = _blkio_entries(_read(directory, f"blkio.{name}")) or _blkio_entries(
                _read(directory, f"blkio.throttle.{name}"))
            out[key] = entries or None
        return out
    service, serviced = [], []
    for line in (_read(directory, "io.stat") or "").splitlines():
        dev, *pairs = line.split()
        major, _, minor = dev.partition(":")
        values = dict(p.split("=", 1) for p in pairs if "=" in p)
        for op, bytes_key, ios_key in (("read", "rbytes", "rios"), ("write", "wbytes", "wios")):
            base = {"major": int(major), "minor": int(minor), "op": op}
            service.append({**base, "value": int(values.get(bytes_key, 0))})
            serviced.append({**base, "value": int(values.get(ios_key, 0))})
    out["io_service_bytes_recursive"] = service or None
    out["io_serviced_recursive"] = serviced or None
    return out


def network_stats(pid: int) -> dict[str, dict[str, int]]:
    """The counters of each interface the process sees but ``lo`` (Docker's ``networks``)."""
    out: dict[str, dict[str, int]] = {}
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, _, counters = line.partition(":")
        name = name.strip()
        values = counters.split()
        if name == "lo" or len(values) < 12:
            continue
        v = [int(x) for x in values]
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2],
                     "rx_dropped": v[3], "tx_bytes": v[8], "tx_packets": v[9],
                     "tx_errors": v[10], "tx_dropped": v[11]}
    return out


# -- the documents -----------------------------------------------------------------------


def empty_cpu() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def empty_stats(name: str, cid: str) -> dict[str, Any]:
    """What Docker answers for a container that does not run: Go's zero ``StatsJSON`` with
    its name and id."""
    return {"read": ZERO_TIME, "preread": ZERO_TIME, "pids_stats": {},
            "blkio_stats": blkio_stats(Cgroup({}, "")), "num_procs": 0, "storage_stats": {},
            "cpu_stats": empty_cpu(), "precpu_stats": empty_cpu(), "memory_stats": {},
            "name": name, "id": cid}


def sample(pid: int, name: str, cid: str, previous: dict[str, Any] | None,
           with_network: bool = True) -> dict[str, Any]:
    """One ``StatsJSON`` of the container whose init is ``pid``; ``previous`` (the last
    sample) gives ``preread`` and ``precpu_stats``. OSError when the process is gone."""
    cg = find_cgroup(pid)
    cpu = cpu_stats(cg)
    cpu["system_cpu_usage"] = system_cpu_usage()
    cpu["online_cpus"] = online_cpus()
    doc = {"read": format_rfc3339nano(time.time_ns()),
           "preread": previous["read"] if previous else ZERO_TIME,
           "pids_stats": pids_stats(cg), "blkio_stats": blkio_stats(cg), "num_procs": 0,
           "storage_stats": {}, "cpu_stats": cpu,
           "precpu_stats": previous["cpu_stats"] if previous else empty_cpu(),
           "memory_stats": memory_stats(cg, machine_memory()), "name": name, "id": cid}
    networks = network_stats(pid) if with_network else {}
    if networks:
        doc["networks"] = networks
    return doc


def cgroup_pids(pid: int) -> list[int]:
    """Every process of the container whose init is ``pid``: its cgroup's ``cgroup.procs``
    (the pids cgroup under v1; any hierarchy holds the whole container)."""
    cg = find_cgroup(pid)
    candidates = [cg.v1[c] for c in ("pids", "memory", "cpu") if c in cg.v1] + [cg.v2]
    for directory in candidates:
        text = _read(directory, "cgroup.procs") if directory else None
        if text is not None:
            return [int(p) for p in text.split()]
    return [pid]


def group_pids(pid: int) -> list[int]:
    """The processes of a ``process``-runtime container (no cgroup of its own): its main
    process leads a session, and every process of that session is the container's."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 3 and int(fields[3]) == pid:
            out.append(int(entry))
    return out or [pid]


def process_sample(pid: int, name: str, cid: str, previous: dict[str, Any] | None
                   ) -> dict[str, Any]:
    """One ``StatsJSON`` of a ``process``-runtime container, which has no cgroup of its own:
    the CPU time and resident memory of its session's processes (``/proc/<pid>/stat``),
    the machine's memory as the limit. No network or block I/O counters: they would be the
    host's."""
    tick = NS // os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    user = system = rss = 0
    pids = group_pids(pid)
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        user, system = user + int(fields[11]) * tick, system + int(fields[12]) * tick
        rss += int(fields[21]) * page
    cpu = {"cpu_usage": {"total_usage": user + system, "usage_in_kernelmode": system,
                         "usage_in_usermode": user},
           "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
           "system_cpu_usage": system_cpu_usage(), "online_cpus": online_cpus()}
    return {"read": format_rfc3339nano(time.time_ns()),
            "preread": previous["read"] if previous else ZERO_TIME,
            "pids_stats": {"current": len(pids)},
            "blkio_stats": blkio_stats(Cgroup({}, "")), "num_procs": 0, "storage_stats": {},
            "cpu_stats": cpu, "precpu_stats": previous["cpu_stats"] if previous else empty_cpu(),
            "memory_stats": {"usage": rss, "limit": machine_memory()}, "name": name, "id": cid}
