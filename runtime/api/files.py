"""A container's files: ``/containers/{id}/archive`` (``docker cp``: ``GET`` a tar of a
path, ``HEAD`` its stat, ``PUT`` a tar into a directory), ``/export`` and ``/changes``.

The archives themselves are ``runtime.archive``'s; here is how a container's filesystem is
reached. A running container's is its own view (``/proc/<pid>/root``, mounts included). A
stopped one's root is mounted for the request (``runtime.rootfs.prepare``, unmounted after)
while the request holds the container's lock, so that no start or removal mounts or unmounts
it meanwhile, and its volumes and binds are mapped to their host paths.

Archives are written as they are read, one piece at a time (``CHUNK_BYTES`` at most per read
in a thread): a client that stops reading holds its request, not the daemon's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from typing import AsyncIterator, Iterator

from aiohttp import web

from logpipe.errors import InvalidParameter

from .. import archive, rootfs
from ..spec import ContainerSpec
from .common import container_of, qbool
from .streams import serve_stream

CHUNK_BYTES = 1 << 20
#: What the runtime mounts in every container (``runtime.oci``): not the container's changes.
RUNTIME_MOUNTS = ("/proc", "/dev", "/sys", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


class NoOwnFilesystem(InvalidParameter):
    def __init__(self, cid: str) -> None:
        super().__init__(f"container {cid} runs with runtime process: it has no filesystem "
                         "of its own (its command sees the host's)")


def _mounts(spec: ContainerSpec) -> list[tuple[str, str, bool]]:
    """A stopped container's volumes and binds: (target, host source, read-only)."""
    out = [(b.target, b.source, b.readonly) for b in spec.binds]
    out += [(m.target, m.path, m.readonly) for m in spec.mounts if m.type != "tmpfs" and m.path]
    return out


@contextlib.asynccontextmanager
async def container_fs(c, with_mounts: bool = True) -> AsyncIterator[archive.ContainerFS]:
    """The container's filesystem for the length of a request (see the module's text)."""
    if c.spec.runtime == "process":
        raise NoOwnFilesystem(c.id)
    if c.running and not c.restarting and c.state.pid:
        if with_mounts:
            yield archive.fs_of(f"/proc/{c.state.pid}/root", [], live=True)
        else:
            yield archive.fs_of(os.path.join(c.spec.dir, "rootfs"), [], live=False)
        return
    async with c.lock:
        root = await asyncio.to_thread(rootfs.prepare, c.spec)
        try:
            yield archive.fs_of(root, _mounts(c.spec) if with_mounts else [], live=False)
        finally:
            if not c.running:
                await asyncio.to_thread(rootfs.release, c.spec)


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise InvalidParameter("bad parameter: pathcannot be empty")  # Docker's text
    return path


async def _write_blocks(resp: web.StreamResponse, blocks: Iterator[bytes]) -> None:
    """Write what ``blocks`` yields, read in a thread up to ``CHUNK_BYTES`` at a time."""
    def take() -> bytes:
        out, size = [], 0
        for block in blocks:
            out.append(block)
            size += len(block)
            if size >= CHUNK_BYTES:
                break
        return b"".join(out)

    try:
        while data := await asyncio.to_thread(take):
            await resp.write(data)
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


async def _tar_response(request: web.Request, blocks: Iterator[bytes],
                        headers: dict[str, str]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/x-tar", **headers})
    await resp.prepare(request)
    return await serve_stream(request, resp, _write_blocks(resp, blocks))


async def head_archive(request: web.Request) -> web.Response:
    c = container_of(request)
    path = _path(request)
    async with container_fs(c) as fs:
        r = await asyncio.to_thread(archive.lookup, fs, path, request.match_info["id"])
        doc = await asyncio.to_thread(archive.path_stat, fs, r)
    return web.Response(headers={"X-Docker-Container-Path-Stat": archive.stat_header(doc),
                                 "Content-Type": "application/json"})


async def get_archive(request: web.Request) -> web.StreamResponse:
    c = container_of(request)
    path = _path(request)
    async with container_fs(c) as fs:
        r = await asyncio.to_thread(archive.lookup, fs, path, request.match_info["id"])
        doc = await asyncio.to_thread(archive.path_stat, fs, r)
        start, name = archive.archive_names(r)
        blocks = archive.tar_stream(fs, start, name, r.st)
        return await _tar_response(request, blocks, {
            "X-Docker-Container-Path-Stat": archive.stat_header(doc)})


class _Body(io.RawIOBase):
    """The request's body as a blocking file, for the extraction thread."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self.content, self.loop = request.content, loop

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        data = asyncio.run_coroutine_threadsafe(self.content.read(len(buf)), self.loop).result()
        buf[:len(data)] = data
        return len(data)


async def put_archive(request: web.Request) -> web.Response:
    c = container_of(request)
    path = _path(request)
    no_overwrite = qbool(request, "noOverwriteDirNonDir")
    copy_owner = qbool(request, "copyUIDGID")
    body = io.BufferedReader(_Body(request, asyncio.get_running_loop()), archive.CHUNK)
    async with container_fs(c) as fs:
        def run() -> None:
            dest = archive.extraction_point(fs, path, request.match_info["id"])
            owner = None
            if copy_owner:
                from ..oci import resolve_user

                user = resolve_user(fs.root, c.spec.user)
                owner = (user["uid"], user["gid"])
            archive.extract(fs, dest, body, no_overwrite, owner)

        await asyncio.to_thread(run)
    return web.Response(status=200)


async def export_container(request: web.Request) -> web.StreamResponse:
    c = container_of(request)
    async with container_fs(c, with_mounts=False) as fs:
        return await _tar_response(request, archive.export_stream(fs), {})


def _changes(spec: ContainerSpec) -> list[dict]:
    excluded = set(RUNTIME_MOUNTS) | {t for t, _, _ in _mounts(spec)} | set(spec.tmpfs)
    excluded |= {m.target for m in spec.mounts}
    if os.path.exists(os.path.join(spec.dir, rootfs.COPY_MARKER)):
        return archive.copy_changes(os.path.join(spec.dir, "rootfs"), spec.rootfs, excluded)
    return archive.overlay_changes(os.path.join(spec.dir, "upper"), spec.rootfs, excluded)


async def container_changes(request: web.Request) -> web.Response:
    c = container_of(request)
    if c.spec.runtime == "process":
        raise NoOwnFilesystem(c.id)
    return web.json_response(await asyncio.to_thread(_changes, c.spec))


ROUTES = [
    ("HEAD", "/containers/{id}/archive", head_archive),
    ("GET", "/containers/{id}/archive", get_archive),
    ("PUT", "/containers/{id}/archive", put_archive),
    ("GET", "/containers/{id}/export", export_container),
    ("GET", "/containers/{id}/changes", container_changes),
]
