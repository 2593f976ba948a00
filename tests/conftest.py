"""The one home of what several test modules share: running the real ``logpipe`` CLI, the
daemons the end-to-end tests drive, waiting for a condition, and the test tiers.

Test modules import helpers from here (``from conftest import start_daemon``), never from one
another, and fixtures come from here by name. Of the CLI, the daemon fixtures use its command
line (``LOGPIPE``) and its HTTP client (``Client``), both named here alone.

Daemon fixtures (each one's teardown removes its containers, shims, runc state and mounts, also
when the test failed):

- ``daemon`` / ``api``: the Engine-API daemon, ``process`` runtime (no root), ``empty:latest``
  imported (``EMPTY_IMAGE``), one per test.
- ``engine_daemon``: a ``RestartableDaemon`` on runc with the busybox image as root (``RUNC``),
  else the ``process`` runtime on ``empty:latest``; ``IMAGE`` names the image. One per test.
- ``runc_daemon``: the same on runc only, skipped without root, runc and busybox-static.
- ``runc_module_daemon``: one such daemon for a module, whose tests ``clean_daemon`` it.
- ``daemon_per_runtime``: one daemon for the module per runtime of ``RUNTIMES`` (runc skipped
  without it), so each test runs on both.
- ``real_docker``: a real dockerd (Debian's docker.io, 20.10) on a private socket and data
  root for the session, fed only what tests ``docker load`` into it; skipped without root or
  dockerd. ``restart(kill=, live_restore=)`` restarts it on the same roots.
- ``docker_plugin``: ``logpipe docker-plugin`` (a ``PluginProc``) where that dockerd finds
  legacy plugins, asking it which containers exist; ``real_busybox``: busybox in it.

A module picks another flavour by overriding ``daemon`` with it; a daemon of its own
configuration is built with ``api_daemon``, ``start_daemon`` or ``running_daemon``.

Tiers: every test module says ``pytestmark = pytest.mark.unit|integration|e2e`` (defined in
pyproject.toml); a test that starts more than its module's tier carries ``@pytest.mark.e2e``
itself. A test with no tier counts as ``e2e``, so the fast loop (``-m 'not e2e'``) never
starts a daemon by accident.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import uuid
import time
from typing import Any, Callable, Iterator, NamedTuple

import pytest
from hypothesis import settings

from busybox import build_tarball, find_busybox
from runtime.cli.client import Client
from runtime.network import netavark
from logpipe.errors import LogpipeError

# A failing property test prints ``@reproduce_failure(...)``, which replays that exact input.
settings.register_profile("logpipe", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "logpipe"))

LOGPIPE = [sys.executable, "-m", "runtime.cli"]
TIERS = ("unit", "integration", "e2e")

RUNC = os.geteuid() == 0 and shutil.which("runc") is not None and find_busybox() is not None
EMPTY_IMAGE = "empty:latest"
IMAGE = "busybox:latest" if RUNC else EMPTY_IMAGE
ENGINE = pytest.param("runc" if RUNC else "process",
                      id="runc-busybox" if RUNC else "process-host-sh")
RUNTIMES = [pytest.param("runc", marks=pytest.mark.skipif(
                not RUNC, reason="needs root, runc and busybox-static")),
            "process"]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Each run draws a fresh seed for the property tests (they stay random from run to run)
    and names it at the end when anything failed, so the run can be repeated exactly with
    ``--hypothesis-seed=N``. Runs before Hypothesis' own plugin reads the option."""
    if config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = str(random.SystemRandom().randrange(1 << 32))


def pytest_collection_modifyitems(items):
    """A test whose module forgot its tier is ``e2e``: excluded from the fast loop, still in
    the suite."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.e2e)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if terminalreporter.stats.get("failed") or terminalreporter.stats.get("error"):
        terminalreporter.write_line(f"hypothesis seed of this run: {config.option.hypothesis_seed} "
                                    f"(repeat with --hypothesis-seed="
                                    f"{config.option.hypothesis_seed})")


# -- processes and waiting ----------------------------------------------------------------------


def logpipe(*args: str, **kw) -> subprocess.CompletedProcess:
    """Run ``logpipe ARGS`` to completion, capturing bytes."""
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 120)
    return subprocess.run(LOGPIPE + list(args), **kw)


@pytest.fixture
def procs():
    """Processes started by a test; killed at teardown even if the test failed."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


def spawn(procs, *args: str, **kw) -> subprocess.Popen:
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    p = subprocess.Popen(LOGPIPE + list(args), **kw)
    procs.append(p)
    return p


def wait_for_path(path: str, proc: subprocess.Popen, timeout: float = 20) -> None:
    """Wait (with inotify-free short sleeps, bounded) until ``path`` exists or ``proc`` died."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)


def cli_errors(res: subprocess.CompletedProcess) -> str:
    """stderr without the create warning of the ``process`` runtime (it has no isolation)."""
    return "".join(line for line in res.stderr.decode().splitlines(keepends=True)
                   if not line.startswith("WARNING: runtime process"))


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0,
               what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def wait_until_following(log_file, follower):
    """The follower has registered (its marker exists): from now on nothing is lost to it."""
    directory = log_file.parent
    pattern = f".{log_file.name}.follow.*"
    deadline = time.monotonic() + 20
    while not list(directory.glob(pattern)):
        assert follower.poll() is None, follower.stderr.read().decode()
        assert time.monotonic() < deadline, "follower never registered"
        time.sleep(0.005)


# -- real tmpfs mounts -------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: str, size: str, *extra: str) -> Iterator[str]:
    """A real tmpfs of ``size`` mounted at ``path``; unmounted afterwards whatever happens."""
    os.makedirs(path, exist_ok=True)
    opts = ",".join((f"size={size}", "mode=0755") + extra)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path],
                         capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs: {res.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True)


def fill(path: str, leave: int = 0) -> str:
    """Allocate a file that leaves at most ``leave`` bytes free on ``path``'s filesystem (a
    writer may be growing its log meanwhile: allocate what is free, again, until it is done)."""
    name = os.path.join(path, "filler")
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        size = os.fstat(fd).st_size
        for _ in range(200):
            st = os.statvfs(path)
            want = st.f_bavail * st.f_frsize - leave
            if want <= 0:
                break
            try:
                os.posix_fallocate(fd, size, want)
                size += want
            except OSError:  # the writer took some meanwhile
                pass
    finally:
        os.close(fd)
    return name


# -- image archives ----------------------------------------------------------------------------


def add(tar: tarfile.TarFile, name: str, data: bytes | None = None, *, kind=None,
        mode: int = 0o644, linkname: str = "") -> None:
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    if kind is not None:
        ti.type, ti.linkname = kind, linkname
        tar.addfile(ti)
    elif data is None:
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(ti)
    else:
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))


def tar_bytes(build) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        build(tar)
    return buf.getvalue()


def diff_id(layer: bytes) -> str:
    return "sha256:" + hashlib.sha256(layer).hexdigest()


def write_save_archive(path, layers: list[bytes], diff_ids: list[str] | None = None,
                       tag: str = "saved:1") -> str:
    """A ``docker save`` archive of ``layers`` whose config lists ``diff_ids`` (by default
    the layers' own, as Docker writes them)."""
    config = json.dumps({"created": "2024-01-02T03:04:05Z", "config": {
        "Cmd": ["sh"], "Entrypoint": None, "Env": ["A=1"], "WorkingDir": "/etc"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids if diff_ids is not None
                   else [diff_id(layer) for layer in layers]}}).encode()
    with tarfile.open(path, "w") as tar:
        for i, layer in enumerate(layers):
            add(tar, f"l{i}")
            add(tar, f"l{i}/layer.tar", layer)
        add(tar, "cfg.json", config)
        manifest = [{"Config": "cfg.json", "RepoTags": [tag],
                     "Layers": [f"l{i}/layer.tar" for i in range(len(layers))]}]
        add(tar, "manifest.json", json.dumps(manifest).encode())
    return str(path)


# -- daemons ------------------------------------------------------------------------------------


class Daemon(NamedTuple):
    proc: subprocess.Popen
    host: str
    root: str
    log: str
    config: str


def empty_image_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ti = tarfile.TarInfo("tmp")
        ti.type, ti.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(ti)
    return buf.getvalue()


def import_empty_image(host: str) -> None:
    """``EMPTY_IMAGE`` into the daemon at ``host``: the ``process`` runtime runs host
    commands, so any rootfs will do."""
    Client(host, autostart=False).request(
        "POST", "/images/create", {"fromSrc": "-", "repo": "empty", "tag": "latest"},
        body=empty_image_tar()).read()


def start_daemon(base: str, root: str, config: dict[str, Any]) -> Daemon:
    """A daemon on ``<base>/d.sock``; returns once it answers ``/_ping``."""
    cfg_path = os.path.join(base, "daemon.json")
    with open(cfg_path, "w") as f:
        json.dump(config, f)
    host = "unix://" + os.path.join(base, "d.sock")
    log = os.path.join(base, "daemon.log")
    with open(log, "ab") as out:
        proc = subprocess.Popen(LOGPIPE + ["daemon", "--data-root", root, "-H", host,
                                           "--config-file", cfg_path],
                                stdout=out, stderr=out, start_new_session=True)
    client = Client(host, autostart=False)  # never starts a daemon of its own
    deadline = time.monotonic() + 30
    while True:  # the socket appearing is the event; nothing else announces it
        try:
            client.request("GET", "/_ping").read()
            return Daemon(proc, host, root, log, cfg_path)
        except (OSError, LogpipeError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                with open(log) as f:
                    raise AssertionError(f"daemon did not start: {f.read()}")
            time.sleep(0.01)


def stop_daemon(d: Daemon, remove_containers: bool = True) -> None:
    if remove_containers and d.proc.poll() is None:
        client = Client(d.host, autostart=False)
        try:
            for c in client.json("GET", "/containers/json", {"all": 1}):
                client.request("DELETE", f"/containers/{c['Id']}", {"force": 1}).read()
        except (OSError, LogpipeError):
            pass
    d.proc.terminate()
    try:
        d.proc.wait(10)
    except subprocess.TimeoutExpired:
        d.proc.kill()
        d.proc.wait()
    _kill_leftovers(d.root)


def _kill_leftovers(root: str) -> None:
    """Shims and containers of a daemon killed mid-test (process runtime: own sessions)."""
    cdir = os.path.join(root, "containers")
    for entry in os.listdir(cdir) if os.path.isdir(cdir) else []:
        try:
            with open(os.path.join(cdir, entry, "state.json")) as f:
                st = json.load(f)
        except (OSError, ValueError):
            continue
        for pid, group in ((st.get("Pid", 0), True), (st.get("ShimPid", 0), False)):
            if pid > 0:
                try:
                    (os.killpg if group else os.kill)(pid, signal.SIGKILL)
                except OSError:
                    pass


class RestartableDaemon:
    """A logpipe daemon on a fixed socket and data root that a test may SIGKILL and start
    again; ``lp`` runs the CLI against whichever daemon currently serves the socket."""

    def __init__(self, runtime: str) -> None:
        self.runtime = runtime
        self.base = tempfile.mkdtemp(prefix="lpr-")  # short: unix socket paths ≤ 108 bytes
        self.root = os.path.join(self.base, "root")
        # No max-size: a rotated-away file would lose lines by design, not by accident.
        self.config = {"default-runtime": runtime}
        self.current: Daemon | None = None
        self.followers: list[subprocess.Popen] = []

    @property
    def host(self) -> str:
        return "unix://" + os.path.join(self.base, "d.sock")

    def start(self) -> None:
        self.current = start_daemon(self.base, self.root, self.config)

    def sigkill(self) -> None:
        """Kill the daemon the hard way: no shutdown code of its own runs."""
        os.kill(self.current.proc.pid, signal.SIGKILL)
        assert self.current.proc.wait(10) == -signal.SIGKILL

    def lp(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """``logpipe ARGS`` as a user runs it; never autostarts a daemon of its own."""
        env = dict(os.environ, LOGPIPE_HOST=self.host, LOGPIPE_NO_AUTOSTART="1")
        return subprocess.run(LOGPIPE + list(args), env=env,
                              capture_output=True, timeout=timeout)

    def ok(self, *args: str) -> bytes:
        """``logpipe ARGS`` that must succeed; its stdout."""
        res = self.lp(*args)
        assert res.returncode == 0, (args, res.stderr.decode(errors="replace"))
        return res.stdout

    def inspect(self, container: str, template: str) -> str:
        return self.ok("inspect", "-f", template, container).decode().rstrip("\n")

    def follow(self, container: str) -> subprocess.Popen:
        """``logpipe logs -f CONTAINER`` in the background, stopped at teardown."""
        env = dict(os.environ, LOGPIPE_HOST=self.host, LOGPIPE_NO_AUTOSTART="1")
        proc = subprocess.Popen(LOGPIPE + ["logs", "-f", container],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.followers.append(proc)
        return proc

    def container_dirs(self) -> list[str]:
        return sorted(os.listdir(os.path.join(self.root, "containers")))

    def close(self) -> None:
        for proc in self.followers:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        if self.current is not None:
            # A live daemon removes its containers (runc state, mounts); then the shims and
            # containers of any daemon killed mid-test are killed from their state.json.
            stop_daemon(self.current)
        cdir = os.path.join(self.root, "containers")
        for cid in os.listdir(cdir) if os.path.isdir(cdir) else []:
            if self.runtime != "process":
                # runc's init may not lead a process group: its own delete kills it for sure.
                subprocess.run([self.runtime, "--root", os.path.join(self.root, self.runtime),
                                "delete", "--force", cid], capture_output=True)
            rootfs = os.path.join(cdir, cid, "rootfs")
            if os.path.ismount(rootfs):
                subprocess.run(["umount", "-l", rootfs], capture_output=True)
        netavark.teardown_all(self.root)  # bridge endpoints of a killed daemon's containers
        shutil.rmtree(self.base, ignore_errors=True)


def network_leftovers(d: RestartableDaemon, *needles: str) -> dict[str, list[str]]:
    """What networking state exists on the host for this daemon (veth links on its bridges,
    namespace mounts and files, endpoint records) and the firewall rules mentioning
    ``needles``. Other daemons' veths (tests running beside) are not counted."""
    from runtime.network import store

    bridges = {n.interface for n in store.load_all(d.root)}
    links = "\n".join(
        line for line in subprocess.run(["ip", "-o", "link"], capture_output=True,
                                        text=True).stdout.splitlines()
        if any(f" master {b} " in line for b in bridges))
    with open("/proc/self/mountinfo") as f:
        mounts = [line for line in f if os.path.join(d.root, "run", "netns") in line]
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    netns_dir = os.path.join(d.root, "run", "netns")
    ep_dir = os.path.join(d.root, "network", "endpoints")
    return {
        "veth": sorted(line.split(":")[1].strip().split("@")[0]
                       for line in links.splitlines() if "veth" in line),
        "mounts": mounts,
        "rules": [r for r in rules.splitlines() if any(n in r for n in needles)],
        "netns": sorted(os.listdir(netns_dir)) if os.path.isdir(netns_dir) else [],
        "endpoints": sorted(os.listdir(ep_dir)) if os.path.isdir(ep_dir) else [],
    }


@contextlib.contextmanager
def running_daemon(runtime: str, busybox_tar: str | None) -> Iterator[RestartableDaemon]:
    """A running daemon with ``IMAGE`` imported; everything it started is gone afterwards."""
    d = RestartableDaemon(runtime)
    try:
        d.start()
        if busybox_tar:
            d.ok("import", busybox_tar, IMAGE)
        else:  # the process runtime runs host commands: any rootfs will do
            import_empty_image(d.host)
        yield d
    finally:
        d.close()


@contextlib.contextmanager
def api_daemon(config: dict[str, Any]) -> Iterator[Daemon]:
    """A daemon of ``config`` on a temporary root with ``EMPTY_IMAGE``; gone afterwards."""
    base = tempfile.mkdtemp(prefix="lp-")  # short: unix socket paths are limited to 108 bytes
    d = start_daemon(base, os.path.join(base, "root"), config)
    try:
        import_empty_image(d.host)
        yield d
    finally:
        stop_daemon(d)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def daemon():
    """The Engine-API daemon: ``process`` runtime, ``EMPTY_IMAGE``, max-size 10m."""
    with api_daemon({"default-runtime": "process", "log-opts": {"max-size": "10m"}}) as d:
        yield d


@pytest.fixture
def api(daemon) -> Client:
    return Client(daemon.host, autostart=False)


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory) -> str | None:
    """The busybox rootfs tarball, built once for the module (None with ``process``)."""
    if not RUNC:
        return None
    return build_tarball(str(tmp_path_factory.mktemp("image") / "busybox.tar"))


@pytest.fixture(params=[ENGINE])
def engine_daemon(request, busybox_tar) -> Iterator[RestartableDaemon]:
    with running_daemon(request.param, busybox_tar) as d:
        yield d


@pytest.fixture(scope="module", params=[ENGINE])
def engine_module_daemon(request, busybox_tar) -> Iterator[RestartableDaemon]:
    """``engine_daemon`` shared by a module's tests that leave it running; the module removes
    what each test made with ``clean_daemon``."""
    with running_daemon(request.param, busybox_tar) as d:
        yield d


@pytest.fixture
def runc_daemon(busybox_tar) -> Iterator[RestartableDaemon]:
    if not RUNC:
        pytest.skip("needs root, runc and busybox-static")
    with running_daemon("runc", busybox_tar) as d:
        yield d


@pytest.fixture(scope="module")
def runc_module_daemon(busybox_tar) -> Iterator[RestartableDaemon]:
    """One runc daemon for a whole module (skipped without root, runc and busybox-static);
    a module using it removes what each test made with ``clean_daemon``."""
    if not RUNC:
        pytest.skip("needs root, runc and busybox-static")
    with running_daemon("runc", busybox_tar) as d:
        yield d


@pytest.fixture(scope="module")
def module_docker_client(runc_module_daemon):
    """docker-py against the module's runc daemon."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=runc_module_daemon.host, version="1.41", timeout=60)
    yield client
    client.close()


def clean_daemon(d: RestartableDaemon) -> None:
    """Every container (forced) and volume of ``d`` removed: the next test starts clean."""
    client = Client(d.host, autostart=False)
    for c in client.json("GET", "/containers/json", {"all": 1}):
        client.request("DELETE", f"/containers/{c['Id']}", {"force": 1, "v": 1}).read()
    for v in client.json("GET", "/volumes")["Volumes"] or []:
        client.request("DELETE", f"/volumes/{v['Name']}", {"force": 1}).read()


def image_of(d: RestartableDaemon) -> str:
    """The image a ``daemon_per_runtime`` test runs: busybox under runc, host commands else."""
    return "busybox:latest" if d.runtime == "runc" else "empty:latest"


def docker_cli(d: RestartableDaemon, *args: str, limit: int = 60) -> subprocess.CompletedProcess:
    """The docker CLI against ``d``, without stdin. SIGKILL after ``limit`` seconds: on a
    SIGTERM the CLI forwards it to the container and would go on waiting."""
    return subprocess.run(["timeout", "-s", "KILL", str(limit), shutil.which("docker") or "docker",
                           "-H", d.host, *args], capture_output=True, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module", params=RUNTIMES)
def daemon_per_runtime(request, tmp_path_factory) -> Iterator[RestartableDaemon]:
    runtime = request.param
    tar = build_tarball(str(tmp_path_factory.mktemp("image") / "busybox.tar")) \
        if runtime == "runc" else None
    with running_daemon(runtime, tar) as d:
        yield d


@pytest.fixture
def emptied_daemon_per_runtime(daemon_per_runtime):
    """The module's daemon of each runtime, with every container removed after each test."""
    yield daemon_per_runtime
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=daemon_per_runtime.host)
    for c in client.containers.list(all=True):
        c.remove(force=True)
    client.close()


def raw_create(host: str, name: str, body: dict) -> tuple[int, dict]:
    """``POST /containers/create`` over plain HTTP on the unix socket, as any Docker client
    sends it: the status code and the decoded JSON answer."""
    conn = http.client.HTTPConnection("localhost", timeout=60)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.connect(host.removeprefix("unix://"))
    try:
        conn.request("POST", f"/v1.41/containers/create?name={name}", json.dumps(body),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def create(api: Client, cmd: list[str], name: str | None = None, **extra: Any) -> str:
    body = {"Image": EMPTY_IMAGE, "Cmd": cmd, **extra}
    return api.json("POST", "/containers/create", {"name": name} if name else None, body)["Id"]


def wait(api: Client, cid: str, condition: str = "") -> int:
    query = {"condition": condition} if condition else None
    return api.json("POST", f"/containers/{cid}/wait", query)["StatusCode"]


# -- a real registry (Debian's docker-registry, distribution 2.x) -------------------------------


REGISTRY_BINARY = shutil.which("docker-registry")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """``docker-registry serve`` on 127.0.0.1:<port>, its storage in ``storage``; ``kill``
    and ``start`` again on the same port and storage (a registry that vanishes and returns)."""

    def __init__(self, base: str, auth: dict[str, Any] | None = None) -> None:
        self.base, self.port = base, free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.storage = os.path.join(base, "storage")
        self.config = os.path.join(base, "config.yml")
        lines = ["version: 0.1", "log:", "  level: error", "storage:", "  filesystem:",
                 f"    rootdirectory: {self.storage}", "  delete:", "    enabled: true",
                 "http:", f"  addr: {self.host}"]
        if auth and "htpasswd" in auth:
            lines += ["auth:", "  htpasswd:", "    realm: basic-realm",
                      f"    path: {auth['htpasswd']}"]
        if auth and "token" in auth:
            lines += ["auth:", "  token:", f"    realm: {auth['token']}",
                      "    service: logpipe-test-registry", "    issuer: logpipe-test-issuer",
                      f"    rootcertbundle: {auth['certs']}"]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(os.path.join(self.base, "registry.log"), "ab")
        self.proc = subprocess.Popen([REGISTRY_BINARY, "serve", self.config], stdout=log,
                                     stderr=log, start_new_session=True)
        log.close()

        def answers() -> bool:
            assert self.proc.poll() is None, "docker-registry exited"
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            return False

        wait_until(answers, timeout=20)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def blob_path(self, digest: str) -> str:
        hex_ = digest.split(":", 1)[1]
        return os.path.join(self.storage, "docker/registry/v2/blobs/sha256", hex_[:2], hex_,
                            "data")


@contextlib.contextmanager
def running_registry(auth: dict[str, Any] | None = None) -> Iterator[Registry]:
    if REGISTRY_BINARY is None:
        pytest.skip("needs Debian's docker-registry (apt-get install docker-registry)")
    base = tempfile.mkdtemp(prefix="lpreg-")
    reg = Registry(base, auth)
    try:
        reg.start()
        yield reg
    finally:
        reg.kill()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def registry() -> Iterator[Registry]:
    """A real registry without authentication, on loopback (plain HTTP, as Docker allows)."""
    with running_registry() as reg:
        yield reg


@pytest.fixture
def htpasswd_registry(tmp_path) -> Iterator[Registry]:
    """A real registry with basic auth: user ``lp``, password ``secret`` (bcrypt htpasswd)."""
    bcrypt = pytest.importorskip("bcrypt")
    path = tmp_path / "htpasswd"
    path.write_bytes(b"lp:" + bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)) + b"\n")
    with running_registry({"htpasswd": str(path)}) as reg:
        yield reg


class FakeTokenServer:
    """Stands in for Docker Hub's ``auth.docker.io`` (a distribution token server): ``GET
    /token?service=&scope=`` with basic auth ``lp``/``secret`` answers a JWT (RS256, its
    certificate in ``x5c``) granting the scope; anonymous callers get a token granting
    nothing, wrong passwords a 401. No real token server is packaged for Debian, so the test
    pairs this one with the real registry, which checks the signature and the grants."""

    def __init__(self, base: str) -> None:
        import datetime
        import http.server

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "logpipe test tokens")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.certs = os.path.join(base, "token-certs.pem")
        with open(self.certs, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append(self.path)
                status, body = server.answer(self.path, self.headers.get("Authorization", ""))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        import threading
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, path: str, authorization: str) -> tuple[int, bytes]:
        import base64
        import urllib.parse

        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        user = ""
        if authorization.startswith("Basic "):
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            if (user, password) != ("lp", "secret"):
                return 401, b'{"details":"incorrect username or password"}'
        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":")
            if user:
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        token = self.sign({"iss": "logpipe-test-issuer", "sub": user,
                           "aud": query.get("service", [""])[0], "exp": int(time.time()) + 300,
                           "nbf": int(time.time()) - 10, "iat": int(time.time()),
                           "jti": os.urandom(8).hex(), "access": access})
        return 200, json.dumps({"token": token, "access_token": token}).encode()

    def sign(self, claims: dict[str, Any]) -> str:
        import base64

        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(self.cert_der).decode()]}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64(sig)}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def token_registry(tmp_path) -> Iterator[tuple[Registry, FakeTokenServer]]:
    """A real registry with token auth (``Bearer realm=…``), its tokens from a
    ``FakeTokenServer`` (user ``lp``, password ``secret``)."""
    pytest.importorskip("cryptography")
    tokens = FakeTokenServer(str(tmp_path))
    try:
        with running_registry({"token": tokens.realm, "certs": tokens.certs}) as reg:
            yield reg, tokens
    finally:
        tokens.close()


DOCKERD_BINARY = shutil.which("dockerd")


class RealDocker:
    """A real dockerd (Debian's docker.io, 20.10) on a private socket and data root.
    ``restart`` stops it (SIGTERM, or ``kill -9``) and starts it again on the same roots,
    with ``live-restore`` on or off; a test that turns it on turns it off again."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.host = "unix://" + os.path.join(base, "d.sock")
        self.log = os.path.join(base, "dockerd.log")
        self.proc: subprocess.Popen | None = None
        self.live_restore = False

    def start(self, live_restore: bool = False) -> None:
        """Start dockerd and wait until it answers ``/_ping``."""
        self.live_restore = live_restore
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [DOCKERD_BINARY, "--iptables=false", "--bridge=none", "-H", self.host,
                 "--data-root", os.path.join(self.base, "data"),
                 "--exec-root", os.path.join(self.base, "exec"),
                 "--pidfile", os.path.join(self.base, "dockerd.pid")]
                + (["--live-restore"] if live_restore else []),
                stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(self._pings, timeout=60, what="dockerd answering /_ping")

    def _pings(self) -> bool:
        assert self.proc.poll() is None, "dockerd exited: " + open(self.log).read()[-2000:]
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("localhost", timeout=2)
            conn.sock = socket.socket(socket.AF_UNIX)
            conn.sock.settimeout(2)
            conn.sock.connect(self.host[len("unix://"):])
            try:
                conn.request("GET", "/_ping")
                return conn.getresponse().status == 200
            finally:
                conn.close()
        return False

    def restart(self, kill: bool = False, live_restore: bool | None = None) -> None:
        """SIGTERM (dockerd stops its containers unless live-restore is on) or SIGKILL
        (containerd and its shims go on), then start again; ``live_restore`` None keeps the
        current setting."""
        containerd = self._containerd_pid()
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if containerd is not None:  # a new dockerd would take a containerd still stopping
            with contextlib.suppress(ProcessLookupError):
                os.kill(containerd, signal.SIGKILL)
            wait_until(lambda: not os.path.exists(f"/proc/{containerd}"), timeout=20,
                       what="the old containerd gone")
        self.start(self.live_restore if live_restore is None else live_restore)

    def _containerd_pid(self) -> int | None:
        """The managed containerd's pid (its shims, and so the containers, outlive it)."""
        try:
            with open(os.path.join(self.base, "exec", "containerd", "containerd.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def cli(self, *args: str, limit: int = 60,
            stdin: bytes | None = None) -> subprocess.CompletedProcess:
        """The docker CLI against this dockerd; SIGKILL after ``limit`` seconds."""
        return subprocess.run(["timeout", "-s", "KILL", str(limit),
                               shutil.which("docker") or "docker", "-H", self.host, *args],
                              input=stdin if stdin is not None else b"", capture_output=True,
                              env=self.cli_env())

    def cli_env(self) -> dict[str, str]:
        """The environment of the docker CLI against this dockerd."""
        return dict(os.environ, DOCKER_API_VERSION="1.41",
                    DOCKER_CONFIG=os.path.join(self.base, "cli"))


def _stop_dockerd(proc: subprocess.Popen, base: str) -> None:
    """SIGTERM (dockerd stops its containers and its managed containerd), then SIGKILL;
    a containerd left by a killed dockerd is killed by its pid file; mounts under ``base``
    are detached before the directory goes."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(base, "exec", "containerd", "containerd.pid")) as f:
            os.kill(int(f.read().strip()), signal.SIGKILL)
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if line.split()[4].startswith(base + "/")]
    for mount in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def real_docker() -> Iterator[RealDocker]:
    """A real Docker daemon for checking what logpipe writes (``save``, ``commit``, ``build``)
    against what Docker reads. Private socket, data and exec roots under a temporary
    directory: /var/lib/docker and /run/docker.sock are never touched. It pulls nothing:
    tests ``docker load`` into it what they saved from logpipe."""
    if os.geteuid() != 0:
        pytest.skip("a real dockerd needs root")
    if DOCKERD_BINARY is None:
        pytest.skip("needs Debian's docker.io (dockerd): apt-get install docker.io")
    base = tempfile.mkdtemp(prefix="lpdk-")  # short: unix socket paths ≤ 108 bytes
    docker = RealDocker(base)
    try:
        docker.start()
        yield docker
    finally:
        if docker.proc is not None:
            _stop_dockerd(docker.proc, base)
        else:
            shutil.rmtree(base, ignore_errors=True)


class PluginClient:
    """Plain HTTP to a logging plugin's socket (``logpipe docker-plugin``, or the daemon
    serving it)."""

    def __init__(self, sock: str) -> None:
        self.sock = sock

    def post(self, path: str, body: dict, timeout: float = 30) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("localhost", timeout=timeout)
        conn.sock = socket.socket(socket.AF_UNIX)
        conn.sock.settimeout(timeout)
        conn.sock.connect(self.sock)
        try:
            conn.request("POST", path, json.dumps(body),
                         {"Content-Type": "application/vnd.docker.plugins.v1+json"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def metrics(self) -> dict[tuple[str, str], float]:
        """``GET /metrics``, parsed: value by (series name, container id)."""
        conn = http.client.HTTPConnection("localhost", timeout=30)
        conn.sock = socket.socket(socket.AF_UNIX)
        conn.sock.settimeout(30)
        conn.sock.connect(self.sock)
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("Content-Type").startswith("text/plain; version=0.0.4")
            text = resp.read().decode()
        finally:
            conn.close()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                series, value = line.rsplit(" ", 1)
                name, labels = series.split("{", 1)
                cid = labels.split('container_id="', 1)[1].split('"', 1)[0]
                out[name, cid] = float(value)
        return out

    def call(self, path: str, body: dict) -> dict:
        status, data = self.post(path, body)
        assert status == 200, data
        return json.loads(data)


class PluginProc(PluginClient):
    """A ``logpipe docker-plugin`` process."""

    def __init__(self, sock: str, data_root: str, docker_host: str | None = None,
                 cleanup_interval: float | None = None) -> None:
        """``docker_host``: the dockerd whose removed containers' logs go (by default a
        socket where no Docker answers, so that nothing is ever removed)."""
        self.sock, self.data_root = sock, data_root
        self.docker_host, self.cleanup_interval = docker_host, cleanup_interval
        host = docker_host or "unix://" + os.path.join(os.path.dirname(sock), "no-docker.sock")
        extra = ["--cleanup-interval", str(cleanup_interval)] if cleanup_interval else []
        self.proc = subprocess.Popen(LOGPIPE + ["docker-plugin", "--socket", sock,
                                                "--data-root", data_root,
                                                "--docker-host", host, *extra],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        wait_until(self._answers, timeout=20, what="the plugin's socket")

    def _answers(self) -> bool:
        assert self.proc.poll() is None, self.proc.stderr.read().decode()
        with contextlib.suppress(OSError):
            return self.post("/Plugin.Activate", {})[0] == 200
        return False

    def kill(self) -> None:
        """``kill -9``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc.stderr.close()

    def restart(self) -> None:
        """A new plugin process on the same socket, data root and flags."""
        self.__init__(self.sock, self.data_root, self.docker_host, self.cleanup_interval)

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 10 s); its stderr is printed (shown for a failed test)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        print("plugin stderr:", self.proc.stderr.read().decode(errors="replace")[-3000:])
        self.proc.stderr.close()


@pytest.fixture
def docker_plugin(real_docker, tmp_path):
    """Our plugin at ``/run/docker/plugins/logpipe-test-<random>.sock``, where dockerd looks
    for legacy plugins; the socket goes afterwards."""
    name = f"logpipe-test-{uuid.uuid4().hex[:8]}"
    os.makedirs("/run/docker/plugins", exist_ok=True)
    sock = f"/run/docker/plugins/{name}.sock"
    p = PluginProc(sock, str(tmp_path / "data"), real_docker.host, cleanup_interval=0.5)
    p.name = name
    yield p
    p.stop()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock)


@pytest.fixture(scope="module")
def real_busybox(real_docker, busybox_tar):
    """busybox in the real dockerd (``docker import`` of our rootfs tarball)."""
    if busybox_tar is None:
        pytest.skip("needs root, runc and busybox-static for the busybox image")
    res = real_docker.cli("import", busybox_tar, "lp-busybox:plugin")
    assert res.returncode == 0, res.stderr
    return "lp-busybox:plugin"
