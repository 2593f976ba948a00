"""``/containers``: create, list, inspect and the lifecycle operations; the store does
the work (``runtime.containers``), the documents come from ``runtime.views``."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from .. import schema
from ..containers import parse_signal
from ..views import container_inspect_live, container_summary
from .common import container_of, json_body, qbool, qint, store_of
from .streams import flush_headers, serve_stream



async def create_container(request: web.Request) -> web.Response:
    body = await json_body(request)
    c, warnings = await store_of(request).create(body, request.query.get("name", ""))
    return web.json_response({"Id": c.id, "Warnings": warnings}, status=201)


async def list_containers(request: web.Request) -> web.Response:
    filters = schema.filters(request.query.get("filters", ""))
    items = store_of(request).list(all=qbool(request, "all"), filters=filters)
    limit = qint(request, "limit")
    if limit and limit > 0:
        items = items[:limit]
    return web.json_response([container_summary(c) for c in items])


async def inspect_container(request: web.Request) -> web.Response:
    c = container_of(request)
    data = await asyncio.to_thread(container_inspect_live, c, store_of(request).shipping)
    return web.json_response(data)



async def start_container(request: web.Request) -> web.Response:
    await store_of(request).start(container_of(request))
    return web.Response(status=204)


async def stop_container(request: web.Request) -> web.Response:
    timeout = qint(request, "t")  # parsed first: Docker refuses a bad value for any name
    await store_of(request).stop(container_of(request), timeout)
    return web.Response(status=204)


async def restart_container(request: web.Request) -> web.Response:
    timeout = qint(request, "t")
    await store_of(request).restart(container_of(request), timeout)
    return web.Response(status=204)


async def pause_container(request: web.Request) -> web.Response:
    await store_of(request).pause(container_of(request), True)
    return web.Response(status=204)


async def unpause_container(request: web.Request) -> web.Response:
    await store_of(request).pause(container_of(request), False)
    return web.Response(status=204)


async def kill_container(request: web.Request) -> web.Response:
    sig = parse_signal(request.query.get("signal"))
    await store_of(request).kill(container_of(request), sig)
    return web.Response(status=204)


async def wait_container(request: web.Request) -> web.StreamResponse:
    """Docker sends the headers at once and the body when the condition holds."""
    store = store_of(request)
    c = container_of(request)
    waiter = store.waiter(c, request.query.get("condition", ""))
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await flush_headers(resp)

    async def body() -> None:
        state = await waiter
        await resp.write(json.dumps({"StatusCode": state.exit_code, "Error": None}).encode()
                         + b"\n")

    return await serve_stream(request, resp, body())


async def remove_container(request: web.Request) -> web.Response:
    await store_of(request).remove(container_of(request), force=qbool(request, "force"),
                                   volumes=qbool(request, "v"))
    return web.Response(status=204)


ROUTES = [
    ("POST", "/containers/create", create_container),
    ("GET", "/containers/json", list_containers),
    ("GET", "/containers/{id}/json", inspect_container),
    ("POST", "/containers/{id}/start", start_container),
    ("POST", "/containers/{id}/stop", stop_container),
    ("POST", "/containers/{id}/restart", restart_container),
    ("POST", "/containers/{id}/kill", kill_container),
    ("POST", "/containers/{id}/pause", pause_container),
    ("POST", "/containers/{id}/unpause", unpause_container),
    ("POST", "/containers/{id}/wait", wait_container),
    ("DELETE", "/containers/{id}", remove_container),
]
