"""The create options of ``HostConfig`` beyond mounts, networks, logging and the basic limits:
checked at create, kept as ``inspect`` shows them, applied to the OCI config at start.

Each option a client may send is applied or refused, never silently dropped:

- applied: ``GroupAdd`` (``process.user.additionalGids``), ``PidMode: host`` (no pid
  namespace), ``Init`` (the host's ``tini-static`` bound at ``/sbin/docker-init`` and run as
  pid 1, as Docker runs its docker-init, which is tini), ``Links`` (Docker's legacy links on
  the default bridge: ``<ALIAS>_PORT_…``/``<ALIAS>_ENV_…`` variables and an ``/etc/hosts``
  line), ``CapAdd``/``CapDrop``, ``ReadonlyRootfs``, ``IpcMode`` and ``UTSMode`` (``host``),
  ``CgroupnsMode``, ``ShmSize``, ``MemorySwap``, ``MemorySwappiness``, ``OomScoreAdj``,
  ``Ulimits``, ``Sysctls``, the cgroup settings ``CpuShares``, ``CpuPeriod``, ``CpuQuota``,
  ``CpusetCpus``, ``CpusetMems``, ``MemoryReservation``, ``OomKillDisable``,
  ``BlkioWeight``, and ``MaskedPaths``/``ReadonlyPaths`` when a client sends its own;
- refused with a message naming the option: ``Privileged``, ``VolumesFrom``, ``UsernsMode``,
  ``Devices``, ``DeviceRequests``, ``DeviceCgroupRules``, ``CgroupParent``, ``KernelMemory``,
  ``CpuRealtimePeriod``/``CpuRealtimeRuntime``, ``PidMode``/``IpcMode`` ``container:…``.

``extras`` is pure (create); ``capabilities`` and ``apply`` run when the bundle is written.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Mapping

from logpipe.errors import InvalidParameter, LogpipeError

if TYPE_CHECKING:  # the shim writes bundles: it does not load the request schema
    from . import schema

#: Docker's default capability set (moby oci/caps/defaults.go).
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]
ALL_CAPS = DEFAULT_CAPS + [
    "CAP_DAC_READ_SEARCH", "CAP_LINUX_IMMUTABLE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_LEASE", "CAP_AUDIT_CONTROL", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]
ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
           "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
#: Docker's /dev/shm (64 MiB) when ``ShmSize`` is not given.
DEFAULT_SHM = 64 << 20
INIT_PATH = "/sbin/docker-init"
INIT_CANDIDATES = ("/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/libexec/docker/docker-init")
#: Environment variables of a linked container its links do not pass on (moby links.go).
LINK_ENV_SKIPPED = ("HOME", "PATH")


class LinkError(LogpipeError):
    """A linked container cannot be linked at start (it does not run)."""


#: ``HostConfig`` limits that ``create`` checks here but the spec keeps in fields of its own,
#: because ``update`` changes them (``runtime.resources``).
SPEC_LIMITS = ("MemorySwap", "CpuShares", "CpuQuota", "CpuPeriod")


def swap_accounting() -> bool:
    """Whether a memory+swap limit can be set: cgroup v2, or v1 with ``memsw`` files (a
    kernel without swap accounting refuses the limit, and runc with it)."""
    return unified_cgroup() or os.path.exists(
        "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")


def unified_cgroup() -> bool:
    """The host mounts cgroup v2 alone at ``/sys/fs/cgroup`` (not v1 or a hybrid)."""
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split(" - ")[1].startswith("cgroup2 ")
                       for line in f if line.split()[4] == "/sys/fs/cgroup")
    except (OSError, IndexError):
        return False


def init_binary() -> str | None:
    for path in INIT_CANDIDATES:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _cap_name(name: str) -> str:
    upper = name.upper()
    return upper if upper.startswith("CAP_") or upper == "ALL" else "CAP_" + upper


def _caps(values: Any, what: str) -> list[str]:
    items = [values] if isinstance(values, str) else list(values or [])
    out = []
    for item in items:
        cap = _cap_name(item)
        if cap != "ALL" and cap not in ALL_CAPS:
            raise InvalidParameter(f'invalid {what}: unknown capability: "{cap}"')
        out.append(cap)
    return out


def _refuse(host: "schema.HostConfig") -> None:
    """Options logpipe does not implement: refused, not ignored."""
    if host.Privileged:
        raise InvalidParameter("--privileged is not supported by logpipe: grant what the "
                               "container needs with --cap-add")
    for field, value in (("VolumesFrom", host.VolumesFrom), ("Devices", host.Devices),
                         ("DeviceRequests", host.DeviceRequests),
                         ("DeviceCgroupRules", host.DeviceCgroupRules),
                         ("CgroupParent", host.CgroupParent),
                         ("KernelMemory", host.KernelMemory),
                         ("KernelMemoryTCP", host.KernelMemoryTCP),
                         ("CpuRealtimePeriod", host.CpuRealtimePeriod),
                         ("CpuRealtimeRuntime", host.CpuRealtimeRuntime)):
        if value:
            raise InvalidParameter(f"HostConfig.{field} is not supported by logpipe")
    if host.UsernsMode not in (None, "", "host"):
        raise InvalidParameter(f"--userns {host.UsernsMode} is not supported by logpipe")


def _modes(host: "schema.HostConfig", out: dict[str, Any]) -> None:
    pid = host.PidMode or ""
    if pid not in ("", "host"):
        raise InvalidParameter(f"invalid --pid {pid}: logpipe supports the container's own "
                               "pid namespace and host")
    ipc = host.IpcMode or "private"
    if ipc not in ("private", "shareable", "host", "none"):
        raise InvalidParameter(f"invalid --ipc {ipc}: logpipe supports private, shareable, "
                               "none and host")
    uts = host.UTSMode or ""
    if uts not in ("", "host"):
        raise InvalidParameter(f"invalid UTS mode: {uts}")
    cgroupns = host.CgroupnsMode or ("private" if unified_cgroup() else "host")
    if cgroupns not in ("private", "host"):
        raise InvalidParameter(f"invalid cgroup namespace mode: {cgroupns}")
    out.update({"PidMode": pid, "IpcMode": ipc, "UTSMode": uts, "CgroupnsMode": cgroupns})


def _memory(host: "schema.HostConfig", memory: int, out: dict[str, Any]) -> None:
    swap = host.MemorySwap or 0
    if swap and not memory:
        raise InvalidParameter("You should always set the Memory limit when using Memoryswap "
                               "limit, see usage")
    if swap > 0 and swap < memory:
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, "
                               "see usage")
    if memory and not swap:
        swap = memory * 2  # Docker: as much swap as memory unless told
    out["MemorySwap"] = swap
    swappiness = host.MemorySwappiness
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise InvalidParameter(f"Invalid value: {swappiness}, valid memory swappiness range "
                               "is 0-100")
    out["MemorySwappiness"] = swappiness if swappiness not in (None, -1) else None
    shm = host.ShmSize or 0
    if shm < 0:
        raise InvalidParameter("SHM size can not be less than 0")
    out["ShmSize"] = shm or DEFAULT_SHM
    oom = host.OomScoreAdj or 0
    if not -1000 <= oom <= 1000:
        raise InvalidParameter(f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")
    out["OomScoreAdj"] = oom


def _cgroup(host: "schema.HostConfig", memory: int, out: dict[str, Any]) -> None:
    """The cgroup settings, with Docker's checks (daemon/daemon_unix.go)."""
    period, quota = host.CpuPeriod or 0, host.CpuQuota or 0
    if host.NanoCpus and period:
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if host.NanoCpus and quota:
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if period and not 1000 <= period <= 1_000_000:
        raise InvalidParameter("CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                               "than 1s (i.e. 1000000)")
    if quota and quota < 1000:
        raise InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    reservation = host.MemoryReservation or 0
    if memory and reservation > memory:
        raise InvalidParameter("Minimum memory limit can not be less than memory reservation "
                               "limit, see usage")
    weight = host.BlkioWeight or 0
    if weight and not 10 <= weight <= 1000:
        raise InvalidParameter("Range of blkio weight is from 10 to 1000")
    out.update({"CpuShares": host.CpuShares or 0, "CpuPeriod": period, "CpuQuota": quota,
                "CpusetCpus": host.CpusetCpus or "", "CpusetMems": host.CpusetMems or "",
                "MemoryReservation": reservation, "OomKillDisable": bool(host.OomKillDisable),
                "BlkioWeight": weight})
    if host.MaskedPaths is not None:
        out["MaskedPaths"] = list(host.MaskedPaths)
    if host.ReadonlyPaths is not None:
        out["ReadonlyPaths"] = list(host.ReadonlyPaths)


def _ulimits(items: list[Any] | None) -> list[dict[str, Any]] | None:
    out = []
    for item in items or []:
        name = str((item or {}).get("Name", ""))
        soft, hard = (item or {}).get("Soft", 0), (item or {}).get("Hard", 0)
        if name not in ULIMITS:
            raise InvalidParameter(f"invalid ulimit type: {name}")
        if not isinstance(soft, int) or not isinstance(hard, int) or soft > hard:
            raise InvalidParameter(f"ulimit soft limit must be less than or equal to hard "
                                   f"limit: {soft} > {hard}")
        out.append({"Name": name, "Hard": hard, "Soft": soft})
    return out or None


def _links(links: list[str] | None, name: str, network: str, data_root: str) -> list[str] | None:
    """``--link NAME[:ALIAS]`` as Docker keeps them (``/other:/me/alias``)."""
    if not links:
        return None
    if network != "bridge":
        raise InvalidParameter("--link is supported on the default bridge network only "
                               f"(this container's network is {network})")
    from .network.netavark import find_container

    out = []
    for link in links:
        target, _, alias = link.partition(":")
        target = target.lstrip("/")
        if find_container(data_root, target) is None:
            raise InvalidParameter(f"Could not get container for {target}")
        out.append(f"/{target}:/{name}/{alias or target}")
    return out


def extras(host: "schema.HostConfig", name: str, memory: int, network: str,
           data_root: str) -> dict[str, Any]:
    """The options of this module, checked, as ``inspect``'s ``HostConfig`` shows them."""
    _refuse(host)
    out: dict[str, Any] = {}
    _modes(host, out)
    _memory(host, memory, out)
    _cgroup(host, memory, out)
    if host.Init and init_binary() is None:
        raise InvalidParameter("--init needs tini's static build (Debian: apt-get install "
                               f"tini), looked for {', '.join(INIT_CANDIDATES)}")
    out["Init"] = True if host.Init else None
    out["GroupAdd"] = list(host.GroupAdd) if host.GroupAdd else None
    out["CapAdd"] = _caps(host.CapAdd, "CapAdd") or None
    out["CapDrop"] = _caps(host.CapDrop, "CapDrop") or None
    out["ReadonlyRootfs"] = bool(host.ReadonlyRootfs)
    out["Ulimits"] = _ulimits(host.Ulimits)
    out["Sysctls"] = dict(host.Sysctls) if host.Sysctls else None
    out["Links"] = _links(host.Links, name, network, data_root)
    return out


# -- at start ------------------------------------------------------------------------------


def capabilities(options: Mapping[str, Any]) -> list[str]:
    """Docker's default set with ``CapAdd`` added and ``CapDrop`` dropped (``ALL`` first)."""
    add, drop = options.get("CapAdd") or [], options.get("CapDrop") or []
    caps = list(ALL_CAPS) if "ALL" in add else list(DEFAULT_CAPS)
    caps += [c for c in add if c != "ALL" and c not in caps]
    if "ALL" in drop:
        return [c for c in caps if c in add]
    return [c for c in caps if c not in drop]


def _group_ids(root: str, groups: list[str]) -> list[int]:
    from .oci import OCIConfigError, _read_db

    db = [e for e in _read_db(root, "group") if len(e) >= 3]
    out = []
    for group in groups:
        if group.isdigit():
            out.append(int(group))
            continue
        entry = next((e for e in db if e[0] == group), None)
        if entry is None or not entry[2].isdigit():
            raise OCIConfigError(f"Unable to find group {group}: no matching entries in group "
                                 "file")
        out.append(int(entry[2]))
    return out


def _namespaces(cfg: dict[str, Any], options: Mapping[str, Any]) -> None:
    linux = cfg["linux"]
    drop = {t for t, key in (("pid", "PidMode"), ("ipc", "IpcMode"), ("uts", "UTSMode"))
            if options.get(key) == "host"}
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] not in drop]
    if "uts" in drop:
        cfg.pop("hostname", None)  # no namespace of its own: the host's name
    if options.get("CgroupnsMode") == "private":
        linux["namespaces"].append({"type": "cgroup"})
    for mount in cfg["mounts"]:
        if mount["destination"] == "/dev/shm":
            if options.get("IpcMode") == "host":
                mount.update({"type": "bind", "source": "/dev/shm",
                              "options": ["rbind", "rprivate", "rw"]})
            elif options.get("ShmSize"):
                mount["options"] = [o for o in mount["options"] if not o.startswith("size=")]
                mount["options"].append(f"size={options['ShmSize']}")


def _resources(cfg: dict[str, Any], options: Mapping[str, Any]) -> None:
    if options.get("MemorySwappiness") is not None:
        cfg["linux"]["resources"].setdefault("memory", {})["swappiness"] = \
            options["MemorySwappiness"]
    if options.get("OomScoreAdj"):
        cfg["process"]["oomScoreAdj"] = options["OomScoreAdj"]
    if options.get("Ulimits"):
        cfg["process"]["rlimits"] = [{"type": "RLIMIT_" + u["Name"].upper(), "hard": u["Hard"],
                                      "soft": u["Soft"]} for u in options["Ulimits"]]
    if options.get("Sysctls"):
        cfg["linux"]["sysctl"] = dict(options["Sysctls"])
    resources = cfg["linux"]["resources"]
    cpu = {key: options[name] for key, name in (("cpus", "CpusetCpus"), ("mems", "CpusetMems"))
           if options.get(name)}
    if cpu:
        resources.setdefault("cpu", {}).update(cpu)
    if options.get("MemoryReservation"):
        resources.setdefault("memory", {})["reservation"] = options["MemoryReservation"]
    if options.get("OomKillDisable"):
        resources.setdefault("memory", {})["disableOOMKiller"] = True
    if options.get("BlkioWeight"):
        resources["blockIO"] = {"weight": options["BlkioWeight"]}
    for key, name in (("maskedPaths", "MaskedPaths"), ("readonlyPaths", "ReadonlyPaths")):
        if options.get(name) is not None:
            cfg["linux"][key] = list(options[name])


def apply(cfg: dict[str, Any], spec_dir: str, data_root: str, root: str,
          options: Mapping[str, Any]) -> None:
    """The options of this module applied to the OCI config ``cfg`` (being written)."""
    _namespaces(cfg, options)
    _resources(cfg, options)
    if options.get("ReadonlyRootfs"):
        cfg["root"]["readonly"] = True
    if options.get("GroupAdd"):
        user = cfg["process"]["user"]
        extra = user.get("additionalGids", [])
        extra += [g for g in _group_ids(root, options["GroupAdd"]) if g not in extra]
        user["additionalGids"] = extra
    if options.get("Init"):
        cfg["mounts"].append({"destination": INIT_PATH, "type": "bind",
                              "source": init_binary(), "options": ["rbind", "rprivate", "ro"]})
        cfg["process"]["args"] = [INIT_PATH, "--"] + cfg["process"]["args"]
    for link in options.get("Links") or []:
        _link(cfg, spec_dir, data_root, link)


def _link(cfg: dict[str, Any], spec_dir: str, data_root: str, link: str) -> None:
    """One legacy link: Docker's variables and an ``/etc/hosts`` line for the alias."""
    from .network.netavark import endpoint, find_container

    target, _, parent = link.partition(":")
    alias = parent.rsplit("/", 1)[-1]
    cid = find_container(data_root, target)
    record = endpoint(data_root, cid) if cid else None
    if record is None:
        raise LinkError(f"Cannot link to a non running container: {target} AS {parent}")
    with open(os.path.join(data_root, "containers", cid, "config.json")) as f:
        other = json.load(f)
    ip, prefix = record["IPAddress"], alias.upper().replace("-", "_")
    ports = sorted(other["Config"].get("ExposedPorts") or {},
                   key=lambda p: (int(p.split("/")[0]), p))
    env = []
    for i, port in enumerate(ports):
        num, _, proto = port.partition("/")
        proto = proto or "tcp"
        if i == 0:
            env.append(f"{prefix}_PORT={proto}://{ip}:{num}")
        key = f"{prefix}_PORT_{num}_{proto.upper()}"
        env += [f"{key}={proto}://{ip}:{num}", f"{key}_ADDR={ip}", f"{key}_PORT={num}",
                f"{key}_PROTO={proto}"]
    env.append(f"{prefix}_NAME={parent}")
    for item in other["Config"].get("Env") or []:
        key, eq, value = item.partition("=")
        if eq and key not in LINK_ENV_SKIPPED:
            env.append(f"{prefix}_ENV_{key}={value}")
    cfg["process"]["env"] += env
    names = [alias, other["Config"].get("Hostname") or cid[:12]]
    if alias != target.lstrip("/"):
        names.append(target.lstrip("/"))
    with open(os.path.join(spec_dir, "hosts"), "a") as f:
        f.write(f"{ip}\t{' '.join(names)}\n")
