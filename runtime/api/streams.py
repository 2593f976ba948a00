"""Streamed answers: Docker's multiplexed frames, a blocking reader's output written from a
thread with bounded queues, streams that end when the client leaves or the daemon stops,
and Docker's hijacked connections (attach, exec) written through a socket of our own."""

from __future__ import annotations

import asyncio
import os
import struct
import threading
from typing import Any, Iterator

from aiohttp import web

from logpipe.message import STDERR, STDOUT, Chunk
from logpipe.output import render
from logpipe.reading import ReadConfig

from .common import ENDING_KEY, QUEUE_BYTES, QUEUE_LIMIT, log

#: How much of an attach's input waits for the container before the client is read no more.
STDIN_BUFFER = 1 << 20

_STREAMS = {STDOUT: 1, STDERR: 2}


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



def encode_raw(chunk: Chunk, cfg: ReadConfig, streams: frozenset[str]) -> bytes:
    """A terminal's output (``Tty``): the records as they are, without frames (Docker's
    raw stream; everything a terminal writes is ``stdout``)."""
    if chunk.source not in streams or chunk.source not in _STREAMS:
        return b""
    return render(chunk, cfg.timestamps, cfg.details)


def error_bytes(text: str, raw: bool) -> bytes:
    """An in-band error: a stream-3 frame, or the text itself on a raw stream (Docker)."""
    return text.encode() if raw else frame(3, text.encode())


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


async def end_streams(app: web.Application) -> None:
    """``on_shutdown``: lasting streams end now instead of holding the daemon's exit."""
    app[ENDING_KEY].set()



class Hijacked(web.StreamResponse):
    """Docker's hijacked connection: ``101 UPGRADED`` then raw bytes until close."""

    def __init__(self) -> None:
        super().__init__(status=101, reason="UPGRADED",
                         headers={"Content-Type": "application/vnd.docker.raw-stream",
                                  "Connection": "Upgrade", "Upgrade": "tcp"})
        self._length_check = False  # no chunked encoding: the stream is the socket



def own_socket(request: web.Request):
    """A duplicate of the hijacked connection's socket, in blocking mode, that aiohttp does
    not know about: it stays open for writing whatever aiohttp does with its own."""
    import socket

    original = request.transport.get_extra_info("socket")
    sock = socket.socket(fileno=os.dup(original.fileno()))
    sock.setblocking(True)
    return sock


def send_in_thread(sock, frames) -> "asyncio.Future[None]":
    """``send_frames`` in a thread of its own, which owns ``sock`` and closes it: not in the
    loop's executor, whose threads the daemon's exit waits for, as a follow may block in its
    reader until the container next writes."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def run() -> None:
        try:
            send_frames(sock, frames)
        finally:
            sock.close()
            try:
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))
            except RuntimeError:
                pass  # the loop is gone: the daemon has exited

    threading.Thread(target=run, name="attach-writer", daemon=True).start()
    return done


class StdinForward:
    """An attach's stdin: what the hijacked client sends, watched for the detach keys, to
    the container's stdin (the shim's ``stdin.sock``, ``runtime.stdin_relay``).

    aiohttp hands the bytes that follow an accepted upgrade to a parser set with
    ``set_parser`` (as for websockets): this is one (``feed_data``, ``feed_eof`` on the
    client's EOF or departure), so the input is read on the loop, not by a thread racing
    aiohttp for the socket. At most ``STDIN_BUFFER`` bytes wait for the container (before
    its start, or while it does not read): then the connection is not read until they are
    taken, and the client's writes wait."""

    def __init__(self, request: web.Request, keys: bytes) -> None:
        from runtime.detach_keys import EscapeWatch

        self.transport = request.transport
        self.watch = EscapeWatch(keys)
        self.queue: asyncio.Queue = asyncio.Queue()
        self.queued = 0
        self.paused = self.ended = self.detached = False
        request.protocol.set_parser(self)

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self.ended:
            return False, b""
        data, self.detached = self.watch.feed(data)
        if data:
            self.queue.put_nowait(data)
            self.queued += len(data)
            if self.queued > STDIN_BUFFER and not self.paused and self.transport is not None:
                self.transport.pause_reading()
                self.paused = True
        if self.detached:
            self.feed_eof()
        return False, b""

    def feed_eof(self) -> None:
        if not self.ended:
            self.ended = True
            self.queue.put_nowait(None)

    async def forward(self, connect) -> str:
        """Copy to the socket ``connect()`` returns (blocking: run in a thread; None or a
        ``LogpipeError``: no stdin, what is sent is dropped) until the client's end:
        ``"detach"`` when it typed the detach keys, else ``"eof"``. The connection to the
        shim is closed on the way out, which is the end of the attach for the shim."""
        from logpipe.errors import LogpipeError

        writer = None
        try:
            try:
                sock = await asyncio.to_thread(connect)
            except (LogpipeError, OSError) as err:
                log.debug("attach: no stdin to write to: %s", err)
                sock = None
            if sock is not None:
                sock.setblocking(False)
                _, writer = await asyncio.open_unix_connection(sock=sock)
            while (data := await self.queue.get()) is not None:
                self.queued -= len(data)
                if writer is not None:
                    writer.write(data)
                    try:
                        await writer.drain()
                    except ConnectionError:  # the stdin was closed meanwhile
                        writer.close()
                        writer = None
                if self.paused and self.queued <= STDIN_BUFFER // 2:
                    self.paused = False
                    self.transport.resume_reading()
        finally:
            if writer is not None:
                writer.close()
        return "detach" if self.detached else "eof"


def send_frames(sock, frames) -> None:
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
        end_own_socket(sock)


def end_own_socket(sock) -> None:
    """End of stream for the client (Docker closes the connection)."""
    import socket

    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# -- volumes --------------------------------------------------------------------------------
