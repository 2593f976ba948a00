"""``/networks``: list, inspect, create, remove, prune, connect and disconnect, as Docker's
Engine API 1.41 answers them; docker-compose's default network (``<project>_default``) among
them.

``connect`` and ``disconnect`` work on created and running containers alike: a running
one gets (or loses) an interface in its namespace at once (``netavark.connect``), its
``/etc/hosts`` and ``resolv.conf`` rewritten; every network is kept in the spec, so that
the next start sets them all up again (eth0 for ``HostConfig.NetworkMode``, then eth1, ...
in the order they were connected). The rules and words are Docker 20.10's
(``daemon/container_operations.go``, libnetwork).

The predefined networks ``bridge`` (logpipe's default bridge), ``host`` and ``none`` are
listed and inspected like Docker's, and cannot be created or removed.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from logpipe.errors import Conflict, Forbidden, InvalidParameter

from . import store

if TYPE_CHECKING:
    from runtime.containers import Container, ContainerStore

CONTAINERS_KEY = web.AppKey("network_containers", object)


def _containers(request: web.Request) -> "ContainerStore":
    return request.app[CONTAINERS_KEY]  # type: ignore[return-value]


def _root(request: web.Request) -> str:
    return _containers(request).config.data_root


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as err:
        raise InvalidParameter(f"invalid JSON: {err}") from None
    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON: an object is expected")
    return body


def _filters(request: web.Request) -> dict[str, list[str]]:
    text = request.query.get("filters") or ""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidParameter(f"invalid filter: {text}") from None
    if not isinstance(data, dict):
        raise InvalidParameter(f"invalid filter: {text}")
    out = {}
    for key, values in data.items():
        if key not in ("name", "id", "label", "label!", "driver", "type", "scope"):
            raise InvalidParameter(f"invalid filter '{key}'")
        out[key] = list(values) if isinstance(values, list) else [k for k, v in values.items()
                                                                  if v]
    return out


def _matches(doc: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "name" and not any(v in doc["Name"] for v in values):
            return False
        if key == "id" and not any(doc["Id"].startswith(v) for v in values):
            return False
        if key == "driver" and doc["Driver"] not in values:
            return False
        if key == "scope" and doc["Scope"] not in values:
            return False
        if key == "type":
            kind = "builtin" if doc["Name"] in store.PREDEFINED else "custom"
            if kind not in values:
                return False
        if key == "label":
            for v in values:
                k, eq, val = v.partition("=")
                if k not in doc["Labels"] or (eq and doc["Labels"][k] != val):
                    return False
    return True


async def list_networks(request: web.Request) -> web.Response:
    filters = _filters(request)
    docs = await asyncio.to_thread(store.inspect_all, _root(request))
    return web.json_response([d for d in docs if _matches(d, filters)])


async def inspect_network(request: web.Request) -> web.Response:
    doc = await asyncio.to_thread(store.inspect, _root(request), request.match_info["id"])
    return web.json_response(doc)


async def create_network(request: web.Request) -> web.Response:
    body = await _body(request)
    net = await asyncio.to_thread(store.create, _root(request), body)
    _emit(request, "create", net)
    return web.json_response({"Id": net.id, "Warning": ""}, status=201)


async def remove_network(request: web.Request) -> web.Response:
    nets = await asyncio.to_thread(store.load_all, _root(request))
    await asyncio.to_thread(store.remove, _root(request), request.match_info["id"])
    ref = request.match_info["id"]
    for net in nets:
        if ref in (net.name, net.id) or net.id.startswith(ref):
            _emit(request, "destroy", net)
            break
    return web.Response(status=204)


async def prune_networks(request: web.Request) -> web.Response:
    nets = {n.name: n for n in await asyncio.to_thread(store.load_all, _root(request))}
    removed = await asyncio.to_thread(store.prune, _root(request), _filters(request))
    for name in removed:
        _emit(request, "destroy", nets[name])
    return web.json_response({"NetworksDeleted": removed or None})


CONFLICT_HOST = "container cannot be disconnected from host network or connected to host network"
CONFLICT_SHARED = ("container sharing network namespace with another container or host cannot "
                   "be connected to any other network")
CONFLICT_NONE = ("container cannot be connected to multiple networks with one of the networks "
                 "in private (none) mode")
STATIC_IP_AUTO = ("user specified IP address is supported only when connecting to networks "
                  "with user configured subnets")


async def _target(request: web.Request) -> tuple[str, "Container", dict[str, Any]]:
    """The network reference, the container (Docker's 404s, the network's first) and the
    body; ``host``/``none`` are no stored networks and answered by the callers."""
    body = await _body(request)
    ref = request.match_info["id"]
    if ref not in ("host", "none"):
        ref = (await asyncio.to_thread(store.resolve, _root(request), ref)).name
    cref = body.get("Container")
    if not isinstance(cref, str) or not cref:
        raise InvalidParameter("no container specified")
    return ref, _containers(request).get(cref), body


def _endpoint_config(body: dict[str, Any], net: store.Network) -> tuple[tuple[str, ...], str]:
    """``EndpointConfig``'s aliases and ``IPAMConfig.IPv4Address``, checked."""
    endpoint = body.get("EndpointConfig") or {}
    if not isinstance(endpoint, dict):
        raise InvalidParameter("EndpointConfig must be an object")
    aliases = endpoint.get("Aliases")
    if not isinstance(aliases, (list, type(None))) or not all(
            isinstance(a, str) for a in aliases or []):
        raise InvalidParameter("EndpointConfig.Aliases must be a list of strings")
    ipam = endpoint.get("IPAMConfig") or {}
    ip = ipam.get("IPv4Address") if isinstance(ipam, dict) else None
    if not isinstance(ip, (str, type(None))):
        raise InvalidParameter("EndpointConfig.IPAMConfig.IPv4Address must be a string")
    if ip and net.auto:
        raise InvalidParameter(STATIC_IP_AUTO)
    return tuple(dict.fromkeys(a for a in aliases or [] if a)), ip or ""


def _on(c: "Container", name: str) -> bool:
    return name == c.spec.network_mode or name in c.spec.extra_networks


def _check_mode(c: "Container", name: str) -> None:
    """Docker's refusals for a container on ``host``, on another's namespace, on ``none``."""
    mode = c.spec.network_mode
    if mode == "host" or name == "host":
        raise InvalidParameter(CONFLICT_HOST)
    if mode.startswith("container:"):
        raise InvalidParameter(CONFLICT_SHARED)
    if name == "none" and mode != "none":
        raise InvalidParameter(CONFLICT_NONE)


def _has_netns(c: "Container") -> bool:
    """The container runs in a namespace of ours (it was on a bridge network at start)."""
    from . import netavark, netns

    return netns.is_mounted(netavark.netns_path(c.spec))


def _with_network(c: "Container", net: str, aliases: tuple[str, ...], ip: str) -> None:
    spec = c.spec
    if spec.network_mode == "none":
        spec = spec._replace(network_mode=net, network_aliases=aliases)
    else:
        extra = {**spec.extra_networks, net: {"Aliases": list(aliases),
                                              **({"IPv4Address": ip} if ip else {})}}
        spec = spec._replace(extra_networks=extra)
    spec.save()
    c.spec = spec


def _without_network(c: "Container", net: str) -> None:
    """The spec without ``net``: the next network becomes ``NetworkMode`` when it was that
    one (``none`` when it was the last)."""
    spec = c.spec
    extra = {k: v for k, v in spec.extra_networks.items() if k != net}
    if net == spec.network_mode:
        if extra:
            first, ep = next(iter(extra.items()))
            del extra[first]
            spec = spec._replace(network_mode=first, network_aliases=tuple(
                ep.get("Aliases") or ()))
        else:
            spec = spec._replace(network_mode="none", network_aliases=())
    spec = spec._replace(extra_networks=extra)
    spec.save()
    c.spec = spec


def _rewrite_etc(c: "Container") -> None:
    """A running container's /etc/hosts and resolv.conf, after its networks changed."""
    from runtime.oci import hostname_of

    from . import etcfiles, netavark

    data_root = netavark.data_root_of(c.spec)
    etcfiles.rewrite(c.spec, hostname_of(c.spec), netavark.records(data_root, c.spec.id),
                     netavark.host_gateway(data_root))


def _connect_running(c: "Container", name: str, aliases: tuple[str, ...], ip: str) -> None:
    from . import netavark

    try:
        netavark.connect(c.spec, name, aliases, ip)
    except netavark.NetworkError as err:
        raise Conflict(str(err)) from None
    try:
        _with_network(c, name, aliases, ip)
    except BaseException:
        netavark.disconnect(c.spec, name)
        raise
    _rewrite_etc(c)


def _disconnect_running(c: "Container", name: str) -> None:
    from . import netavark

    netavark.disconnect(c.spec, name)
    _without_network(c, name)
    _rewrite_etc(c)


async def connect_network(request: web.Request) -> web.Response:
    name, c, body = await _target(request)
    _check_mode(c, name)
    if name == "none":
        return web.Response(status=200)  # already on none
    net = await asyncio.to_thread(store.resolve, _root(request), name)
    aliases, ip = _endpoint_config(body, net)
    async with c.lock:
        if c.running and c.spec.network_mode == "none" and not _has_netns(c):
            raise InvalidParameter(CONFLICT_NONE)  # runc's own namespace: nothing to add to
        if _on(c, name):
            if c.running:  # libnetwork's 403
                raise Forbidden(f"endpoint with name {c.name} already exists in network {name}")
            return web.Response(status=200)  # Docker: nothing to do for a created container
        if c.running:
            await asyncio.to_thread(_connect_running, c, name, aliases, ip)
        else:
            await asyncio.to_thread(_with_network, c, name, aliases, ip)
    _emit(request, "connect", net, c.id)
    return web.Response(status=200)


async def disconnect_network(request: web.Request) -> web.Response:
    name, c, _ = await _target(request)
    if name == "host" or c.spec.network_mode == "host":
        raise InvalidParameter(CONFLICT_HOST)
    async with c.lock:
        if not _on(c, name) or name == "none":
            raise InvalidParameter(f"container {c.id} is not connected to network {name}")
        net = await asyncio.to_thread(store.resolve, _root(request), name)
        if c.running:
            await asyncio.to_thread(_disconnect_running, c, name)
        else:
            await asyncio.to_thread(_without_network, c, name)
    _emit(request, "disconnect", net, c.id)
    return web.Response(status=200)


def _emit(request: web.Request, action: str, net: store.Network, container: str = "") -> None:
    """A network event (``runtime.events``), with Docker's attributes."""
    attrs = {"container": container} if container else {}
    attrs.update({"name": net.name, "type": "bridge"})
    _containers(request).events.emit("network", action, net.id, attrs)


ROUTES: list[tuple[str, str, Callable]] = [
    ("GET", "/networks", list_networks), ("GET", "/networks/", list_networks),
    ("POST", "/networks/create", create_network),
    ("POST", "/networks/prune", prune_networks),
    ("GET", "/networks/{id}", inspect_network),
    ("DELETE", "/networks/{id}", remove_network),
    ("POST", "/networks/{id}/connect", connect_network),
    ("POST", "/networks/{id}/disconnect", disconnect_network),
]


def add_routes(app: web.Application, containers: "ContainerStore") -> None:
    """``/networks`` on ``app``, with and without the ``/v1.41`` prefix."""
    app[CONTAINERS_KEY] = containers
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, r"/v{version:[0-9.]+}" + path, handler)
