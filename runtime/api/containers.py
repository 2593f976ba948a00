"""``/containers``: create, list, inspect, the lifecycle operations, rename, update and
prune; the store does the work (``runtime.containers``), the documents come from
``runtime.views``."""

from __future__ import annotations

import asyncio
import json
from typing import Callable

from aiohttp import web

from logpipe.errors import InvalidParameter
from logpipe.timespec import parse_rfc3339, parse_time_arg

from .. import schema
from ..containers import Container, parse_signal
from ..errors import ContainerConflict
from ..shimclient import ShimClient, ShimGone
from ..volumes import label_matches
from ..views import container_inspect_live, container_sizes, container_summary
from .common import IMAGES_KEY, container_of, go_atoi, json_body, qbool, qint, store_of
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
    docs = [container_summary(c) for c in items]
    if qbool(request, "size"):  # SizeRw and SizeRootFs: a walk of each writable layer
        images = {im.id: im.size for im in await asyncio.to_thread(request.app[IMAGES_KEY].list)}
        for doc, c in zip(docs, items):
            doc.update(await asyncio.to_thread(container_sizes, c, images.get(c.spec.image_id, 0)))
    return web.json_response(docs)


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


async def resize_container(request: web.Request) -> web.Response:
    """Docker's ``resize``: the size of the container's terminal, set by its shim (which
    holds the pty); a container without one accepts it and nothing happens (containerd)."""
    c = container_of(request)
    height, width = (_terminal_dimension(request, key) for key in ("h", "w"))
    if not c.running:
        raise ContainerConflict(f"Container {c.id} is not running")
    try:
        await asyncio.to_thread(ShimClient(c.spec.dir).resize, height, width)
    except ShimGone:  # it has exited meanwhile
        raise ContainerConflict(f"Container {c.id} is not running") from None
    return web.Response(status=200)


def _terminal_dimension(request: web.Request, key: str) -> int:
    """``h``/``w``: Go's ``strconv.Atoi`` and its text (Docker), and a terminal's range."""
    try:
        value = go_atoi(request.query.get(key, ""))
    except ValueError as err:
        raise InvalidParameter(str(err)) from None
    if not 0 <= value <= 0xFFFF:
        raise InvalidParameter(f"invalid terminal size {key}={value}: it must be between 0 "
                               "and 65535")
    return value


async def remove_container(request: web.Request) -> web.Response:
    await store_of(request).remove(container_of(request), force=qbool(request, "force"),
                                   volumes=qbool(request, "v"))
    return web.Response(status=204)


async def rename_container(request: web.Request) -> web.Response:
    await store_of(request).rename(container_of(request), request.query.get("name", ""))
    return web.Response(status=204)


async def update_container(request: web.Request) -> web.Response:
    c = container_of(request)
    warnings = await store_of(request).update(c, await json_body(request))
    return web.json_response({"Warnings": warnings})


async def prune_containers(request: web.Request) -> web.Response:
    keep = prune_filter(schema.filters(request.query.get("filters", "")))
    deleted, reclaimed = await store_of(request).prune(keep)
    return web.json_response({"ContainersDeleted": deleted or None,
                              "SpaceReclaimed": reclaimed})


def prune_filter(filters: dict[str, list[str]]) -> Callable[[Container], bool]:
    """Docker's container prune filters (``until``, ``label``, ``label!``): what to keep."""
    for key in filters:
        if key not in ("until", "label", "label!"):
            raise InvalidParameter(f"invalid filter '{key}'")
    until = 0
    if filters.get("until"):
        try:
            until = parse_time_arg(filters["until"][0], name="until")
        except ValueError as err:
            raise InvalidParameter(str(err)) from None

    def keep(c: Container) -> bool:
        if until and parse_rfc3339(c.spec.created) > until:
            return True
        labels = c.spec.labels
        if filters.get("label") and not label_matches(labels, filters["label"]):
            return True
        return any(label_matches(labels, [v]) for v in filters.get("label!", []))

    return keep


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
    ("POST", "/containers/{id}/rename", rename_container),
    ("POST", "/containers/{id}/update", update_container),
    ("POST", "/containers/prune", prune_containers),
    ("DELETE", "/containers/{id}", remove_container),
    ("POST", "/containers/{id}/resize", resize_container),
]
