"""The shim parent (``runtime/shim_parent.py``): shims forked from one pre-initialised
process per data root, with the exec'd shim as the fallback.

The daemon tests drive a real ``logpipe daemon`` (``engine_daemon``: runc on busybox as
root, else the ``process`` runtime) with the real CLI and kill its processes for real; the
others start shims of ``process`` containers directly (``spawn_shim``) against a parent of a
temporary data root. Every parent, shim and container started here is gone at teardown.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys

import pytest

from conftest import IMAGE, wait_until
from runtime.shim_parent import PID_FILE, SHIM_NAME, SOCKET, WATCH_INTERVAL
from runtime.shim_parent_client import ShimParent
from runtime.shimclient import ShimClient, _is_shim, spawn_shim
from runtime.spec import ContainerSpec
from runtime.state import read_state

pytestmark = pytest.mark.e2e


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")


def parent_pid(root: str) -> int:
    with open(os.path.join(root, PID_FILE)) as f:
        return int(f.read())


def forked(pid: int) -> bool:
    """Whether the shim ``pid`` was forked by a shim parent (not exec'd)."""
    with open(f"/proc/{pid}/comm", "rb") as f:
        comm = f.read().strip()
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    return comm == SHIM_NAME and b"runtime.shim_parent" in argv


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- through the daemon ----------------------------------------------------------------------


@pytest.fixture
def daemon(engine_daemon):
    return engine_daemon


def shim_of(d, cid: str) -> int:
    return read_state(os.path.join(d.root, "containers", cid)).shim_pid


def test_containers_started_through_the_parent_log_exit_and_stop(daemon):
    d = daemon
    cid = d.ok("run", "-d", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 7").decode().strip()
    assert d.ok("wait", cid).strip() == b"7"
    res = d.lp("logs", cid)
    assert (res.stdout, res.stderr) == (b"out\n", b"err\n")
    sleeper = d.ok("run", "-d", IMAGE, "sh", "-c",
                   "trap 'exit 3' TERM; while true; do sleep 0.1; done").decode().strip()
    shim = shim_of(d, sleeper)
    assert forked(shim) and _is_shim(shim, os.path.join(d.root, "containers", sleeper))
    # A session of its own (as an exec'd shim): neither the daemon's nor the parent's.
    assert os.getsid(shim) not in (os.getsid(d.current.proc.pid), os.getsid(parent_pid(d.root)))
    d.ok("stop", "-t", "10", sleeper)
    assert d.inspect(sleeper, "{{.State.ExitCode}}") == "3"  # SIGTERM reached it
    killed = d.ok("run", "-d", IMAGE, "sleep", "300").decode().strip()
    d.ok("kill", killed)
    assert d.ok("wait", killed).strip() == b"137"
    wait_until(lambda: not alive(shim), what="the stopped container's shim to exit")


def test_kill9_of_the_parent_leaves_shims_running_and_the_next_run_starts_another(daemon):
    d = daemon
    cid = d.ok("run", "-d", IMAGE, "sh", "-c", "echo before; sleep 300").decode().strip()
    shim, parent = shim_of(d, cid), parent_pid(d.root)
    os.kill(parent, signal.SIGKILL)
    wait_until(lambda: not alive(parent), what="the parent to die")
    assert alive(shim) and d.inspect(cid, "{{.State.Running}}") == "true"
    other = d.ok("run", "-d", IMAGE, "sh", "-c", "echo after; sleep 300").decode().strip()
    assert forked(shim_of(d, other)) and parent_pid(d.root) != parent
    wait_until(lambda: d.ok("logs", other) == b"after\n", what="the new container's log")
    d.ok("kill", cid)
    assert d.ok("wait", cid).strip() == b"137" and d.ok("logs", cid) == b"before\n"


def test_kill9_of_the_daemon_leaves_shims_and_parent_and_a_new_daemon_adopts_both(daemon,
                                                                                  monkeypatch):
    d = daemon
    cid = d.ok("run", "-d", IMAGE, "sh", "-c", "echo one; sleep 300").decode().strip()
    shim, parent = shim_of(d, cid), parent_pid(d.root)
    # The same environment as the killed daemon's (pytest names the test phase in it), or
    # the new daemon rightly replaces the parent: an exec'd shim would get another one.
    with open(f"/proc/{d.current.proc.pid}/environ", "rb") as f:
        env = dict(v.decode().split("=", 1) for v in f.read().split(b"\0") if b"=" in v)
    monkeypatch.setenv("PYTEST_CURRENT_TEST", env.get("PYTEST_CURRENT_TEST", ""))
    d.sigkill()
    assert alive(shim) and alive(parent)
    d.start()
    assert d.inspect(cid, "{{.State.Running}}") == "true"
    other = d.ok("run", "-d", IMAGE, "sleep", "300").decode().strip()
    assert parent_pid(d.root) == parent and forked(shim_of(d, other))
    d.ok("kill", cid)
    assert d.ok("wait", cid).strip() == b"137" and d.ok("logs", cid) == b"one\n"


def test_a_graceful_daemon_shutdown_stops_the_parent_but_no_shim(daemon):
    d = daemon
    cid = d.ok("run", "-d", IMAGE, "sleep", "300").decode().strip()
    shim, parent = shim_of(d, cid), parent_pid(d.root)
    d.current.proc.terminate()
    d.current.proc.wait(30)
    wait_until(lambda: not alive(parent), what="the parent to exit with the daemon")
    assert alive(shim)
    d.start()
    assert d.inspect(cid, "{{.State.Running}}") == "true"


# -- the parent itself -----------------------------------------------------------------------


@pytest.fixture
def containers(tmp_path):
    """``make(argv)`` creates a ``process`` container directory under a data root of its
    own; teardown kills shims, containers and the parent."""
    root = tmp_path / "root"
    root.mkdir()
    made: list[ContainerSpec] = []

    class Containers:
        data_root = str(root)

        def make(self, *argv: str) -> ContainerSpec:
            d = root / f"c{len(made)}"
            d.mkdir()
            spec = ContainerSpec(
                id=os.urandom(32).hex(), name=f"/c{len(made)}", dir=str(d),
                created="2024-01-01T00:00:00Z", image="none", image_id="sha256:" + "0" * 64,
                rootfs="", entrypoint=(), cmd=argv, env=(), working_dir=str(d), user="",
                hostname="", labels={}, log_type="json-file", log_opts={}, runtime="process")
            spec.save()
            made.append(spec)
            return spec

    yield Containers()
    ShimParent(str(root)).stop()
    for spec in made:
        state = read_state(spec.dir)
        if state is not None and _is_shim(state.shim_pid, spec.dir):
            kill(state.shim_pid)
        if state is not None and state.pid:
            kill(state.pid)
    try:
        kill(parent_pid(str(root)))
    except (OSError, ValueError):
        pass


def status_of(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def inherited(pid: int) -> dict:
    """What a shim got from whoever started it, as the kernel shows it."""
    status = status_of(pid)
    fds = {}
    cwd = os.readlink(f"/proc/{pid}/cwd")
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")  # pipe:[123] → pipe; the log → -json.log
        fds[int(fd)] = target.split(":")[0] if ":[" in target else \
            target.replace(cwd, "").lstrip("/").split("-")[-1]
    with open(f"/proc/{pid}/limits") as f:
        limits = f.read()
    with open(f"/proc/{pid}/cgroup") as f:
        cgroup = f.read()
    return {"fds": dict(sorted(fds.items())), "limits": limits, "cgroup": cgroup,
            "session leader": os.getsid(pid) == pid,
            **{k: status[k] for k in ("Umask", "SigBlk", "SigIgn", "SigCgt")}}


def test_a_forked_shim_gets_what_an_exec_d_one_does(containers):
    parent = ShimParent(containers.data_root)
    execd = containers.make("sleep", "300")
    exec_pid = spawn_shim(execd.dir)
    fork = containers.make("sleep", "300")
    fork_pid = spawn_shim(fork.dir, parent=parent)
    assert forked(fork_pid) and not forked(exec_pid)
    assert _is_shim(fork_pid, fork.dir) and not _is_shim(fork_pid, execd.dir)
    wait_until(lambda: read_state(fork.dir).status == "running", what="the container to run")
    assert inherited(fork_pid) == inherited(exec_pid)
    with open(f"/proc/{fork_pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[-2] == containers.data_root.encode()  # the parent's
    for spec in (execd, fork):
        ShimClient(spec.dir).signal(signal.SIGKILL)
        assert ShimClient(spec.dir).wait(timeout=10).exit_code == 137


def test_a_stale_parent_is_replaced(containers, monkeypatch):
    first = containers.make("true")
    spawn_shim(first.dir, parent=ShimParent(containers.data_root))
    old = parent_pid(containers.data_root)
    monkeypatch.setenv("LOGPIPE_TEST_CHANGED", "1")  # an exec'd shim would get another env
    second = containers.make("sleep", "300")  # its shim is still there to be looked at
    spawn_shim(second.dir, parent=ShimParent(containers.data_root))
    replaced = parent_pid(containers.data_root)
    assert replaced != old and forked(read_state(second.dir).shim_pid)
    ShimClient(second.dir).signal(signal.SIGKILL)
    wait_until(lambda: not alive(old), what="the stale parent to exit")
    # Code changed since it imported it: a module file with a new mtime.
    module = sys.modules["runtime.state"].__file__
    st = os.stat(module)
    try:
        os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        third = containers.make("true")
        spawn_shim(third.dir, parent=ShimParent(containers.data_root))
    finally:
        os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert parent_pid(containers.data_root) != replaced
    assert ShimClient(third.dir).wait(timeout=10).exit_code == 0


def test_a_parent_that_cannot_start_falls_back_to_an_exec_d_shim(containers):
    os.mkdir(os.path.join(containers.data_root, SOCKET))  # nothing can bind there
    spec = containers.make("sleep", "300")
    pid = spawn_shim(spec.dir, parent=ShimParent(containers.data_root))
    assert not forked(pid) and _is_shim(pid, spec.dir)
    ShimClient(spec.dir).signal(signal.SIGKILL)
    assert ShimClient(spec.dir).wait(timeout=10).exit_code == 137
    with open(os.path.join(spec.dir, "shim.log")) as f:
        assert "starting an exec'd shim" in f.read()
    assert not os.path.exists(os.path.join(containers.data_root, PID_FILE))


def test_the_parent_exits_when_its_data_root_is_removed(tmp_path):
    root = tmp_path / "gone"
    (root / "c").mkdir(parents=True)
    spec = ContainerSpec(
        id=os.urandom(32).hex(), name="/c", dir=str(root / "c"), created="2024-01-01T00:00:00Z",
        image="none", image_id="sha256:" + "0" * 64, rootfs="", entrypoint=(), cmd=("true",),
        env=(), working_dir=str(tmp_path), user="", hostname="", labels={},
        log_type="json-file", log_opts={}, runtime="process")
    spec.save()
    spawn_shim(spec.dir, parent=ShimParent(str(root)))
    pid = parent_pid(str(root))
    try:
        ShimClient(spec.dir).wait(timeout=10)
        shutil.rmtree(root)
        wait_until(lambda: not alive(pid), timeout=WATCH_INTERVAL * 3,
                   what="the parent of a removed data root to exit")
    finally:
        kill(pid)


def parents_of(root: str) -> list[int]:
    """Every live shim parent process of the data root ``root``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/comm", "rb") as f:
                comm = f.read().strip()
        except (OSError, ValueError):
            continue
        if b"runtime.shim_parent" in argv and root.encode() in argv and alive(int(entry)) \
                and comm != SHIM_NAME:
            found.append(int(entry))
    return found


def test_concurrent_spawns_start_one_parent(containers):
    from concurrent.futures import ThreadPoolExecutor

    parent = ShimParent(containers.data_root)
    specs = [containers.make("true") for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        pids = list(pool.map(lambda s: spawn_shim(s.dir, parent=parent), specs))
    assert len(set(pids)) == 8
    for spec in specs:
        assert ShimClient(spec.dir).wait(timeout=10).exit_code == 0
    assert parents_of(containers.data_root) == [parent_pid(containers.data_root)]
