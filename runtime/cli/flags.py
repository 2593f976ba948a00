"""``KEY=VALUE`` flags (``--log-opt``, ``--label``, ``--env``): the one reading of them; the
network flags of ``run``/``create`` (``--hostname``, ``--dns*``, ``--add-host``)."""

from __future__ import annotations

import argparse
from typing import Iterable

from logpipe.errors import LogpipeError

from .errors import CommandError


def key_values(items: Iterable[str], flag: str, *, pair_required: bool = False) -> dict[str, str]:
    """The flags as a dict; a later key wins. An empty key is refused with Docker's wording
    (``invalid argument "=x" for "--label" flag``). ``run``/``create``'s ``--log-opt`` also
    needs the ``=``, and says so as the docker CLI does (``invalid key value pair format``);
    elsewhere ``KEY`` alone is ``KEY=``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if pair_required and (not sep or not key):
            raise CommandError(f'invalid argument "{item}" for "{flag}" flag: '
                               "invalid key value pair format")
        if not key:
            raise LogpipeError(f'invalid argument "{item}" for "{flag}" flag')
        out[key] = value
    return out


def add_network_flags(p: argparse.ArgumentParser) -> None:
    """``run``/``create``'s name and resolver flags (the docker CLI's)."""
    p.add_argument("--hostname", default="", help="Container host name")
    p.add_argument("--domainname", default="", help="Container NIS domain name")
    p.add_argument("--network-alias", action="append", default=[],
                   help="Add network-scoped alias for the container")
    p.add_argument("--dns", action="append", default=[], help="Set custom DNS servers")
    p.add_argument("--dns-search", action="append", default=[],
                   help="Set custom DNS search domains")
    p.add_argument("--dns-option", "--dns-opt", action="append", default=[],
                   help="Set DNS options")
    p.add_argument("--add-host", action="append", default=[],
                   help="Add a custom host-to-IP mapping (host:ip)")


def network_fields(args: argparse.Namespace, body: dict) -> None:
    """The request's fields for ``add_network_flags``' flags, added to ``body``; the docker
    CLI's checks of ``--dns`` and ``--add-host``."""
    import ipaddress

    host = body.setdefault("HostConfig", {})
    for ip in args.dns:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise CommandError(f'invalid argument "{ip}" for "--dns" flag: {ip} is not an ip '
                               "address") from None
    for item in args.add_host:
        name, sep, ip = item.partition(":")
        if not sep or not name:
            raise CommandError(f'invalid argument "{item}" for "--add-host" flag: bad format '
                               f'for add-host: "{item}"')
    host.update({"Dns": list(args.dns), "DnsSearch": list(args.dns_search),
                 "DnsOptions": list(args.dns_option), "ExtraHosts": list(args.add_host) or None})
    body["Hostname"] = args.hostname
    body["Domainname"] = args.domainname
    if args.network_alias:
        net = host.get("NetworkMode") or "default"
        body["NetworkingConfig"] = {"EndpointsConfig": {net: {"Aliases": args.network_alias}}}
