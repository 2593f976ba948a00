"""``/images``: list, inspect, load, import, remove (``runtime.images`` does the work)."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile

from aiohttp import web

from logpipe.errors import InvalidParameter

from ..commit import hide_intermediate, remove_with_parents
from ..views import image_inspect, image_summary
from .common import IMAGES_KEY, qbool, store_of



async def list_images(request: web.Request) -> web.Response:
    images = await asyncio.to_thread(request.app[IMAGES_KEY].list)
    if not qbool(request, "all"):  # a build's intermediate images are listed with -a only
        images = await asyncio.to_thread(hide_intermediate, images)
    return web.json_response([image_summary(im) for im in images])


async def inspect_image(request: web.Request) -> web.Response:
    im = await asyncio.to_thread(request.app[IMAGES_KEY].resolve, request.match_info["name"])
    return web.json_response(image_inspect(im))


async def _spool_body(request: web.Request) -> str:
    """The request body in a temporary file of the data root (images are big)."""
    images = request.app[IMAGES_KEY]
    fd, path = tempfile.mkstemp(dir=images.tmp, prefix="upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            async for data in request.content.iter_chunked(1 << 20):
                f.write(data)
    except BaseException:
        os.unlink(path)
        raise
    return path


async def load_images(request: web.Request) -> web.Response:
    path = await _spool_body(request)
    try:
        refs = await asyncio.to_thread(request.app[IMAGES_KEY].load, path)
    finally:
        os.unlink(path)
    for r in refs:  # Docker: "load", named by the image's id
        image_id = (await asyncio.to_thread(request.app[IMAGES_KEY].resolve, r)).id
        store_of(request).events.emit("image", "load", image_id, {"name": image_id})
    text = "".join(json.dumps({"stream": f"Loaded image{' ID' if r.startswith('sha256:') else ''}: {r}\n"}) + "\n"
                   for r in refs)
    return web.Response(text=text, content_type="application/json")


async def create_image(request: web.Request) -> web.Response:
    """``docker import`` (``fromSrc=-``: the body is the tarball). There is no registry."""
    if request.query.get("fromSrc") != "-":
        raise InvalidParameter("logpipe has no registry to pull from: use `logpipe load` "
                               "(docker save archives) or `logpipe import` (rootfs tarballs)")
    repo, tag = request.query.get("repo", ""), request.query.get("tag", "")
    ref = f"{repo}:{tag}" if repo and tag else repo or None
    path = await _spool_body(request)
    try:
        image = await asyncio.to_thread(request.app[IMAGES_KEY].import_tar, path, ref)
    finally:
        os.unlink(path)
    store_of(request).events.emit("image", "import", image.id, {"name": image.id})
    return web.Response(text=json.dumps({"status": image.id}) + "\n",
                        content_type="application/json")


async def remove_image(request: web.Request) -> web.Response:
    store = store_of(request)
    image_id = (await asyncio.to_thread(request.app[IMAGES_KEY].resolve,
                                        request.match_info["name"])).id
    result = await asyncio.to_thread(remove_with_parents, request.app[IMAGES_KEY],
                                     request.match_info["name"], store.image_user,
                                     qbool(request, "force"))
    for item in result:  # Docker: "untag" per name, then "delete"; both named by the id
        action = "untag" if "Untagged" in item else "delete"
        store.events.emit("image", action, image_id, {"name": image_id})
    return web.json_response(result)


ROUTES = [
    ("GET", "/images/json", list_images),
    ("GET", "/images/{name:.+}/json", inspect_image),
    ("POST", "/images/load", load_images),
    ("POST", "/images/create", create_image),
    ("DELETE", "/images/{name:.+}", remove_image),
]
