"""``/networks``: list, inspect, create, remove, prune, connect and disconnect, as Docker's
Engine API 1.41 answers them; docker-compose's default network (``<project>_default``) among
them.

A container is on one network at a time here: ``connect`` and ``disconnect`` change the
network (and aliases) of a container that is not running, which is what docker-compose does
between create and start; on a running container they are refused.

The predefined networks ``bridge`` (logpipe's default bridge), ``host`` and ``none`` are
listed and inspected like Docker's, and cannot be created or removed.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from logpipe.errors import Conflict, InvalidParameter

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


async def _target(request: web.Request) -> tuple[store.Network, "Container", dict[str, Any]]:
    body = await _body(request)
    net = await asyncio.to_thread(store.resolve, _root(request), request.match_info["id"])
    ref = body.get("Container")
    if not isinstance(ref, str) or not ref:
        raise InvalidParameter("no container specified")
    c = _containers(request).get(ref)
    return net, c, body


def _set_network(c: "Container", name: str, aliases: tuple[str, ...]) -> None:
    c.spec = c.spec._replace(network_mode=name, network_aliases=aliases)
    c.spec.save()


async def connect_network(request: web.Request) -> web.Response:
    net, c, body = await _target(request)
    endpoint = body.get("EndpointConfig") or {}
    aliases = endpoint.get("Aliases") if isinstance(endpoint, dict) else None
    if not isinstance(aliases, (list, type(None))) or not all(
            isinstance(a, str) for a in aliases or []):
        raise InvalidParameter("EndpointConfig.Aliases must be a list of strings")
    async with c.lock:
        if c.running:
            raise Conflict(f"cannot connect the running container {c.name} to network "
                           f"{net.name}: logpipe connects containers before they start")
        if c.spec.network_mode not in ("none", net.name):
            raise Conflict(f"container {c.name} is on network {c.spec.network_mode}: a "
                           "container is on one network at a time (disconnect it first)")
        await asyncio.to_thread(_set_network, c, net.name,
                                tuple(dict.fromkeys(a for a in aliases or [] if a)))
    _emit(request, "connect", net, c.id)
    return web.Response(status=200)


async def disconnect_network(request: web.Request) -> web.Response:
    net, c, _ = await _target(request)
    async with c.lock:
        if c.spec.network_mode != net.name:
            raise InvalidParameter(f"container {c.id} is not connected to network {net.name}")
        if c.running:
            raise Conflict(f"cannot disconnect the running container {c.name} from network "
                           f"{net.name}")
        await asyncio.to_thread(_set_network, c, "none", ())
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
