"""Published ports: ``-p``/``-P`` and ``HostConfig.PortBindings``, parsed as Docker parses
them (``go-connections/nat``), kept in a container's spec as ``PortBinding`` tuples.

Single ports only: ranges (``-p 8000-8010:80-90``) are refused with a clear message.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Mapping, NamedTuple

from logpipe.errors import InvalidParameter

PROTOCOLS = ("tcp", "udp", "sctp")


class PortBinding(NamedTuple):
    """One published port; ``host_port`` 0 means "any free port", chosen at start."""

    container_port: int
    proto: str = "tcp"
    host_ip: str = ""
    host_port: int = 0

    @property
    def key(self) -> str:
        """Docker's ``nat.Port``: ``80/tcp``."""
        return f"{self.container_port}/{self.proto}"


def _port(text: str, what: str, allow_empty: bool = False) -> int:
    if allow_empty and text == "":
        return 0
    if "-" in text:
        raise InvalidParameter(f"invalid {what}: {text}: port ranges are not supported")
    if not text.isdigit() or not 0 < int(text) < 65536 and not (allow_empty and text == "0"):
        raise InvalidParameter(f"invalid {what}: {text}")
    return int(text)


def split_port_key(key: str) -> tuple[int, str]:
    """``"80/tcp"`` (or ``"80"``) → ``(80, "tcp")``; Docker's words when it is not one."""
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidParameter(f"invalid proto: {proto}")
    return _port(port, "containerPort"), proto


def parse_publish(specs: Iterable[str]) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """``-p`` values → (``ExposedPorts``, ``PortBindings``) of a create request, like the
    docker CLI's ``nat.ParsePortSpecs``: ``[ip:][hostPort:]containerPort[/proto]``."""
    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict]] = {}
    for spec in specs:
        rest, _, proto = spec.rpartition("/") if "/" in spec else (spec, "", "tcp")
        ip, host_port, ctr = "", "", rest
        if rest.startswith("["):  # [::1]:8080:80
            end = rest.find("]")
            ip, rest = rest[1:end], rest[end + 2:]
            host_port, _, ctr = rest.rpartition(":")
        else:
            parts = rest.split(":")
            if len(parts) == 2:
                host_port, ctr = parts
            elif len(parts) == 3:
                ip, host_port, ctr = parts
            elif len(parts) > 3:
                raise InvalidParameter(f'invalid port specification: "{spec}"')
        if not ctr:
            raise InvalidParameter(f"no port specified: {spec}<empty>")
        if ip:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise InvalidParameter(f"invalid IP address: {ip}") from None
        cport, proto = split_port_key(f"{ctr}/{proto}")
        _port(host_port, "hostPort", allow_empty=True)
        key = f"{cport}/{proto}"
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": host_port})
    return exposed, bindings


def from_request(port_bindings: Mapping[str, Any] | None) -> tuple[PortBinding, ...]:
    """``HostConfig.PortBindings`` of a create request, checked."""
    out = []
    for key, hosts in (port_bindings or {}).items():
        cport, proto = split_port_key(key)
        if hosts is None:
            hosts = []
        if not isinstance(hosts, list):
            raise InvalidParameter(f"invalid port bindings for {key}: a list is expected")
        for h in hosts or [{}]:
            if not isinstance(h, dict):
                raise InvalidParameter(f"invalid port binding for {key}: an object is expected")
            ip = h.get("HostIp") or ""
            if not isinstance(ip, str):
                raise InvalidParameter(f"invalid IP address: {ip}")
            if ip:
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    raise InvalidParameter(f"invalid IP address: {ip}") from None
            hp = h.get("HostPort") or ""
            hport = _port(str(hp), "hostPort", allow_empty=True)
            out.append(PortBinding(cport, proto, ip, hport))
    return tuple(out)


def to_docker(bindings: Iterable[PortBinding]) -> dict[str, list[dict[str, str]]]:
    """``PortBindings``/``NetworkSettings.Ports`` shape: ``{"80/tcp": [{HostIp, HostPort}]}``."""
    out: dict[str, list[dict[str, str]]] = {}
    for b in bindings:
        out.setdefault(b.key, []).append(
            {"HostIp": b.host_ip, "HostPort": str(b.host_port) if b.host_port else ""})
    return out


def from_docker(data: Mapping[str, Any] | None) -> tuple[PortBinding, ...]:
    """The stored form back (written by ``to_docker``: already valid)."""
    out = []
    for key, hosts in (data or {}).items():
        port, _, proto = key.partition("/")
        for h in hosts or []:
            out.append(PortBinding(int(port), proto or "tcp", h.get("HostIp") or "",
                                   int(h.get("HostPort") or 0)))
    return tuple(out)


def effective(bindings: Iterable[PortBinding], publish_all: bool,
              exposed: Iterable[str]) -> list[PortBinding]:
    """What to publish: the bindings, plus with ``-P`` every exposed port not bound yet."""
    out = list(bindings)
    if publish_all:
        bound = {b.key for b in out}
        for key in exposed:
            cport, proto = split_port_key(key)
            if f"{cport}/{proto}" not in bound:
                out.append(PortBinding(cport, proto))
    return out


def ps_column(items: Iterable[Mapping[str, Any]]) -> str:
    """The ``PORTS`` column of ``ps`` from a summary's ``Ports``, as the docker CLI prints it:
    ``0.0.0.0:8080->80/tcp, 53/udp``."""
    def order(p: Mapping[str, Any]) -> tuple:
        return (p.get("Type", ""), p.get("PrivatePort", 0), p.get("PublicPort", 0))

    out = []
    for p in sorted(items, key=order):
        ctr = f"{p.get('PrivatePort')}/{p.get('Type', 'tcp')}"
        if p.get("PublicPort"):
            ip = p.get("IP") or "0.0.0.0"
            ip = f"[{ip}]" if ":" in ip else ip
            out.append(f"{ip}:{p['PublicPort']}->{ctr}")
        else:
            out.append(ctr)
    return ", ".join(out)


def port_lines(settings_ports: Mapping[str, Any] | None, wanted: str = "") -> list[str]:
    """``docker port``'s lines from ``NetworkSettings.Ports``: ``80/tcp -> 0.0.0.0:8080``."""
    lines = []
    for key, hosts in sorted((settings_ports or {}).items()):
        if wanted and key != (wanted if "/" in wanted else f"{wanted}/tcp"):
            continue
        for h in hosts or []:
            prefix = "" if wanted else f"{key} -> "
            lines.append(f"{prefix}{h.get('HostIp') or '0.0.0.0'}:{h.get('HostPort')}")
    return lines
