"""``/commit``, ``/build`` and ``/images/{name}/history`` (``runtime.commit`` and
``runtime.build`` do the work).

A build answers a stream of Docker's JSON messages (``{"stream": ...}``, ``{"aux": ...}``,
``{"errorDetail": ..., "error": ...}``). As Docker's ``postBuild``, an error before the
first message is the request's error status; after it, an ``errorDetail`` message. A client
that goes away cancels the build: the step's container is removed, no image is tagged.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from typing import Any

from aiohttp import web

from logpipe.errors import InvalidParameter, LogpipeError

from ..build.builder import BuildCancelled, BuildError, Builder, BuildOptions
from ..build.context import apply_dockerignore, extract_context
from ..commit import CommitOptions, commit_container, history
from ..images import normalize_ref
from .common import IMAGES_KEY, qbool, store_of
from .images import _spool_body


async def image_history(request: web.Request) -> web.Response:
    images = request.app[IMAGES_KEY]
    image = await asyncio.to_thread(images.resolve, request.match_info["name"])
    return web.json_response(await asyncio.to_thread(history, images, image))


def _repo_tag(repo: str, tag: str) -> str:
    if not repo:
        if tag:
            raise InvalidParameter("invalid reference format: repository name must have at "
                                   "least one component")
        return ""
    return normalize_ref(f"{repo}:{tag}" if tag else repo)


async def commit(request: web.Request) -> web.Response:
    store = store_of(request)
    c = store.get(request.query.get("container", ""))
    body = await request.read()
    config = json.loads(body) if body.strip() else None
    if config is not None and not isinstance(config, dict):
        raise InvalidParameter("invalid JSON: the body must be a container config")
    opts = CommitOptions(
        repo_tag=_repo_tag(request.query.get("repo", ""), request.query.get("tag", "")),
        comment=request.query.get("comment", ""), author=request.query.get("author", ""),
        pause=qbool(request, "pause", True), changes=tuple(request.query.getall("changes", [])),
        config=config or None)
    image = await commit_container(store, c, opts)
    return web.json_response({"Id": image.id}, status=201)


def _build_options(request: web.Request) -> BuildOptions:
    from ..registry.auth import decode_config_header

    q = request.query

    def json_map(key: str) -> dict[str, Any]:
        text = q.get(key, "")
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError as err:
            raise InvalidParameter(f"invalid {key} value: {err}") from None
        if not isinstance(value, dict):
            raise InvalidParameter(f"invalid {key} value: not an object")
        return value

    tags = tuple(normalize_ref(t) for t in q.getall("t", []) if t)
    return BuildOptions(tags=tags, dockerfile=q.get("dockerfile", "") or "Dockerfile",
                        buildargs=json_map("buildargs"), nocache=qbool(request, "nocache"),
                        target=q.get("target", ""), quiet=qbool(request, "q"),
                        rm=qbool(request, "rm", True), forcerm=qbool(request, "forcerm"),
                        labels=json_map("labels"), network=q.get("networkmode", ""),
                        registry_auth=decode_config_header(
                            request.headers.get("X-Registry-Config")))


def _read_dockerfile(context: str, name: str) -> str:
    from ..rootfs import resolve_in_root

    path = resolve_in_root(context, name, follow_last=True)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise InvalidParameter(f"Cannot locate specified Dockerfile: {name}") from None


async def build(request: web.Request) -> web.StreamResponse:
    opts = _build_options(request)
    store = store_of(request)
    images = request.app[IMAGES_KEY]
    if request.query.get("remote"):
        raise InvalidParameter("logpipe builds from an uploaded context only (no remote)")
    upload = await _spool_body(request)
    context = tempfile.mkdtemp(dir=images.tmp, prefix="context-")
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    state = {"gone": False}

    def gone() -> bool:
        transport = request.transport
        state["gone"] = state["gone"] or transport is None or transport.is_closing()
        return state["gone"]

    async def emit(message: dict[str, Any]) -> None:
        if gone():
            raise BuildCancelled("the client went away: build cancelled")
        if not resp.prepared:
            await resp.prepare(request)
        try:
            await resp.write(json.dumps(message).encode() + b"\r\n")
        except (ConnectionError, RuntimeError):
            state["gone"] = True
            raise BuildCancelled("the client went away: build cancelled") from None

    try:
        await asyncio.to_thread(extract_context, upload, context, opts.dockerfile)
        text = await asyncio.to_thread(_read_dockerfile, context, opts.dockerfile)
        await asyncio.to_thread(apply_dockerignore, context)
        builder = Builder(store, context, opts, emit, gone)
        try:
            image = await builder.run(text)
            if opts.tags:
                await asyncio.to_thread(images.set_tags, image.id, list(opts.tags))
            await emit({"aux": {"ID": image.id}})
            if opts.quiet:
                await emit({"stream": image.id + "\n"})
            await builder.out(f"Successfully built {image.short_id}\n")
            for tag in opts.tags:
                await builder.out(f"Successfully tagged {tag}\n")
        except BuildCancelled:
            return resp
        except LogpipeError as err:
            if not resp.prepared:
                raise
            detail = {"message": str(err)}
            if isinstance(err, BuildError) and err.code:
                detail = {"code": err.code, "message": str(err)}
            await emit({"errorDetail": detail, "error": str(err)})
    finally:
        os.unlink(upload)
        await asyncio.to_thread(shutil.rmtree, context, True)
    if not resp.prepared:
        await resp.prepare(request)
    await resp.write_eof()
    return resp


ROUTES = [
    ("POST", "/commit", commit),
    ("POST", "/build", build),
    ("GET", "/images/{name:.+}/history", image_history),
]
