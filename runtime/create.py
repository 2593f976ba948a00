"""Create: a ``POST /containers/create`` request, checked, becomes a ``ContainerSpec``.

Pure apart from what it must look up (the image, already resolved by the caller; the
runtimes and log drivers installed): it writes nothing, so a create that fails leaves
nothing behind. Docker's checks, in Docker's order, with Docker's words. The store
(``runtime.containers``) owns names and ids and writes the container once this has passed.
"""

from __future__ import annotations

import ipaddress
import os
import re

from logpipe.errors import DriverInitError, InvalidParameter, NotFound
from logpipe.registry import log_plan, validate_log_config

from . import hostopts, schema
from .config import DaemonConfig, merge_log_config
from .executors import available_runtimes, default_runtime, get_executor
from .images import Image
from .mounts import container_mounts
from .network import netavark, ports, store
from .restart import restart_policy
from .seccomp import has_profile, parse_security_opt
from .spec import ContainerSpec
from .state import now_rfc3339

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
#: Docker refuses memory limits under 6 MB (daemon/daemon_unix.go).
MIN_MEMORY = 6 * 1024 * 1024
#: Linux's limit on a hostname (sethostname fails beyond it).
HOST_NAME_MAX = 64
PROCESS_WARNING = ("runtime process: the container runs directly on the host, with no "
                   "isolation (no namespaces, no root filesystem, no resource limits, no "
                   "seccomp filter)")
SECCOMP_WARNING = ("runtime process: the seccomp profile of --security-opt is not applied "
                   "(only the runc and crun runtimes apply one)")


def container_name(name: str) -> str:
    """The name a user gave (``?name=``), without Docker's leading "/"; Docker's text when
    it cannot be a container's name."""
    name = name[1:] if name.startswith("/") else name
    if not NAME_RE.fullmatch(name):
        raise InvalidParameter(f"Invalid container name ({name}), only "
                               "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name


def requested_image(req: schema.ContainerCreate) -> str:
    """The image the request names, as written (resolved by the caller)."""
    image_ref = req.Image or ""
    if not image_ref:
        raise InvalidParameter("No image specified")
    return image_ref


def container_spec(req: schema.ContainerCreate, name: str, image_ref: str, image: Image,
                   cid: str, cdir: str, config: DaemonConfig) -> tuple[ContainerSpec, list[str]]:
    """The spec of a new container ``cid`` named ``name`` (checked), to be written in
    ``cdir``, and the warnings of the answer; ``InvalidParameter`` in Docker's words."""
    host = req.HostConfig or schema.HostConfig()
    icfg = schema.image_config(image_ref, image.config)

    entrypoint = _str_slice(req.Entrypoint)
    cmd = _str_slice(req.Cmd)
    if entrypoint is None:
        entrypoint = list(icfg.Entrypoint or [])
        if cmd is None:
            cmd = list(icfg.Cmd or [])
    cmd = cmd or []
    if not entrypoint and not cmd:
        raise InvalidParameter("No command specified")
    env = _merge_env(icfg.Env or [], req.Env or [])
    labels = req.Labels or {}
    working_dir = req.WorkingDir or icfg.WorkingDir or ""
    if working_dir and not working_dir.startswith("/"):
        raise InvalidParameter(f"the working directory '{working_dir}' is invalid, it needs "
                               "to be an absolute path")
    hostname = req.Hostname or ""
    if hostname and (len(hostname.encode()) > HOST_NAME_MAX
                     or any(ch.isspace() or not ch.isprintable() for ch in hostname)):
        raise InvalidParameter(f"invalid hostname format: {hostname}")
    user = req.User or icfg.User or ""
    _no_nul(("Entrypoint", entrypoint), ("Cmd", cmd), ("Env", env),
            ("WorkingDir", [working_dir]), ("User", [user]))

    runtime = host.Runtime or config.default_runtime or default_runtime()
    get_executor(runtime)
    if runtime not in available_runtimes():
        raise InvalidParameter(f"unknown or invalid runtime name: {runtime}")
    warnings = [PROCESS_WARNING] if runtime == "process" else []
    security_opt = parse_security_opt(host.SecurityOpt)
    if runtime == "process" and has_profile(security_opt):
        warnings.append(SECCOMP_WARNING)

    policy, max_retry = restart_policy(host.RestartPolicy or schema.RestartPolicy())
    auto_remove = bool(host.AutoRemove)
    if auto_remove and policy != "no":
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
    network = host.NetworkMode or "default"
    if network in ("default", "bridge"):
        network = netavark.default_mode(get_executor(runtime).isolated)
    if network.startswith("container:"):  # stored with the full id, as Docker does
        other = netavark.find_container(config.data_root, network.partition(":")[2])
        if other is None:
            raise NotFound(f"No such container: {network.partition(':')[2]}")
        network = f"container:{other}"
    elif network not in ("none", "host", "bridge"):
        network = store.resolve(config.data_root, network).name  # NotFound: Docker's 404
    endpoints = (req.NetworkingConfig or schema.NetworkingConfig()).EndpointsConfig or {}
    if len(endpoints) > 1:  # API < 1.44: one network at create, ``network connect`` after
        raise InvalidParameter("Container cannot be connected to network endpoints: "
                               + ", ".join(endpoints))
    aliases = []
    for ep_name, ep in endpoints.items():
        if ep is not None and ep_name in (network, host.NetworkMode):
            aliases += [a for a in ep.Aliases or [] if isinstance(a, str) and a]
    dns = dns_fields(host, req.Domainname or "")
    bindings = ports.from_request(host.PortBindings)
    exposed = dict.fromkeys(ports.split_port_key(k) for k in
                            [*(image.config.get("ExposedPorts") or {}),
                             *(req.ExposedPorts or {})])
    exposed.update(dict.fromkeys((b.container_port, b.proto) for b in bindings))
    memory = host.Memory or 0
    if 0 < memory < MIN_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    nano_cpus = host.NanoCpus or 0
    ncpu = os.cpu_count() or 1
    if nano_cpus < 0 or nano_cpus > ncpu * 10**9:
        raise InvalidParameter(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are "
                               f"only {ncpu} CPUs available")
    pids_limit = max(0, host.PidsLimit or 0)
    binds, mounts, tmpfs = container_mounts(req, host, icfg.Volumes, config.data_root)
    host_options = dict(hostopts.extras(host, name, memory, network, config.data_root))
    # The limits ``update`` may change live in the spec's own fields (one home each).
    limits = {key: host_options.pop(key, 0) or 0 for key in hostopts.SPEC_LIMITS}
    if req.StopSignal:
        from .containers import parse_signal

        parse_signal(req.StopSignal)  # Docker's "Invalid signal: X" at create

    lc = host.LogConfig or schema.LogConfig()
    log_type, log_opts = merge_log_config(config, lc.Type or "", lc.Config or {})
    spec = ContainerSpec(
        id=cid, name="/" + name, dir=cdir, created=now_rfc3339(), image=image_ref,
        image_id=image.id, rootfs=image.rootfs, entrypoint=tuple(entrypoint),
        cmd=tuple(cmd), env=tuple(env), working_dir=working_dir, user=user,
        hostname=hostname or cid[:12], labels=dict(labels),
        log_type=log_type, log_opts=log_opts, binds=binds, memory=memory,
        nano_cpus=nano_cpus, pids_limit=pids_limit, network_mode=network,
        runtime=runtime, restart_policy=policy, restart_max=max_retry,
        auto_remove=auto_remove, security_opt=security_opt, ports=bindings,
        publish_all=bool(host.PublishAllPorts),
        exposed_ports=tuple(f"{p}/{proto}" for p, proto in exposed),
        network_aliases=tuple(dict.fromkeys(aliases)), host_options=host_options,
        memory_swap=limits["MemorySwap"], cpu_shares=limits["CpuShares"],
        cpu_quota=limits["CpuQuota"], cpu_period=limits["CpuPeriod"],
        stop_signal=req.StopSignal or "", stop_timeout=req.StopTimeout, **_stdio(req, host), **dns)
    if log_type != "none":  # Docker skips all validation for "none" (§2.1)
        try:
            validate_log_config(log_type, log_opts, spec.log_info())
        except DriverInitError as err:  # Docker finds these at start: its words
            raise InvalidParameter(f"failed to initialize logging driver: {err}") from None
    spec = spec._replace(log_plan=log_plan(log_type))  # decided once, kept with it
    spec = spec._replace(mounts=mounts, tmpfs=tmpfs)
    return spec, warnings


def _stdio(req: schema.ContainerCreate, host: schema.HostConfig) -> dict:
    """The container's terminal and stdin (``-t``, ``-i``), as the client asked. ConsoleSize
    is Go's ``[2]uint``: missing items are 0, extra ones ignored."""
    size = (list(host.ConsoleSize or []) + [0, 0])[:2]
    return {"tty": bool(req.Tty), "open_stdin": bool(req.OpenStdin),
            "stdin_once": bool(req.StdinOnce),
            "attach": (bool(req.AttachStdin), bool(req.AttachStdout), bool(req.AttachStderr)),
            "console_size": (size[0], size[1])}


def dns_fields(host: schema.HostConfig, domainname: str) -> dict:
    """``Dns``, ``DnsSearch``, ``DnsOptions``, ``ExtraHosts`` and ``Domainname``, checked
    (the docker CLI's words): the spec's fields of the same names."""
    for ip in host.Dns or []:
        if not _is_ip(ip):
            raise InvalidParameter(f"{ip} is not an ip address")
    for item in host.ExtraHosts or []:
        name, sep, ip = item.partition(":")
        if not sep or not name:
            raise InvalidParameter(f'bad format for add-host: "{item}"')
        if ip != "host-gateway" and not _is_ip(ip):
            raise InvalidParameter(f'invalid IP address in add-host: "{ip}"')
    if domainname and (len(domainname.encode()) > HOST_NAME_MAX or any(
            ch.isspace() or not ch.isprintable() for ch in domainname)):
        raise InvalidParameter(f"invalid domainname format: {domainname}")
    return {"dns": tuple(host.Dns or ()), "dns_search": tuple(host.DnsSearch or ()),
            "dns_options": tuple(host.DnsOptions or ()),
            "extra_hosts": tuple(host.ExtraHosts or ()), "domainname": domainname}


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _str_slice(value: list[str] | str | None) -> list[str] | None:
    """Docker's ``strslice``: a string is a list of one."""
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _no_nul(*fields: tuple[str, list[str]]) -> None:
    """Strings that end up in ``execve`` (argv, environment, cwd) cannot hold a NUL byte: a
    start would fail on it, so create refuses it."""
    for field, values in fields:
        for value in values:
            if "\0" in value:
                raise InvalidParameter(f"invalid {field} {value!r}: it contains a NUL byte")


def _merge_env(image_env: list[str], env: list[str]) -> list[str]:
    """The image's environment overridden, key by key, by the container's (Docker)."""
    merged: dict[str, str] = {}
    for item in list(image_env) + list(env):
        merged[item.split("=", 1)[0]] = item
    return list(merged.values())
