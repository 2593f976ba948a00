"""``/volumes``: create, list, inspect, remove, prune (``runtime.volumes`` does the work)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from logpipe.errors import InvalidParameter

from .. import schema
from ..volumes import label_matches, matches as volume_matches
from .common import json_body, qbool, store_of



async def create_volume(request: web.Request) -> web.Response:
    req = schema.volume_create(await json_body(request))
    vol = await asyncio.to_thread(store_of(request).volumes.create, req.Name or "",
                                  req.Driver or "", req.Labels, req.DriverOpts)
    store_of(request).events.emit("volume", "create", vol.name, {"driver": "local"})
    return web.json_response(vol.to_json(), status=201)


async def list_volumes(request: web.Request) -> web.Response:
    store = store_of(request)
    filters = schema.filters(request.query.get("filters", ""))
    vols = await asyncio.to_thread(store.volumes.list)
    items = [v.to_json() for v in vols
             if volume_matches(v, filters, bool(store.volume_users(v.name)))]
    return web.json_response({"Volumes": items, "Warnings": None})


async def inspect_volume(request: web.Request) -> web.Response:
    vol = store_of(request).volumes.get(request.match_info["name"])
    return web.json_response(vol.to_json())


async def remove_volume(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    store = store_of(request)
    existed = await asyncio.to_thread(store.volumes.list)
    await asyncio.to_thread(store.volumes.remove, name, qbool(request, "force"))
    if any(v.name == name for v in existed):
        store.events.emit("volume", "destroy", name, {"driver": "local"})
    return web.Response(status=204)


async def prune_volumes(request: web.Request) -> web.Response:
    filters = schema.filters(request.query.get("filters", ""))
    for key in filters:
        if key not in ("label", "label!"):
            raise InvalidParameter(f"Invalid filter '{key}'")

    def keep(vol) -> bool:
        labels = vol.labels or {}
        return bool(filters.get("label") and not label_matches(labels, filters["label"])
                    or any(label_matches(labels, [v]) for v in filters.get("label!", [])))

    deleted, size = await asyncio.to_thread(store_of(request).volumes.prune, keep)
    for name in deleted:
        store_of(request).events.emit("volume", "destroy", name, {"driver": "local"})
    store_of(request).events.emit("volume", "prune", "", {"reclaimed": str(size)})
    return web.json_response({"VolumesDeleted": deleted or None, "SpaceReclaimed": size})




ROUTES = [
    ("POST", "/volumes/create", create_volume), ("GET", "/volumes", list_volumes),
    ("POST", "/volumes/prune", prune_volumes),
    ("GET", "/volumes/{name}", inspect_volume), ("DELETE", "/volumes/{name}", remove_volume),
]
