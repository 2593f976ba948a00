"""``rename``, ``update``, ``container prune`` and ``system df`` through the docker CLI and
docker-py against a runc daemon running busybox: Docker's texts, the cgroup a running
container's new limits land in, a restart policy set after the fact that a process killed
from outside obeys, and the sizes ``df`` and ``ps --size`` report."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from conftest import clean_daemon, docker_cli, wait_until
from runtime.network import netavark

pytestmark = pytest.mark.e2e

docker = pytest.importorskip("docker")


@pytest.fixture
def runc_daemon(runc_module_daemon):
    """The module's runc daemon, emptied after each test (one daemon: seconds saved each)."""
    yield runc_module_daemon
    clean_daemon(runc_module_daemon)


def ok(d, *args: str) -> str:
    res = docker_cli(d, *args)
    assert res.returncode == 0, (args, res.stderr.decode())
    return res.stdout.decode().strip()


def fails(d, *args: str) -> str:
    res = docker_cli(d, *args)
    assert res.returncode != 0, (args, res.stdout.decode())
    return res.stderr.decode().strip()


def sleeper(d, name: str, *flags: str) -> str:
    return ok(d, "run", "-d", "--name", name, *flags, "busybox", "sleep", "1000")


def cgroup_file(cid: str, v1: tuple[str, str], v2: str) -> str:
    """The value of a container's cgroup file (cgroup v1 controller/file, or v2 file)."""
    for path in (f"/sys/fs/cgroup/{v1[0]}/logpipe/{cid}/{v1[1]}",
                 f"/sys/fs/cgroup/logpipe/{cid}/{v2}"):
        if os.path.exists(path):
            with open(path) as f:
                return f.read().strip()
    raise AssertionError(f"no cgroup file for {cid}: {v1} / {v2}")


def test_rename_running_container_then_ps_and_refusals(runc_daemon):
    d = runc_daemon
    one = sleeper(d, "one")
    two = sleeper(d, "two")
    err = fails(d, "rename", "one", "two")
    assert err == ('Error response from daemon: Error when allocating new name: Conflict. The '
                   f'container name "/two" is already in use by container "{two}". You have to '
                   "remove (or rename) that container to be able to reuse that name.\n"
                   "Error: failed to rename container named one")
    assert "Renaming a container with the same name as its current name" in fails(
        d, "rename", "one", "one")
    assert "Invalid container name (b@d)" in fails(d, "rename", "one", "b@d")
    assert "No such container: nosuch" in fails(d, "rename", "nosuch", "x1")
    ok(d, "rename", "one", "uno")
    names = ok(d, "ps", "--format", "{{.Names}}").split()
    assert sorted(names) == ["two", "uno"]
    assert ok(d, "inspect", "-f", "{{.Name}} {{.State.Running}}", one) == "/uno true"
    ok(d, "run", "--rm", "--name", "one", "busybox", "true")  # the old name is free
    ev = json.loads(ok(d, "events", "--since", "0", "--until", f"{time.time():.9f}",
                       "--filter", "event=rename", "--format", "{{json .}}"))
    assert ev["Actor"]["ID"] == one
    assert ev["Actor"]["Attributes"] == {"image": "busybox", "name": "uno", "oldName": "/one"}
    # The new name is kept across a daemon restart; the logpipe CLI says what failed.
    d.sigkill()
    d.start()
    assert ok(d, "inspect", "-f", "{{.Name}}", one) == "/uno"
    res = d.lp("rename", "uno", "two")
    assert res.returncode == 1
    assert res.stderr.decode().endswith("Error: failed to rename container named uno\n")


def test_update_restart_policy_then_killed_process_is_restarted(runc_daemon):
    d = runc_daemon
    cid = sleeper(d, "pol")
    assert ok(d, "update", "--restart", "always", "pol") == "pol"
    assert ok(d, "inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", cid) == "always"
    pid = int(ok(d, "inspect", "-f", "{{.State.Pid}}", cid))
    os.kill(pid, signal.SIGKILL)  # from outside: not a user's stop, so the policy applies
    wait_until(lambda: ok(d, "inspect", "-f", "{{.RestartCount}} {{.State.Running}}", cid)
               == "1 true", timeout=30, what="the restart after the kill")
    assert "invalid restart policy 'sometimes'" in fails(d, "update", "--restart", "sometimes",
                                                          "pol")
    rm = ok(d, "run", "-d", "--rm", "--name", "autorm", "busybox", "sleep", "1000")
    err = fails(d, "update", "--restart", "always", "autorm")
    assert err == (f"Error response from daemon: Cannot update container {rm}: Restart policy "
                   "cannot be updated because AutoRemove is enabled for the container")


def test_update_memory_and_cpus_reach_the_running_containers_cgroup(runc_daemon):
    d = runc_daemon
    cid = sleeper(d, "lim")
    ok(d, "update", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "50", "lim")
    assert cgroup_file(cid, ("memory", "memory.limit_in_bytes"), "memory.max") == str(64 << 20)
    quota = cgroup_file(cid, ("cpu", "cpu.cfs_quota_us"), "cpu.max").split()[0]
    assert quota == "50000"
    assert cgroup_file(cid, ("pids", "pids.max"), "pids.max") == "50"
    shown = ok(d, "inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} "
                                   "{{.HostConfig.PidsLimit}}", cid)
    assert shown == f"{64 << 20} 500000000 50"
    # Kept in the spec: a restart starts with them.
    ok(d, "restart", "-t", "0", "lim")
    assert cgroup_file(cid, ("memory", "memory.limit_in_bytes"), "memory.max") == str(64 << 20)
    # Docker's refusals.
    assert "Minimum memory limit allowed is 6MB" in fails(d, "update", "--memory", "3m", "lim")
    assert (f"Cannot update container {cid}: Conflicting options: CPU Period cannot be updated "
            "as NanoCPUs has already been set") in fails(d, "update", "--cpu-period", "50000",
                                                         "lim")
    # docker-py's update and its answer.
    client = docker.APIClient(base_url=d.host)
    try:
        assert client.update_container(cid, mem_limit="96m") == {"Warnings": []}
        assert cgroup_file(cid, ("memory", "memory.limit_in_bytes"),
                           "memory.max") == str(96 << 20)
        with pytest.raises(docker.errors.APIError) as err:
            client.update_container(cid, cpuset_cpus="0")
        assert err.value.status_code == 400
    finally:
        client.close()
    events = ok(d, "events", "--since", "0", "--until", f"{time.time():.9f}", "--filter",
                "event=update", "--filter", f"container={cid}",
                "--format", "{{.Actor.Attributes.name}}").split()
    assert events == ["lim", "lim"]


def test_container_prune_removes_only_stopped_matching_containers(runc_daemon):
    d = runc_daemon
    keep_running = sleeper(d, "running1")
    gone = ok(d, "create", "--name", "gone1", "--label", "tier=tmp", "busybox", "true")
    ok(d, "start", "-a", "gone1")
    kept = ok(d, "create", "--name", "kept1", "--label", "tier=keep", "busybox", "true")
    out = ok(d, "container", "prune", "-f", "--filter", "label=tier=tmp")
    assert out.splitlines()[:2] == ["Deleted Containers:", gone]
    assert out.splitlines()[-1].startswith("Total reclaimed space: ")
    assert sorted(ok(d, "ps", "-a", "--format", "{{.Names}}").split()) == ["kept1", "running1"]
    assert "invalid filter 'nosuch'" in fails(d, "container", "prune", "-f", "--filter",
                                              "nosuch=1")
    res = d.lp("container", "prune", "-f", "--filter", "until=1h")  # created just now: kept
    assert res.stdout.decode() == "Total reclaimed space: 0B\n"
    out = d.ok("container", "prune", "-f").decode()
    assert out == f"Deleted Containers:\n{kept}\n\nTotal reclaimed space: 0B\n"
    assert ok(d, "ps", "-a", "-q", "--no-trunc") == keep_running


def test_system_df_and_ps_size_count_the_writable_layer(runc_daemon):
    d = runc_daemon
    ok(d, "run", "--name", "writer", "-v", "dfvol:/data", "busybox", "sh", "-c",
       "head -c 300000 /dev/zero > /big; head -c 5000 /dev/zero > /data/f")
    cid = ok(d, "inspect", "-f", "{{.Id}}", "writer")
    client = docker.APIClient(base_url=d.host)
    try:
        item, = client.containers(all=True, size=True)
        assert item["Id"] == cid and 300000 <= item["SizeRw"] < 400000
        assert item["SizeRootFs"] > item["SizeRw"]
        df = client.df()
    finally:
        client.close()
    assert df["LayersSize"] > 0 and df["BuildCache"] == []
    image, = df["Images"]
    assert image["Containers"] == 1 and image["SharedSize"] == 0
    container, = df["Containers"]
    assert container["SizeRw"] == item["SizeRw"]
    volume, = df["Volumes"]
    assert volume["Name"] == "dfvol" and volume["UsageData"] == {"Size": 5000, "RefCount": 1}
    lines = ok(d, "system", "df").splitlines()
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert lines[2].split()[:3] == ["Containers", "1", "0"]
    assert lines[2].split()[4:] == lines[2].split()[3:4] + ["(100%)"]  # all of it reclaimable
    assert lines[3].split()[:5] == ["Local", "Volumes", "1", "1", "5kB"]
    ours = d.ok("system", "df").decode().splitlines()
    assert ours == lines  # logpipe's table is the docker CLI's
    verbose = d.ok("system", "df", "-v").decode()
    assert "Containers space usage:" in verbose and "dfvol" in verbose


@pytest.mark.skipif(netavark.binary() is None, reason="needs netavark and aardvark-dns")
def test_rename_on_a_user_network_renames_its_dns_name(runc_daemon):
    d = runc_daemon
    ok(d, "network", "create", "ops-net")
    try:
        cid = ok(d, "run", "-d", "--name", "dns-old", "--network", "ops-net", "busybox",
                 "sleep", "1000")
        ip = json.loads(ok(d, "inspect", cid))[0]["NetworkSettings"]["IPAddress"]
        ok(d, "rename", "dns-old", "dns-new")

        def lookup(name: str) -> str:
            res = docker_cli(d, "run", "--rm", "--network", "ops-net", "busybox",
                             "nslookup", name)
            return res.stdout.decode() + res.stderr.decode()

        assert f"Address: {ip}" in lookup("dns-new")
        assert "NXDOMAIN" in lookup("dns-old")
    finally:
        clean_daemon(d)
        ok(d, "network", "rm", "ops-net")
