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


def _records(spec: ContainerSpec) -> dict[str, dict[str, Any]]:
    if not netavark.uses_netns(spec) and not spec.extra_networks:
        return {}
    return netavark.records(netavark.data_root_of(spec), spec.id)


def _endpoint(spec: ContainerSpec) -> dict[str, Any] | None:
    """eth0's record: the one that holds the published ports."""
    return next(iter(_records(spec).values()), None)


def published(record: dict[str, Any] | None) -> list[ports.PortBinding]:
    return [ports.PortBinding(*p) for p in (record or {}).get("PortList", [])]


def network_names(spec: ContainerSpec) -> list[str]:
    """Every network the container is on, in interface order (``Networks``' keys)."""
    if spec.network_mode.startswith("container:"):
        return []
    first = [spec.network_mode] if spec.network_mode != "none" or not spec.extra_networks \
        else []
    return first + list(spec.extra_networks)


def _network_entry(spec: ContainerSpec, name: str,
                   record: dict[str, Any] | None) -> dict[str, Any]:
    """One ``Networks`` item: the addresses while the endpoint exists, empty otherwise."""
    ep = dict(EMPTY_ENDPOINT)
    wanted = spec.extra_networks.get(name) or {}
    aliases = list(wanted.get("Aliases") or ()) if name in spec.extra_networks else list(
        spec.network_aliases)
    ep["Aliases"] = aliases or None
    if wanted.get("IPv4Address"):
        ep["IPAMConfig"] = {"IPv4Address": wanted["IPv4Address"]}
    if record is not None:
        ep.update({k: record.get(k, ep[k]) for k in
                   ("NetworkID", "EndpointID", "Gateway", "IPAddress", "IPPrefixLen",
                    "MacAddress")})
        ep["Aliases"] = [*record.get("Aliases", []), spec.id[:12]] if record.get("DNS") \
            else ep["Aliases"]
    return ep


def network_settings(spec: ContainerSpec) -> dict[str, Any]:
    """Docker's ``NetworkSettings``: every network with its addresses while the container's
    endpoints exist (it runs), empty strings otherwise; ``Ports`` lists exposed ports (null
    when not published) and the host ports really bound (eth0's)."""
    found = _records(spec)
    record = next(iter(found.values()), None)
    port_map: dict[str, Any] = {}
    if record is not None:
        for key in spec.exposed_ports:
            port_map[key] = None
        for b in published(record):
            port_map.setdefault(b.key, None)
            port_map[b.key] = (port_map[b.key] or []) + [
                {"HostIp": b.host_ip or "0.0.0.0", "HostPort": str(b.host_port)}]
    networks = {name: _network_entry(spec, name, found.get(name))
                for name in network_names(spec)}
    bridge = networks.get("bridge") or dict(EMPTY_ENDPOINT)
    # Docker fills the top-level fields from the default bridge's endpoint only
    top = {k: bridge[k] for k in ("EndpointID", "Gateway", "GlobalIPv6Address",
                                  "GlobalIPv6PrefixLen", "IPAddress", "IPPrefixLen",
                                  "IPv6Gateway", "MacAddress")}
    return {"Bridge": "", "SandboxID": record.get("EndpointID", "") if record else "",
            "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": port_map, "SandboxKey": record.get("NetNS", "") if record else "",
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, **top,
            "Networks": networks}


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
