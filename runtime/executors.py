"""Executors: how a container's process is started, signalled and cleaned up after.

``runc``/``crun`` run it isolated from an OCI bundle (``runtime.oci``) on the container's
root filesystem (``runtime.rootfs``); ``process`` runs the command on the host with no
isolation at all. The caller (the shim) is a child subreaper and reaps the returned pid
itself: an executor never waits for the container, and keeps no handle that would reap it.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import termios
import time
from typing import TYPE_CHECKING, ClassVar, Protocol

from logpipe.errors import InvalidParameter, LogpipeError

from runtime.command import run_command
from runtime.spec import ContainerSpec

if TYPE_CHECKING:
    from runtime.resources import Limits


#: Docker's exit codes for a container that could not be started (daemon/start.go): its
#: command was not found, it could not be invoked, or anything else went wrong.
EXIT_NOT_FOUND, EXIT_CANNOT_INVOKE, EXIT_START_FAILED = 127, 126, 128


class ExecutorError(LogpipeError):
    """The container's process could not be started (the runtime's own message included).

    ``exit_code`` is the container's exit code Docker records for that failure: 127 when its
    command is not found, 126 when it cannot be invoked, 128 otherwise."""

    def __init__(self, message: str, exit_code: int = EXIT_START_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def start_failure(command: str, message: str) -> ExecutorError:
    """Docker's ``translateContainerdStartErr``: the exit code follows from the runtime's
    message, and a file mounted onto a directory (or the reverse) gets Docker's hint."""
    low = message.lower()
    code = EXIT_START_FAILED
    if command.lower() in low and ("executable file not found" in low
                                   or "no such file or directory" in low):
        code = EXIT_NOT_FOUND
    if "permission denied" in low:
        code = EXIT_CANNOT_INVOKE
    if "not a directory" in low:
        message += (": Are you trying to mount a directory onto a file (or vice-versa)? Check "
                    "if the specified host path exists and is the expected type")
        code = EXIT_NOT_FOUND
    return ExecutorError(message, code)


class UnknownRuntime(InvalidParameter):
    """``--runtime`` / ``default-runtime`` names no executor."""


class Executor(Protocol):
    name: ClassVar[str]  # "runc" | "crun" | "process"
    isolated: ClassVar[bool]  # False for "process": the CLI warns loudly

    def start(self, spec: ContainerSpec, stdout: int, stderr: int,
              stdin: int | None = None) -> int: ...
    def start_terminal(self, spec: ContainerSpec) -> tuple[int, int]: ...
    def kill(self, spec: ContainerSpec, pid: int, sig: int) -> None: ...
    def pause(self, spec: ContainerSpec, pid: int, paused: bool) -> None: ...
    def cleanup(self, spec: ContainerSpec) -> None: ...
    def destroy(self, spec: ContainerSpec, pid: int, started_ns: int) -> bool: ...
    def update(self, spec: ContainerSpec, limits: Limits) -> None: ...


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # already dead: the caller's waitpid reports how


class OCIExecutor:
    """Drives an OCI runtime binary (``runc`` command line) in pass-through stdio mode."""

    name: ClassVar[str] = "runc"
    isolated: ClassVar[bool] = True

    def __init__(self, data_root: str | None = None, binary: str | None = None) -> None:
        self.data_root = data_root
        self.binary = binary or which(self.name) or self.name

    def _root(self, spec: ContainerSpec) -> str:
        # <data-root>/containers/<id> → <data-root>/<runtime>: the runtime's state directory.
        data_root = self.data_root or os.path.dirname(os.path.dirname(os.path.abspath(spec.dir)))
        return os.path.join(data_root, self.name)

    def _cmd(self, spec: ContainerSpec, *args: str) -> list[str]:
        return [self.binary, "--root", self._root(spec), "--log",
                os.path.join(spec.dir, f"{self.name}.log"), "--log-format", "json", *args]

    def _last_error(self, spec: ContainerSpec) -> str:
        """The runtime's last error-level message from its JSON log (its stderr is the
        container's, so it is never read from there)."""
        try:
            with open(os.path.join(spec.dir, f"{self.name}.log"), errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return ""
        fallback = ""
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                fallback = fallback or line.strip()
                continue
            if entry.get("level") in ("error", "fatal", "panic"):
                return entry.get("msg", "")
            fallback = fallback or entry.get("msg", "")
        return fallback

    def _delete(self, spec: ContainerSpec) -> None:
        if not os.path.isdir(os.path.join(self._root(spec), spec.id)):
            return  # no runtime state: nothing to delete (and no runc process to start)
        null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            run_command(self._cmd(spec, "delete", "--force", spec.id), stderr=null)
        finally:
            os.close(null)

    def start(self, spec: ContainerSpec, stdout: int, stderr: int,
              stdin: int | None = None) -> int:
        """Pass-through stdio: runc hands the shim's pipes (``stdin``: /dev/null if None)
        to the container's process."""
        return self._run(spec, (), stdin, stdout, stderr)

    def start_terminal(self, spec: ContainerSpec) -> tuple[int, int]:
        """``-t``: runc makes the pty inside the container and sends its master over a
        console socket in the container directory (in a temporary one if that path would
        be too long for a unix socket); returns (pid, master)."""
        from runtime.console import CONSOLE_SOCKET, ConsoleSocket

        short = len(os.path.join(os.path.abspath(spec.dir), CONSOLE_SOCKET).encode()) < 100
        with ConsoleSocket(os.path.abspath(spec.dir) if short else None) as console:
            pid = self._run(spec, ("--console-socket", console.path), None, None, None)
            try:
                return pid, console.receive(timeout=10.0)
            except OSError as err:
                _kill(pid, signal.SIGKILL)
                raise ExecutorError(f"{self.name} sent no terminal: {err}") from None

    def _run(self, spec: ContainerSpec, extra: tuple[str, ...], stdin: int | None,
             stdout: int | None, stderr: int | None) -> int:
        from runtime import oci, rootfs  # used at start and exit only: not kept in the shim

        root = rootfs.prepare(spec)
        from runtime.network import netavark

        if netavark.uses_netns(spec):
            try:
                netavark.attach(spec)
            except LogpipeError as err:
                rootfs.release(spec)
                raise ExecutorError(str(err)) from None
        bundle = oci.bundle(spec, root)
        pid_file = os.path.join(spec.dir, "container.pid")
        for stale in (pid_file, os.path.join(spec.dir, f"{self.name}.log")):
            if os.path.exists(stale):
                os.unlink(stale)
        self._delete(spec)  # a restart: the previous run's state must go first
        try:
            r = run_command(
                self._cmd(spec, "run", "--detach", "--bundle", bundle, "--pid-file", pid_file,
                          *extra, spec.id), stdout=stdout, stderr=stderr, stdin=stdin)
        except OSError as e:
            raise ExecutorError(f"cannot run {self.binary}: {e}") from None
        if r.returncode != 0:
            why = self._last_error(spec) or f"{self.name} exited with status {r.returncode}"
            self._delete(spec)
            rootfs.release(spec)
            # Docker (containerd's shim) runs ``runc create``; we run ``runc run --detach``,
            # whose message is the same but for its first word. Docker's text, exactly:
            # ``failed to create shim task: OCI runtime create failed: runc create failed:
            # unable to start container process: exec: "/x": stat /x: no such file or
            # directory: unknown`` (the docker CLI picks its exit code from these words).
            run_failed = f"{self.name} run failed: "
            if why.startswith(run_failed):
                why = f"{self.name} create failed: " + why[len(run_failed):]
            raise start_failure(spec.argv[0] if spec.argv else "",
                                "failed to create shim task: OCI runtime create failed: "
                                f"{why}: unknown")
        with open(pid_file) as f:
            return int(f.read().strip())

    def kill(self, spec: ContainerSpec, pid: int, sig: int) -> None:
        # The pid is the shim's child (reparented to it as subreaper) and not reaped yet,
        # so it cannot have been reused: a plain kill is exact and needs no runtime process.
        _kill(pid, sig)

    def pause(self, spec: ContainerSpec, pid: int, paused: bool) -> None:
        """``runc pause``/``resume``: the cgroup freezer, every process of the container."""
        r = run_command(self._cmd(spec, "pause" if paused else "resume", spec.id))
        if r.returncode != 0:
            raise ExecutorError(self._last_error(spec) or r.stderr.decode(errors="replace")
                                .strip() or f"{self.name} exited with status {r.returncode}")

    def cleanup(self, spec: ContainerSpec) -> None:
        from runtime import rootfs
        from runtime.network import netavark

        self._delete(spec)
        rootfs.release(spec)
        netavark.detach(spec)  # after runc: nothing holds the namespace any more

    def destroy(self, spec: ContainerSpec, pid: int, started_ns: int) -> bool:
        """What is left of a run whose shim died: ``runc delete --force`` kills every process
        of the container (runc checks the init's start time itself, so a reused pid is safe)
        and deletes its state; then the overlay is unmounted. True if it was still alive."""
        status = self._status(spec)
        if status == "paused":  # a frozen process would not die of SIGKILL under cgroup v1
            run_command(self._cmd(spec, "resume", spec.id))
        self.cleanup(spec)
        return status in ("running", "paused", "created")

    def _status(self, spec: ContainerSpec) -> str | None:
        """``runc state``'s status (running, paused, created, stopped), None if unknown."""
        if not os.path.isdir(os.path.join(self._root(spec), spec.id)):
            return None
        out = os.memfd_create("runc-state", os.MFD_CLOEXEC)
        try:
            r = run_command(self._cmd(spec, "state", spec.id), stdout=out)
            os.lseek(out, 0, os.SEEK_SET)
            with os.fdopen(os.dup(out), "rb") as f:
                text = f.read()
        finally:
            os.close(out)
        try:
            return json.loads(text).get("status") if r.returncode == 0 else None
        except (ValueError, AttributeError):
            return None

    def update(self, spec: ContainerSpec, limits: Limits) -> None:
        """``docker update`` of a running container: ``runc update`` writes the new limits
        (a ``runtime.resources.Limits``; 0 leaves one as it is) into its cgroup."""
        flags = {"--memory": limits.memory, "--memory-swap": limits.memory_swap,
                 "--cpu-share": limits.cpu_shares, "--cpu-quota": limits.cpu_quota,
                 "--cpu-period": limits.cpu_period, "--pids-limit": limits.pids_limit}
        args = [f"{flag}={value}" for flag, value in flags.items() if value]
        r = run_command(self._cmd(spec, "update", *args, spec.id))
        if r.returncode != 0:
            raise ExecutorError(self._last_error(spec) or r.stderr.decode(errors="replace")
                                .strip() or f"{self.name} exited with status {r.returncode}")


    def exec_command(self, spec: ContainerSpec, process_file: str, pid_file: str,
                     log_file: str) -> list[str]:
        """``runc exec`` of the OCI process in ``process_file`` in the running container
        (its namespaces and cgroup), in the foreground: runc exits with the process's
        status. Its own errors go to ``log_file`` (``runtime.exec_process`` reads them)."""
        return [self.binary, "--root", self._root(spec), "--log", log_file, "--log-format",
                "json", "exec", "--process", process_file, "--pid-file", pid_file, spec.id]


class RuncExecutor(OCIExecutor):
    name: ClassVar[str] = "runc"


class CrunExecutor(OCIExecutor):
    """crun takes runc's command line. crun 1.8 refuses hybrid cgroup v1/v2 hosts."""

    name: ClassVar[str] = "crun"


class ProcessExecutor:
    """The command on the host, no isolation: for machines without root or an OCI runtime."""

    name: ClassVar[str] = "process"
    isolated: ClassVar[bool] = False

    def start(self, spec: ContainerSpec, stdout: int, stderr: int,
              stdin: int | None = None) -> int:
        return self._spawn(spec, stdin, stdout, stderr, terminal=False)

    def start_terminal(self, spec: ContainerSpec) -> tuple[int, int]:
        """``-t``: a pty made here (``openpty``), its slave the process's controlling
        terminal and stdio; the shim keeps the master. Returns (pid, master)."""
        from runtime.console import set_size

        master, slave = os.openpty()
        try:
            if all(spec.console_size):
                set_size(slave, *spec.console_size)
            pid = self._spawn(spec, slave, slave, slave, terminal=True)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)  # the container's now: its last close is the master's EIO
        return pid, master

    def _spawn(self, spec: ContainerSpec, stdin: int | None, stdout: int, stderr: int,
               terminal: bool) -> int:
        from runtime import oci

        argv = spec.argv
        if not argv:
            raise ExecutorError("No command specified")
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in
                   oci.environment(spec, spec.hostname or os.uname().nodename))
        cwd = spec.working_dir or spec.dir
        # fork/exec by hand rather than Popen: Popen reaps abandoned children on its own
        # (subprocess._cleanup), which would steal the exit status from the shim's waitpid.
        # An exec failure travels back over a close-on-exec pipe.
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        null = os.open(os.devnull, os.O_RDONLY)
        pid = os.fork()
        if pid == 0:  # child: only async-signal-safe-ish work, then exec or _exit
            try:
                os.close(err_r)
                os.setsid()
                if terminal:  # the pty becomes the new session's controlling terminal
                    fcntl.ioctl(stdout, termios.TIOCSCTTY, 0)
                out, err = os.dup(stdout), os.dup(stderr)  # stdout may be fd 2, and so on
                inp = os.dup(null if stdin is None else stdin)
                os.dup2(inp, 0)
                os.dup2(out, 1)
                os.dup2(err, 2)
                os.closerange(3, err_w)
                os.closerange(err_w + 1, 65536)
                for s in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
                    signal.signal(s, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                os.chdir(cwd)
                os.execvpe(argv[0], argv, env)
            except BaseException as e:  # noqa: BLE001 - anything must reach the parent
                try:
                    os.write(err_w, f"{type(e).__name__}:{e}".encode(errors="replace"))
                finally:
                    os._exit(127)
        os.close(err_w)
        os.close(null)
        with os.fdopen(err_r, "rb") as f:
            failure = f.read()
        if failure:
            os.waitpid(pid, 0)  # ours to reap: the container never existed
            kind, _, msg = failure.decode(errors="replace").partition(":")
            if "chdir" not in msg and os.path.isdir(cwd):
                msg = _exec_failure(argv[0], kind) or msg
            raise start_failure(argv[0], f"failed to create task for container: {msg}")
        return pid

    def kill(self, spec: ContainerSpec, pid: int, sig: int) -> None:
        # The process leads its own session: signal the whole group, as a container's
        # pid namespace would take its children down with it.
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            _kill(pid, sig)
        except PermissionError:
            _kill(pid, sig)

    def pause(self, spec: ContainerSpec, pid: int, paused: bool) -> None:
        """No freezer without a cgroup of its own: SIGSTOP/SIGCONT to its process group."""
        self.kill(spec, pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def cleanup(self, spec: ContainerSpec) -> None:
        pass

    def destroy(self, spec: ContainerSpec, pid: int, started_ns: int) -> bool:
        """Kill the process group of a run whose shim died, if ``pid`` is still that run's
        process: it leads its own session and started when the run did (pids are reused)."""
        if pid <= 0 or not _same_process(pid, started_ns):
            return False
        self.kill(spec, pid, signal.SIGKILL)
        deadline = time.monotonic() + 2.0  # its parent is now init, which reaps it
        while _same_process(pid, started_ns) and time.monotonic() < deadline:
            time.sleep(0.01)
        return True

    def update(self, spec: ContainerSpec, limits: Limits) -> None:
        """No cgroup of its own: a running process's limits cannot change."""
        raise ExecutorError("the process runtime runs a container without a cgroup: it has "
                            "no limits to change")


def _same_process(pid: int, started_ns: int) -> bool:
    """Whether ``pid`` is alive (not a zombie), leads its own session, and started within a
    few seconds of ``started_ns`` (wall clock): the container's process, not a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
    except (OSError, StopIteration, IndexError, ValueError):
        return False
    state, session, start_ticks = fields[0], int(fields[3]), int(fields[19])
    if state in (b"Z", b"X") or session != pid:
        return False
    started = btime + start_ticks / os.sysconf("SC_CLK_TCK")
    return abs(started - started_ns / 1e9) < 5.0


def _exec_failure(command: str, kind: str) -> str:
    """runc's words for a command that cannot be executed (Go's ``exec.LookPath`` and
    ``execve``): what the user sees is the same whichever runtime runs the container."""
    if kind == "FileNotFoundError":
        if "/" in command:
            return f'exec: "{command}": stat {command}: no such file or directory'
        return f'exec: "{command}": executable file not found in $PATH'
    if kind in ("PermissionError", "IsADirectoryError"):
        return f'exec: "{command}": permission denied'
    return ""


EXECUTORS: dict[str, type] = {"runc": RuncExecutor, "crun": CrunExecutor,
                              "process": ProcessExecutor}


def get_executor(name: str, data_root: str | None = None) -> Executor:
    """The executor for ``--runtime NAME``; Docker's error for an unknown one."""
    cls = EXECUTORS.get(name)
    if cls is None:
        raise UnknownRuntime(f"unknown or invalid runtime name: {name} "
                             f"(available: {', '.join(available_runtimes())})")
    if cls is ProcessExecutor:
        return cls()
    return cls(data_root)


def available_runtimes() -> list[str]:
    """Runtimes usable on this machine: OCI runtimes found on PATH (as root), and process."""
    found = [n for n in ("runc", "crun") if os.geteuid() == 0 and which(n)]
    return found + ["process"]


def default_runtime() -> str:
    """``runc`` when root and runc (else crun) is on PATH, otherwise ``process``."""
    return available_runtimes()[0]


def which(name: str) -> str | None:
    """``shutil.which`` for a plain command name, without importing ``shutil`` into every
    shim (about 2 MiB with what it pulls in)."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None
