"""A container's create-time spec: what ``config.json`` in its directory holds.

The file mirrors the parts of Docker's ``inspect`` output that a container is created from
(``Config``, ``HostConfig``), so the daemon, the shim and the executors read one format, and
``inspect`` can show it as is. Values are validated by the daemon at create time; everything
here assumes valid input.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, NamedTuple

from logpipe.driver import LogInfo
from logpipe.registry import LogPlan, stored_plan

from runtime.network.ports import PortBinding, from_docker, to_docker

CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
SHIM_SOCKET = "shim.sock"
#: ``HostConfig`` keys of ``ContainerSpec.host_options`` (``runtime.hostopts``), kept as is.
HOST_OPTION_KEYS = ("PidMode", "IpcMode", "UTSMode", "CgroupnsMode",
                    "MemorySwappiness", "ShmSize", "OomScoreAdj", "Init", "GroupAdd", "CapAdd",
                    "CapDrop", "ReadonlyRootfs", "Ulimits", "Sysctls", "Links",
                    "CpusetCpus", "CpusetMems", "MemoryReservation",
                    "OomKillDisable", "BlkioWeight", "MaskedPaths", "ReadonlyPaths")
#: Where the shim takes what is sent to the container's stdin (``runtime.stdin_relay``).
STDIN_SOCKET = "stdin.sock"


class Bind(NamedTuple):
    """``-v host:container[:ro]``."""

    source: str
    target: str
    readonly: bool = False


class Mount(NamedTuple):
    """A volume, a ``--mount`` bind or tmpfs: ``MountPoints`` of ``config.json``."""

    type: str  # "volume" | "bind" | "tmpfs"
    source: str  # the volume's name, the host path; "" for a tmpfs
    target: str
    path: str = ""  # what is mounted: the volume's _data, the host path ("" for a tmpfs)
    readonly: bool = False
    mode: str = ""  # Docker's Mode in inspect: "z" for ``-v name:/p``, "ro", ""
    options: str = ""  # a tmpfs's mount options (size=…,mode=…)
    anonymous: bool = False  # made for this container: ``rm -v`` removes it
    nocopy: bool = False  # no copy-up of the image's content
    origin: str = "mounts"  # "binds" (-v), "mounts" (--mount), "volumes" (Config/image)
    propagation: str = ""  # a bind's (BindOptions.Propagation); "" is rprivate
    labels: Mapping[str, str] | None = None  # a new volume's (VolumeOptions.Labels)


class ContainerSpec(NamedTuple):
    """Everything needed to run one container and log for it."""

    id: str
    name: str  # with Docker's leading "/"
    dir: str  # <data-root>/containers/<id>
    created: str  # RFC 3339 with nanoseconds
    image: str  # as the user wrote it ("busybox:latest")
    image_id: str  # "sha256:<64 hex>"
    rootfs: str  # the image's rootfs directory (read-only lower layer)
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    working_dir: str
    user: str
    hostname: str
    labels: Mapping[str, str]
    log_type: str
    log_opts: Mapping[str, str]
    binds: tuple[Bind, ...] = ()
    memory: int = 0  # bytes, 0 = unlimited
    nano_cpus: int = 0  # 1e9 = one CPU
    pids_limit: int = 0  # 0 = unlimited
    network_mode: str = "none"  # "none" | "host" | "bridge"
    runtime: str = "runc"  # "runc" | "crun" | "process"
    restart_policy: str = "no"
    restart_max: int = 0
    auto_remove: bool = False
    security_opt: tuple[str, ...] = ()  # --security-opt, as given (seccomp=<JSON> inline)
    log_plan: LogPlan | None = None  # decided by the registry at create (None: created before)
    mounts: tuple[Mount, ...] = ()  # volumes, --mount; sorted by target, as mounted
    tmpfs: Mapping[str, str] = {}  # --tmpfs path → options (HostConfig.Tmpfs)
    ports: tuple[PortBinding, ...] = ()  # -p / PortBindings (host port 0: chosen at start)
    publish_all: bool = False  # -P
    exposed_ports: tuple[str, ...] = ()  # "80/tcp": the image's EXPOSE and the request's
    network_aliases: tuple[str, ...] = ()  # names it answers to on a user-defined network
    memory_swap: int = 0  # bytes of memory + swap (-1 unlimited, 0 unset); ``update`` sets it
    cpu_shares: int = 0  # relative weight (0 = the kernel's default, 1024)
    cpu_quota: int = 0  # µs per ``cpu_period`` (0 = none); exclusive with nano_cpus
    cpu_period: int = 0  # µs (0 = the kernel's default, 100000)
    host_options: Mapping[str, Any] = {}  # HOST_OPTION_KEYS, checked (runtime.hostopts)
    stop_signal: str = ""  # Config.StopSignal ("": SIGTERM)
    stop_timeout: int | None = None  # Config.StopTimeout (None: 10 s)
    tty: bool = False  # -t: one pty for stdin, stdout and stderr, owned by the shim
    open_stdin: bool = False  # -i: the shim holds the write end of the container's stdin
    stdin_once: bool = False  # the end of the first attach closes stdin (``run -i``)
    attach: tuple[bool, bool, bool] = (False, False, False)  # AttachStdin/Stdout/Stderr
    console_size: tuple[int, int] = (0, 0)  # the pty's initial (height, width); 0: unset
    #: the networks connected besides ``network_mode``, in order (eth1, eth2, ...): name →
    #: {"Aliases": [...], "IPv4Address": "..."} (``network connect``)
    extra_networks: Mapping[str, Mapping[str, Any]] = {}
    dns: tuple[str, ...] = ()  # --dns
    dns_search: tuple[str, ...] = ()  # --dns-search
    dns_options: tuple[str, ...] = ()  # --dns-option
    extra_hosts: tuple[str, ...] = ()  # --add-host, "name:ip" (ip may be "host-gateway")
    domainname: str = ""  # --domainname

    @property
    def argv(self) -> list[str]:
        """The process to run: entrypoint followed by cmd, as Docker composes them."""
        return list(self.entrypoint) + list(self.cmd)

    def plan(self) -> LogPlan:
        """How this container logs: the plan stored at create, else (a container created
        before plans were stored) the registry's answer now."""
        return self.log_plan if self.log_plan is not None else stored_plan(self.log_type, None)

    def log_info(self) -> LogInfo:
        """What the log drivers are told about this container."""
        return LogInfo(container_id=self.id, log_dir=self.dir, config=dict(self.log_opts),
                       container_name=self.name, image_id=self.image_id,
                       image_name=self.image,
                       entrypoint=self.entrypoint[0] if self.entrypoint else "",
                       args=tuple(self.entrypoint[1:]) + tuple(self.cmd) if self.entrypoint
                       else tuple(self.cmd),
                       created=self.created, env=self.env, labels=dict(self.labels))

    # -- the on-disk form, Docker's inspect shape ---------------------------------------

    def to_json(self) -> dict[str, Any]:
        data = {
            "Id": self.id, "Name": self.name, "Created": self.created, "Image": self.image_id,
            "Rootfs": self.rootfs,
            "Config": {"Image": self.image, "Entrypoint": list(self.entrypoint) or None,
                       "Cmd": list(self.cmd) or None, "Env": list(self.env),
                       "WorkingDir": self.working_dir, "User": self.user,
                       "Hostname": self.hostname, "Domainname": self.domainname,
                       "Labels": dict(self.labels),
                       "ExposedPorts": {p: {} for p in self.exposed_ports} or None,
                       "Tty": self.tty, "OpenStdin": self.open_stdin,
                       "StdinOnce": self.stdin_once, "AttachStdin": self.attach[0],
                       "AttachStdout": self.attach[1], "AttachStderr": self.attach[2]},
            "HostConfig": {
                "LogConfig": {"Type": self.log_type, "Config": dict(self.log_opts)},
                "Binds": [f"{b.source}:{b.target}" + (":ro" if b.readonly else "")
                          for b in self.binds] + [
                    f"{m.source}:{m.target}" + (f":{m.mode}" if m.mode != "z" else "")
                    for m in self.mounts if m.origin == "binds"],
                "Mounts": [_mount_json(m) for m in self.mounts if m.origin == "mounts"]
                or None,
                "Tmpfs": dict(self.tmpfs) or None,
                "Memory": self.memory, "NanoCpus": self.nano_cpus,
                "MemorySwap": self.memory_swap, "CpuShares": self.cpu_shares,
                "CpuQuota": self.cpu_quota, "CpuPeriod": self.cpu_period,
                "PidsLimit": self.pids_limit or None, "NetworkMode": self.network_mode,
                "Dns": list(self.dns), "DnsSearch": list(self.dns_search),
                "DnsOptions": list(self.dns_options),
                "ExtraHosts": list(self.extra_hosts) or None,
                "Runtime": self.runtime, "AutoRemove": self.auto_remove,
                "SecurityOpt": list(self.security_opt) or None,
                "PortBindings": to_docker(self.ports), "PublishAllPorts": self.publish_all,
                "ConsoleSize": list(self.console_size),
                "RestartPolicy": {"Name": self.restart_policy,
                                  "MaximumRetryCount": self.restart_max}},
        }
        data["HostConfig"].update(self.host_options)
        if self.stop_signal:
            data["Config"]["StopSignal"] = self.stop_signal
        if self.stop_timeout is not None:
            data["Config"]["StopTimeout"] = self.stop_timeout
        volumes = {m.target: {} for m in self.mounts if m.origin == "volumes"}
        data["Config"]["Volumes"] = volumes or None
        if self.mounts:
            data["MountPoints"] = [m._asdict() for m in self.mounts]
        if self.log_plan is not None:
            data["LogPlan"] = self.log_plan.to_json()
        if self.network_aliases:
            data["NetworkAliases"] = list(self.network_aliases)
        if self.extra_networks:
            data["ExtraNetworks"] = {k: dict(v) for k, v in self.extra_networks.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], directory: str) -> "ContainerSpec":
        cfg, host = data["Config"], data["HostConfig"]
        binds = []
        for text in host.get("Binds") or []:
            parts = text.split(":")
            if not parts[0].startswith("/"):
                continue  # a volume: in MountPoints
            binds.append(Bind(parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
        restart = host.get("RestartPolicy") or {}
        return cls(
            id=data["Id"], name=data["Name"], dir=directory, created=data["Created"],
            image=cfg.get("Image", ""), image_id=data.get("Image", ""),
            rootfs=data.get("Rootfs", ""), entrypoint=tuple(cfg.get("Entrypoint") or ()),
            cmd=tuple(cfg.get("Cmd") or ()), env=tuple(cfg.get("Env") or ()),
            working_dir=cfg.get("WorkingDir", ""), user=cfg.get("User", ""),
            hostname=cfg.get("Hostname", ""), labels=dict(cfg.get("Labels") or {}),
            log_type=host["LogConfig"]["Type"], log_opts=dict(host["LogConfig"].get("Config") or {}),
            binds=tuple(binds), memory=host.get("Memory") or 0,
            nano_cpus=host.get("NanoCpus") or 0, pids_limit=host.get("PidsLimit") or 0,
            network_mode=host.get("NetworkMode") or "none", runtime=host.get("Runtime") or "runc",
            restart_policy=restart.get("Name") or "no",
            restart_max=restart.get("MaximumRetryCount") or 0,
            auto_remove=bool(host.get("AutoRemove")),
            security_opt=tuple(host.get("SecurityOpt") or ()),
            log_plan=LogPlan.from_json(data["LogPlan"]) if data.get("LogPlan") else None,
            mounts=tuple(Mount(**m) for m in data.get("MountPoints") or ()),
            tmpfs=dict(host.get("Tmpfs") or {}),
            ports=from_docker(host.get("PortBindings")),
            publish_all=bool(host.get("PublishAllPorts")),
            exposed_ports=tuple(cfg.get("ExposedPorts") or ()),
            network_aliases=tuple(data.get("NetworkAliases") or ()),
            memory_swap=host.get("MemorySwap") or 0, cpu_shares=host.get("CpuShares") or 0,
            cpu_quota=host.get("CpuQuota") or 0, cpu_period=host.get("CpuPeriod") or 0,
            host_options={k: host[k] for k in HOST_OPTION_KEYS if k in host},
            stop_signal=cfg.get("StopSignal") or "", stop_timeout=cfg.get("StopTimeout"),
            tty=bool(cfg.get("Tty")), open_stdin=bool(cfg.get("OpenStdin")),
            stdin_once=bool(cfg.get("StdinOnce")),
            attach=(bool(cfg.get("AttachStdin")), bool(cfg.get("AttachStdout")),
                    bool(cfg.get("AttachStderr"))),
            console_size=_console_size(host.get("ConsoleSize")),

            extra_networks=dict(data.get("ExtraNetworks") or {}),
            dns=tuple(host.get("Dns") or ()), dns_search=tuple(host.get("DnsSearch") or ()),
            dns_options=tuple(host.get("DnsOptions") or ()),
            extra_hosts=tuple(host.get("ExtraHosts") or ()),
            domainname=cfg.get("Domainname", ""))

    def save(self) -> None:
        write_json_atomic(os.path.join(self.dir, CONFIG_FILE), self.to_json())

    @classmethod
    def load(cls, directory: str) -> "ContainerSpec":
        with open(os.path.join(directory, CONFIG_FILE)) as f:
            return cls.from_json(json.load(f), directory)


def _console_size(value: Any) -> tuple[int, int]:
    """``HostConfig.ConsoleSize`` ([height, width]) as stored; (0, 0) when unset."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return value[0], value[1]
    return 0, 0


def _mount_json(m: Mount) -> dict[str, Any]:
    """One ``HostConfig.Mounts`` item as the client sent it (Docker's ``mount.Mount``)."""
    out: dict[str, Any] = {"Type": m.type, "Source": m.source, "Target": m.target}
    if m.readonly:
        out["ReadOnly"] = True
    if m.nocopy or m.labels:
        out["VolumeOptions"] = {"NoCopy": m.nocopy, "Labels": m.labels}
    if m.propagation:
        out["BindOptions"] = {"Propagation": m.propagation}
    return out


def read_json_object(path: str) -> dict[str, Any]:
    """A JSON object from ``path``; {} when it is missing, torn or not an object (what a
    crash in the middle of writing one may leave)."""
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_json_atomic(path: str, data: Any) -> None:
    """Write-then-rename, with fsync: a reader (or a crash) never sees half a file."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
