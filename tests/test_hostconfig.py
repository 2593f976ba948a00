"""``HostConfig`` beyond mounts, networks and logging: inspect shows Docker's fields and
defaults (what docker-py reads), and each option create accepts is applied in the real
runc container (``--init``, ``--group-add``, ``--pid host``, ``--link``, capabilities, a
read-only root, ulimits) or refused in words (``--privileged``, a bad capability)."""

from __future__ import annotations

import time

import pytest

from conftest import docker_cli
from runtime.hostopts import unified_cgroup

pytestmark = pytest.mark.e2e

docker = pytest.importorskip("docker")


@pytest.fixture(scope="module")
def d(runc_module_daemon):
    return runc_module_daemon


def _run(d, *args: str) -> str:
    res = docker_cli(d, "run", "--rm", "--network", "none", *args)
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout.decode()


def test_inspect_shows_dockers_host_config_defaults(module_docker_client):
    c = module_docker_client.containers.create("busybox", "true", mem_limit="64m")
    try:
        host = c.attrs["HostConfig"]
        assert host["VolumesFrom"] is None and host["Init"] is None
        assert host["CgroupnsMode"] == ("private" if unified_cgroup() else "host")
        assert host["PidMode"] == "" and host["Isolation"] == "" and host["UTSMode"] == ""
        assert host["IpcMode"] == "private" and host["MemorySwappiness"] is None
        assert host["MemorySwap"] == 2 * (64 << 20)  # Docker: swap as large as memory
        assert host["Privileged"] is False and host["ReadonlyRootfs"] is False
        assert host["CapAdd"] is None and host["CapDrop"] is None and host["Ulimits"] is None
        assert host["ShmSize"] == 64 << 20 and host["DeviceCgroupRules"] is None
        assert host["GroupAdd"] is None and host["Links"] is None
        assert "/proc/kcore" in host["MaskedPaths"]
    finally:
        c.remove()


def test_init_group_add_read_only_and_cap_drop_are_applied(d):
    out = _run(d, "--init", "--group-add", "nogroup", "--group-add", "1234", "--read-only",
               "--cap-drop", "chown", "busybox", "sh", "-c",
               "id; tr '\\0' ' ' < /proc/1/cmdline; echo; touch /x 2>/dev/null || echo ro; "
               "chown 1 /tmp 2>/dev/null || echo nochown")
    ident, init, ro, nochown = out.splitlines()
    assert "groups=1234,65534(nogroup)" in ident
    assert init.startswith("/sbin/docker-init -- sh -c")
    assert (ro, nochown) == ("ro", "nochown")


def test_pid_host_ulimits_and_cgroup_settings_are_applied(d):
    out = _run(d, "--pid", "host", "--ulimit", "nofile=100:200", "--cpu-shares", "512",
               "--memory-reservation", "32m", "busybox", "sh", "-c",
               "ulimit -n; ulimit -Hn; ps -o pid | wc -l; "
               "cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/memory/memory.soft_limit_in_bytes"
               " 2>/dev/null || echo v2 v2")
    soft, hard, procs, shares, reservation = out.split()
    assert (soft, hard) == ("100", "200")
    assert int(procs) > 10  # the host's processes, not the container's one or two
    if not unified_cgroup():
        assert (shares, reservation) == ("512", str(32 << 20))


def test_a_legacy_link_gives_dockers_variables_and_hosts_entry(d, module_docker_client):
    web = module_docker_client.containers.run("busybox", ["sleep", "300"], detach=True, name="linkweb",
                                 environment={"SECRET": "s3"}, ports={"80/tcp": None})
    try:
        out = module_docker_client.containers.run("busybox", ["sh", "-c", "env; cat /etc/hosts"],
                                     links={"linkweb": "db"}, remove=True).decode()
        ip = module_docker_client.containers.get(web.id).attrs["NetworkSettings"]["IPAddress"]
        assert f"DB_PORT=tcp://{ip}:80" in out.splitlines()
        assert f"DB_PORT_80_TCP_ADDR={ip}" in out.splitlines()
        assert "DB_ENV_SECRET=s3" in out.splitlines()
        assert any(line.split() == [ip, "db", web.id[:12], "linkweb"]
                   for line in out.splitlines())
    finally:
        web.remove(force=True)


@pytest.mark.parametrize("flags, message", [
    (["--privileged"], "--privileged is not supported by logpipe"),
    (["--cap-add", "NOPE"], 'unknown capability: "CAP_NOPE"'),
    (["--pid", "container:x"], "invalid --pid container:x"),
    (["-m", "64m", "--memory-swap", "32m"], "Minimum memoryswap limit should be larger"),
    (["--link", "nosuchcontainer:db"], "Could not get container for nosuchcontainer"),
    (["--cgroup-parent", "x"], "HostConfig.CgroupParent is not supported by logpipe"),
    (["--cpus", "1", "--cpu-period", "50000"], "Nano CPUs and CPU Period cannot both be set"),
])
def test_unsupported_or_bad_options_are_refused_in_words(d, flags, message):
    res = docker_cli(d, "create", *flags, "busybox", "true")
    assert res.returncode != 0
    assert message in res.stderr.decode()


def test_stop_timeout_and_stop_signal_are_kept_and_used_by_stop(module_docker_client):
    api = module_docker_client.api
    host = api.create_host_config(network_mode="none")
    c = api.create_container("busybox", ["sh", "-c", "trap 'exit 7' USR1; trap '' TERM; "
                                         "while :; do sleep 0.1; done"],
                             stop_signal="SIGUSR1", stop_timeout=1, host_config=host)["Id"]
    ignores = api.create_container("busybox", ["sh", "-c", "trap '' TERM; sleep 300"],
                                   stop_timeout=1, host_config=host)["Id"]
    try:
        config = api.inspect_container(c)["Config"]
        assert config["StopTimeout"] == 1 and config["StopSignal"] == "SIGUSR1"
        api.start(c)
        api.start(ignores)
        api.stop(c)  # no timeout given: the container's own
        assert api.wait(c)["StatusCode"] == 7  # its stop signal ended it
        started = time.monotonic()
        api.stop(ignores)
        assert time.monotonic() - started < 8  # 1 s, then SIGKILL; not Docker's 10 s
        assert api.wait(ignores)["StatusCode"] == 137
    finally:
        api.remove_container(c, force=True)
        api.remove_container(ignores, force=True)


def test_logpipe_run_takes_the_same_flags(d):
    out = d.ok("run", "--rm", "--network", "none", "--init", "--group-add", "nogroup",
               "--cap-add", "NET_ADMIN", "--pid", "host", "--memory-reservation", "16m",
               "-c", "256", "busybox", "sh", "-c", "id -G; grep -c docker-init /proc/*/cmdline"
               " 2>/dev/null | grep -vc ':0'").decode().split()
    assert out[0] == "0" and "65534" in out  # root's group, then the added one
    assert int(out[-1]) >= 1  # docker-init runs (seen among the host's processes)
    res = d.lp("create", "--privileged", "busybox", "true")
    assert res.returncode == 125 and b"--privileged is not supported" in res.stderr
