"""The shim: one process per container run, owning its stdio (pipes, or a pty) and its exit status.

Size: longer than 500 lines because the capture loop, the control socket, the container's
terminal and the exit recording share one synchronous selector loop and its state; the
storage guard, the plan, the spool and the stdin relay (``runtime.stdin_relay``) are
elsewhere.

``python -m runtime.shim [--detach] <container-dir>``, or forked by the shim parent
(``runtime/shim_parent.py``), which runs the same ``main``: its pages are then shared with
the parent and every other shim, and the shim owns only what it writes to. So the
container's start (root filesystem, OCI bundle, network, ``runc run``) runs in a short-lived
child of the shim (``runtime.start_worker``), and the heap is trimmed after start-up and, by
``pump`` (``logpipe.heap``), a second after each burst of output. The shim starts the
container through its executor with the write ends of two pipes, stores everything read from
them through the container's storage driver, or the spool of a remote one, as the
container's ``LogPlan`` says (``logpipe.capture.pump``), reaps the container (it is a child
subreaper, so a process that runc leaves behind is reparented to it), writes ``state.json``
atomically when the container starts and when it has exited, and answers a control socket,
``<dir>/shim.sock``, from the same synchronous loop.

With ``-t`` (``Tty``) there are no pipes: the executor gives the shim the master of the
container's pty, read as its one output stream and logged as ``stdout``, drained whether or
not anyone is attached. With ``-i`` (``OpenStdin``) the shim keeps the write end of the
container's stdin (a pipe, or that master) and feeds it from ``<dir>/stdin.sock``
(``runtime.stdin_relay``): a daemon restart neither closes it nor stops the output.

Control protocol: one JSON object per line each way. ``{"op":"status"}`` → the state
(``runtime.state`` JSON); ``{"op":"signal","signal":15}`` → ``{"ok":true}``; ``{"op":"wait"}``
→ the final state, once the container has exited and its logs are closed;
``{"op":"resize","height":24,"width":80}`` → ``{"ok":true}`` (the terminal's size; ignored
without one). Failures answer ``{"error":"..."}``.

What it must not do: depend on the daemon or the shim parent (it runs in its own session,
survives their deaths and is found again through the socket and ``state.json``), talk to
the network, or import more than capture and the storage drivers need — its memory is the
per-container cost.
Nor die of its disk: a full or failing disk is survived (``logpipe.storage_guard`` counts
what cannot be stored, keeps the pipes drained and resumes by itself), and ``shim.log`` and
``state.json``, on the same disk, are written without ever raising out of the shim. The
live counters (captured, stored, dropped, the last storage error) are answered by ``status``.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import time

from logpipe import heap
from logpipe.capture import CaptureStats, enlarge_pipe, make_sink, pump
from logpipe.message import STDERR, STDOUT
from logpipe.driver import NONE, REMOTE
from logpipe.registry import LogPlan, load_driver
from logpipe.storage_guard import StorageGuard
from logpipe.timespec import format_rfc3339nano

from .executors import EXIT_START_FAILED, ExecutorError
from .start_worker import start_in_worker
from .spec import SHIM_SOCKET, STDIN_SOCKET, ContainerSpec
from .state import EXITED, RUNNING, ZERO_TIME, State, now_rfc3339, write_state

#: After the main process exits, how long output of processes that inherited its pipes is
#: still read. Docker waits the same 2 s for its log copier (daemon/monitor.go).
EXIT_GRACE = 2.0
PR_SET_CHILD_SUBREAPER = 36
#: A control request longer than this is not one: the client is dropped.
MAX_REQUEST = 64 << 10
#: How many wake-ups a stop waits for a read-free moment before abandoning one batch.
STOP_TRIES = 100


class _StopReading(Exception):
    """Raised through ``pump`` to stop reading pipes that a stray process keeps open."""


class _Sink:
    """Between ``pump`` and the storage (a non-blocking buffer, or the guarded driver): once
    the shim has decided to stop reading, the first batch written ends ``pump`` — after it is
    stored. Write errors never get here: ``StorageGuard`` counts them and retries."""

    __slots__ = ("inner", "stopping")

    def __init__(self, inner) -> None:
        self.inner = inner
        self.stopping = False

    def write(self, batch) -> None:
        self.inner.write(batch)
        if self.stopping:
            raise _StopReading


class Shim:
    """One container run; ``run`` returns when the container has exited and all is recorded."""

    def __init__(self, spec: ContainerSpec, executor) -> None:
        self.spec, self.executor = spec, executor
        self.plan: LogPlan | None = None
        self.stats = CaptureStats()
        self.state = State(shim_pid=os.getpid())
        self.pid = 0
        self.exit_code: int | None = None
        self.finished_at = ""
        self.deadline = 0.0
        self.pumping = False
        self.stopping = False
        self.pipes_open = False
        self._stop_seen = self._stop_tries = 0
        self.driver = self.buffer = None
        self.guard: StorageGuard | None = None
        self.sink: _Sink | None = None
        self.oom_file: str | None = None
        self.oom_before = 0
        self.listener: socket.socket | None = None
        self.clients: dict[socket.socket, bytearray] = {}
        self.waiters: list[socket.socket] = []
        self.conns = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        self.terminal: int | None = None  # the pty master, with -t, while it is read
        self.stdin = None  # a StdinRelay, with -i

    # -- the run -------------------------------------------------------------------------

    def run(self) -> None:
        self._install_signals()
        try:
            self.plan = self.spec.plan()
            self.driver = _open_driver(self.spec, self.plan, self._idle)
        except Exception as err:
            self._record_failure(f"failed to initialize logging driver: {err}")
            return
        self._listen()  # before the start, so the socket exists once state.json says running
        try:
            sources = self._start_container()
        except Exception as err:
            # 127/126 when the command is not found / cannot be invoked (ExecutorError).
            code = err.exit_code if isinstance(err, ExecutorError) else EXIT_START_FAILED
            self._record_failure(str(err) or type(err).__name__, code)
            return
        self.oom_file, self.oom_before = _oom_counter(self.pid)
        self.state = self.state._replace(status=RUNNING, running=True, pid=self.pid,
                                         started_at=now_rfc3339())
        self._write_state()
        # What start-up freed (the spec's JSON, the start's replies) goes back: an idle shim
        # costs what it holds, not what it once needed (a burst's buffers are pump's).
        heap.release()
        # A full or failing disk never stops the capture: the guard counts and retries.
        self.guard = StorageGuard(self.driver, report=_log)
        # A spool has its own answer to ``mode`` (what to do when it is full), in the writer.
        self.buffer = self.guard if self.plan.ships else \
            make_sink(self.guard, self.spec.log_opts)
        self.sink = _Sink(self.buffer)
        self.pumping = True
        try:
            pump(sources, self.sink, self.stats, self._handlers(), eager=self.spec.tty)
        except _StopReading:
            self.pipes_open = True
            _log(f"a process still holds the container's stdout or stderr {EXIT_GRACE:g} s "
                 "after its main process exited: its further output is not logged")
        self.pumping = False
        if self.terminal is not None:  # its input is the master, closed with it
            self._close_stdin()
            self.terminal = None
        for fd in sources.values():
            os.close(fd)
        self._serve_until_exit()
        self._finish()

    def _start_container(self) -> dict[str, int]:
        """Start the container through the executor; what to read its output from.

        Without a terminal: stdout and stderr pipes (and with ``-i`` a stdin pipe whose write
        end the shim keeps). With ``-t``: the pty master, read as the one output stream and
        logged as ``stdout`` (Docker logs a terminal's output so, CR LF included), and
        written with what attached clients type."""
        spec = self.spec
        if spec.tty:
            self.pid, master = start_in_worker(lambda: self.executor.start_terminal(spec))
            self.terminal = master
            if spec.open_stdin:  # Docker never closes a terminal's stdin: no StdinOnce
                self._open_stdin(master, close_on_eof=False, owns_fd=False)
            return {STDOUT: master}
        (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
        in_r, in_w = os.pipe() if spec.open_stdin else (None, None)
        for fd in (out_r, err_r):
            enlarge_pipe(fd)
        try:
            self.pid, _ = start_in_worker(
                lambda: (self.executor.start(spec, out_w, err_w, in_r), -1))
        except BaseException:
            for fd in (out_r, err_r, in_w):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in (out_w, err_w, in_r):
                if fd is not None:
                    os.close(fd)
        if in_w is not None:
            self._open_stdin(in_w, close_on_eof=spec.stdin_once, owns_fd=True)
        return {STDOUT: out_r, STDERR: err_r}

    def _open_stdin(self, fd: int, close_on_eof: bool, owns_fd: bool) -> None:
        from .stdin_relay import StdinRelay  # only for containers with -i

        self.stdin = StdinRelay(STDIN_SOCKET, fd, close_on_eof, owns_fd, _log)

    def _close_stdin(self) -> None:
        if self.stdin is not None:
            self.stdin.close()

    def _handlers(self) -> dict:
        """What the selector loops serve besides the container's output."""
        handlers = {self.wake_r: self._on_wake, self.conns.fileno(): self._on_control}
        if self.stdin is not None:
            handlers[self.stdin.fileno()] = self.stdin.ready
        return handlers

    def _install_signals(self) -> None:
        # Handlers, not SIG_IGN: an ignored signal would stay ignored in the container's
        # process across exec, a caught one is reset to its default there.
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGCHLD, signal.SIGALRM):
            signal.signal(sig, _wake_only)
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        try:
            import ctypes  # only for prctl; best effort (a reparented process would be lost)

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
                _log(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
        except OSError as err:
            _log(f"prctl(PR_SET_CHILD_SUBREAPER): {err}")

    def _serve_until_exit(self) -> None:
        """The pipes are closed but the main process may live on (it closed its stdout)."""
        if self.exit_code is not None:
            return
        sel = selectors.DefaultSelector()
        for fd, handler in self._handlers().items():  # stdin too: it may still read it
            sel.register(fd, selectors.EVENT_READ, handler)
        while self.exit_code is None:
            for key, _ in sel.select():
                key.data()
        sel.close()

    def _finish(self) -> None:
        self._close_stdin()
        if self.buffer is not self.guard:
            self.buffer.close()
        try:
            self.guard.close()  # stores the notice of a gap still pending, then the driver
        except OSError as err:
            _log(f"closing the log failed: {err}")
        oom = self.oom_file is not None and _oom_kills(self.oom_file) > self.oom_before
        try:
            self.executor.cleanup(self.spec)
        except Exception as err:
            _log(f"cleanup after the container failed: {err}")
        self.state = self._current()._replace(
            status=EXITED, running=False, pid=0, exit_code=self.exit_code, oom_killed=oom,
            finished_at=self.finished_at, pipes_open_at_exit=self.pipes_open)
        self._write_state()
        for conn in list(self.waiters):
            self._send(conn, self.state.to_json())
        self._on_control()  # requests already queued get the final state too
        self._on_control()
        self._close_socket()

    def _record_failure(self, message: str, exit_code: int = EXIT_START_FAILED) -> None:
        """The container never ran: Docker records the error and exit code 128, or 127/126
        when its command was not found / could not be invoked."""
        _log(message)
        self._reap()  # whatever a failed start may have left as our child
        if self.driver is not None:
            self.driver.close()
        try:
            self.executor.cleanup(self.spec)
        except Exception as err:
            _log(f"cleanup after the failed start failed: {err}")
        now = now_rfc3339()
        self.state = self.state._replace(status=EXITED, exit_code=exit_code, error=message,
                                         finished_at=now)
        self._write_state()
        self._close_socket()

    def _write_state(self) -> None:
        """``state.json``; a full or failing disk must not kill the shim (the daemon still
        gets the state from the control socket, and ``write_state`` falls back to rewriting
        the file in place)."""
        try:
            write_state(self.spec.dir, self.state)
        except OSError as err:
            _log(f"writing state.json failed: {err}")

    def _current(self) -> State:
        """The state with the live counters: kept in memory and answered by ``status``.

        The shim publishes its counters only through its control socket (the daemon asks for
        ``inspect`` and ``/metrics``), never by rewriting a file: a stats file would cost a
        write per period for every idle container, would fail exactly when a full disk makes
        the counters interesting, and a daemon that is down needs no counters."""
        stats, buffer, guard = self.stats, self.buffer, self.guard
        # Dropped by a non-blocking buffer, or by a full non-blocking spool (both count them),
        # or not stored because storage failed (the guard counts them).
        counted = [c for c in (buffer if buffer is not guard else None,
                               self.driver if self.plan is not None and self.plan.ships else None)
                   if c is not None]
        lines_dropped = sum(c.dropped_lines for c in counted)
        bytes_dropped = sum(c.dropped_bytes for c in counted)
        failing, error, dropped_at = False, "", ""
        if guard is not None:
            lines_dropped += guard.lines_dropped
            bytes_dropped += guard.bytes_dropped
            failing, error = guard.failing, guard.last_error
            if guard.last_drop_ns:
                dropped_at = format_rfc3339nano(guard.last_drop_ns)
        return self.state._replace(
            lines_logged=stats.lines - lines_dropped, bytes_logged=stats.bytes - bytes_dropped,
            lines_dropped=lines_dropped, bytes_dropped=bytes_dropped,
            storage_failing=failing, storage_error=error, last_drop_at=dropped_at or ZERO_TIME)

    # -- signals: reaping, and the end of reading ----------------------------------------

    def _on_wake(self) -> None:
        try:
            os.read(self.wake_r, 4096)
        except BlockingIOError:
            pass
        self._reap()
        if self.stopping:
            self._stop_step()
        elif self.exit_code is not None and self.pumping:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self._stop_step()
            else:
                signal.setitimer(signal.ITIMER_REAL, left + 0.005)

    def _reap(self) -> None:
        """Reap every child that has exited: the container's main process, and whatever was
        reparented to the shim as subreaper."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid and self.exit_code is None:
                code = os.waitstatus_to_exitcode(status)
                self.exit_code = 128 - code if code < 0 else code  # 128 + signal (Docker)
                self.finished_at = now_rfc3339()
                self.deadline = time.monotonic() + EXIT_GRACE
                if self.pumping:
                    signal.setitimer(signal.ITIMER_REAL, EXIT_GRACE + 0.005)

    def _stop_step(self) -> None:
        """Leave ``pump`` without losing a batch it has read but not yet written: either the
        next batch written raises (after it is stored), or a wake-up with no read since the
        previous one does (the batch is then empty). A stray writer that never pauses costs
        at most one batch after ``STOP_TRIES`` wake-ups."""
        if not self.stopping:
            self.stopping = self.sink.stopping = True
            self._stop_tries = 0
        elif self.stats.bytes == self._stop_seen or self._stop_tries >= STOP_TRIES:
            raise _StopReading
        self._stop_tries += 1
        self._stop_seen = self.stats.bytes
        os.write(self.wake_w, b"\0")  # be called again on the next turn of the loop

    def _idle(self, timeout: float) -> bool:
        """While a full blocking spool waits for the shipper: keep reaping and answering the
        control socket, so that ``stop``, ``kill`` and ``rm -f`` still work. False once the
        container has exited: nobody's writes are held back any more, so the spool stops
        waiting and the run can end (and be reported) now."""
        if self.exit_code is not None:
            return False
        sel = selectors.DefaultSelector()
        sel.register(self.wake_r, selectors.EVENT_READ, self._on_wake_only)
        sel.register(self.conns.fileno(), selectors.EVENT_READ, self._on_control)
        for key, _ in sel.select(timeout):
            key.data()
        sel.close()
        return self.exit_code is None

    def _on_wake_only(self) -> None:
        try:
            os.read(self.wake_r, 4096)
        except BlockingIOError:
            pass
        self._reap()

    # -- the control socket --------------------------------------------------------------

    def _listen(self) -> None:
        # Bound relative to the container directory (our cwd): a data root deep enough to
        # make the absolute path longer than sun_path's 108 bytes still works.
        try:
            os.unlink(SHIM_SOCKET)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(SHIM_SOCKET)
        finally:
            os.umask(old)
        sock.listen(16)
        sock.setblocking(False)
        self.listener = sock
        self.conns.register(sock, selectors.EVENT_READ, self._accept)

    def _close_socket(self) -> None:
        if self.listener is None:
            return
        for conn in list(self.clients):
            self._drop(conn)
        self.listener.close()
        self.listener = None
        try:
            os.unlink(SHIM_SOCKET)
        except FileNotFoundError:
            pass

    def _on_control(self) -> None:
        for key, _ in self.conns.select(0):
            key.data(key.fileobj)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # EMFILE and the like: the client will retry
                _log(f"control socket: {err}")
                return
            conn.setblocking(False)
            self.clients[conn] = bytearray()
            self.conns.register(conn, selectors.EVENT_READ, self._read_request)

    def _read_request(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away, possibly mid-request
            self._drop(conn)
            return
        buf = self.clients[conn]
        buf += data
        while (end := buf.find(b"\n")) >= 0:
            line = bytes(buf[:end])
            del buf[:end + 1]
            reply = self._handle(conn, line)
            if reply is not None and not self._send(conn, reply):
                return
        if len(buf) > MAX_REQUEST:
            self._drop(conn)

    def _handle(self, conn: socket.socket, line: bytes) -> dict | None:
        try:
            request = json.loads(line)
            op = request["op"]
        except (ValueError, TypeError, KeyError):
            return {"error": 'bad request: expected one JSON object with "op" per line'}
        if op == "status":
            return self._current().to_json()
        if op == "wait":
            if self.state.status == EXITED:
                return self.state.to_json()
            self.waiters.append(conn)
            return None
        if op == "signal":
            try:
                sig = int(request["signal"])
            except (KeyError, TypeError, ValueError):
                return {"error": 'bad request: "signal" must be a signal number'}
            if self.exit_code is not None or not self.pid:
                return {"error": f"container {self.spec.id} is not running"}
            try:
                self.executor.kill(self.spec, self.pid, sig)
            except Exception as err:
                return {"error": str(err) or type(err).__name__}
            return {"ok": True}
        if op == "resize":
            return self._resize(request)
        if op == "discard":
            # The container is being removed: a full blocking spool stops waiting for the
            # shipper (what it held is counted as dropped) so that the shim can finish.
            if self.driver is not None and self.plan is not None and self.plan.ships:
                self.driver.abandon = True
            return {"ok": True}
        return {"error": f"bad request: unknown op {op!r}"}

    def _resize(self, request: dict) -> dict:
        """Docker's ``resize``: the terminal's size (its foreground processes get SIGWINCH).
        A container without a terminal, or one that has exited, ignores it (containerd)."""
        try:
            height, width = int(request["height"]), int(request["width"])
        except (KeyError, TypeError, ValueError):
            return {"error": 'bad request: "height" and "width" must be numbers'}
        if not (0 <= height <= 0xFFFF and 0 <= width <= 0xFFFF):
            return {"error": f"cannot resize the terminal to {height}x{width}: out of range"}
        if self.terminal is None:
            return {"ok": True}
        from .console import set_size

        try:
            set_size(self.terminal, height, width)
        except OSError as err:
            return {"error": f"cannot resize the terminal to {height}x{width}: {err}"}
        return {"ok": True}

    def _send(self, conn: socket.socket, reply: dict) -> bool:
        try:
            conn.sendall(json.dumps(reply).encode() + b"\n")
            return True
        except OSError:  # gone, or not reading a reply of a few hundred bytes
            self._drop(conn)
            return False

    def _drop(self, conn: socket.socket) -> None:
        self.conns.unregister(conn)
        self.clients.pop(conn, None)
        if conn in self.waiters:
            self.waiters.remove(conn)
        conn.close()


def _open_driver(spec: ContainerSpec, plan: LogPlan, idle=None):
    """What the shim writes the container's output to, as ``plan`` (decided at create) says.
    Its ``ref`` spares the shim the entry-point scan, which would cost it 3 MiB of imports
    (``importlib.metadata``). A remote driver is not loaded here at all: the shim writes its
    spool, the daemon ships."""
    if plan.kind == REMOTE:
        from drivers.spool import SpoolWriter

        return SpoolWriter(spec.log_info(), spec.log_type, idle=idle, report=_log)
    if plan.kind == NONE:
        from drivers.none import AttachBuffer  # attach shows the output, as Docker's does

        return AttachBuffer(spec.log_info())
    return load_driver(spec.log_type, plan.ref)(spec.log_info())


def _oom_counter(pid: int) -> tuple[str | None, int]:
    """The file counting OOM kills in the container's memory cgroup, and its count now.

    Best effort: None when the process has already gone, when cgroups are not readable, or
    when the container shares the shim's cgroup (then the count is not the container's)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            theirs = f.read().splitlines()
        with open("/proc/self/cgroup") as f:
            ours = set(f.read().splitlines())
    except OSError:
        return None, 0
    for line in theirs:
        if line in ours:
            continue
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:  # cgroup v2
            candidates = (f"/sys/fs/cgroup{path}/memory.events",
                          f"/sys/fs/cgroup/unified{path}/memory.events")
        elif "memory" in controllers.split(","):  # cgroup v1
            candidates = (f"/sys/fs/cgroup/memory{path}/memory.oom_control",)
        else:
            continue
        for name in candidates:
            if os.path.exists(name):
                return name, _oom_kills(name)
    return None, 0


def _oom_kills(path: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _wake_only(_sig, _frame) -> None:
    """The signal's number reaches the loop through the wakeup fd; nothing to do here."""


def _log(text: str) -> None:
    """One line to ``shim.log`` (our stderr). It is on the disk that may be full: a line that
    cannot be written is lost, never raised (the shim must outlive its disk)."""
    line = f"{now_rfc3339()} logpipe-shim[{os.getpid()}]: {text}\n".encode(errors="replace")
    try:
        os.write(2, line)
    except OSError:
        pass


USAGE = "usage: python -m runtime.shim [--detach] CONTAINER_DIR\n"


def main(argv: list[str] | None = None, executor=None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    detach = False
    if len(args) > 1 and args[0] == "--detach":  # no argparse: it costs memory
        detach, args = True, args[1:]
    if len(args) != 1:
        sys.stderr.write(USAGE)
        return 2
    directory = os.path.abspath(args[0])
    if detach:
        # Fork once more so the shim is nobody's child: the spawner reads the pid from our
        # stdout and reaps the intermediate at once; the shim is reparented to init.
        pid = os.fork()
        if pid:
            os.write(1, b"%d\n" % pid)
            os._exit(0)
        os.dup2(2, 1)  # stdout → the shim log, which also tells the spawner we are done
    os.chdir(directory)
    spec = ContainerSpec.load(directory)
    if executor is None:
        from .executors import get_executor

        executor = get_executor(spec.runtime)
    Shim(spec, executor).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
