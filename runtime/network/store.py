"""The networks the daemon knows, persisted under ``<data-root>/network/networks``.

Docker's predefined networks: ``bridge`` (a Linux bridge, ``logpipe0`` for the system
daemon's data root and a name derived from the data root otherwise, so that two daemons on
one host never share one; its subnet from ``daemon.json``'s ``bip``, else the first /16 of
172.17-31.x, then 10.x, that no route of the host covers, Docker's rule), ``host`` and
``none``; and user-defined bridge networks (``POST /networks/create``, docker-compose's
``<project>_default``), whose containers resolve each other by name and alias through
aardvark-dns. The shims read these files at each start.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
from typing import Any, Mapping, NamedTuple

from logpipe.errors import Conflict, InvalidParameter, NotFound

from runtime.spec import write_json_atomic
from runtime.state import now_rfc3339

DEFAULT_NETWORK = "bridge"
PREDEFINED = ("bridge", "host", "none")
SYSTEM_DATA_ROOT = "/var/lib/logpipe"


class Network(NamedTuple):
    name: str
    id: str
    created: str
    interface: str  # the Linux bridge
    subnet: str  # "172.17.0.0/16"
    gateway: str  # "172.17.0.1"
    labels: Mapping[str, str] = {}
    internal: bool = False
    dns: bool = False  # aardvark-dns: names resolve (user-defined networks, as in Docker)
    auto: bool = False  # the subnet was picked by logpipe (not bip, not --subnet)
    ip_range: str = ""  # --ip-range: the addresses handed out (within the subnet)

    def to_json(self) -> dict[str, Any]:
        return {"Name": self.name, "Id": self.id, "Created": self.created,
                "Interface": self.interface, "Subnet": self.subnet, "Gateway": self.gateway,
                "Labels": dict(self.labels), "Internal": self.internal, "DNS": self.dns,
                "Auto": self.auto, "IPRange": self.ip_range}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Network":
        return cls(d["Name"], d["Id"], d["Created"], d["Interface"], d["Subnet"], d["Gateway"],
                   dict(d.get("Labels") or {}), bool(d.get("Internal")), bool(d.get("DNS")),
                   bool(d.get("Auto")), d.get("IPRange") or "")


def network_dir(data_root: str) -> str:
    return os.path.join(data_root, "network")


def _dir(data_root: str) -> str:
    return os.path.join(network_dir(data_root), "networks")


def _file(data_root: str, name: str) -> str:
    return os.path.join(_dir(data_root), f"{name}.json")


def endpoint_dir(data_root: str) -> str:
    return os.path.join(network_dir(data_root), "endpoints")


def endpoints(data_root: str) -> dict[str, dict[str, Any]]:
    """The endpoint records of the containers that have one (they run), by file name
    (``<container id>@<network>``; ``<container id>`` alone for one written by an earlier
    logpipe)."""
    out = {}
    try:
        entries = os.listdir(endpoint_dir(data_root))
    except FileNotFoundError:
        return out
    for entry in entries:
        if entry.endswith(".json"):
            try:
                with open(os.path.join(endpoint_dir(data_root), entry)) as f:
                    out[entry[:-5]] = json.load(f)
            except (OSError, ValueError):
                continue
    return out


def bridge_interface(data_root: str, name: str = DEFAULT_NETWORK) -> str:
    if name == DEFAULT_NETWORK and os.path.abspath(data_root) == SYSTEM_DATA_ROOT:
        return "logpipe0"
    key = os.path.abspath(data_root) + ("" if name == DEFAULT_NETWORK else "\0" + name)
    return "lp-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def host_routes(exclude_iface: str = "") -> list[ipaddress.IPv4Network]:
    """The IPv4 destinations the host routes (``/proc/net/route``), default route aside."""
    out = []
    try:
        with open("/proc/net/route") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[0] == exclude_iface:
            continue
        dest = int(fields[1], 16).to_bytes(4, "little")
        mask = int(fields[7], 16).to_bytes(4, "little")
        if mask == b"\0\0\0\0":
            continue
        out.append(ipaddress.IPv4Network((ipaddress.IPv4Address(dest),
                                          ipaddress.IPv4Address(mask).exploded), strict=False))
    return out


def free_subnet(exclude_iface: str = "",
                taken: list[ipaddress.IPv4Network] | None = None) -> ipaddress.IPv4Network:
    """The first /16 of 172.17-31, then 10.0-255, that no host route and no network of
    ``taken`` overlaps."""
    busy = host_routes(exclude_iface) + list(taken or [])
    candidates = [f"172.{i}.0.0/16" for i in range(17, 32)] + [f"10.{i}.0.0/16"
                                                                for i in range(256)]
    for text in candidates:
        net = ipaddress.IPv4Network(text)
        if not any(net.overlaps(r) for r in busy):
            return net
    raise InvalidParameter("could not find an available, non-overlapping IPv4 address pool "
                           "among the defaults to assign to the network")


def parse_bip(bip: str) -> tuple[str, str]:
    """``bip`` ("172.26.0.1/16"): the bridge's own address and its network → (subnet, gw)."""
    try:
        iface = ipaddress.IPv4Interface(bip)
    except ValueError:
        raise InvalidParameter(f"invalid bip: {bip!r}: an IPv4 address with a prefix "
                               "length is expected (172.26.0.1/16)") from None
    if iface.network.prefixlen > 30 or iface.ip == iface.network.network_address:
        raise InvalidParameter(f"invalid bip: {bip!r}")
    return str(iface.network), str(iface.ip)


def _taken(data_root: str, but: str = "") -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Network(n.subnet) for n in load_all(data_root) if n.name != but]


def ensure_default(data_root: str, bip: str = "") -> Network:
    """The ``bridge`` network, created or updated at daemon start: ``bip`` wins; a stored
    subnet is kept (running containers hold addresses in it); else a free one."""
    iface = bridge_interface(data_root)
    old = load(data_root, DEFAULT_NETWORK)
    auto = not bip
    if bip:
        subnet, gateway = parse_bip(bip)
    elif old is not None and old.auto:
        subnet, gateway = old.subnet, old.gateway
    else:
        net = free_subnet(iface, _taken(data_root, DEFAULT_NETWORK))
        subnet, gateway = str(net), str(net.network_address + 1)
    net = Network(DEFAULT_NETWORK, old.id if old else secrets.token_hex(32),
                  old.created if old else now_rfc3339(), iface, subnet, gateway, auto=auto)
    if net != old:
        os.makedirs(_dir(data_root), exist_ok=True)
        write_json_atomic(_file(data_root, DEFAULT_NETWORK), net.to_json())
    return net


def repick_if_taken(data_root: str, net: Network) -> Network:
    """An automatic subnet that the host routes elsewhere by now (another daemon's bridge,
    a VPN that came up) is replaced by a free one, while the network is unused (its bridge
    does not exist): checked at each first attach, under the host-wide lock."""
    if not net.auto or os.path.exists(f"/sys/class/net/{net.interface}"):
        return net
    mine = ipaddress.IPv4Network(net.subnet)
    if not any(mine.overlaps(r) for r in host_routes(net.interface)):
        return net
    new = free_subnet(net.interface, _taken(data_root, net.name))
    net = net._replace(subnet=str(new), gateway=str(new.network_address + 1))
    write_json_atomic(_file(data_root, net.name), net.to_json())
    return net


def load(data_root: str, name: str) -> Network | None:
    try:
        with open(_file(data_root, name)) as f:
            return Network.from_json(json.load(f))
    except (OSError, ValueError, KeyError):
        return None


def load_all(data_root: str) -> list[Network]:
    try:
        names = sorted(e[:-5] for e in os.listdir(_dir(data_root)) if e.endswith(".json"))
    except FileNotFoundError:
        return []
    return [n for n in (load(data_root, name) for name in names) if n is not None]


def resolve(data_root: str, ref: str) -> Network:
    """A bridge network by name, full id or unique id prefix; Docker's 404 otherwise."""
    nets = load_all(data_root)
    for n in nets:
        if ref in (n.name, n.id):
            return n
    matches = [n for n in nets if ref and n.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    raise NotFound(f"network {ref} not found")


def _predefined_id(data_root: str, name: str) -> str:
    return hashlib.sha256(f"{os.path.abspath(data_root)}\0{name}".encode()).hexdigest()


def create(data_root: str, body: Mapping[str, Any]) -> Network:
    """``POST /networks/create``: a bridge network (driver ``bridge``), optional subnet and
    gateway (``IPAM.Config[0]``), labels, ``Internal``."""
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidParameter("network name is required")
    if name in PREDEFINED:
        raise Conflict(f"{name} is a pre-defined network and cannot be created")
    if not all(c.isalnum() or c in "_.-" for c in name) or not name[0].isalnum():
        raise InvalidParameter(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                               "are allowed")
    driver = body.get("Driver") or "bridge"
    if driver != "bridge":
        raise NotFound(f"plugin \"{driver}\" not found")
    if body.get("EnableIPv6"):
        raise InvalidParameter("IPv6 networks are not supported")
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise InvalidParameter("Labels must be an object of strings")
    if load(data_root, name) is not None:
        raise Conflict(f"network with name {name} already exists")
    configs = ((body.get("IPAM") or {}).get("Config") or []) if isinstance(
        body.get("IPAM"), dict) else []
    taken = _taken(data_root)
    iface = bridge_interface(data_root, name)
    config = configs[0] if configs and isinstance(configs[0], dict) else {}
    if config.get("Subnet"):
        net, gateway, ip_range = _ipam(config, taken)
    else:
        net, ip_range = free_subnet(iface, taken), ""
        gateway = str(net.network_address + 1)
    network = Network(name, secrets.token_hex(32), now_rfc3339(), iface, str(net), gateway,
                      dict(labels), bool(body.get("Internal")), dns=True,
                      auto=not config.get("Subnet"), ip_range=ip_range)
    os.makedirs(_dir(data_root), exist_ok=True)
    write_json_atomic(_file(data_root, name), network.to_json())
    return network


def _ipam(config: Mapping[str, Any],
          taken: list[ipaddress.IPv4Network]) -> tuple[ipaddress.IPv4Network, str, str]:
    """``IPAM.Config[0]``: the subnet (no overlap), its gateway and ``IPRange``, checked."""
    try:
        net = ipaddress.IPv4Network(config["Subnet"])
    except ValueError:
        raise InvalidParameter(f"invalid subnet {config['Subnet']}") from None
    if any(net.overlaps(t) for t in taken):
        raise Conflict("Pool overlaps with other one on this address space")
    gateway = config.get("Gateway") or str(net.network_address + 1)
    try:
        if ipaddress.IPv4Address(gateway) not in net:
            raise ValueError
    except ValueError:
        raise InvalidParameter(f"invalid gateway {gateway} for subnet {net}") from None
    ip_range = config.get("IPRange") or ""
    if ip_range:
        try:
            if not ipaddress.IPv4Network(ip_range).subnet_of(net):
                raise ValueError
        except (ValueError, TypeError):
            raise InvalidParameter(f"invalid pool request: Invalid Address/Prefix key string: "
                                   f"ip-range {ip_range} is not within subnet {net}") from None
    return net, gateway, ip_range


def _active(data_root: str, name: str) -> dict[str, dict[str, Any]]:
    return {cid: ep for cid, ep in endpoints(data_root).items() if ep.get("Network") == name}


def remove(data_root: str, ref: str) -> None:
    if ref in ("host", "none"):
        raise Conflict(f"{ref} is a pre-defined network and cannot be removed")
    net = resolve(data_root, ref)
    if net.name == DEFAULT_NETWORK:
        raise Conflict(f"{net.name} is a pre-defined network and cannot be removed")
    if _active(data_root, net.name):
        raise Conflict(f"error while removing network: network {net.name} id {net.id} has "
                       "active endpoints")
    os.unlink(_file(data_root, net.name))


def prune(data_root: str, filters: Mapping[str, list[str]]) -> list[str]:
    """User-defined networks without a running container (``label``, ``label!`` filters)."""
    removed = []
    for net in load_all(data_root):
        if net.name in PREDEFINED or _active(data_root, net.name):
            continue
        if not all(_label_match(net.labels, v) for v in filters.get("label", [])):
            continue
        if any(_label_match(net.labels, v) for v in filters.get("label!", [])):
            continue
        os.unlink(_file(data_root, net.name))
        removed.append(net.name)
    return removed


def _label_match(labels: Mapping[str, str], f: str) -> bool:
    k, eq, v = f.partition("=")
    return k in labels and (not eq or labels[k] == v)


def inspect(data_root: str, ref: str) -> dict[str, Any]:
    """Docker's ``GET /networks/{id}`` document."""
    for name in ("host", "none"):
        if ref in (name, _predefined_id(data_root, name)):
            return _doc(data_root, name, _predefined_id(data_root, name), "", None)
    net = resolve(data_root, ref)
    return _doc(data_root, net.name, net.id, net.created, net)


def _ipam_json(net: Network) -> dict[str, str]:
    out = {"Subnet": net.subnet, "Gateway": net.gateway}
    return {**out, "IPRange": net.ip_range} if net.ip_range else out


def inspect_all(data_root: str) -> list[dict[str, Any]]:
    docs = [inspect(data_root, n.name) for n in load_all(data_root)]
    return docs + [inspect(data_root, name) for name in ("host", "none")]


def _doc(data_root: str, name: str, nid: str, created: str, net: Network | None) -> dict:
    containers = {}
    for key, ep in _active(data_root, name).items():
        cid = ep.get("ContainerID") or key.partition("@")[0]
        containers[cid] = {"Name": ep.get("Name", ""), "EndpointID": ep.get("EndpointID", ""),
                           "MacAddress": ep.get("MacAddress", ""),
                           "IPv4Address": f"{ep.get('IPAddress')}/{ep.get('IPPrefixLen', 0)}",
                           "IPv6Address": ""}
    options = {}
    if net is not None and net.name == DEFAULT_NETWORK:
        options = {"com.docker.network.bridge.default_bridge": "true",
                   "com.docker.network.bridge.name": net.interface}
    return {
        "Name": name, "Id": nid, "Created": created or "0001-01-01T00:00:00Z",
        "Scope": "local", "Driver": "bridge" if net else ("host" if name == "host" else "null"),
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None,
                 "Config": [_ipam_json(net)] if net else []},
        "Internal": bool(net and net.internal), "Attachable": False, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
        "Options": options, "Labels": dict(net.labels) if net else {},
    }
