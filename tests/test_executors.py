"""Executors start real containers (runc, on a busybox image) and plain processes; the test
plays the shim: it is a child subreaper, owns the pipes and reaps the pid it is given."""

import ctypes
import os
import shutil
import signal
import time

import pytest

from runtime import oci, rootfs
from runtime.executors import (ExecutorError, UnknownRuntime, default_runtime, get_executor)
from runtime.images import ImageStore
from runtime.oci import OCIConfigError
from runtime.spec import Bind, ContainerSpec
from busybox import build_tarball, find_busybox

pytestmark = pytest.mark.e2e

PR_SET_CHILD_SUBREAPER = 36

needs_runc = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runc") or find_busybox() is None,
    reason="needs root, runc and busybox-static (apt-get install runc busybox-static)")
needs_busybox = pytest.mark.skipif(find_busybox() is None,
                                   reason="needs busybox-static (apt-get install busybox-static)")


@pytest.fixture
def subreaper():
    """Be the shim: orphans of the containers we start are reparented to us."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.fixture(scope="module")
def busybox_image(tmp_path_factory):
    if find_busybox() is None:
        pytest.skip("needs busybox-static (apt-get install busybox-static)")
    base = tmp_path_factory.mktemp("images")
    store = ImageStore(str(base / "data"))
    image = store.import_tar(build_tarball(str(base / "busybox.tar")), "busybox")
    return str(base / "data"), image


@pytest.fixture
def make_spec(busybox_image, tmp_path):
    """ContainerSpecs in a fresh data root; every started container is cleaned up."""
    data_root, image = busybox_image
    made: list[tuple[ContainerSpec, object]] = []

    def make(*cmd: str, runtime: str = "runc", **kw) -> ContainerSpec:
        cid = os.urandom(32).hex()
        directory = os.path.join(data_root, "containers", cid)
        os.makedirs(directory)
        fields = dict(id=cid, name="/test", dir=directory, created="", image="busybox",
                      image_id=image.id, rootfs=image.rootfs, entrypoint=(), cmd=cmd, env=(),
                      working_dir="", user="", hostname="", labels={}, log_type="json-file",
                      log_opts={}, runtime=runtime)
        fields.update(kw)
        spec = ContainerSpec(**fields)
        made.append((spec, get_executor(runtime)))
        return spec

    yield make
    for spec, ex in made:
        ex.cleanup(spec)
        shutil.rmtree(spec.dir, ignore_errors=True)


def run(spec: ContainerSpec, timeout: float = 30) -> tuple[int, bytes, bytes]:
    """Start, reap with waitpid (like the shim), return (exit code, stdout, stderr)."""
    ex = get_executor(spec.runtime)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = ex.start(spec, out_w, err_w)
    finally:
        os.close(out_w)
        os.close(err_w)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            ex.kill(spec, pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("container did not exit")
        time.sleep(0.01)
    out, err = read_all(out_r), read_all(err_r)
    return os.waitstatus_to_exitcode(status), out, err


def read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as f:
        return f.read()


@needs_runc
def test_runc_container_writes_to_the_pipes_and_its_exit_code_is_reaped(make_spec, subreaper):
    spec = make_spec("sh", "-c", "echo out; echo err >&2; exit 3")
    assert run(spec) == (3, b"out\n", b"err\n")
    assert os.path.ismount(os.path.join(spec.dir, "rootfs"))  # until cleanup
    get_executor("runc").cleanup(spec)
    assert not os.path.ismount(os.path.join(spec.dir, "rootfs"))


@needs_runc
def test_runc_container_is_isolated_pid_uts_network(make_spec, subreaper):
    spec = make_spec("sh", "-c", "echo $$; hostname; echo $HOSTNAME; cat /proc/net/dev; "
                     "cat /etc/hostname", hostname="box1")
    code, out, err = run(spec)
    assert code == 0, err
    lines = out.decode().splitlines()
    assert lines[0] == "1"  # its own pid namespace
    assert lines[1:3] == ["box1", "box1"]
    interfaces = [ln.split(":")[0].strip() for ln in lines[3:] if ":" in ln]
    assert interfaces == ["lo"]  # network none: loopback only
    assert lines[-1] == "box1"


@needs_runc
def test_runc_default_hostname_is_the_short_id(make_spec, subreaper):
    spec = make_spec("hostname")
    assert run(spec) == (0, spec.id[:12].encode() + b"\n", b"")


@needs_runc
def test_runc_bind_mounts_read_write_and_read_only(make_spec, subreaper, tmp_path):
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "f").write_text("from host\n")
    spec = make_spec("sh", "-c", "cat /ro/f; echo written > /rw/g; echo no > /ro/h",
                     binds=(Bind(str(rw), "/rw"), Bind(str(ro), "/ro", True)))
    code, out, err = run(spec)
    assert out == b"from host\n"
    assert b"Read-only file system" in err and code != 0
    assert (rw / "g").read_text() == "written\n"
    assert not (ro / "h").exists()


@needs_runc
def test_runc_cgroup_limits_are_visible_inside(make_spec, subreaper):
    spec = make_spec("sh", "-c",
                     "cat /sys/fs/cgroup/memory/memory.max /sys/fs/cgroup/memory.max "
                     "/sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null; "
                     "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu.max "
                     "/sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null; true",
                     memory=64 << 20, nano_cpus=500_000_000, pids_limit=100)
    code, out, err = run(spec)
    assert code == 0, err
    values = out.decode().split()
    assert str(64 << 20) in values
    assert "50000" in values
    assert "100" in values


@needs_runc
def test_runc_env_cwd_and_user(make_spec, subreaper):
    spec = make_spec("sh", "-c", "pwd; id -u; id -g; echo $A; echo $PATH", env=("A=b c",),
                     working_dir="/tmp", user="nobody")
    code, out, err = run(spec)
    assert code == 0, err
    assert out.decode().splitlines() == ["/tmp", "65534", "65534", "b c", oci.DEFAULT_PATH[5:]]
    spec = make_spec("id", "-u", user="1234:5")
    assert run(spec)[1] == b"1234\n"


@needs_runc
def test_runc_writable_layer_survives_a_restart(make_spec, subreaper):
    spec = make_spec("sh", "-c", "cat /state 2>/dev/null; date > /state; echo again")
    assert run(spec)[1] == b"again\n"
    get_executor("runc").cleanup(spec)
    if tuple(map(int, os.uname().release.split(".")[:2])) >= (5, 10):
        # Mounted volatile (no sync at unmount): the kernel left its mark, which the next
        # mount must clear or it would refuse the layer.
        assert os.path.isdir(os.path.join(spec.dir, "work", "work", "incompat", "volatile"))
    code, out, _ = run(spec)
    assert code == 0 and out.count(b"\n") == 2 and out.endswith(b"again\n")
    # The image's lower layer is untouched: the write went to the container's layer.
    assert not os.path.exists(os.path.join(spec.rootfs, "state"))


@needs_runc
def test_runc_failure_raises_with_runcs_own_message(make_spec, subreaper):
    spec = make_spec("no-such-command")
    with pytest.raises(ExecutorError, match='exec: "no-such-command": executable file not found'):
        run(spec)
    assert not os.path.ismount(os.path.join(spec.dir, "rootfs"))


@needs_runc
def test_runc_kill_delivers_the_signal(make_spec, subreaper):
    spec = make_spec("sleep", "60")
    ex = get_executor("runc")
    pid = ex.start(spec, 1, 2)
    ex.kill(spec, pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL


@needs_busybox
def test_unknown_user_is_a_clear_error(busybox_image, tmp_path):
    _, image = busybox_image
    with pytest.raises(OCIConfigError, match="unable to find user ghost: no matching entries"):
        oci.resolve_user(image.rootfs, "ghost")
    assert oci.resolve_user(image.rootfs, "nobody") == {"uid": 65534, "gid": 65534}
    assert oci.resolve_user(image.rootfs, "0:nogroup") == {"uid": 0, "gid": 65534}


@needs_busybox
def test_bundle_config_follows_the_spec(make_spec):
    spec = make_spec("sh", memory=1 << 30, nano_cpus=1_500_000_000, pids_limit=7,
                     network_mode="host", env=("PATH=/x",))
    cfg = oci.config(spec, spec.rootfs)
    assert cfg["process"]["terminal"] is False and "rlimits" not in cfg["process"]
    assert [n["type"] for n in cfg["linux"]["namespaces"]] == ["pid", "ipc", "uts", "mount"]
    assert cfg["linux"]["resources"]["cpu"] == {"quota": 150000, "period": 100000}
    assert cfg["linux"]["resources"]["memory"] == {"limit": 1 << 30}
    assert cfg["linux"]["resources"]["pids"] == {"limit": 7}
    assert cfg["process"]["env"][0] != oci.DEFAULT_PATH and "PATH=/x" in cfg["process"]["env"]
    assert cfg["root"] == {"path": spec.rootfs, "readonly": False}
    with pytest.raises(OCIConfigError, match="No command specified"):
        oci.config(spec._replace(cmd=()), spec.rootfs)


def test_process_executor_runs_on_the_host_and_is_reaped(tmp_path, subreaper):
    spec = ContainerSpec(id="c" * 64, name="/p", dir=str(tmp_path), created="", image="",
                         image_id="", rootfs="", entrypoint=("sh", "-c"),
                         cmd=("echo out; echo err >&2; echo $A; pwd; exit 3",), env=("A=1",),
                         working_dir="", user="", hostname="", labels={}, log_type="json-file",
                         log_opts={}, runtime="process")
    ex = get_executor("process")
    assert ex.isolated is False
    assert run(spec) == (3, f"out\n1\n{tmp_path}\n".encode(), b"err\n")
    with pytest.raises(ExecutorError, match='exec: "no-such-command": executable file not'):
        run(spec._replace(entrypoint=(), cmd=("no-such-command",)))


def test_process_executor_kill_signals_the_process_group(tmp_path, subreaper):
    spec = ContainerSpec(id="d" * 64, name="/p", dir=str(tmp_path), created="", image="",
                         image_id="", rootfs="", entrypoint=(), cmd=("sleep", "60"), env=(),
                         working_dir="/", user="", hostname="", labels={}, log_type="json-file",
                         log_opts={}, runtime="process")
    ex = get_executor("process")
    pid = ex.start(spec, 1, 2)
    assert os.getsid(pid) == pid  # its own session, like a container's own pid namespace
    ex.kill(spec, pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGTERM


def test_unknown_runtime_names_the_available_ones():
    with pytest.raises(UnknownRuntime, match=r"unknown or invalid runtime name: kata .*process"):
        get_executor("kata")
    expected = "runc" if os.geteuid() == 0 and shutil.which("runc") else None
    assert default_runtime() == (expected or ("crun" if os.geteuid() == 0 and shutil.which("crun")
                                              else "process"))


@needs_runc
def test_runc_falls_back_to_a_copy_when_overlayfs_is_unavailable(make_spec, subreaper,
                                                                  monkeypatch):
    monkeypatch.setattr(rootfs, "_mount_overlay", lambda *a: "overlay: unknown filesystem type")
    spec = make_spec("sh", "-c", "cat /state 2>/dev/null; echo kept > /state; echo ran")
    assert run(spec) == (0, b"ran\n", b"")
    root = os.path.join(spec.dir, "rootfs")
    assert not os.path.ismount(root) and not os.path.exists(os.path.join(spec.dir, "upper"))
    get_executor("runc").cleanup(spec)
    assert run(spec) == (0, b"kept\nran\n", b"")  # the copy is the writable layer
    assert not os.path.exists(os.path.join(spec.rootfs, "state"))
