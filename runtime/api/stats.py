"""``/containers/{id}/stats`` and ``/containers/{id}/top``: what a running container uses,
read from its cgroup (``runtime.stats``), and its processes (``runtime.top``).

A stats stream samples once a second and writes each sample before taking the next: a client
that stops reading holds its stream where it is (the write waits for the socket) and costs
the daemon one sample, not a growing queue. It ends when the container stops (after a last
zero sample, what Docker shows for a stopped container), when the client goes away, or when
the daemon shuts down.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from logpipe.errors import InvalidParameter

from .. import stats, top
from ..errors import ContainerConflict
from .common import container_of, qbool, store_of
from .streams import flush_headers, serve_stream

#: Docker's collector samples every second.
INTERVAL = 1.0


def _encode(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def _take(c, previous: dict | None) -> dict:
    """One sample, or Docker's zero document when the container is not running (or its
    process went away between the check and the read)."""
    name, cid = c.spec.name, c.id
    if not c.running or c.restarting or not c.state.pid:
        return stats.empty_stats(name, cid)
    try:
        if c.spec.runtime == "process":  # no cgroup of its own: its processes, counted
            return stats.process_sample(c.state.pid, name, cid, previous)
        return stats.sample(c.state.pid, name, cid, previous,
                            with_network=c.spec.network_mode != "host")
    except OSError:
        return stats.empty_stats(name, cid)


async def container_stats(request: web.Request) -> web.StreamResponse:
    c = container_of(request)
    stream = qbool(request, "stream", True)
    one_shot = qbool(request, "one-shot")
    if stream and one_shot:
        raise InvalidParameter("cannot have stream=true and one-shot=true")
    if not stream:
        doc = await asyncio.to_thread(_take, c, None)
        if not one_shot and doc["read"] != stats.ZERO_TIME:
            # Docker answers the collector's second sample, so that precpu_stats is set and
            # a client (``docker stats --no-stream``) can compute a CPU percentage.
            await asyncio.sleep(INTERVAL)
            doc = await asyncio.to_thread(_take, c, doc)
        return web.json_response(doc)
    exited = store_of(request).waiter(c, "not-running")
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await flush_headers(resp)

    async def body() -> None:
        previous = None
        try:
            while True:
                doc = await asyncio.to_thread(_take, c, previous)
                await resp.write(_encode(doc))
                if doc["read"] == stats.ZERO_TIME:
                    return  # not running: the zero sample was the last
                previous = doc
                try:
                    await asyncio.wait_for(asyncio.shield(exited), INTERVAL)
                except asyncio.TimeoutError:
                    continue
                await resp.write(_encode(stats.empty_stats(c.spec.name, c.id)))
                return
        finally:
            exited.cancel()
            if exited in c.exit_waiters:  # not left for the container's exit to find
                c.exit_waiters.remove(exited)

    return await serve_stream(request, resp, body())


async def container_top(request: web.Request) -> web.Response:
    c = container_of(request)
    ps_args = request.query.get("ps_args", "") or "-ef"
    top.check_ps_args(ps_args)
    if not c.running or not c.state.pid:
        raise ContainerConflict(f"Container {c.id} is not running")
    if c.restarting:
        raise ContainerConflict(f"Container {c.id} is restarting, wait until the container "
                                "is running")
    pid = c.state.pid

    def listing() -> dict:
        try:
            pids = stats.cgroup_pids(pid) if c.spec.runtime != "process" \
                else stats.group_pids(pid)
        except OSError:
            raise ContainerConflict(f"Container {c.id} is not running") from None
        return top.run_ps(ps_args, pids)

    return web.json_response(await asyncio.to_thread(listing))


ROUTES = [
    ("GET", "/containers/{id}/stats", container_stats),
    ("GET", "/containers/{id}/top", container_top),
]
