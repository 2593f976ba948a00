"""``NetworkSettings`` of ``inspect`` and ``Ports`` of ``ps``, as Docker 20.10 prints them,
from a container's spec and its endpoint record (``runtime.network.netavark``)."""

from __future__ import annotations

from typing import Any

from runtime.spec import ContainerSpec

from . import netavark, ports

EMPTY_ENDPOINT = {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "",
                  "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                  "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                  "MacAddress": "", "DriverOpts": None}


def _endpoint(spec: ContainerSpec) -> dict[str, Any] | None:
    if not netavark.uses_netns(spec):
        return None
    return netavark.endpoint(netavark.data_root_of(spec), spec.id)


def published(record: dict[str, Any] | None) -> list[ports.PortBinding]:
    return [ports.PortBinding(*p) for p in (record or {}).get("PortList", [])]


def network_settings(spec: ContainerSpec) -> dict[str, Any]:
    """Docker's ``NetworkSettings``: the addresses while the container's endpoint exists
    (it runs), empty strings otherwise; ``Ports`` lists exposed ports (null when not
    published) and the host ports really bound."""
    record = _endpoint(spec)
    name = spec.network_mode
    ep = dict(EMPTY_ENDPOINT)
    port_map: dict[str, Any] = {}
    if record is not None:
        ep.update({k: record.get(k, ep[k]) for k in
                   ("NetworkID", "EndpointID", "Gateway", "IPAddress", "IPPrefixLen",
                    "MacAddress")})
        ep["Aliases"] = [*record.get("Aliases", []), spec.id[:12]] if record.get("DNS") else None
        for key in spec.exposed_ports:
            port_map[key] = None
        for b in published(record):
            port_map.setdefault(b.key, None)
            port_map[b.key] = (port_map[b.key] or []) + [
                {"HostIp": b.host_ip or "0.0.0.0", "HostPort": str(b.host_port)}]
    top = {k: ep[k] for k in ("EndpointID", "Gateway", "GlobalIPv6Address",
                              "GlobalIPv6PrefixLen", "IPAddress", "IPPrefixLen",
                              "IPv6Gateway", "MacAddress")}
    if name != "bridge":  # Docker fills the top-level fields for the default bridge only
        top = {k: ("" if isinstance(v, str) else 0) for k, v in top.items()}
    return {"Bridge": "", "SandboxID": record.get("EndpointID", "") if record else "",
            "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": port_map, "SandboxKey": record.get("NetNS", "") if record else "",
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, **top,
            "Networks": {} if name.startswith("container:") else {name: ep}}


def summary_ports(spec: ContainerSpec) -> list[dict[str, Any]]:
    """``Ports`` of a ``GET /containers/json`` item (Docker's ``types.Port``)."""
    record = _endpoint(spec)
    if record is None:
        return []
    out: list[dict[str, Any]] = []
    bound = set()
    for b in published(record):
        bound.add(b.key)
        out.append({"IP": b.host_ip or "0.0.0.0", "PrivatePort": b.container_port,
                    "PublicPort": b.host_port, "Type": b.proto})
    for key in spec.exposed_ports:
        if key not in bound:
            port, _, proto = key.partition("/")
            out.append({"PrivatePort": int(port), "Type": proto})
    return out
