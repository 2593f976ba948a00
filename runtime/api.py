"""The daemon's HTTP API: a subset of the Docker Engine API with v1.41 semantics.

Routes are served with and without a version prefix (``/v1.41/containers/json``), so that
docker-py and the docker CLI work unchanged. Every error a user can cause is a
``LogpipeError`` whose category (``logpipe/errors.py``) carries its HTTP status;
``error_middleware`` below is the one place where it becomes Docker's ``{"message": ...}``
answer.

Logs and attach streams are Docker's multiplexed frames (``[stream, 0, 0, 0, len u32 BE]``,
stream 1 stdout, 2 stderr, 3 in-band error), one per record, with the ``-t``/``--details``
prefixes of ``logpipe.output``. The storage driver's reader is synchronous (it may block on
inotify while following), so it runs in a thread of its own and hands frames to the
response through the loop. The API never reads a container's pipes: ``attach`` follows the
container's log from the moment it starts.

Streams that last (``logs -f``, ``attach``, ``wait``) go through ``serve_stream``: a client
that hangs up is normal and costs one debug line, and a daemon that shuts down ends them at
once rather than waiting for them (it would keep its data root locked meanwhile).

Size: longer than 500 lines because it holds every route of the Engine API subset with its
request parsing; the documents it answers are built in ``runtime.views``, the operations
done by the store (``runtime.containers``), so a handler stays a few lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import re
import struct
import tempfile
import threading
import time
from typing import Any, Callable, Iterator

from aiohttp import web

from logpipe import __version__
from logpipe.driver import NONE, REMOTE, hook
from logpipe.errors import InvalidParameter, LogpipeError, NotModified
from logpipe.fileset import writer_alive
from logpipe.message import STDERR, STDOUT, Chunk
from logpipe.output import render
from logpipe.reading import ReadConfig
from logpipe.registry import driver_names, load_driver
from logpipe.timespec import parse_since

from . import schema
from .containers import ContainerStore, parse_signal
from .executors import available_runtimes, default_runtime
from .images import ImageStore
from .network import api as network_api
from .state import RUNNING
from .volumes import label_matches, matches as volume_matches
from .views import (GOARCH, container_inspect_live, container_summary, image_inspect,
                    image_summary)

API_VERSION = "1.41"
MIN_API_VERSION = "1.12"
SERVER_VERSION = f"logpipe-{__version__}"
STORE_KEY = web.AppKey("store", ContainerStore)
IMAGES_KEY = web.AppKey("images", ImageStore)
#: Set when the daemon shuts down: every lasting stream ends.
ENDING_KEY = web.AppKey("ending", asyncio.Event)
#: How long a shutting-down daemon lets requests other than streams finish (an image load,
#: a stop): then they are cancelled.
SHUTDOWN_GRACE = 5.0
#: Frames queued between a reader thread and its response before the reader waits.
QUEUE_LIMIT = 256
#: Bytes queued likewise: a client that stops reading holds its reader (a follower then keeps
#: its place in the log's files, which are bounded) instead of growing the daemon.
QUEUE_BYTES = 4 << 20
_STREAMS = {STDOUT: 1, STDERR: 2}
log = logging.getLogger("logpipe.daemon")
log = logging.getLogger("logpipe.daemon")


class ServerError(LogpipeError):
    """A malformed value Docker reports as 500 (its strconv errors, e.g. ``since=abc``)."""


# -- request helpers ------------------------------------------------------------------------


def qbool(request: web.Request, key: str, default: bool = False) -> bool:
    """Docker's boolean query values: false iff ``""``, ``0``, ``no``, ``false`` or ``none``."""
    if key not in request.query:
        return default
    return request.query[key].strip().lower() not in ("", "0", "no", "false", "none")


#: What Go's ``strconv.Atoi`` accepts (Python's ``int`` also takes spaces, ``_``, other digits).
_ATOI = re.compile(r"[+-]?[0-9]+")


def go_atoi(text: str) -> int:
    """Go's ``strconv.Atoi`` on a 64-bit machine, with its error texts (as ValueError)."""
    quoted = json.dumps(text, ensure_ascii=False)
    if not _ATOI.fullmatch(text):
        raise ValueError(f"strconv.Atoi: parsing {quoted}: invalid syntax")
    num = int(text)
    if not -(1 << 63) <= num < 1 << 63:
        raise ValueError(f"strconv.Atoi: parsing {quoted}: value out of range")
    return num


def qint(request: web.Request, key: str) -> int | None:
    """An integer query value as Docker parses it (``t``, ``limit``): 400 with Go's text."""
    value = request.query.get(key, "")
    if value == "":
        return None
    try:
        return go_atoi(value)
    except ValueError as err:
        raise InvalidParameter(str(err)) from None


async def json_body(request: web.Request) -> Any:
    """The body as parsed JSON (its shape is checked by the handler, against ``schema``);
    no body at all is Docker's ``invalid JSON: got EOF while reading request body``."""
    return schema.decode_json(await request.read())


def store_of(request: web.Request) -> ContainerStore:
    return request.app[STORE_KEY]


def container_of(request: web.Request):
    return store_of(request).get(request.match_info["id"])


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def encode_chunk(chunk: Chunk, cfg: ReadConfig, streams: frozenset[str]) -> bytes:
    """One frame per record, with the record's prefixes; other sources are dropped (§5.3)."""
    stream = _STREAMS.get(chunk.source)
    if stream is None or chunk.source not in streams:
        return b""
    data = render(chunk, cfg.timestamps, cfg.details)
    if chunk.partial is not None or data.count(b"\n") <= 1:
        return frame(stream, data)
    head = struct.pack(">BxxxL", stream, 0)[:4]
    return b"".join(head + struct.pack(">L", len(line) + 1) + line + b"\n"
                    for line in data[:-1].split(b"\n"))


async def flush_headers(resp: web.StreamResponse) -> None:
    """Send the status line and headers now: Docker's clients wait for them (a ``wait``
    caller knows it is registered, a ``logs`` caller that the request was accepted)."""
    await resp.write(b"")


async def stream_from_thread(resp: web.StreamResponse, produce: Iterator[bytes]) -> None:
    """Run the blocking iterator ``produce`` in a thread and write what it yields.

    Frames that arrive together are written together. A client that goes away stops the
    reader at its next record (a follower of a silent container notices when it next
    writes or stops)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    room = threading.Semaphore(QUEUE_LIMIT)
    queued = 0  # bytes handed to the loop and not written yet
    space = threading.Condition()
    stop = threading.Event()
    done = object()

    def put(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:
            stop.set()  # the loop is gone

    def pump() -> None:
        nonlocal queued
        try:
            for data in produce:
                if stop.is_set():
                    break
                if not data:
                    continue
                while not room.acquire(timeout=0.5):
                    if stop.is_set():
                        return
                with space:
                    while queued > QUEUE_BYTES:
                        if stop.is_set():
                            return
                        space.wait(0.5)
                    queued += len(data)
                put(data)
        except Exception as err:  # noqa: BLE001 - reported in-band, like Docker
            put(frame(3, f"Error grabbing logs: {err}\n".encode()))
        finally:
            close = getattr(produce, "close", None)
            if close is not None:
                close()
            put(done)

    threading.Thread(target=pump, name="log-reader", daemon=True).start()
    try:
        while True:
            item = await queue.get()
            items = [item]
            while not queue.empty() and item is not done:
                item = queue.get_nowait()
                items.append(item)
            finished = items[-1] is done
            if finished:
                items.pop()
            if items:
                data = b"".join(items)
                await resp.write(data)
                for _ in items:
                    room.release()
                with space:
                    queued -= len(data)
                    space.notify()
            if finished:
                return
    finally:
        stop.set()
        for _ in range(QUEUE_LIMIT):
            room.release()
        with space:
            space.notify_all()


class _Ending(Exception):
    """The daemon is shutting down: a lasting stream stops where it is."""


async def unless_ending(request: web.Request, aw: Any) -> Any:
    """Await ``aw`` unless the daemon starts shutting down first: then ``aw`` is cancelled
    and ``_Ending`` raised."""
    task = asyncio.ensure_future(aw)
    ending = asyncio.ensure_future(request.app[ENDING_KEY].wait())
    try:
        await asyncio.wait((task, ending), return_when=asyncio.FIRST_COMPLETED)
    finally:
        ending.cancel()
        if not task.done():
            task.cancel()  # the daemon is ending, or this request was cancelled
    if not task.done() or task.cancelled():
        raise _Ending
    return task.result()


async def serve_stream(request: web.Request, resp: web.StreamResponse,
                       body: Any) -> web.StreamResponse:
    """The rest of a response whose headers are sent: ``body`` writes it, then it ends.

    A client that goes away mid-stream is a normal event (``docker logs -f`` and Ctrl-C):
    one debug line, no traceback. On shutdown the connection is closed without the stream's
    clean end, so that no client takes it for the container's exit (Docker's clients report
    "unexpected EOF")."""
    try:
        await unless_ending(request, body)
        await resp.write_eof()
    except ConnectionError as err:
        log.debug("%s %s: the client went away (%s)", request.method, request.path, err)
    except _Ending:
        if request.transport is not None:
            request.transport.close()
    return resp


async def _end_streams(app: web.Application) -> None:
    """``on_shutdown``: lasting streams end now instead of holding the daemon's exit."""
    app[ENDING_KEY].set()


def read_frames(c, cfg: ReadConfig, streams: frozenset[str],
                attach: bool = False) -> Iterator[bytes]:
    """The container's log through its storage driver, as frames. ``driver.read`` is called
    here, before any response is prepared, so that ``none`` still answers 501.

    ``attach`` (the output of a running container as it happens): for a remote driver this
    is read from its spool, where it lands at once — journald's own read would only see it
    once shipped, and ``cache-disabled`` (which refuses ``logs``) does not apply to attach;
    for ``none`` from the small buffer its shim keeps for attach alone."""
    driver = load_driver(c.spec.log_type)
    info = c.spec.log_info()
    # What the reader reports (damage it skipped, records a slow follower missed) goes to
    # the client, never to the daemon's log: as Docker's in-band errors, on stream 3. The
    # docker CLI prints such a frame and ends, so a plain ``logs`` gets them after the last
    # record; a follower gets them where they happened (docker-py and logpipe's CLI show
    # them and go on).
    reports: list[str] = []
    cfg = cfg._replace(warn=reports.append)
    kind = c.spec.plan().kind
    if attach and kind == REMOTE:
        from drivers.spool import read_spool

        chunks = read_spool(info, cfg)
    elif attach and kind == NONE:
        from drivers.none import read_attach_buffer  # kept by the shim for attach only

        chunks = read_attach_buffer(info, cfg)
    else:
        chunks = driver.read(info, cfg)

    def reported() -> bytes:
        out = b"".join(frame(3, f"Error grabbing logs: {text}\n".encode()) for text in reports)
        reports.clear()
        return out

    def frames() -> Iterator[bytes]:
        try:
            for chunk in chunks:
                if reports and cfg.follow:
                    yield reported()
                yield encode_chunk(chunk, cfg, streams)
            if reports:
                yield reported()
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    return frames()


def attach_log_path(c) -> str | None:
    """The file ``read_frames(attach=True)`` follows for ``c``; None when it has none."""
    driver = load_driver(c.spec.log_type)
    info = c.spec.log_info()
    kind = c.spec.plan().kind
    if kind == REMOTE:
        from drivers.local import LocalDriver

        return LocalDriver.log_path(info)
    if kind == NONE:
        from drivers.none import attach_buffer_path

        return attach_buffer_path(info)
    return hook(driver, "log_path")(info)


async def started_or_logging(c, started: "asyncio.Future", poll: float = 0.005) -> Any:
    """Wait for the start of ``c`` (its state; None if it failed or ``c`` was removed), or
    until its shim holds the log attach reads, whichever comes first (then ``True``).

    A ``run`` attaches before the start: reading only once the start is confirmed would
    miss what a fast container writes meanwhile and a small log (``max-size``, the ``none``
    driver's attach buffer) has already rotated away. Once the reader has the file open, a
    rotation no longer takes anything from it. The shim takes the log's lock before it
    creates the file, and keeps it for the whole run."""
    path = attach_log_path(c)
    while not started.done():
        if path is not None and writer_alive(path) and os.path.exists(path):
            return True
        await asyncio.wait((started,), timeout=poll)
    return started.result()


# -- system ---------------------------------------------------------------------------------


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK", headers={"Cache-Control": "no-cache, no-store, must-revalidate",
                                            "Pragma": "no-cache"})


async def version(request: web.Request) -> web.Response:
    uname = os.uname()
    arch = GOARCH.get(uname.machine, uname.machine)
    return web.json_response({
        "Platform": {"Name": "logpipe"}, "Version": SERVER_VERSION, "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": arch,
        "KernelVersion": uname.release, "GoVersion": f"python{platform.python_version()}",
        "GitCommit": "", "BuildTime": "",
        "Components": [{"Name": "Engine", "Version": SERVER_VERSION,
                        "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                                    "Os": "linux", "Arch": arch}}]})


async def info(request: web.Request) -> web.Response:
    store = store_of(request)
    uname = os.uname()
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = 0
    images = await asyncio.to_thread(request.app[IMAGES_KEY].list)
    body = {"ID": "", "Name": uname.nodename, "ServerVersion": SERVER_VERSION,
            **store.counts(), "Images": len(images), "Driver": "", "DriverStatus": [],
            "LoggingDriver": store.config.log_driver, "DockerRootDir": store.config.data_root,
            "Plugins": {"Log": driver_names(), "Volume": [], "Network": ["host", "none"],
                        "Authorization": None},
            "OSType": "linux", "OperatingSystem": platform.platform(),
            "Architecture": uname.machine, "KernelVersion": uname.release,
            "NCPU": os.cpu_count() or 1, "MemTotal": mem,
            "DefaultRuntime": store.config.default_runtime or default_runtime(),
            "Runtimes": {name: {"path": name} for name in available_runtimes()},
            "LiveRestoreEnabled": True, "Warnings": []}
    if body["DefaultRuntime"] != "process":  # runc/crun apply runtime/seccomp/default.json
        body["SecurityOptions"] = ["name=seccomp,profile=builtin"]
    return web.json_response(body)


# -- containers -----------------------------------------------------------------------------


async def create_container(request: web.Request) -> web.Response:
    body = await json_body(request)
    c, warnings = store_of(request).create(body, request.query.get("name", ""))
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


async def metrics(request: web.Request) -> web.Response:
    """Shipping counters of every container in Prometheus' text format (not a Docker API)."""
    store = store_of(request)
    items = [(c.spec, c.state) for c in store.list(all=True)]
    text = await asyncio.to_thread(store.shipping.metrics, items)
    return web.Response(text=text,
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


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


def _since_until(request: web.Request, key: str) -> int:
    value = request.query.get(key, "")
    if value in ("", "0"):
        return 0
    try:
        return parse_since(value, key, api=True)
    except ValueError as err:
        raise ServerError(str(err)) from None  # Docker: 500, strconv's wording


async def container_logs(request: web.Request) -> web.StreamResponse:
    """``GET /containers/{id}/logs`` with Docker's semantics (reference §5)."""
    c = container_of(request)
    streams = frozenset(s for s, key in ((STDOUT, "stdout"), (STDERR, "stderr"))
                        if qbool(request, key))
    if not streams:
        raise InvalidParameter("Bad parameters: you must choose at least one stream")
    if c.removing:
        raise LogpipeError("can not get logs from container which is dead or marked for removal")
    tail_text = request.query.get("tail", "")
    try:
        tail = go_atoi(tail_text)
    except ValueError:
        tail = -1  # "all", "", out of range, anything else: everything (Docker)
    cfg = ReadConfig(tail=tail if tail >= 0 else -1, since=_since_until(request, "since"),
                     until=_since_until(request, "until"),
                     # follow is only honoured while the container runs (Docker)
                     follow=qbool(request, "follow") and c.state.status == RUNNING,
                     timestamps=qbool(request, "timestamps"), details=qbool(request, "details"))
    frames = read_frames(c, cfg, streams)
    resp = web.StreamResponse()
    resp[NO_CONTENT_TYPE] = True  # API 1.41 sends none with logs (later versions do)
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await flush_headers(resp)
    return await serve_stream(request, resp, stream_from_thread(resp, frames))


class _Hijacked(web.StreamResponse):
    """Docker's hijacked connection: ``101 UPGRADED`` then raw bytes until close."""

    def __init__(self) -> None:
        super().__init__(status=101, reason="UPGRADED",
                         headers={"Content-Type": "application/vnd.docker.raw-stream",
                                  "Connection": "Upgrade", "Upgrade": "tcp"})
        self._length_check = False  # no chunked encoding: the stream is the socket


async def attach_container(request: web.Request) -> web.StreamResponse:
    """The container's output from now on (with ``logs=1``: from its beginning), until it
    stops. Implemented by following its log; a container not yet started is waited for,
    which is how ``run`` attaches before it starts."""
    store = store_of(request)
    c = container_of(request)
    streams = frozenset(s for s, key in ((STDOUT, "stdout"), (STDERR, "stderr"))
                        if qbool(request, key))
    history = qbool(request, "logs")
    stream = qbool(request, "stream")
    started = None if c.state.status == RUNNING else store.start_waiter(c)
    # "From now on" is from this request: a container attached before its start is covered
    # whole (its StartedAt is stamped after its first lines may already be logged).
    since = time.time_ns()
    c.attached += 1
    c.attach_idle.clear()
    try:
        return await _attached_stream(request, c, streams, history, stream, started, since)
    finally:
        c.attached -= 1
        if not c.attached:
            c.attach_idle.set()


async def _attached_stream(request: web.Request, c, streams: frozenset[str], history: bool,
                           stream: bool, started, since: int) -> web.StreamResponse:
    hijack = request.headers.get("Upgrade", "").lower() == "tcp"
    if hijack:
        resp: web.StreamResponse = _Hijacked()
    else:
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream"})
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    await flush_headers(resp)
    # A hijacked connection is written through a socket of our own: Docker's CLI half-closes
    # its side at once when it attaches no stdin, and aiohttp's transport closes the whole
    # connection on that EOF — the container's output would never reach the client.
    sock = _own_socket(request) if hijack else None
    handed_over = False  # to the thread that writes it, which then closes it

    async def body() -> None:
        nonlocal handed_over
        frames: Any = ()
        if streams and (stream or history):
            state = await started_or_logging(c, started) if started is not None and stream \
                else c.state
            if state is not None:  # None: removed, or its start failed
                follow = stream and (state is True or c.state.status == RUNNING)
                cfg = ReadConfig(since=0 if history else since, follow=follow)
                try:
                    frames = read_frames(c, cfg, streams, attach=True)
                except LogpipeError as err:
                    frames = [frame(3, f"{err}\n".encode())]
        if sock is not None:
            handed_over = True
            await _send_in_thread(sock, frames)
        else:
            await stream_from_thread(resp, iter(frames))

    if hijack:
        resp.force_close()
    try:
        return await serve_stream(request, resp, body())
    finally:
        if started is not None and not started.done():
            started.cancel()
        if sock is not None:
            _end_own_socket(sock)  # a writer still busy with it fails at its next write
            if not handed_over:
                sock.close()


def _own_socket(request: web.Request):
    """A duplicate of the hijacked connection's socket, in blocking mode, that aiohttp does
    not know about: it stays open for writing whatever aiohttp does with its own."""
    import socket

    original = request.transport.get_extra_info("socket")
    sock = socket.socket(fileno=os.dup(original.fileno()))
    sock.setblocking(True)
    return sock


def _send_in_thread(sock, frames) -> "asyncio.Future[None]":
    """``_send_frames`` in a thread of its own, which owns ``sock`` and closes it: not in the
    loop's executor, whose threads the daemon's exit waits for, as a follow may block in its
    reader until the container next writes."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def run() -> None:
        try:
            _send_frames(sock, frames)
        finally:
            sock.close()
            try:
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))
            except RuntimeError:
                pass  # the loop is gone: the daemon has exited

    threading.Thread(target=run, name="attach-writer", daemon=True).start()
    return done


def _send_frames(sock, frames) -> None:
    """Write the frames until they end or the client goes away, then end the stream."""
    try:
        for data in frames:
            sock.sendall(data)
    except OSError:
        pass  # the client closed the connection: stop reading its log
    except Exception as err:  # noqa: BLE001 - reported in-band, as stream_from_thread does
        try:
            sock.sendall(frame(3, f"Error grabbing logs: {err}\n".encode()))
        except OSError:
            pass
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
        _end_own_socket(sock)


def _end_own_socket(sock) -> None:
    """End of stream for the client (Docker closes the connection)."""
    import socket

    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# -- volumes --------------------------------------------------------------------------------


async def create_volume(request: web.Request) -> web.Response:
    req = schema.volume_create(await json_body(request))
    vol = await asyncio.to_thread(store_of(request).volumes.create, req.Name or "",
                                  req.Driver or "", req.Labels, req.DriverOpts)
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
    await asyncio.to_thread(store_of(request).volumes.remove, request.match_info["name"],
                            qbool(request, "force"))
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
    return web.json_response({"VolumesDeleted": deleted or None, "SpaceReclaimed": size})


# -- images ---------------------------------------------------------------------------------


async def list_images(request: web.Request) -> web.Response:
    images = await asyncio.to_thread(request.app[IMAGES_KEY].list)
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
    return web.Response(text=json.dumps({"status": image.id}) + "\n",
                        content_type="application/json")


async def remove_image(request: web.Request) -> web.Response:
    store = store_of(request)
    result = await asyncio.to_thread(request.app[IMAGES_KEY].remove, request.match_info["name"],
                                     store.image_user, qbool(request, "force"))
    return web.json_response(result)


# -- the application ------------------------------------------------------------------------


#: Set on a request once its response's headers are on their way: an error after that
#: point can no longer be answered with a status, only by closing the connection.
PREPARED = "logpipe.prepared"
#: Marks a streamed response that must go without the Content-Type aiohttp would add.
NO_CONTENT_TYPE = "logpipe.no-content-type"


def error_status(err: BaseException) -> int:
    """The HTTP status of an error: its category's (set in ``logpipe/errors.py`` only),
    aiohttp's for its own errors (unknown route or method), else 500."""
    if isinstance(err, LogpipeError):
        return err.status
    if isinstance(err, web.HTTPException):
        return err.status
    return 500


def error_message(err: BaseException) -> str:
    """Docker's ``message`` for an error; a system error reads as Go's ``*PathError``
    (``/var/lib/logpipe/containers/…: no space left on device``), not as Python's repr."""
    if isinstance(err, (web.HTTPNotFound, web.HTTPMethodNotAllowed)):
        return "page not found"
    if isinstance(err, web.HTTPException):
        return err.reason if not err.text or err.text.startswith(f"{err.status}:") else err.text
    if isinstance(err, OSError) and err.errno is not None:
        text = os.strerror(err.errno)
        text = text[:1].lower() + text[1:]
        return f"{err.filename}: {text}" if err.filename else text
    return str(err) or type(err).__name__


@web.middleware
async def error_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    """The one place where errors become Docker's answers: ``{"message": ...}`` with the
    error's status. An error nobody expected is a 500 of the same shape, logged once with
    its traceback — never aiohttp's plain-text page."""
    try:
        return await handler(request)
    except NotModified:
        return web.Response(status=304)
    except ConnectionError:
        raise  # the client went away: there is nobody to answer
    except Exception as err:  # noqa: BLE001 - every error gets an answer
        if request.get(PREPARED):
            raise  # headers already sent: aiohttp logs it and closes the connection
        status = error_status(err)
        if status >= 500 and not isinstance(err, LogpipeError):
            log.error("%s %s failed", request.method, request.path, exc_info=err)
        return web.json_response({"message": error_message(err)}, status=status)


async def docker_headers(request: web.Request, resp: web.StreamResponse) -> None:
    """Docker's headers on every response, streamed ones included (they are prepared
    before the middleware sees them). JSON goes as exactly ``application/json``: the
    docker CLI parses an error body only for that type, and prints anything else raw."""
    request[PREPARED] = True
    resp.headers["Api-Version"] = API_VERSION
    resp.headers["Docker-Experimental"] = "false"
    resp.headers["Ostype"] = "linux"
    resp.headers["Server"] = f"Logpipe/{__version__} (linux)"
    if resp.get(NO_CONTENT_TYPE):
        resp.headers.pop("Content-Type", None)
    elif resp.headers.get("Content-Type", "").startswith("application/json"):
        resp.headers["Content-Type"] = "application/json"


ROUTES: list[tuple[str, str, Callable]] = [
    ("GET", "/_ping", ping), ("HEAD", "/_ping", ping),
    ("GET", "/version", version), ("GET", "/info", info), ("GET", "/metrics", metrics),
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
    ("GET", "/containers/{id}/logs", container_logs),
    ("POST", "/containers/{id}/attach", attach_container),
    ("POST", "/volumes/create", create_volume), ("GET", "/volumes", list_volumes),
    ("POST", "/volumes/prune", prune_volumes),
    ("GET", "/volumes/{name}", inspect_volume), ("DELETE", "/volumes/{name}", remove_volume),
    ("GET", "/images/json", list_images),
    ("GET", "/images/{name:.+}/json", inspect_image),
    ("POST", "/images/load", load_images),
    ("POST", "/images/create", create_image),
    ("DELETE", "/images/{name:.+}", remove_image),
]


def make_app(store: ContainerStore, images: ImageStore) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=1 << 20)
    app[STORE_KEY] = store
    app[IMAGES_KEY] = images
    app[ENDING_KEY] = asyncio.Event()
    app.on_response_prepare.append(docker_headers)
    app.on_shutdown.append(_end_streams)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, r"/v{version:[0-9.]+}" + path, handler)
    network_api.add_routes(app, store)  # /networks
    return app
