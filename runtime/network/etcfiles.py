"""A container's ``/etc/hosts`` and ``/etc/resolv.conf``, written as Docker writes them.

``hosts``: Docker's default block, then ``--add-host`` entries (``host-gateway`` is the
default bridge's gateway), then one line per address the container has (every network it
is on: ``<ip>\t<fqdn> <hostname>`` with ``--domainname``).

``resolv.conf``: on the default bridge (or ``host``), the host's file without its loopback
nameservers (Docker's ``FilterResolvDNS``: 8.8.8.8 and 8.8.4.4 when none is left), or,
with ``--dns``/``--dns-search``/``--dns-option``, those with the host's for what was not
given. On a user-defined network the nameservers are aardvark-dns on the networks'
gateways (Docker's embedded DNS at 127.0.0.11), with ``options ndots:0`` unless the user
set ``ndots``.

Both files live in the container's directory and are bind-mounted: ``network connect`` and
``disconnect`` rewrite them in place, as Docker updates a running container's.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable

from runtime.spec import ContainerSpec

HOST_RESOLV_CONF = "/etc/resolv.conf"
#: systemd-resolved's real upstream servers, when /etc/resolv.conf names only its stub.
RESOLVED_CONF = "/run/systemd/resolve/resolv.conf"
DEFAULT_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                 "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
                 "ff02::2\tip6-allrouters\n")
_LOOPBACK_NS = re.compile(r"(?m)^nameserver\s+(127\.\S*|::1)\s*\n*")
_FIELD = re.compile(r"(?m)^\s*(nameserver|search|domain|options)\s+(.*?)\s*$")


def host_resolv_conf() -> str:
    """The host's resolv.conf (systemd-resolved's upstream one behind its 127.0.0.53 stub,
    as Docker does); empty when unreadable."""
    text = _read(HOST_RESOLV_CONF)
    if _values(text, "nameserver") == ["127.0.0.53"] and os.path.exists(RESOLVED_CONF):
        text = _read(RESOLVED_CONF) or text
    return text


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _values(text: str, key: str) -> list[str]:
    out: list[str] = []
    for k, v in _FIELD.findall(text):
        if k == key or (key == "search" and k == "domain"):
            out += v.split() if key != "nameserver" else [v.split()[0]]
    return out


def _build(nameservers: Iterable[str], search: list[str], options: list[str]) -> str:
    """Docker's ``resolvconf.Build``: search, nameservers, options."""
    text = ""
    if search and " ".join(search).strip() != ".":
        text += "search " + " ".join(search) + "\n"
    text += "".join(f"nameserver {ns}\n" for ns in nameservers)
    if options and " ".join(options).strip():
        text += "options " + " ".join(options) + "\n"
    return text


def resolv_conf(spec: ContainerSpec, records: dict[str, dict[str, Any]]) -> str | None:
    """The container's resolv.conf; None with ``--network none`` (the image's stays)."""
    if spec.network_mode == "none" and not records:
        return None
    host = host_resolv_conf()
    search = list(spec.dns_search) or _values(host, "search")
    options = list(spec.dns_options) or _values(host, "options")
    servers = list(dict.fromkeys(ip for r in records.values() for ip in r.get("DNS") or ()))
    if servers:  # aardvark-dns (a user-defined network): the names of the networks first
        if not any("ndots" in o for o in spec.dns_options):
            options.append("ndots:0")
        return _build(servers, search, options)
    if spec.dns or spec.dns_search or spec.dns_options:
        return _build(list(spec.dns) or _values(host, "nameserver"), search, options)
    text = _LOOPBACK_NS.sub("", host)
    if not _values(text, "nameserver"):
        text += "\nnameserver 8.8.8.8\nnameserver 8.8.4.4"
    return text


def extra_host_lines(extra_hosts: Iterable[str], gateway: str) -> str:
    """``--add-host name:ip`` as hosts lines (``ip\\tname``); ``host-gateway`` → ``gateway``."""
    out = ""
    for item in extra_hosts:
        name, _, ip = item.partition(":")
        out += f"{gateway if ip == 'host-gateway' else ip}\t{name}\n"
    return out


def hosts(spec: ContainerSpec, hostname: str, records: dict[str, dict[str, Any]],
          gateway: str) -> str:
    """The container's /etc/hosts (the host's own with ``--network host``)."""
    extra = extra_host_lines(spec.extra_hosts, gateway)
    if spec.network_mode == "host":
        text = _read("/etc/hosts")
        return text + ("" if not text or text.endswith("\n") else "\n") + extra
    fqdn = f"{hostname}.{spec.domainname}" if spec.domainname else hostname
    names = f"{fqdn} {fqdn.split('.', 1)[0]}" if "." in fqdn else fqdn
    addresses = [r["IPAddress"] for r in records.values() if r.get("IPAddress")]
    if not addresses:  # none, container:<x>: the name still resolves, to loopback
        addresses = ["127.0.1.1"]
    return DEFAULT_HOSTS + extra + "".join(f"{ip}\t{names}\n" for ip in addresses)


def rewrite(spec: ContainerSpec, hostname: str, records: dict[str, dict[str, Any]],
            gateway: str) -> None:
    """Update the files of a running container in place (the bind mounts keep the inode):
    after ``network connect``/``disconnect``."""
    contents = {"hosts": hosts(spec, hostname, records, gateway),
                "resolv.conf": resolv_conf(spec, records)}
    for name, text in contents.items():
        path = os.path.join(spec.dir, name)
        if text is not None and os.path.exists(path):
            with open(path, "r+") as f:
                f.write(text)
                f.truncate()
