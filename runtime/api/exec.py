"""``/containers/{id}/exec`` and ``/exec/{id}``: create, start, inspect and resize execs.

``start`` without ``Detach`` answers like ``attach``: a hijacked connection (``101
UPGRADED``) when the client asks for one, else a plain ``200`` stream that ends with the
connection, as Docker does. Either way the connection is served through a socket of our own
by two threads: one copies the exec's output to the client (Docker's multiplexed frames, raw
bytes with a terminal), one copies the client's bytes to the exec's stdin (its EOF closes
the stdin) and notices a client that hangs up: the exec then gets SIGHUP, as a process whose
terminal goes away. The stream ends after the exec's exit code is recorded, so a client that
inspects the exec next (the docker CLI does, for its exit status) finds it. A command that
could not start is Docker's text on the stdout stream, and exit code 126/127.

Nothing an exec prints reaches the container's log: Docker does not log exec output.
"""

from __future__ import annotations

import asyncio
import os
import select
import selectors
import signal
import socket
import threading
import time
from typing import Callable

from aiohttp import web

from .. import exec_process, schema
from ..containers import Container, ContainerStore
from ..errors import StartFailed, StartInvalidConfig
from ..executors import EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND
from ..execs import Exec, ExecRegistry, exec_config
from ..views import exec_inspect
from .common import container_of, json_body, qint, store_of
from .streams import Hijacked, end_own_socket, flush_headers, frame, own_socket, serve_stream

EXECS_KEY = web.AppKey("execs", ExecRegistry)
#: How long a detached start waits for runc to say whether the command started.
DETACHED_START_WAIT = 30.0


def execs_of(request: web.Request) -> ExecRegistry:
    return request.app[EXECS_KEY]


def exec_of(request: web.Request) -> Exec:
    return execs_of(request).get(request.match_info["id"], store_of(request).containers)


async def create_exec(request: web.Request) -> web.Response:
    c = container_of(request)
    config = exec_config(schema.exec_create(await json_body(request)))
    exec_process.check_supported(c.spec, config)
    e = execs_of(request).create(c, request.match_info["id"], config,
                                 store_of(request).containers)
    return web.json_response({"Id": e.id}, status=201)


async def inspect_exec(request: web.Request) -> web.Response:
    return web.json_response(exec_inspect(exec_of(request)))


async def resize_exec(request: web.Request) -> web.Response:
    """The terminal's size; before the start it is kept and applied at the start."""
    height, width = qint(request, "h") or 0, qint(request, "w") or 0
    e = exec_of(request)
    if e.process is not None:
        e.process.resize(height, width)
    else:
        e.size = (height, width)
    return web.Response(status=200)


async def start_exec(request: web.Request) -> web.StreamResponse:
    store = store_of(request)
    registry = execs_of(request)
    e = exec_of(request)
    body = schema.exec_start(await json_body(request))
    c = store.containers[e.container_id]
    registry.begin(e, c)
    if body.ConsoleSize and len(body.ConsoleSize) == 2:
        e.size = (body.ConsoleSize[0], body.ConsoleSize[1])
    if body.Detach:
        process = _launch(e, c)
        return await _start_detached(process, _on_exit(store, registry, e, c))
    # The answer's headers go first: a client that reads them in one gulp with the first
    # output would lose that output (docker-py reads the stream from the raw socket).
    try:
        resp, hijack = await _answer(request)
        process = _launch(e, c)  # with the size a resize sent meanwhile
    except BaseException:  # the client left before its answer: the exec never ran
        registry.finish(e, c, exec_process.EXIT_EXEC_FAILED)
        raise
    return await _serve_attached(request, resp, hijack, process,
                                 _on_exit(store, registry, e, c))


def _launch(e: Exec, c: Container) -> exec_process.ExecProcess:
    """The exec's process; a runtime that cannot be run at all is a failed start."""
    try:
        process = exec_process.start(c.spec, c.state.pid, e.config, e.size)
    except OSError as err:
        process = exec_process.failed(e.config, f"OCI runtime exec failed: {err}: unknown")
    e.process = process
    return process


def _on_exit(store: ContainerStore, registry: ExecRegistry, e: Exec,
             c: Container) -> Callable[[int], None]:
    """What the thread that sees the exec end calls (once): the exit is recorded at once,
    the rest on the loop. A host exec (``process`` runtime) dies with its container, as
    the container's pid namespace ensures for runc."""
    loop = asyncio.get_running_loop()
    container_exit = None
    if not exec_process.isolated(c.spec):
        container_exit = store.waiter(c, "next-exit")
        container_exit.add_done_callback(
            lambda fut: fut.cancelled() or e.process is None or e.process.kill())

    def ended(code: int) -> None:
        e.exit_code, e.running = code, False  # seen by the next inspect, whatever the loop does

        def settle() -> None:
            if container_exit is not None and not container_exit.done():
                container_exit.cancel()
                if container_exit in c.exit_waiters:
                    c.exit_waiters.remove(container_exit)
            registry.finish(e, store.containers.get(c.id), code)

        try:
            loop.call_soon_threadsafe(settle)
        except RuntimeError:
            pass  # the daemon is exiting
    return ended


async def _start_detached(process: exec_process.ExecProcess,
                          ended: Callable[[int], None]) -> web.Response:
    """Docker's ``Detach``: the exec runs to its end without a client; a command that cannot
    start is the request's error."""
    threading.Thread(target=_run_alone, args=(process, ended),
                     name="exec-detached", daemon=True).start()
    started = await asyncio.to_thread(_wait_started, process)
    if not started and process.failure:
        invalid = process.exit_code in (EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND)
        raise (StartInvalidConfig if invalid else StartFailed)(process.failure)
    return web.Response(status=200)


def _wait_started(process: exec_process.ExecProcess) -> bool:
    """Until runc wrote the exec's pid (it started) or exited (it may have failed)."""
    deadline = time.monotonic() + DETACHED_START_WAIT
    while time.monotonic() < deadline:
        if process.pid:
            return True
        if process.exit_code is not None:
            return False
        time.sleep(0.005)
    return bool(process.pid)


class _PlainStream(web.StreamResponse):
    """Docker's answer to a start that does not ask to upgrade: ``200``, then the raw
    stream until the connection closes (no length, no chunks)."""

    def __init__(self) -> None:
        super().__init__(status=200, headers={"Content-Type": "application/vnd.docker.raw-stream"})
        self._length_check = False


async def _answer(request: web.Request) -> tuple[web.StreamResponse, bool]:
    """The prepared answer of an attached start, and whether it is hijacked."""
    hijack = request.headers.get("Upgrade", "").lower() == "tcp"
    resp: web.StreamResponse = Hijacked() if hijack else _PlainStream()
    resp.force_close()
    await resp.prepare(request)
    await flush_headers(resp)
    return resp, hijack


async def _serve_attached(request: web.Request, resp: web.StreamResponse, hijack: bool,
                          process: exec_process.ExecProcess,
                          ended: Callable[[int], None]) -> web.StreamResponse:
    # The client's bytes after the request are the exec's stdin: aiohttp stops reading
    # them, and hands over what it already read.
    tail = _Tail()
    request.protocol.set_parser(tail)
    request.transport.pause_reading()
    sock = own_socket(request)
    done = asyncio.get_running_loop().create_future()
    stdin = tail.data if hijack else b""
    threading.Thread(target=_serve, args=(process, sock, hijack, stdin, ended, done),
                     name="exec-stream", daemon=True).start()
    return await serve_stream(request, resp, done)


class _Tail:
    """A parser for aiohttp's ``set_parser`` that keeps what followed the request."""

    def __init__(self) -> None:
        self.data = b""

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.data += data
        return False, b""

    def feed_eof(self) -> None:
        pass


def _serve(process: exec_process.ExecProcess, sock: socket.socket, with_stdin: bool,
           stdin: bytes, ended: Callable[[int], None], done: asyncio.Future) -> None:
    """The connection's two threads: this one (output), and one for the client's bytes."""
    loop = done.get_loop()
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC)
    reader = threading.Thread(target=_pump_input,
                              args=(process, sock, with_stdin, stdin, wake_r),
                              name="exec-stdin", daemon=True)
    reader.start()
    try:
        _run_session(process, sock.sendall, ended)
    finally:
        os.write(wake_w, b"x")
        reader.join()  # before the descriptors it writes to are closed
        process.close()
        os.close(wake_r)
        os.close(wake_w)
        end_own_socket(sock)
        sock.close()
        try:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))
        except RuntimeError:
            pass  # the loop is gone: the daemon has exited


def _run_alone(process: exec_process.ExecProcess, ended: Callable[[int], None]) -> None:
    """A detached exec: its output is drained and dropped (Docker discards it)."""
    try:
        _run_session(process, None, ended)
    finally:
        process.close()


def _run_session(process: exec_process.ExecProcess, send: Callable[[bytes], None] | None,
                 ended: Callable[[int], None]) -> None:
    """Copy the output to ``send`` until it ends (all of it: runc must not block on a full
    pipe), record the exit, and tell a client why a command could not start. A client that
    goes away (``send`` fails) gets the exec hung up."""
    held = _copy_output(process, send)
    ended(process.wait())
    if send is None:
        return
    try:
        if process.failure:
            message = (process.failure + "\r\n").encode()
            send(message if process.terminal is not None else frame(1, message))
        elif held:
            send(held)
    except OSError:
        pass


def _copy_output(process: exec_process.ExecProcess,
                 send: Callable[[bytes], None] | None) -> bytes:
    """The copy itself; returns the stderr frames held back because runc had not said yet
    whether the command started (runc prints its own failure on that stream too)."""
    tty = process.terminal is not None
    held: list[bytes] = []
    with selectors.DefaultSelector() as sel:
        for fd, stream in process.outputs:
            sel.register(fd, selectors.EVENT_READ, stream)
        while sel.get_map():
            for key, _ in sel.select():
                try:
                    data = os.read(key.fd, 1 << 16)
                except OSError:  # EIO: a terminal whose other side is closed
                    data = b""
                if not data:
                    sel.unregister(key.fd)
                    continue
                if send is None:
                    continue
                out = data if tty else frame(key.data, data)
                if key.data == 2 and process.holds_stderr():
                    held.append(out)
                    continue
                try:
                    if held:
                        send(b"".join(held))
                        held.clear()
                    send(out)
                except OSError:
                    send = None
                    process.send_signal(signal.SIGHUP)
    return b"".join(held)


def _pump_input(process: exec_process.ExecProcess, sock: socket.socket, with_stdin: bool,
                data: bytes, wake: int) -> None:
    """The client's bytes to the exec's stdin, its EOF as the stdin's; a client that hangs
    up entirely (not just its writing side) gets the exec hung up."""
    reading = with_stdin and process.stdin is not None
    if reading and data:
        reading = _feed(process, data)
    poller = select.poll()
    poller.register(wake, select.POLLIN)
    poller.register(sock, select.POLLIN if reading else 0)
    while True:
        events = dict(poller.poll())
        if wake in events:
            return
        ev = events.get(sock.fileno(), 0)
        if reading and ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
            try:
                chunk = sock.recv(1 << 16)
            except OSError:
                chunk = b""
            if chunk:
                if not _feed(process, chunk):
                    reading = False
                    poller.modify(sock, 0)
                continue
            process.close_stdin()
            reading = False
            poller.modify(sock, 0)
            continue
        if ev & (select.POLLHUP | select.POLLERR):
            process.send_signal(signal.SIGHUP)
            return


def _feed(process: exec_process.ExecProcess, data: bytes) -> bool:
    """Write to the exec's stdin; False once it no longer takes any."""
    fd = process.stdin
    if fd is None:
        return False
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        return True
    except OSError:
        return False


ROUTES = [
    ("POST", "/containers/{id}/exec", create_exec),
    ("POST", "/exec/{id}/start", start_exec),
    ("POST", "/exec/{id}/resize", resize_exec),
    ("GET", "/exec/{id}/json", inspect_exec),
]
