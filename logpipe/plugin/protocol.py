"""The LogDriver plugin protocol (an aiohttp app on a unix socket): every request is a JSON
POST; errors are ``{"Err": "..."}`` with status 200, which Docker shows verbatim (at
``docker run`` for StartLogging), and ReadLogs answers with a stream of length-prefixed
``LogEntry`` frames (Docker's ``application/x-json-stream``, although it is protobuf).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

from aiohttp import web

from logpipe.errors import LogpipeError

from .removal import DEFAULT_DOCKER_HOST, DEFAULT_INTERVAL
from .store import Logger, load_meta

log = logging.getLogger("logpipe.plugin")
#: How long StopLogging waits for what is in the FIFO to be stored before answering.
STOP_WAIT = 10.0
#: What Docker's plugin client sends and plugins answer with.
PLUGIN_CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"


class Plugin:
    """The plugin's state: every running ``Logger`` by FIFO path; for the counters, the
    last logger that wrote each container's log in this run and the shippers of containers
    that ended before it (by container id); what ``removal`` asks Docker's API with."""

    def __init__(self, data_root: str, docker_host: str = DEFAULT_DOCKER_HOST,
                 sweep_interval: float = DEFAULT_INTERVAL) -> None:
        self.data_root = data_root
        self.docker_host, self.sweep_interval = docker_host, sweep_interval
        self.loggers: dict[str, Logger] = {}
        self.written: dict[str, Logger] = {}
        self.shippers: dict[str, Any] = {}

    def adopt(self) -> None:
        """After a restart: the FIFOs of containers still logging (``store.adopt``)."""
        from .store import adopt

        for logger in adopt(self.data_root, self.shippers):
            self.loggers[logger.fifo] = logger

    def snapshot(self) -> tuple[dict[str, Logger], dict[str, Any]]:
        """The loggers that wrote, and the shippers, by container id (on the event loop, so
        that a thread reads them while requests change the live ones)."""
        loggers = dict(self.written)
        shippers = dict(self.shippers)
        for logger in self.loggers.values():
            if logger.sink is not None:
                loggers[logger.info.container_id] = logger
        for cid, logger in loggers.items():
            if logger.shipper is not None:
                shippers[cid] = logger.shipper
        return loggers, shippers

    def sweep(self, shippers: dict[str, Any]) -> list[str]:
        """Remove the directories of containers Docker removed (``removal.sweep``)."""
        from .removal import sweep

        # A logger whose thread ended (Docker died without StopLogging) holds nothing.
        busy = {logger.info.container_id for logger in list(self.loggers.values())
                if logger.thread.is_alive()}
        removed = sweep(self.data_root, self.docker_host, busy, shippers)
        for cid in removed:
            self.written.pop(cid, None)
            self.shippers.pop(cid, None)
            log.info("%s: removed the log of a removed container", cid[:12])
        return removed

    def start_logging(self, body: dict[str, Any]) -> None:
        fifo = body.get("File") or ""
        if not fifo:
            raise LogpipeError("StartLogging without a File")
        logger = Logger(self.data_root, fifo, body.get("Info") or {})
        logger.start()
        self.loggers[fifo] = logger

    async def stop_logging(self, body: dict[str, Any]) -> None:
        """Docker calls this before it closes its end of the FIFO (moby's
        ``pluginAdapter.Close``), having written its last line: wait (bounded) until the
        thread has stored what is in the pipe, so ``docker logs`` right after sees it. The
        thread ends at the EOF that follows the answer."""
        logger = self.loggers.pop(body.get("File") or "", None)
        if logger is not None:
            logger.release()
            await asyncio.get_running_loop().run_in_executor(None, logger.flush, STOP_WAIT)
            try:
                logger.stopped()
            except (OSError, LogpipeError) as err:
                log.warning("%s: %s", logger.info.container_id[:12], err)
            if logger.sink is not None:
                self.written[logger.info.container_id] = logger


def _reply(data: dict[str, Any]) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), content_type=PLUGIN_CONTENT_TYPE)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError as err:
        raise LogpipeError(f"invalid request body: {err}") from None
    if not isinstance(data, dict):
        raise LogpipeError("invalid request body: not a JSON object")
    return data


async def activate(request: web.Request) -> web.Response:
    return _reply({"Implements": ["LogDriver"]})


async def capabilities(request: web.Request) -> web.Response:
    return _reply({"Cap": {"ReadLogs": True}})


async def start_logging(request: web.Request) -> web.Response:
    try:
        request.app["plugin"].start_logging(await _body(request))
    except LogpipeError as err:
        return _reply({"Err": str(err)})
    return _reply({"Err": ""})


async def stop_logging(request: web.Request) -> web.Response:
    try:
        await request.app["plugin"].stop_logging(await _body(request))
    except LogpipeError as err:
        return _reply({"Err": str(err)})
    return _reply({"Err": ""})


async def read_logs(request: web.Request) -> web.StreamResponse:
    """``docker logs``: the stored records as ``LogEntry`` frames. The reader is the storage
    driver's own (tail, since, until, follow across rotation); it blocks, so each step runs
    in a thread. An error before the first byte is ``{"Err"}``; after it, the stream ends."""
    from .readlogs import open_reader

    plugin: Plugin = request.app["plugin"]
    try:
        body = await _body(request)
        info = body.get("Info") or {}
        meta = load_meta(plugin.data_root, info.get("ContainerID") or "")
        config = body.get("Config") or {}
        if config.get("Follow"):
            await _first_record(plugin, meta)
        chunks = open_reader(meta, config)
    except LogpipeError as err:
        return _reply({"Err": str(err)})
    resp = web.StreamResponse(headers={"Content-Type": "application/x-json-stream"})
    await resp.prepare(request)
    loop = asyncio.get_running_loop()
    from .entry import encode_chunk

    limit = 1 if config.get("Follow") else 512  # following: each record as it comes
    try:
        while True:
            batch = await loop.run_in_executor(None, _next_batch, chunks, limit)
            if not batch:
                break
            await resp.write(b"".join(encode_chunk(c) for c in batch))
    finally:
        await loop.run_in_executor(None, chunks.close)
    await resp.write_eof()
    return resp


async def metrics(request: web.Request) -> web.Response:
    """Every container's counters in the daemon's ``/metrics`` format (not part of Docker's
    plugin protocol: for an operator, ``curl --unix-socket``)."""
    from logpipe.metrics import CONTENT_TYPE

    from .counters import metrics as render

    plugin: Plugin = request.app["plugin"]
    loggers, shippers = plugin.snapshot()
    text = await asyncio.to_thread(render, plugin.data_root, loggers, shippers)
    return web.Response(text=text, headers={"Content-Type": CONTENT_TYPE})


async def _sweeper(app: web.Application):
    """Every ``sweep_interval`` seconds, the directories of removed containers go."""
    plugin: Plugin = app["plugin"]

    async def loop() -> None:
        while True:
            await asyncio.sleep(plugin.sweep_interval)
            _, shippers = plugin.snapshot()
            try:
                await asyncio.to_thread(plugin.sweep, shippers)
            except Exception:  # one failed sweep must not end the next ones
                log.exception("removing the logs of removed containers")

    task = asyncio.get_running_loop().create_task(loop())
    yield
    task.cancel()


async def _first_record(plugin: Plugin, meta: dict[str, Any]) -> None:
    """``docker logs -f`` of a running container that has not written yet: the log is
    created at the first record, and following a log that does not exist would end at once;
    wait until it exists, or Docker says the container is not running (or cannot say)."""
    from .readlogs import log_file
    from .removal import container_running

    path = log_file(meta)
    cid = meta["Info"]["container_id"]
    while path and not os.path.exists(path):
        if not await asyncio.to_thread(container_running, plugin.docker_host, cid):
            return
        for _ in range(10):
            if os.path.exists(path):
                return
            await asyncio.sleep(0.1)


def _next_batch(chunks, limit: int) -> list:
    """The next ``limit`` chunks (fewer at the end): one thread hop per batch."""
    out = []
    for chunk in chunks:
        out.append(chunk)
        if len(out) >= limit:
            break
    return out


def make_app(plugin: Plugin) -> web.Application:
    app = web.Application()
    app["plugin"] = plugin
    app.router.add_post("/Plugin.Activate", activate)
    app.router.add_post("/LogDriver.Capabilities", capabilities)
    app.router.add_post("/LogDriver.StartLogging", start_logging)
    app.router.add_post("/LogDriver.StopLogging", stop_logging)
    app.router.add_post("/LogDriver.ReadLogs", read_logs)
    app.router.add_get("/metrics", metrics)
    if plugin.sweep_interval > 0:
        app.cleanup_ctx.append(_sweeper)
    return app


async def start_site(data_root: str, path: str) -> web.AppRunner:
    """The plugin served on ``path`` from a running event loop (``logpipe daemon`` with
    ``"docker-plugin": true``); the caller prepares the socket's path and cleans the runner
    up. The FIFOs of containers still logging are re-adopted before the socket answers, as
    by ``logpipe docker-plugin``."""
    os.makedirs(data_root, mode=0o700, exist_ok=True)
    plugin = Plugin(data_root)
    await asyncio.get_running_loop().run_in_executor(None, plugin.adopt)
    # A ``docker logs -f`` in progress must not hold the daemon's exit for aiohttp's 60 s.
    runner = web.AppRunner(make_app(plugin), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    await web.UnixSite(runner, path).start()
    return runner
