"""The daemon's side of a shim: start one, talk to it, and find out what happened without it.

``spawn_shim`` has the shim parent of the data root fork the shim
(``runtime.shim_parent_client``), else starts ``python -m runtime.shim --detach DIR``; either
way the shim is in its own session, with its output in ``DIR/shim.log``, and nobody's child,
so a daemon that dies or restarts neither kills it nor has to reap it. ``_is_shim`` knows a
shim by its pid without trusting the pid alone (pids are reused): an exec'd one by its
command line, a forked one by its name and cwd. ``ShimClient`` speaks the shim's
control protocol (one JSON object per line, see ``runtime/shim.py``). ``recover_state`` is
what a (re)started daemon believes about a container: the live shim's answer, else the last
``state.json``, else — for a shim that died before recording the exit — ``exited`` with
``Error: "shim died"``. ``settle_run`` goes one step further for such a run: it kills what is
left of the container, deletes its runtime state, unmounts its root and records the exit.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import drivers
import logpipe
import runtime
from logpipe.errors import LogpipeError
from logpipe.timespec import parse_rfc3339

from .executors import get_executor
from .shim_parent import SHIM_NAME
from .spec import SHIM_SOCKET, STDIN_SOCKET, ContainerSpec
from .state import EXITED, RUNNING, State, now_rfc3339, read_state, write_state

if TYPE_CHECKING:
    from .shim_parent_client import ShimParent

SHIM_LOG = "shim.log"
#: Docker's exit code for a container whose exit status was lost.
LOST_EXIT_CODE = 255
#: containerd's exit status for the task of a dead shim that its cleanup killed (128 + SIGKILL).
KILLED_EXIT_CODE = 137
SHIM_DIED = "shim died"


class ShimError(LogpipeError):
    """The shim could not be started, did not answer, or refused a request."""


class ShimGone(ShimError):
    """No shim listens on the container's socket (it has exited, or died)."""


class ParentUnusable(ShimError):
    """The shim parent forked no shim (none runs, it refused, or it died first): the
    caller may exec one."""


def spawn_shim(container_dir: str, python: str = sys.executable, timeout: float = 20.0,
               parent: "ShimParent | None" = None) -> int:
    """Start the shim of the container in ``container_dir``; return its pid once it has
    recorded the container as running (or as failed to start). Forked by ``parent`` when
    given and usable, else exec'd."""
    directory = os.path.abspath(container_dir)
    pid = 0
    if parent is not None:
        try:
            pid = parent.spawn(directory)
        except ParentUnusable as err:  # no shim was forked: exec one
            _log_line(directory, f"starting an exec'd shim: {err}")
    if not pid:
        pid = _exec_shim(directory, python)
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        state = read_state(directory)
        if state is not None and state.shim_pid == pid and state.status in ("running", EXITED):
            return pid
        if not _is_shim(pid, directory):
            raise ShimError(f"shim exited before starting the container: {_log_tail(directory)}")
        if time.monotonic() > deadline:
            raise ShimError(f"shim {pid} did not start the container within {timeout:g} s: "
                            f"{_log_tail(directory)}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _exec_shim(directory: str, python: str) -> int:
    """``python -m runtime.shim --detach DIR``; the pid of the shim it forks."""
    argv, env = shim_command(directory, python)
    with open(os.path.join(directory, SHIM_LOG), "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=log, env=env, start_new_session=True, close_fds=True,
                                cwd=directory)
    with proc:
        out = proc.stdout.read()  # the shim's pid; EOF once it has redirected its stdout
        proc.wait()
    try:
        return int(out)
    except ValueError:
        raise ShimError(f"shim did not start: {_log_tail(directory)}") from None


def shim_command(directory: str, python: str = sys.executable) -> tuple[list[str], dict]:
    """The shim's command line and environment.

    What the shim writes to comes from the container's ``LogPlan`` in its ``config.json``.
    Run by the daemon's own interpreter, it also starts without ``site`` (``-S``): ``.pth``
    files of whatever is installed would otherwise import modules into every shim. Its
    ``sys.path`` is then the daemon's, given explicitly (it includes every ``.pth`` path)."""
    argv = [python, "-m", "runtime.shim", "--detach"]
    if python == sys.executable:
        argv.insert(1, "-S")
    return argv + [directory], shim_environment(python)


def shim_environment(python: str = sys.executable) -> dict[str, str]:
    """The environment of a shim (and of the shim parent): the daemon's, with the daemon's
    ``sys.path`` as ``PYTHONPATH`` when it is the daemon's interpreter (started with ``-S``)."""
    env = dict(os.environ)
    if python == sys.executable:
        roots = [os.path.dirname(os.path.abspath(d)) for m in (logpipe, drivers, runtime)
                 for d in m.__path__ if os.path.isdir(d)]
        path = roots + [p for p in sys.path if p and os.path.isabs(p)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    return env


class ShimClient:
    """Requests to the shim of one container, over ``<dir>/shim.sock``."""

    def __init__(self, container_dir: str, timeout: float = 10.0) -> None:
        self.dir = os.path.abspath(container_dir)
        self.timeout = timeout

    def status(self) -> State:
        return State.from_json(self._request({"op": "status"}))

    def signal(self, sig: int) -> None:
        self._request({"op": "signal", "signal": int(sig)})

    def resize(self, height: int, width: int) -> None:
        """The size of the container's terminal (none: nothing happens, as with Docker)."""
        self._request({"op": "resize", "height": int(height), "width": int(width)})

    def connect_stdin(self) -> socket.socket:
        """A connection to the shim's ``stdin.sock``: what is sent on it goes to the
        container's stdin; its end is the end of an attach (``runtime.stdin_relay``).
        ``ShimGone`` when there is no stdin to write (no ``-i``, or it is closed)."""
        try:
            return self._connect(STDIN_SOCKET)
        except OSError as err:
            raise ShimGone(f"the container's stdin is closed: {err}") from None

    def discard(self) -> None:
        """The container is being removed: a full blocking spool stops waiting."""
        self._request({"op": "discard"})

    def wait(self, timeout: float | None = None) -> State:
        """Block until the container has exited and its log is closed; the final state.
        A shim that is already gone has left it in ``state.json`` (or died: ``recover_state``)."""
        try:
            return State.from_json(self._request({"op": "wait"}, timeout))
        except ShimGone:
            state = recover_state(self.dir)
            if state is None or state.status != EXITED:
                raise
            return state

    def alive(self) -> bool:
        """Whether a shim answers on the socket (a daemon re-adopting shims asks this)."""
        try:
            self._connect().close()
            return True
        except OSError:
            return False

    def _connect(self, name: str = SHIM_SOCKET) -> socket.socket:
        return connect_unix(self.dir, name, self.timeout)

    def _request(self, request: dict, timeout: float | None = -1) -> dict:
        try:
            sock = self._connect()
        except OSError as err:
            raise ShimGone(f"shim of {self.dir} does not answer: {err}") from None
        with sock:
            sock.settimeout(self.timeout if timeout == -1 else timeout)
            try:
                sock.sendall(json.dumps(request).encode() + b"\n")
                buf = b""
                while not buf.endswith(b"\n"):
                    data = sock.recv(65536)
                    if not data:  # the shim exited between our connect and its reply
                        raise ShimGone(f"shim of {self.dir} closed the connection")
                    buf += data
            except (ConnectionResetError, BrokenPipeError) as err:
                raise ShimGone(f"shim of {self.dir}: {err}") from None
            except OSError as err:
                raise ShimError(f"shim of {self.dir}: {err}") from None
        reply = json.loads(buf)
        if "error" in reply:
            raise ShimError(reply["error"])
        return reply


def connect_unix(directory: str, name: str, timeout: float) -> socket.socket:
    """A connection to the unix socket ``name`` in ``directory``, however deep that is."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    path = os.path.join(directory, name)
    try:
        if len(path.encode()) < 100:
            sock.connect(path)
        else:  # too long for sun_path: go through a descriptor of the directory
            dirfd = os.open(directory, os.O_PATH)
            try:
                sock.connect(f"/proc/self/fd/{dirfd}/{name}")
            finally:
                os.close(dirfd)
    except OSError:
        sock.close()
        raise
    return sock


def live_state(container_dir: str, known: State, timeout: float = 2.0) -> State:
    """The state with the shim's live counters while the container runs (the shim keeps them
    in memory and answers ``status``); ``known`` when it is not running or does not answer
    within ``timeout``."""
    if known.status != RUNNING or timeout <= 0:
        return known
    try:
        return ShimClient(container_dir, timeout=timeout).status()
    except (ShimError, OSError, ValueError):
        return known


def recover_state(container_dir: str) -> State | None:
    """What is known about the container's run: the live shim's state, else what it last
    wrote; a run whose shim is gone without recording its exit is ``exited`` with
    ``Error: "shim died"`` (Docker, too, reports 255 when it lost the exit status).
    None if no shim ever ran for it."""
    directory = os.path.abspath(container_dir)
    client = ShimClient(directory, timeout=5.0)
    try:
        return client.status()
    except ShimGone:
        pass
    state = read_state(directory)  # read after the socket: a shim removes it last
    if state is None or state.status == EXITED:
        return state
    if _is_shim(state.shim_pid, directory):  # alive but busy, or between state and socket
        return state
    return state._replace(status=EXITED, running=False, pid=0, exit_code=LOST_EXIT_CODE,
                          error=SHIM_DIED, finished_at=now_rfc3339())


def settle_run(container_dir: str) -> State | None:
    """``recover_state``, and for a run whose shim died (SIGKILL, a crash) without recording
    the exit, the cleanup the shim would have done: every process of the container is killed,
    the runtime's state deleted and the root filesystem unmounted; the exit is then written to
    ``state.json`` (the only time the daemon writes it), so it is settled once, even across
    daemon restarts. Its logs stay until the container is removed.

    As containerd does for a dead shim, the exit code is 137 (128 + SIGKILL) when the
    container was still running and this killed it, and 255 when it was already gone and its
    exit status is lost; ``Error`` says which."""
    directory = os.path.abspath(container_dir)
    state = recover_state(directory)
    if state is None or state.status != EXITED or state.error != SHIM_DIED:
        return state
    lock = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the watcher and a ``wait`` may both get here
        last = read_state(directory)
        if last is None or last.status == EXITED or _is_shim(last.shim_pid, directory):
            return last
        try:
            started = parse_rfc3339(last.started_at)
        except ValueError:
            started = 0
        try:
            spec = ContainerSpec.load(directory)
            killed = get_executor(spec.runtime).destroy(spec, last.pid, started)
        except (OSError, ValueError, KeyError, LogpipeError) as err:
            killed, why = False, f"{SHIM_DIED}; cleaning up after it failed: {err}"
        else:
            why = f"{SHIM_DIED}; its container was killed" if killed else \
                f"{SHIM_DIED}; the container had exited and its exit status is lost"
        final = last._replace(status=EXITED, running=False, pid=0,
                              exit_code=KILLED_EXIT_CODE if killed else LOST_EXIT_CODE,
                              error=why, finished_at=now_rfc3339())
        write_state(directory, final)
        return final
    finally:
        os.close(lock)


def _is_shim(pid: int, directory: str) -> bool:
    """Whether ``pid`` is a live (not zombie) shim of ``directory``: pids are reused."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    if stat[stat.rfind(b")") + 2:][:1] in (b"Z", b"X"):
        return False
    if b"runtime.shim" in argv and os.fsencode(directory) in argv:  # exec'd
        return True
    # Forked by the shim parent: its command line is the parent's; it names itself and
    # lives in the container's directory, which no other process named so does.
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            if f.read().rstrip(b"\n") != SHIM_NAME:
                return False
        return os.readlink(f"/proc/{pid}/cwd") == os.path.abspath(directory)
    except OSError:
        return False


def _log_line(directory: str, text: str) -> None:
    """A line of the daemon's in the container's ``shim.log`` (best effort)."""
    try:
        with open(os.path.join(directory, SHIM_LOG), "ab") as f:
            f.write(f"{now_rfc3339()} logpipe-daemon[{os.getpid()}]: {text}\n".encode())
    except OSError:
        pass


def _log_tail(directory: str, size: int = 2000) -> str:
    try:
        with open(os.path.join(directory, SHIM_LOG), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            text = f.read().decode(errors="replace").strip()
    except OSError:
        return "(no shim.log)"
    return text or "(shim.log is empty)"
