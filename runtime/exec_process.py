"""An exec's process: ``runc exec`` in a running container's namespaces and cgroup (or, with
the ``process`` runtime, a host process in the container's working directory and
environment), and the descriptors the daemon holds to it.

runc runs in the foreground: it exits with the process's status, so the daemon learns the
exit code without reaping anything it did not start (a detached ``runc exec`` would hand the
process to whichever ancestor is a subreaper; the daemon is none on purpose). That is also
why ``runtime.console.ConsoleSocket`` is not used here: runc refuses ``--console-socket``
unless it detaches. For ``-t`` runc is given a pty of ours as its stdin and stdout instead;
it allocates the container's pty inside the container, sets ours raw and copies between the
two, and on SIGWINCH copies our window size to the container's.

runc is started under ``setpriv --pdeathsig HUP``: if the daemon dies (even by SIGKILL),
runc gets SIGHUP, forwards it to the exec's process and exits with it — nothing is left
running for a client that is gone, and runc is reaped by init.

Owns: the OCI ``process`` document (Docker's env, user, cwd, capabilities), starting, the
exit status, runc's words when the command could not start. Must not: know HTTP, the exec
registry or the client's connection (``runtime.api.exec``), or write the container's log —
Docker does not log what an exec prints.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from typing import Any, NamedTuple

from logpipe.errors import InvalidParameter, LogpipeError

from runtime import oci, seccomp
from runtime.console import set_size
from runtime.executors import _exec_failure, get_executor, start_failure, which
from runtime.spec import ContainerSpec

#: Every capability of Linux 6.x, in number order (``--privileged``).
ALL_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]
#: Docker's exit code for an exec that could not be started for any other reason.
EXIT_EXEC_FAILED = 126


class ExecConfig(NamedTuple):
    """What ``POST /containers/{id}/exec`` asked for (Docker's ``ExecConfig``)."""

    cmd: tuple[str, ...]
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    privileged: bool = False
    tty: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    detach_keys: str = ""


class ExecRefused(InvalidParameter):
    """The exec cannot run in this container as asked (the ``process`` runtime and ``-u``)."""


def isolated(spec: ContainerSpec) -> bool:
    """Whether the container's runtime isolates it (runc): an exec then enters it."""
    return get_executor(spec.runtime).isolated


def check_supported(spec: ContainerSpec, cfg: ExecConfig) -> None:
    """Refuse at create what the container's runtime cannot do: the ``process`` runtime
    runs an exec as the daemon's user, so ``-u`` is refused there."""
    if cfg.user and not isolated(spec):
        raise ExecRefused("the process runtime runs an exec as the daemon's user: "
                          f"--user {cfg.user} needs an isolating runtime (runc)")


def _all_caps() -> list[str]:
    """Every capability the daemon itself may hold (its bounding set), as moby's
    ``GetAllCapabilities`` gives ``--privileged``: asking for more makes runc fail."""
    try:
        with open("/proc/self/status") as f:
            bounding = next(int(line.split()[1], 16) for line in f
                            if line.startswith("CapBnd:"))
    except (OSError, StopIteration, ValueError):
        return list(oci.DEFAULT_CAPS)
    return [name for bit, name in enumerate(ALL_CAPS) if bounding >> bit & 1]


def replace_or_append(env: list[str], extra: tuple[str, ...]) -> list[str]:
    """Docker's ``ReplaceOrAppendEnvValues``: ``K=V`` replaces ``K`` or is appended; a bare
    ``K`` removes it."""
    out = list(env)
    for item in extra:
        key, eq, _ = item.partition("=")
        out = [e for e in out if e.partition("=")[0] != key]
        if eq:
            out.append(item)
    return out


def exec_env(spec: ContainerSpec, cfg: ExecConfig) -> list[str]:
    """Docker's exec environment: the container's (with ``PATH``, ``HOSTNAME``), ``TERM``
    with a terminal, then the exec's own ``-e``."""
    env = oci.environment(spec, oci.hostname_of(spec))
    if cfg.tty and not any(e.startswith("TERM=") for e in env):
        env.insert(0, "TERM=xterm")
    return replace_or_append(env, cfg.env)


def process_document(spec: ContainerSpec, cfg: ExecConfig, root: str) -> dict[str, Any]:
    """The OCI ``process`` runc execs: the user resolved in the container's own
    ``/etc/passwd`` and ``/etc/group`` (``root`` is its root as the kernel sees it)."""
    user = cfg.user or spec.user
    caps = _all_caps() if cfg.privileged else list(oci.DEFAULT_CAPS)
    return {
        "terminal": cfg.tty,
        "user": oci.resolve_user(root, user),
        "args": list(cfg.cmd),
        "env": exec_env(spec, cfg),
        "cwd": cfg.working_dir or spec.working_dir or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": seccomp.no_new_privileges(spec.security_opt),
    }


class ExecProcess:
    """A started exec: the process (runc, or the host command) and the daemon's ends of its
    stdio. ``outputs`` are (descriptor, stream) pairs — stream 1 stdout, 2 stderr; a
    terminal's one descriptor is stream 1. ``stdin`` is None unless the exec attaches it."""

    def __init__(self, popen: subprocess.Popen | None, outputs: list[tuple[int, int]],
                 stdin: int | None, terminal: int | None, workdir: str | None,
                 command: str = "", failure: str = "", failure_code: int = 0) -> None:
        self.popen = popen
        self.command = command
        self.outputs = outputs
        self.stdin = stdin
        self.terminal = terminal
        self.workdir = workdir  # runc's files for this exec (process.json, pid, log)
        self._failure = failure
        self.exit_code: int | None = None if popen is not None else failure_code
        self._pid = popen.pid if popen is not None and workdir is None else 0

    @property
    def pid(self) -> int:
        """The exec's process on the host (runc's pid file), 0 until known."""
        if self._pid or self.workdir is None:
            return self._pid
        try:
            with open(os.path.join(self.workdir, "pid")) as f:
                self._pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            pass
        return self._pid

    def holds_stderr(self) -> bool:
        """Whether stderr is runc's own until the process started: runc prints its failure
        to start the command there (and in its log, whence Docker's text is taken)."""
        return self.workdir is not None and not self.pid and self.exit_code is None

    def wait(self) -> int:
        """Block until the exec has ended; its exit code (Docker's 128+N for a signal)."""
        if self.popen is None:
            return self.exit_code or 0
        code = self.popen.wait()
        if code < 0:
            code = 128 - code
        if self.workdir is not None and not self.pid:
            why = _runc_error(os.path.join(self.workdir, "log"))
            if why:  # runc could not start the command: Docker's words and exit codes
                self._failure = f"OCI runtime exec failed: {why}: unknown"
                code = _failure_code(self.command, self._failure)
        self.exit_code = code
        return code

    @property
    def failure(self) -> str:
        """Why the command could not be started (Docker's text), "" if it ran."""
        return self._failure

    def send_signal(self, sig: int) -> None:
        """runc forwards a signal it gets to the exec's process; a host command leads its
        own process group."""
        if self.popen is None or self.popen.returncode is not None:
            return
        try:
            if self.workdir is None:
                os.killpg(self.popen.pid, sig)
            else:
                self.popen.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """SIGKILL to a host exec's process group (its container ended). runc's execs die
        with the container's pid namespace: runc itself must not be killed, it reaps."""
        if self.workdir is None:
            self.send_signal(signal.SIGKILL)

    def resize(self, height: int, width: int) -> None:
        """The terminal's new size; runc copies it to the container's pty on SIGWINCH."""
        if self.terminal is None:
            return
        try:
            set_size(self.terminal, height, width)
        except OSError:
            return
        self.send_signal(signal.SIGWINCH)

    def close_stdin(self) -> None:
        """The client's stdin ended: EOF for the exec (^D on a terminal, in its cooked mode)."""
        if self.terminal is not None:
            if self.stdin is not None:
                try:
                    os.write(self.terminal, b"\x04")
                except OSError:
                    pass
            self.stdin = None
            return
        fd, self.stdin = self.stdin, None
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Release the daemon's descriptors and runc's files (after ``wait``)."""
        if self.terminal is None:
            self.close_stdin()
        for fd in {fd for fd, _ in self.outputs}:
            try:
                os.close(fd)
            except OSError:
                pass
        self.outputs = []
        self.terminal = None
        if self.workdir is not None:
            for name in ("process.json", "pid", "log"):
                try:
                    os.unlink(os.path.join(self.workdir, name))
                except OSError:
                    pass
            try:
                os.rmdir(self.workdir)
            except OSError:
                pass


def failed(cfg: ExecConfig, message: str) -> ExecProcess:
    """An exec that could not be started at all: ``message`` is what its client is told."""
    return ExecProcess(None, [], None, None, None, cfg.cmd[0], message,
                       _failure_code(cfg.cmd[0], message))


def _failure_code(command: str, message: str) -> int:
    """Docker's ``translateContainerdStartErr`` as ``run`` applies it (127 not found, 126
    cannot be invoked), and 126 for any other failure to start an exec."""
    code = start_failure(command, message).exit_code
    return EXIT_EXEC_FAILED if code == 128 else code


def _runc_error(path: str) -> str:
    """runc's last error-level message in its JSON log ("" if none)."""
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal", "panic"):
            return str(entry.get("msg", ""))
    return ""


def _terminal(size: tuple[int, int] | None, raw: bool) -> tuple[int, int]:
    """(master, slave) of a new pty for a ``-t`` exec. For runc the slave is raw: it is a
    transport only, the pty runc makes inside the container does the line discipline; a
    host command's terminal is this one, in its default (cooked) mode."""
    import tty

    master, slave = os.openpty()
    if raw:
        tty.setraw(slave)
    if size:
        set_size(master, *size)
    return master, slave


def start(spec: ContainerSpec, pid: int, cfg: ExecConfig,
          size: tuple[int, int] | None = None) -> ExecProcess:
    """Start ``cfg`` in the running container ``spec`` whose init is ``pid``. A command
    that cannot run is not raised here: ``wait`` reports it (Docker streams the error)."""
    executor = get_executor(spec.runtime)
    if not executor.isolated:
        return _start_on_host(spec, cfg, size)
    try:
        document = process_document(spec, cfg, f"/proc/{pid}/root")
    except LogpipeError as err:  # an unknown user: runc's words, as Docker shows them
        return failed(cfg, "OCI runtime exec failed: exec failed: unable to start container "
                           f"process: {err}: unknown")
    workdir = tempfile.mkdtemp(prefix="exec-", dir=spec.dir)
    with open(os.path.join(workdir, "process.json"), "w") as f:
        json.dump(document, f)
    argv = executor.exec_command(spec, os.path.join(workdir, "process.json"),
                                 os.path.join(workdir, "pid"), os.path.join(workdir, "log"))
    setpriv = which("setpriv")
    if setpriv:
        argv = [setpriv, "--pdeathsig", "HUP", *argv]
    return _spawn(argv, cfg, size, workdir, {})


def _spawn(argv: list[str], cfg: ExecConfig, size: tuple[int, int] | None,
           workdir: str | None, popen_kw: dict[str, Any]) -> ExecProcess:
    """``argv`` with pipes, or a pty for ``-t``; the daemon keeps raw descriptors."""
    null = subprocess.DEVNULL
    if cfg.tty:
        master, slave = _terminal(size, raw=workdir is not None)
        try:
            # runc's own messages go to its log, not to the terminal: stderr is /dev/null.
            popen = subprocess.Popen(argv, stdin=slave, stdout=slave,
                                     stderr=slave if workdir is None else null,
                                     close_fds=True, **popen_kw)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return ExecProcess(popen, [(master, 1)], master if cfg.attach_stdin else None,
                           master, workdir, cfg.cmd[0])
    stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC) if cfg.attach_stdin else (None, None)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        popen = subprocess.Popen(argv, stdin=null if stdin_r is None else stdin_r,
                                 stdout=out_w, stderr=err_w, close_fds=True, **popen_kw)
    except BaseException:
        for fd in (stdin_w, out_r, err_r):
            if fd is not None:
                os.close(fd)
        raise
    finally:
        for fd in (stdin_r, out_w, err_w):
            if fd is not None:
                os.close(fd)
    return ExecProcess(popen, [(out_r, 1), (err_r, 2)], stdin_w, None, workdir, cfg.cmd[0])


def _start_on_host(spec: ContainerSpec, cfg: ExecConfig,
                   size: tuple[int, int] | None) -> ExecProcess:
    """The ``process`` runtime has no isolation to enter: the command runs on the host, in
    the container's working directory and environment, in a process group of its own
    (killed with the container by ``runtime.api.exec``). Another user needs root: ``-u``
    is refused."""
    env = dict(e.split("=", 1) if "=" in e else (e, "") for e in exec_env(spec, cfg))
    cwd = cfg.working_dir or spec.working_dir or spec.dir
    try:
        return _spawn(list(cfg.cmd), cfg, size, None,
                      {"cwd": cwd, "env": env, "start_new_session": True})
    except OSError as err:
        why = _exec_failure(cfg.cmd[0], type(err).__name__) or str(err)
        return failed(cfg, "OCI runtime exec failed: exec failed: unable to start container "
                           f"process: {why}: unknown")
