"""The shim parent: one pre-initialised interpreter per data root that forks every shim.

An exec'd shim is a whole Python interpreter of its own, 7–11 MiB of PSS per container.
A shim forked from a process that has already imported everything a shim uses shares those
pages copy-on-write with it and with every other shim: what it owns is what it touches.
So the daemon starts this process once (``runtime.shim_parent_client``), in its own session,
and asks it for a shim per container start; it is not the daemon and outlives it, and a
(re)started daemon finds it again through ``<data-root>/shim-parent.sock``.

``python -S -m runtime.shim_parent DATA_ROOT``: it imports what a shim needs (capture, the
storage drivers json-file and local, the spool, the executors, the state), freezes the
garbage collector's view of those objects (``gc.freeze``: a collection in a shim would
otherwise write to every object header and unshare their pages), binds its socket, forks
once so that it is nobody's child (the intermediate prints its pid on stdout and exits), and
serves one request at a time; one JSON object per line each way:

- ``{"op":"spawn","dir":D,"expect":{...}}`` with the write end of a pipe passed alongside
  (``SCM_RIGHTS``) → ``{"ok":true}``: it forks; the child leaves the session and forks the
  shim (so that the shim is nobody's child either), which writes its pid to that pipe. The
  pipe is the proof the daemon relies on: a pid, or EOF without one once every copy of the
  write end is closed, which means no shim was forked and starting one otherwise is safe.
  ``expect`` is what an exec'd shim would inherit from the daemon now (``inheritance``);
  when it differs from what this process has, or a module file it imported has changed
  since, it answers ``{"stale": why}`` and forks nothing: the daemon replaces it.
- ``{"op":"identity"}`` → its pid, inheritance and the files of the modules it imported.
- ``{"op":"stop"}`` → ``{"ok":true}``, then it exits (a daemon that shuts down stops it).

It also exits when its socket is no longer its own (the data root was removed, or a newer
parent took the name): checked every ``WATCH_INTERVAL`` seconds, so that a removed data root
leaves no process behind. Shims never depend on it: they are in their own sessions, are not
its children, and hold none of its descriptors.

The forked shim starts as an exec'd one would: its own session, stdin ``/dev/null``,
stdout and stderr appended to ``<dir>/shim.log``, cwd the container directory, every other
descriptor closed, Python's default signal dispositions (this process installs none), and
the environment, umask, rlimits and cgroup the daemon would have given an exec'd shim
(``expect`` guarantees they are equal). Its name (``/proc/PID/comm``) is ``logpipe-shim``,
which with its cwd identifies it (``runtime.shimclient._is_shim``): its command line is
this process's.

What it must not do: import anything a shim would not, start threads (a fork copies only
the calling one), or hold a descriptor a shim could inherit.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import socket
import sys

SOCKET = "shim-parent.sock"
PID_FILE = "shim-parent.pid"
LOG = "shim-parent.log"
#: How often an idle parent checks that its socket (and data root) still exist.
WATCH_INTERVAL = 5.0
#: A client that sends no complete request within this is dropped.
REQUEST_TIMEOUT = 5.0
MAX_REQUEST = 64 << 10
SHIM_NAME = b"logpipe-shim"
PR_SET_NAME = 15
#: What a shim may import (a shim imports each lazily; here they are imported once for all).
PRELOAD = ("runtime.shim", "runtime.executors", "runtime.oci", "runtime.rootfs",
           "runtime.network.netavark", "runtime.console", "runtime.stdin_relay",
           "drivers.json_file", "drivers.local", "drivers.spool", "drivers.none",
           "logpipe.nonblocking", "ctypes")
_RLIMITS = ("RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE", "RLIMIT_MEMLOCK", "RLIMIT_STACK",
            "RLIMIT_FSIZE", "RLIMIT_AS", "RLIMIT_DATA")


def inheritance(env: dict[str, str], python: str = sys.executable) -> dict:
    """What a shim inherits from whoever starts it: the interpreter, the environment, and
    this process's umask, rlimits and cgroup. The daemon computes it for the shim it would
    exec; the parent for itself; equal means a forked shim gets the same. (No digest of the
    environment: hashlib would map OpenSSL into every shim.)"""
    try:
        with open("/proc/self/cgroup") as f:
            cgroup = f.read()
    except OSError:
        cgroup = ""
    return {"python": os.path.realpath(python),
            "env": sorted(f"{k}={v}" for k, v in env.items()), "umask": _umask(),
            "rlimits": [list(resource.getrlimit(getattr(resource, name)))
                        for name in _RLIMITS if hasattr(resource, name)],
            "cgroup": cgroup}


def _umask() -> str:
    """Read, not set and reset: the daemon has threads that create files meanwhile."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return line.split()[1]
    except OSError:
        pass
    return ""


def module_files() -> dict[str, list[int]]:
    """(mtime_ns, size) of the file of every imported module: the code a shim would run."""
    files = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path not in files:
            try:
                st = os.stat(path)
            except OSError:
                continue
            files[path] = [st.st_mtime_ns, st.st_size]
    return files


def changed_files(files: dict[str, list[int]]) -> list[str]:
    changed = []
    for path, (mtime, size) in files.items():
        try:
            st = os.stat(path)
        except OSError:
            changed.append(path)
            continue
        if st.st_mtime_ns != mtime or st.st_size != size:
            changed.append(path)
    return changed


class Parent:
    """The server: accepts on its socket, answers, and forks shims."""

    def __init__(self, root: str, listener: socket.socket, files: dict) -> None:
        self.root, self.listener, self.files = root, listener, files
        self.inheritance = inheritance(dict(os.environ))
        self.inode = os.stat(os.path.join(root, SOCKET)).st_ino

    def serve(self) -> str | None:
        """Serve until stopped (None); in a forked shim, return its container directory."""
        self.listener.settimeout(WATCH_INTERVAL)
        while True:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                if not self._still_ours():
                    _log("the socket is gone or replaced: exiting")
                    return None
                continue
            except OSError as err:  # EMFILE and the like: the client falls back, or retries
                _log(f"accept: {err}")
                continue
            try:
                outcome = self._handle(conn)
            finally:
                if conn.fileno() >= 0:
                    conn.close()
            if outcome is not None:
                return outcome or None

    def _handle(self, conn: socket.socket) -> str | None:
        """None to go on; "" to stop; a directory in a forked shim."""
        conn.settimeout(REQUEST_TIMEOUT)
        fds: list[int] = []
        try:
            request, fds = _receive(conn)
            op = request.get("op")
        except (OSError, ValueError, AttributeError) as err:
            for fd in fds:
                os.close(fd)
            _reply(conn, {"error": f"bad request: {err}"})
            return None
        if op == "identity":
            _reply(conn, {"pid": os.getpid(), "inheritance": self.inheritance,
                          "files": self.files})
        elif op == "stop":
            _reply(conn, {"ok": True})
            self._unlink()
            return ""
        elif op == "spawn" and len(fds) == 1 and isinstance(request.get("dir"), str):
            return self._spawn(conn, request, fds[0])
        else:
            _reply(conn, {"error": "bad request: unknown op, or a spawn without one pipe"})
        for fd in fds:
            os.close(fd)
        return None

    def _spawn(self, conn: socket.socket, request: dict, pipe: int) -> str | None:
        stale = self._stale(request.get("expect"))
        if stale:
            os.close(pipe)
            _reply(conn, {"stale": stale})
            return None
        directory = request["dir"]
        try:
            pid = os.fork()
        except OSError as err:
            os.close(pipe)
            _reply(conn, {"error": f"fork: {err}"})
            return None
        if pid == 0:
            return self._become_shim(conn, directory, pipe)  # only returns in the shim
        os.close(pipe)
        _reply(conn, {"ok": True})
        os.waitpid(pid, 0)  # the intermediate exits as soon as the shim is forked
        return None

    def _become_shim(self, conn: socket.socket, directory: str, pipe: int) -> str:
        """In the child: drop the parent's descriptors, leave its session, fork the shim
        (the intermediate exits at once) and give it an exec'd shim's stdio; the shim then
        reports its pid itself."""
        try:
            for sock in (self.listener, conn):
                os.close(sock.detach())
            os.setsid()
            if os.fork():
                os._exit(0)
            _shim_stdio(directory)
            os.chdir(directory)
            _name_shim()
            # Known by its name and cwd from now on (``_is_shim``): its pid may be told.
            os.write(pipe, b"%d\n" % os.getpid())
            os.closerange(3, _max_fd())
        except BaseException as err:  # noqa: BLE001 - nothing of the parent may run on
            _log(f"forking the shim of {directory} failed: {err}")
            os._exit(1)
        return directory

    def _stale(self, expect) -> str:
        if expect != self.inheritance:
            ours = self.inheritance
            keys = [k for k in ours if not isinstance(expect, dict) or expect.get(k) != ours[k]]
            return f"started with another {', '.join(keys) or 'inheritance'}"
        changed = changed_files(self.files)
        if changed:
            return f"{len(changed)} imported files changed since it started ({changed[0]}, ...)"
        return ""

    def _still_ours(self) -> bool:
        try:
            return os.stat(os.path.join(self.root, SOCKET)).st_ino == self.inode
        except OSError:
            return False

    def _unlink(self) -> None:
        for name in (SOCKET, PID_FILE):
            path = os.path.join(self.root, name)
            try:
                if name != SOCKET or os.stat(path).st_ino == self.inode:
                    os.unlink(path)
            except OSError:
                pass


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    buf, fds = b"", []
    while not buf.endswith(b"\n"):
        data, got, _, _ = socket.recv_fds(conn, 4096, 4)
        fds += got
        if not data:
            raise ValueError("the connection closed mid-request")
        buf += data
        if len(buf) > MAX_REQUEST:
            raise ValueError("request too long")
    return json.loads(buf), fds


def _reply(conn: socket.socket, reply: dict) -> None:
    try:
        conn.sendall(json.dumps(reply).encode() + b"\n")
    except OSError:
        pass  # the client has gone: it sees EOF on its pipe, or no reply


def _shim_stdio(directory: str) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(os.path.join(directory, "shim.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                  0o666)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    for fd in (null, log):
        if fd > 2:
            os.close(fd)


def _max_fd() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if 0 < soft < 1 << 20 else 1 << 16


def _name_shim() -> None:
    """``/proc/PID/comm``: a forked shim's command line is the parent's."""
    import ctypes

    try:
        ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(SHIM_NAME), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _preload() -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as err:  # a shim that needs it fails the same way on its own
            _log(f"preloading {name}: {err}")


def _listen(root: str) -> socket.socket:
    """Bound under a temporary name, then renamed over ``SOCKET``: a client never finds the
    name unbound while a parent replaces another. Relative to the data root (our cwd), so a
    deep data root does not overflow ``sun_path``."""
    temp = f"{SOCKET}.{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # only root (the daemon's user) connects
    try:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        sock.bind(temp)
    finally:
        os.umask(old)
    try:
        sock.listen(64)
        os.rename(temp, SOCKET)
    except OSError:
        os.unlink(temp)
        raise
    return sock


def _write_pid_file() -> None:
    """For people and benchmarks (the daemon finds the parent by its socket): a full disk
    must not stop the parent."""
    try:
        with open(PID_FILE + ".tmp", "w") as f:
            f.write(f"{os.getpid()}\n")
        os.rename(PID_FILE + ".tmp", PID_FILE)
    except OSError as err:
        _log(f"writing {PID_FILE}: {err}")


def _log(text: str) -> None:
    from runtime.state import now_rfc3339

    line = f"{now_rfc3339()} logpipe-shim-parent[{os.getpid()}]: {text}\n"
    try:
        os.write(2, line.encode(errors="replace"))
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m runtime.shim_parent DATA_ROOT\n")
        return 2
    root = os.path.abspath(args[0])
    os.chdir(root)
    _preload()
    files = module_files()  # after the imports: what a shim forked now would run
    listener = _listen(root)
    pid = os.fork()  # nobody's child: the starter reads our pid and reaps the intermediate
    if pid:
        os.write(1, b"%d\n" % pid)
        os._exit(0)
    os.dup2(2, 1)  # stdout → our log, which also tells the starter we are done
    _write_pid_file()
    parent = Parent(root, listener, files)
    gc.collect()
    gc.freeze()  # what is here now is shared with every shim: no collection may touch it
    from logpipe import heap

    heap.release()  # what the imports freed goes back before any shim is forked
    directory = parent.serve()
    if directory is None:
        return 0
    from runtime.shim import main as shim_main

    return shim_main([directory])


if __name__ == "__main__":
    sys.exit(main())
