"""``logs`` and ``attach``: a container's output, read from its log; its input, to its shim.

Frames are Docker's multiplexed ones (``[stream, 0, 0, 0, len u32 BE]``, stream 1 stdout,
2 stderr, 3 in-band error), one per record, with the ``-t``/``--details`` prefixes of
``logpipe.output``; a container with a terminal (``Tty``) answers raw bytes instead, as
Docker does. The storage driver's reader is synchronous (it may block on inotify while
following), so it runs in a thread of its own. The API never reads a container's pipes:
``attach`` follows the container's log from the moment it starts.

``attach?stdin=1`` on a hijacked connection to a container with ``OpenStdin`` forwards what
the client sends to the shim's ``stdin.sock`` (``streams.StdinForward``), watching for the
detach keys. Docker's rules for the end of that input (moby ``container/stream/attach.go``):
with ``StdinOnce`` and no terminal the container's stdin is closed (the shim does it when
the connection ends) and the attach lasts until the container stops; otherwise the end of
the input (or the detach keys) ends the attach, and the container runs on."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Iterator

from aiohttp import web

from logpipe.driver import NONE, REMOTE, hook
from logpipe.errors import InvalidParameter, LogpipeError
from logpipe.fileset import writer_alive
from logpipe.message import STDERR, STDOUT
from logpipe.reading import ReadConfig
from logpipe.registry import load_driver
from logpipe.timespec import parse_since

from ..detach_keys import parse_detach_keys
from ..shimclient import ShimClient
from ..state import RUNNING
from .common import NO_CONTENT_TYPE, ServerError, container_of, go_atoi, qbool, store_of
from .streams import (Hijacked, StdinForward, encode_chunk, encode_raw, end_own_socket,
                      error_bytes, flush_headers, own_socket, send_in_thread, serve_stream,
                      stream_from_thread)


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

    raw = c.spec.tty  # a terminal's output: raw bytes, no frames (Docker)
    encode = encode_raw if raw else encode_chunk

    def reported() -> bytes:
        out = b"".join(error_bytes(f"Error grabbing logs: {text}\n", raw) for text in reports)
        reports.clear()
        return out

    def frames() -> Iterator[bytes]:
        try:
            for chunk in chunks:
                if reports and cfg.follow:
                    yield reported()
                yield encode(chunk, cfg, streams)
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
    store.container_event(c, "attach")
    try:
        return await _attached_stream(request, c, streams, history, stream, started, since)
    finally:
        c.attached -= 1
        if not c.attached:
            c.attach_idle.set()


async def _attached_stream(request: web.Request, c, streams: frozenset[str], history: bool,
                           stream: bool, started, since: int) -> web.StreamResponse:
    hijack = request.headers.get("Upgrade", "").lower() == "tcp"
    # The container's stdin, when asked for and it has one (Docker ignores ``stdin=1``
    # otherwise); bad detach keys are refused before the connection is taken over.
    keys = None
    if hijack and c.spec.open_stdin and qbool(request, "stdin"):
        keys = parse_detach_keys(request.query.get("detachKeys", ""))
    if hijack:
        resp: web.StreamResponse = Hijacked()
    else:
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream"})
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    await flush_headers(resp)
    # A hijacked connection is written through a socket of our own: Docker's CLI half-closes
    # its side at once when it attaches no stdin, and aiohttp's transport closes the whole
    # connection on that EOF — the container's output would never reach the client.
    sock = own_socket(request) if hijack else None
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
                    frames = [error_bytes(f"{err}\n", c.spec.tty)]
        if sock is not None:
            handed_over = True
            await send_in_thread(sock, frames)
        else:
            await stream_from_thread(resp, iter(frames))

    if hijack:
        resp.force_close()
    stdin = StdinForward(request, keys) if keys is not None else None
    output = body()
    if stdin is not None and not streams:  # stdin alone: the attach lasts while it runs
        output = _until_exit(request, c, started, output)
    try:
        return await serve_stream(request, resp, output if stdin is None else
                                  _with_stdin(c, output, stdin, started))
    finally:
        if started is not None and not started.done():
            started.cancel()
        if sock is not None:
            end_own_socket(sock)  # a writer still busy with it fails at its next write
            if not handed_over:
                sock.close()



async def _with_stdin(c, output: Any, stdin: StdinForward, started) -> None:
    """The attach's output and input together, ended by Docker's rules (module docstring)."""
    out = asyncio.ensure_future(output)
    feed = asyncio.ensure_future(_feed_stdin(c, stdin, started))
    try:
        await asyncio.wait((out, feed), return_when=asyncio.FIRST_COMPLETED)
        if out.done():
            return out.result()
        if feed.result() == "eof" and c.spec.stdin_once and not c.spec.tty:
            return await out  # stdin is closed: the output goes on to the container's end
    finally:
        for task in (out, feed):
            if not task.done():
                task.cancel()


async def _until_exit(request: web.Request, c, started, then: Any) -> None:
    """An attach of stdin only: it ends when the container stops (or its input ends)."""
    if started is not None:
        await asyncio.wait((started,))
        if started.cancelled() or started.result() is None:
            return await then
    await asyncio.wait((store_of(request).waiter(c, "not-running"),))
    await then


async def _feed_stdin(c, stdin: StdinForward, started) -> str:
    """What the client sends, to the shim once the container runs (kept until then)."""
    if started is not None:
        await asyncio.wait((started,))  # not ``await started``: a cancel would cancel it
        if started.cancelled() or started.result() is None:
            return await stdin.forward(lambda: None)  # it never ran: the input is dropped
    return await stdin.forward(ShimClient(c.spec.dir).connect_stdin)


ROUTES = [
    ("GET", "/containers/{id}/logs", container_logs),
    ("POST", "/containers/{id}/attach", attach_container),
]
