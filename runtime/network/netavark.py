"""A container's endpoint on a bridge network, set up and torn down by netavark.

netavark takes JSON on stdin (the network, the container's static IP, its port mappings)
and a network namespace path; it creates the bridge, the veth pair, the routes, the
NAT/forwarding rules (DNAT of published ports, on loopback too: it sets ``route_localnet``
on the bridge) and enables ``net.ipv4.ip_forward``. It does no IPAM and reserves no port:
both are done here, under one file lock, from the endpoint files of the other containers.

A container has one endpoint per network it is on (eth0 on ``HostConfig.NetworkMode``,
eth1... on those ``network connect`` added), all in its one namespace. Each has an endpoint
file (``<data-root>/network/endpoints/<id>@<network>.json``), written *before* its setup, so
that whatever a crash leaves (namespace, veth, rules) is found and torn down by the next
teardown: at the container's exit, at ``rm``, or by the daemon's restart.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import json
import os
import shutil
import socket
import subprocess
from contextlib import contextmanager
from typing import Any, Iterator

from logpipe.errors import LogpipeError

from runtime.spec import ContainerSpec, read_json_object, write_json_atomic

from . import netns, ports, store

CANDIDATES = ("/usr/libexec/podman/netavark", "/usr/lib/podman/netavark")
AARDVARK = ("/usr/libexec/podman/aardvark-dns", "/usr/lib/podman/aardvark-dns")
SETUP_TIMEOUT = 30.0
HOST_LOCK = "/run/lock/logpipe-network.lock" if os.path.isdir("/run/lock") else \
    "/tmp/logpipe-network.lock"
RANDOM_PORT_TRIES = 50


class NetworkError(LogpipeError):
    """The container's network could not be set up (Docker's words where it has some)."""


def binary() -> str | None:
    """netavark's path (Debian installs it out of ``$PATH``), None when not installed."""
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("netavark")


def default_mode(isolated: bool) -> str:
    """The network of a container created without ``--network``: Docker's ``bridge`` when
    the container is isolated and netavark can set it up (root), else ``none``."""
    return "bridge" if isolated and os.geteuid() == 0 and binary() is not None else "none"


def uses_netns(spec: ContainerSpec) -> bool:
    """The container is on a bridge network (the default or a user-defined one)."""
    return spec.network_mode not in ("none", "host") and not spec.network_mode.startswith(
        "container:")


def find_container(data_root: str, ref: str) -> str | None:
    """The id of the container named ``ref`` (or with that id or unique id prefix)."""
    cdir = os.path.join(data_root, "containers")
    try:
        ids = [e for e in os.listdir(cdir) if len(e) == 64]
    except FileNotFoundError:
        return None
    if ref in ids:
        return ref
    for cid in ids:
        try:
            with open(os.path.join(cdir, cid, "config.json")) as f:
                if json.load(f).get("Name") == "/" + ref.lstrip("/"):
                    return cid
        except (OSError, ValueError, AttributeError):
            continue
    matches = [cid for cid in ids if ref and cid.startswith(ref)]
    return matches[0] if len(matches) == 1 else None


def joined_netns(spec: ContainerSpec) -> str:
    """``--network container:<id>``: the namespace of that container, which must run (its
    bind-mounted one on a bridge network, else its init's)."""
    data_root = data_root_of(spec)
    other = spec.network_mode.partition(":")[2]
    record = endpoint(data_root, other)
    if record is not None:
        return record["NetNS"]
    try:
        with open(os.path.join(data_root, "containers", other, "state.json")) as f:
            state = json.load(f)
    except (OSError, ValueError):
        state = {}
    pid = state.get("Pid") or 0 if state.get("Running") else 0
    if not pid or not os.path.exists(f"/proc/{pid}/ns/net"):
        raise NetworkError(f"cannot join network of a non running container: {other}")
    return f"/proc/{pid}/ns/net"


def host_gateway(data_root: str) -> str:
    """``--add-host x:host-gateway``: the default bridge's gateway (Docker's docker0
    address), the host as the containers reach it."""
    net = store.load(data_root, store.DEFAULT_NETWORK)
    return net.gateway if net is not None else "127.0.0.1"


def data_root_of(spec: ContainerSpec) -> str:
    """``<data-root>/containers/<id>`` → ``<data-root>``."""
    return os.path.dirname(os.path.dirname(spec.dir))


def netns_path(spec: ContainerSpec) -> str:
    return netns.netns_path(data_root_of(spec), spec.id)


def _endpoint_dir(data_root: str) -> str:
    return store.endpoint_dir(data_root)


def _endpoint_file(data_root: str, cid: str, network: str) -> str:
    return os.path.join(_endpoint_dir(data_root), f"{cid}@{network}.json")


def _record_files(data_root: str, cid: str) -> list[str]:
    """The endpoint files of ``cid``: one per network (``<id>@<network>.json``), and the
    ``<id>.json`` of a container started by an earlier logpipe (one network)."""
    try:
        entries = os.listdir(_endpoint_dir(data_root))
    except FileNotFoundError:
        return []
    return [os.path.join(_endpoint_dir(data_root), e) for e in entries
            if e.endswith(".json") and (e == f"{cid}.json" or e.startswith(f"{cid}@"))]


def records(data_root: str, cid: str) -> dict[str, dict[str, Any]]:
    """The container's endpoints that are set up, by network name, in interface order
    (eth0 first): what ``inspect`` shows while it runs."""
    out = []
    for path in _record_files(data_root, cid):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("IPAddress") and data.get("EndpointID"):
            out.append(data)
    out.sort(key=lambda r: _iface_index(r.get("Interface") or "eth0"))
    return {r["Network"]: r for r in out}


def _iface_index(name: str) -> int:
    return int(name[3:]) if name.startswith("eth") and name[3:].isdigit() else 0


def endpoint(data_root: str, cid: str) -> dict[str, Any] | None:
    """The container's first endpoint (eth0's: its published ports), None without one."""
    return next(iter(records(data_root, cid).values()), None)


@contextmanager
def locked(data_root: str) -> Iterator[None]:
    """One setup or teardown at a time on the host: addresses and ports are allocated
    from this data root's records, and subnets against the host's routes, which other
    daemons (other data roots) change too."""
    os.makedirs(_endpoint_dir(data_root), exist_ok=True)
    fds = []
    try:
        for path in (HOST_LOCK, os.path.join(store.network_dir(data_root), "lock")):
            fds.append(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
            fcntl.flock(fds[-1], fcntl.LOCK_EX)
        yield
    finally:
        for fd in fds:
            os.close(fd)


def _others(data_root: str, cid: str) -> list[dict[str, Any]]:
    return [ep for key, ep in store.endpoints(data_root).items()
            if key.partition("@")[0] != cid]


def _host_port_free(proto: str, ip: str, port: int) -> bool:
    """Nothing on the host listens on ``ip:port`` (a process, or another daemon's proxy)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as s:
        # SO_REUSEADDR: a connection in TIME_WAIT is no user of the port; a listener still is.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip or "0.0.0.0", port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _allocate_ports(wanted: list[ports.PortBinding],
                    others: list[dict[str, Any]]) -> list[ports.PortBinding]:
    taken = {(p[1], p[2], p[3]) for o in others for p in o.get("PortList", [])}

    def clash(b: ports.PortBinding) -> bool:
        return any(proto == b.proto and port == b.host_port and
                   (not ip or not b.host_ip or ip == b.host_ip) for proto, ip, port in taken)

    out: list[ports.PortBinding] = []
    for b in wanted:
        if b.host_port == 0:
            for _ in range(RANDOM_PORT_TRIES):
                kind = socket.SOCK_DGRAM if b.proto == "udp" else socket.SOCK_STREAM
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((b.host_ip or "0.0.0.0", 0))  # the kernel's ephemeral range
                    candidate = b._replace(host_port=s.getsockname()[1])
                if not clash(candidate) and candidate[1:] not in {o[1:] for o in out}:
                    b = candidate
                    break
            else:
                raise NetworkError("no free host port for " + b.key)
        elif clash(b) or b[1:] in {o[1:] for o in out} or not _host_port_free(
                b.proto, b.host_ip, b.host_port):
            raise NetworkError(f"Bind for {b.host_ip or '0.0.0.0'}:{b.host_port} failed: "
                               "port is already allocated")
        out.append(b)
        taken.add((b.proto, b.host_ip, b.host_port))
    return out


def _free_ip(net: store.Network, others: list[dict[str, Any]]) -> str:
    used = {o.get("IPAddress") for o in others if o.get("Network") == net.name} | {net.gateway}
    for ip in ipaddress.IPv4Network(net.ip_range or net.subnet).hosts():
        if str(ip) not in used and int(ip) & 0xFF != 0:
            return str(ip)
    raise NetworkError(f"no available IPv4 addresses on network {net.name}")


def _request(spec: ContainerSpec, net: store.Network, ip: str, iface: str,
             aliases: tuple[str, ...], mappings: list[ports.PortBinding]) -> dict[str, Any]:
    return {
        "container_id": spec.id, "container_name": spec.name.lstrip("/"),
        "port_mappings": [{"host_ip": b.host_ip, "container_port": b.container_port,
                           "host_port": b.host_port, "range": 1, "protocol": b.proto}
                          for b in mappings],
        "networks": {net.name: {"static_ips": [ip], "interface_name": iface,
                                "aliases": list(dict.fromkeys([*aliases, spec.id[:12]]))}},
        "network_info": {net.name: {
            "name": net.name, "id": net.id, "driver": "bridge",
            "network_interface": net.interface,
            "subnets": [{"subnet": net.subnet, "gateway": net.gateway}],
            "ipv6_enabled": False, "internal": net.internal, "dns_enabled": net.dns,
            "ipam_options": {"driver": "host-local"}}},
    }


def _netavark(data_root: str, verb: str, path: str, request: dict[str, Any]) -> dict[str, Any]:
    exe = binary()
    if exe is None:
        raise NetworkError("netavark is not installed (apt-get install netavark aardvark-dns)")
    config_dir = os.path.join(data_root, "run", "netavark")
    os.makedirs(config_dir, exist_ok=True)
    aardvark = next((p for p in AARDVARK if os.access(p, os.X_OK)), None)
    extra = ["--aardvark-binary", aardvark] if aardvark else []
    try:
        r = subprocess.run([exe, "--config", config_dir, *extra, verb, path],
                           input=json.dumps(request).encode(), capture_output=True,
                           timeout=SETUP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise NetworkError(f"netavark {verb}: {err}") from None
    if r.returncode != 0:
        text = r.stderr.decode(errors="replace").strip() or r.stdout.decode(errors="replace")
        try:
            text = json.loads(text).get("error", text)
        except (ValueError, AttributeError):
            pass
        raise NetworkError(f"netavark {verb} failed: {text}")
    return json.loads(r.stdout or b"{}") if verb == "setup" else {}


def networks_of(spec: ContainerSpec) -> list[tuple[str, tuple[str, ...], str]]:
    """The container's networks in interface order: (name, aliases, requested IPv4)."""
    out = [(spec.network_mode, tuple(spec.network_aliases), "")] if uses_netns(spec) else []
    for name, ep in spec.extra_networks.items():
        out.append((name, tuple(ep.get("Aliases") or ()), ep.get("IPv4Address") or ""))
    return out


def attach(spec: ContainerSpec) -> dict[str, dict[str, Any]]:
    """Set up the container's namespace and its endpoint on each of its networks (eth0,
    eth1, ... in order; the published ports on eth0's); returns the records by network.
    When the daemon started the setup beside the shim's start-up (``EarlySetup``), its
    outcome is waited for and taken instead.

    Any half-built state is torn down before the error is raised: a failed start leaves
    no namespace, veth, rule or address behind."""
    from .early import EarlySetup  # imports this module

    early = EarlySetup.outcome(spec)
    if early is not None:
        return early
    return setup_all(spec)


def setup_all(spec: ContainerSpec) -> dict[str, dict[str, Any]]:
    """``attach``'s work, whoever does it (the shim, or the daemon beside its start-up)."""
    data_root = data_root_of(spec)
    detach(spec)  # whatever a previous run of this container left
    path = netns.netns_path(data_root, spec.id)
    with locked(data_root):
        try:
            netns.create(path)
            out = {}
            for i, (name, aliases, ip) in enumerate(networks_of(spec)):
                out[name] = _setup(spec, name, f"eth{i}", aliases, ip, publish=i == 0)
            return out
        except BaseException:
            _teardown_all_of(data_root, spec.id)
            raise


def _setup(spec: ContainerSpec, name: str, iface: str, aliases: tuple[str, ...], ip: str,
           publish: bool) -> dict[str, Any]:
    """One endpoint (held lock, namespace made): the address, the ports, netavark setup;
    the record written before (a crash is torn down later) and completed after."""
    data_root = data_root_of(spec)
    try:
        net = store.repick_if_taken(data_root, store.resolve(data_root, name))
    except LogpipeError as err:
        raise NetworkError(str(err)) from None
    others = _others(data_root, spec.id)
    mappings: list[ports.PortBinding] = []
    if publish:
        try:
            mappings = _allocate_ports(
                ports.effective(spec.ports, spec.publish_all, spec.exposed_ports), others)
        except NetworkError as err:
            raise NetworkError(f"driver failed programming external connectivity on endpoint "
                               f"{spec.name.lstrip('/')} ({spec.id}): {err}") from None
    ip = _static_ip(net, ip, others) if ip else _free_ip(net, others)
    request = _request(spec, net, ip, iface, aliases, mappings)
    path = netns.netns_path(data_root, spec.id)
    record: dict[str, Any] = {
        "Network": net.name, "NetworkID": net.id, "EndpointID": "", "NetNS": path,
        "ContainerID": spec.id, "Name": spec.name.lstrip("/"), "Aliases": list(aliases),
        "Interface": iface, "Request": request, "IPAddress": ip,
        "PortList": [list(b) for b in mappings]}
    efile = _endpoint_file(data_root, spec.id, net.name)
    write_json_atomic(efile, record)
    try:
        result = _netavark(data_root, "setup", path, request)
    except BaseException:
        _teardown(data_root, record)
        os.unlink(efile)
        raise
    found = (result.get(net.name) or {}).get("interfaces", {}).get(iface, {})
    subnet = (found.get("subnets") or [{}])[0]
    ipnet = ipaddress.IPv4Interface(subnet.get("ipnet") or f"{ip}/32")
    record.update({
        "EndpointID": os.urandom(32).hex(), "IPAddress": str(ipnet.ip),
        "IPPrefixLen": ipnet.network.prefixlen,
        "Gateway": subnet.get("gateway") or net.gateway,
        "MacAddress": found.get("mac_address", ""),
        "DNS": (result.get(net.name) or {}).get("dns_server_ips") or []})
    write_json_atomic(efile, record)
    return record


def _static_ip(net: store.Network, ip: str, others: list[dict[str, Any]]) -> str:
    """``IPAMConfig.IPv4Address``: in the subnet, not the gateway, not taken (Docker's
    words)."""
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        raise NetworkError(f"invalid IPv4 address: {ip}") from None
    if addr not in ipaddress.IPv4Network(net.subnet) or ip == net.gateway or any(
            o.get("IPAddress") == ip and o.get("Network") == net.name for o in others):
        raise NetworkError("Address already in use" if addr in ipaddress.IPv4Network(
            net.subnet) else f"no configured subnet contains IP address {ip}")
    return ip


def connect(spec: ContainerSpec, name: str, aliases: tuple[str, ...],
            ip: str = "") -> dict[str, Any]:
    """``network connect`` of a running container: one more interface in its namespace
    (the next free ethN); NetworkError if the container has no namespace of its own."""
    data_root = data_root_of(spec)
    path = netns.netns_path(data_root, spec.id)
    with locked(data_root):
        if not netns.is_mounted(path):
            raise NetworkError(f"container {spec.id} is not running")
        used = {_iface_index(r.get("Interface") or "eth0")
                for r in _raw_records(data_root, spec.id)}
        iface = f"eth{next(i for i in range(len(used) + 1) if i not in used)}"
        return _setup(spec, name, iface, aliases, ip, publish=False)


def disconnect(spec: ContainerSpec, name: str) -> bool:
    """Tear down the container's endpoint on ``name`` (its interface, its names in the
    network's DNS, its address); False when it has none there."""
    data_root = data_root_of(spec)
    with locked(data_root):
        for path in _record_files(data_root, spec.id):
            record = read_json_object(path)
            if record.get("Network") == name:
                _teardown(data_root, record, keep_netns=True)
                os.unlink(path)
                return True
    return False



def _raw_records(data_root: str, cid: str) -> list[dict[str, Any]]:
    return [read_json_object(p) for p in _record_files(data_root, cid)]


def _teardown(data_root: str, record: dict[str, Any], keep_netns: bool = False) -> None:
    path = record.get("NetNS") or ""
    if path and record.get("Request") and netns.is_mounted(path):
        try:
            _netavark(data_root, "teardown", path, record["Request"])
        except NetworkError:
            pass  # half set up: what exists was removed; the namespace goes anyway
    if path and not keep_netns:
        netns.delete(path)


def _teardown_all_of(data_root: str, cid: str) -> None:
    """Every endpoint of ``cid`` torn down (lock held), then its namespace deleted."""
    for path in _record_files(data_root, cid):
        _teardown(data_root, read_json_object(path), keep_netns=True)
        os.unlink(path)
    netns.delete(netns.netns_path(data_root, cid))


def detach(spec: ContainerSpec) -> None:
    """Tear the container's endpoints down (netavark teardown of each network, namespace
    unmounted and deleted, addresses and ports released); nothing when it has none. It
    reads the endpoint records, not the spec: a network connected while the container
    ran is torn down too by a shim that loaded the spec before."""
    data_root = data_root_of(spec)
    if not _record_files(data_root, spec.id):
        if os.path.lexists(netns.netns_path(data_root, spec.id)):
            netns.delete(netns.netns_path(data_root, spec.id))
        return
    with locked(data_root):
        _teardown_all_of(data_root, spec.id)


def teardown_all(data_root: str) -> int:
    """Tear down every endpoint recorded under ``data_root`` (a data root being deleted,
    whose daemon is gone); the count torn down."""
    try:
        entries = os.listdir(_endpoint_dir(data_root))
    except FileNotFoundError:
        return 0
    cids = dict.fromkeys(e[:-5].partition("@")[0] for e in entries if e.endswith(".json"))
    for cid in cids:
        spec_dir = os.path.join(data_root, "containers", cid)
        detach(ContainerSpec(cid, "", spec_dir, "", "", "", "", (), (), (), "", "", "", {}, "",
                             {}))
    return len(cids)
