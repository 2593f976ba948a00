"""The networks the daemon knows, persisted under ``<data-root>/network/networks``.

Today that is Docker's default network, ``bridge``: a Linux bridge (``logpipe0`` for the
system daemon's data root, a name derived from the data root otherwise, so that two daemons
on one host never share one) on a subnet from ``daemon.json``'s ``bip``, else the first /16 of
172.17-31.x, then 10.x, that no route of the host covers (Docker's rule: the default must not
hide an address the host already reaches). The shims read the file at each start.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
from typing import Any, NamedTuple

from logpipe.errors import InvalidParameter

from runtime.spec import write_json_atomic
from runtime.state import now_rfc3339

DEFAULT_NETWORK = "bridge"
SYSTEM_DATA_ROOT = "/var/lib/logpipe"


class Network(NamedTuple):
    name: str
    id: str
    created: str
    interface: str  # the Linux bridge
    subnet: str  # "172.17.0.0/16"
    gateway: str  # "172.17.0.1"

    def to_json(self) -> dict[str, Any]:
        return {"Name": self.name, "Id": self.id, "Created": self.created,
                "Interface": self.interface, "Subnet": self.subnet, "Gateway": self.gateway}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Network":
        return cls(d["Name"], d["Id"], d["Created"], d["Interface"], d["Subnet"], d["Gateway"])


def network_dir(data_root: str) -> str:
    return os.path.join(data_root, "network")


def _file(data_root: str, name: str) -> str:
    return os.path.join(network_dir(data_root), "networks", f"{name}.json")


def bridge_interface(data_root: str) -> str:
    if os.path.abspath(data_root) == SYSTEM_DATA_ROOT:
        return "logpipe0"
    return "lp-" + hashlib.sha256(os.path.abspath(data_root).encode()).hexdigest()[:10]


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
        net = ipaddress.IPv4Network((ipaddress.IPv4Address(dest),
                                     ipaddress.IPv4Address(mask).exploded), strict=False)
        out.append(net)
    return out


def free_subnet(exclude_iface: str = "") -> ipaddress.IPv4Network:
    """The first /16 of 172.17-31, then 10.0-255, that no host route overlaps."""
    routes = host_routes(exclude_iface)
    candidates = [f"172.{i}.0.0/16" for i in range(17, 32)] + [f"10.{i}.0.0/16"
                                                                for i in range(256)]
    for text in candidates:
        net = ipaddress.IPv4Network(text)
        if not any(net.overlaps(r) for r in routes):
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


def ensure_default(data_root: str, bip: str = "") -> Network:
    """The ``bridge`` network, created or updated at daemon start: ``bip`` wins; a stored
    subnet is kept (running containers hold addresses in it); else a free one."""
    iface = bridge_interface(data_root)
    old = load(data_root, DEFAULT_NETWORK)
    if bip:
        subnet, gateway = parse_bip(bip)
    elif old is not None:
        subnet, gateway = old.subnet, old.gateway
    else:
        net = free_subnet(exclude_iface=iface)
        subnet, gateway = str(net), str(net.network_address + 1)
    net = Network(DEFAULT_NETWORK, old.id if old else secrets.token_hex(32),
                  old.created if old else now_rfc3339(), iface, subnet, gateway)
    if net != old:
        os.makedirs(os.path.dirname(_file(data_root, DEFAULT_NETWORK)), exist_ok=True)
        write_json_atomic(_file(data_root, DEFAULT_NETWORK), net.to_json())
    return net


def load(data_root: str, name: str) -> Network | None:
    try:
        with open(_file(data_root, name)) as f:
            return Network.from_json(json.load(f))
    except (OSError, ValueError, KeyError):
        return None
