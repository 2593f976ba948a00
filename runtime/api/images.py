"""``/images``: list, inspect, load, import, pull, push, tag, save, prune, remove, and
``/auth`` (a registry login check); ``runtime.images`` and ``runtime.registry`` do the work.

Pull and push answer Docker's JSON progress stream. As in dockerd, an error before the first
message is the HTTP answer (a 404 for an unknown manifest), one after it a last message
``{"errorDetail": {"message": ...}, "error": ...}``.

Image events: every change to the images goes through ``image_event`` (one call per pull,
push, tag, untag/delete, load, import), the single place to connect an event bus to.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile

from aiohttp import web

from logpipe.errors import InvalidParameter, LogpipeError

from ..commit import hide_intermediate, remove_with_parents
from ..views import filter_images, image_inspect, image_summary
from .common import IMAGES_KEY, log, qbool, store_of


def image_event(request: web.Request, action: str, image: str, name: str = "") -> None:
    """An image changed (``pull``, ``push``, ``tag``, ``untag``, ``delete``, ``load``,
    ``import``): Docker's ``type=image`` event, its actor ``image`` (an id, or the reference
    pushed) with the attribute ``name`` (the reference concerned; the id if none)."""
    store_of(request).events.emit("image", action, image, {"name": name or image})


async def list_images(request: web.Request) -> web.Response:
    images = await asyncio.to_thread(request.app[IMAGES_KEY].list)
    if not qbool(request, "all"):  # a build's intermediate images are listed with -a only
        images = await asyncio.to_thread(hide_intermediate, images)
    images = filter_images(request.query.get("filters", ""), images)
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
        image_event(request, "load", image_id)
    text = "".join(json.dumps({"stream": f"Loaded image{' ID' if r.startswith('sha256:') else ''}: {r}\n"}) + "\n"
                   for r in refs)
    return web.Response(text=text, content_type="application/json")


async def create_image(request: web.Request) -> web.StreamResponse:
    """``docker pull`` (``fromImage=``) or ``docker import`` (``fromSrc=-``: the body is the
    tarball)."""
    if "fromImage" in request.query:
        return await pull_image(request)
    if request.query.get("fromSrc") != "-":
        raise InvalidParameter("fromSrc or fromImage is required (logpipe imports from the "
                               "request body only: fromSrc=-)")
    repo, tag = request.query.get("repo", ""), request.query.get("tag", "")
    ref = f"{repo}:{tag}" if repo and tag else repo or None
    path = await _spool_body(request)
    try:
        image = await asyncio.to_thread(request.app[IMAGES_KEY].import_tar, path, ref)
    finally:
        os.unlink(path)
    image_event(request, "import", image.id)
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
        image_event(request, action, image_id)
    return web.json_response(result)


def _removal_events(request: web.Request, items: list[dict[str, str]]) -> None:
    """``[{"Untagged": ref}, {"Deleted": id}]`` as Docker's ``untag`` and ``delete`` events."""
    for item in items:
        for key, value in item.items():
            image_event(request, "untag" if key == "Untagged" else "delete", value)


# -- registries -------------------------------------------------------------------------


class _Progress:
    """Docker's JSON progress stream, started by its first message (errors before it are
    the HTTP answer, as in dockerd)."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.resp: web.StreamResponse | None = None

    async def emit(self, msg: dict) -> None:
        if self.resp is None:
            self.resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await self.resp.prepare(self.request)
        await self.resp.write(json.dumps(msg).encode() + b"\r\n")

    async def run(self, work) -> web.StreamResponse:
        from ..registry.progress import error
        from ..registry.pull import PullError

        try:
            await work(self.emit)
        except ConnectionError:
            raise  # the client went away: nothing to tell it (the pull's files are gone)
        except OSError as err:  # a full disk: the store's files, not the request
            if self.resp is None:
                raise PullError(f"failed to register layer: {err.strerror or err}".lower()) \
                    from None
            await self.emit(error(f"failed to register layer: {(err.strerror or '').lower()}"))
        except LogpipeError as err:
            if self.resp is None:
                raise
            await self.emit(error(str(err)))
        except Exception as err:  # a bug or an unforeseen failure: said, and logged once
            if self.resp is None:
                raise
            log.exception("image transfer failed")
            await self.emit(error(f"{type(err).__name__}: {err}"))
        assert self.resp is not None
        await self.resp.write_eof()
        return self.resp


def _registry_auth(request: web.Request):
    from ..registry.auth import decode_header

    return decode_header(request.headers.get("X-Registry-Auth"))


async def pull_image(request: web.Request) -> web.StreamResponse:
    """``POST /images/create?fromImage=&tag=&platform=``."""
    from ..registry import reference
    from ..registry.pull import pull

    ref = reference.from_query(request.query["fromImage"], request.query.get("tag", ""))
    cfg = store_of(request).config
    images = request.app[IMAGES_KEY]

    async def work(emit) -> None:
        image = await pull(images, ref, _registry_auth(request), emit,
                           platform=request.query.get("platform", ""),
                           insecure=cfg.insecure_registries, mirrors=cfg.registry_mirrors)
        image_event(request, "pull", image.id, ref.familiar)

    return await _Progress(request).run(work)


async def push_image(request: web.Request) -> web.StreamResponse:
    """``POST /images/{name}/push?tag=``."""
    from ..registry import reference
    from ..registry.push import push

    name, tag = request.match_info["name"], request.query.get("tag", "")
    ref = reference.parse(f"{name}:{tag}" if tag else name)
    images = request.app[IMAGES_KEY]
    insecure = store_of(request).config.insecure_registries
    progress = _Progress(request)

    async def work(emit) -> None:
        await push(images, ref, _registry_auth(request), emit, insecure=insecure)
        image_event(request, "push", ref.familiar)

    return await progress.run(work)


async def tag_image(request: web.Request) -> web.Response:
    """``POST /images/{name}/tag?repo=&tag=``: 201, no body."""
    from ..registry import reference

    repo, tag = request.query.get("repo", ""), request.query.get("tag", "")
    if not repo:
        raise InvalidParameter("repository name must have at least one component")
    new = reference.parse(f"{repo}:{tag}" if tag else repo)
    if new.digest:
        raise InvalidParameter("refusing to create a tag with a digest reference")
    image = await asyncio.to_thread(request.app[IMAGES_KEY].tag, request.match_info["name"],
                                    new.familiar)
    image_event(request, "tag", image.id, new.familiar)
    return web.Response(status=201)


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    """The archive is written to ``tmp/`` first (tar needs a file), then sent."""
    from ..registry import reference
    from ..registry.archive import write_save_archive

    images = request.app[IMAGES_KEY]
    selected = []
    for name in names:
        image = await asyncio.to_thread(images.resolve, name)
        tags = []
        if not name.startswith("sha256:") and not image.id.split(":", 1)[1].startswith(name):
            familiar = reference.parse(name).familiar
            tags = [familiar] if familiar in image.repo_tags else list(image.repo_tags)
        for i, (seen, seen_tags) in enumerate(selected):
            if seen.id == image.id:  # one entry per image, with every name asked for
                selected[i] = (seen, seen_tags + [t for t in tags if t not in seen_tags])
                break
        else:
            selected.append((image, tags))
    fd, path = tempfile.mkstemp(dir=images.tmp, prefix="save-")
    try:
        with os.fdopen(fd, "wb") as f:
            await asyncio.to_thread(write_save_archive, images, selected, f)
        resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
        resp.content_length = os.path.getsize(path)
        await resp.prepare(request)
        with open(path, "rb") as f:
            while chunk := await asyncio.to_thread(f.read, 1 << 20):
                await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        os.unlink(path)


async def get_image(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])


async def get_images(request: web.Request) -> web.StreamResponse:
    names = request.query.getall("names", [])
    if not names:
        raise InvalidParameter("no images specified")
    return await _save(request, names)


async def prune_images(request: web.Request) -> web.Response:
    """``POST /images/prune?filters=``: dangling images, or every unused one
    (``dangling=false``), older than ``until``, with or without ``label``s."""
    from ..views import prune_filter

    images = request.app[IMAGES_KEY]
    keep = prune_filter(request.query.get("filters", ""))
    deleted, space = await asyncio.to_thread(images.prune, keep, store_of(request).image_user)
    _removal_events(request, deleted)
    return web.json_response({"ImagesDeleted": deleted or None, "SpaceReclaimed": space})


async def auth(request: web.Request) -> web.Response:
    """``POST /auth`` (``docker login``): the credentials open the registry's ``/v2/``."""
    from ..registry.auth import Credentials, server_key
    from ..registry.client import RegistryClient
    from ..registry.pull import session
    from ..registry.reference import DOCKER_HUB_AUTH_KEY, DOCKER_HUB_HOST
    from ..schema import auth_config, decode_json

    body = auth_config(decode_json(await request.read()))
    creds = Credentials(body.username or "", body.password or "", body.identitytoken or "")
    key = server_key(body.serveraddress or "")
    host = DOCKER_HUB_HOST if key == DOCKER_HUB_AUTH_KEY else key
    async with session() as s:
        client = RegistryClient(s, host, "", creds, store_of(request).config.insecure_registries)
        await client.login()
    return web.json_response({"Status": "Login Succeeded", "IdentityToken": ""})


ROUTES = [
    ("GET", "/images/json", list_images),
    ("GET", "/images/get", get_images),
    ("GET", "/images/{name:.+}/get", get_image),
    ("POST", "/images/{name:.+}/push", push_image),
    ("POST", "/images/{name:.+}/tag", tag_image),
    ("POST", "/images/prune", prune_images),
    ("POST", "/auth", auth),
    ("GET", "/images/{name:.+}/json", inspect_image),
    ("POST", "/images/load", load_images),
    ("POST", "/images/create", create_image),
    ("DELETE", "/images/{name:.+}", remove_image),
]
