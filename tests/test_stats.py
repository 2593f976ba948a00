"""``stats`` and ``top`` of real runc containers, read by the docker CLI, docker-py and
``logpipe``: Docker's ``StatsJSON`` from the container's cgroup and network namespace, the
processes of its cgroup, and the streams' ends (a killed container, a client that stops
reading or goes away)."""

from __future__ import annotations

import json
import os
import re
import socket
import time

import pytest

from conftest import create, docker_cli, wait_until
from logpipe.errors import LogpipeError
from runtime.cli.client import Client

pytestmark = pytest.mark.e2e

docker = pytest.importorskip("docker")
BUSY = ["sh", "-c", "while :; do :; done"]
ZERO_TIME = "0001-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def d(runc_module_daemon):
    return runc_module_daemon


@pytest.fixture(scope="module")
def busy(d):
    """A container spinning on one CPU, limited to 64 MiB."""
    cid = d.ok("run", "-d", "--name", "busy", "-m", "64m", "busybox", *BUSY).decode().strip()
    yield cid
    d.lp("rm", "-f", cid)


def _raw_stream(d, path: str) -> socket.socket:
    """A GET whose answer the test reads (or does not) itself."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(d.host.removeprefix("unix://"))
    sock.sendall(f"GET /v1.41{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def _daemon_fds(d) -> int:
    return len(os.listdir(f"/proc/{d.current.proc.pid}/fd"))


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_stats_of_a_busy_container_show_cpu_memory_limit_network_and_pids(module_docker_client, busy):
    stats = module_docker_client.containers.get(busy).stats(stream=False)
    assert stats["id"] == busy and stats["name"] == "/busy"
    assert stats["read"] != ZERO_TIME and stats["preread"] != ZERO_TIME
    cpu, pre = stats["cpu_stats"], stats["precpu_stats"]
    assert cpu["cpu_usage"]["total_usage"] > pre["cpu_usage"]["total_usage"] > 0
    assert cpu["system_cpu_usage"] > pre["system_cpu_usage"] > 0
    assert cpu["online_cpus"] == os.sysconf("SC_NPROCESSORS_ONLN")
    assert set(cpu["throttling_data"]) == {"periods", "throttled_periods", "throttled_time"}
    mem = stats["memory_stats"]
    assert mem["usage"] > 0 and mem["limit"] == 64 << 20 and mem["stats"]
    assert stats["pids_stats"]["current"] >= 1
    assert "io_service_bytes_recursive" in stats["blkio_stats"]
    assert stats["networks"]["eth0"]["rx_packets"] >= 0
    assert set(stats["networks"]["eth0"]) >= {"rx_bytes", "tx_bytes", "rx_dropped"}


def test_one_shot_stats_answer_at_once_without_precpu(d, busy):
    started = time.monotonic()
    doc = Client(d.host, autostart=False).json(
        "GET", f"/containers/{busy}/stats", {"stream": 0, "one-shot": 1})
    assert doc["preread"] == ZERO_TIME and doc["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    assert doc["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert time.monotonic() - started < 5


def test_docker_stats_no_stream_prints_sane_columns(d, busy):
    res = docker_cli(d, "stats", "--no-stream", "busy")
    assert res.returncode == 0, res.stderr
    head, line = res.stdout.decode().splitlines()
    assert head.split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"]
    m = re.match(r"(\w{12})\s+busy\s+([\d.]+)%\s+([\d.]+\w+) / 64MiB\s+([\d.]+)%\s+"
                 r"(\S+) / (\S+)\s+(\S+) / (\S+)\s+(\d+)$", line)
    assert m, line
    assert busy.startswith(m.group(1))
    assert float(m.group(2)) > 5  # it spins
    assert 0 < float(m.group(4)) < 100 and int(m.group(9)) >= 1


def test_logpipe_stats_and_top_print_the_docker_cli_columns(d, busy):
    out = d.ok("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}",
               "busy").decode()
    assert re.fullmatch(r"busy [\d.]+\w+ / 64MiB \d+\n", out), out
    top = d.ok("top", "busy").decode().splitlines()
    assert top[0].split()[:3] == ["UID", "PID", "PPID"]
    assert any("while :; do :; done" in line for line in top[1:])


def test_stats_of_a_stopped_container_are_dockers_zeros(d, module_docker_client):
    cid = d.ok("create", "busybox", "true").decode().strip()
    try:
        stats = module_docker_client.api.stats(cid, stream=False)
        assert stats["read"] == ZERO_TIME and stats["id"] == cid
        assert stats["cpu_stats"]["cpu_usage"]["total_usage"] == 0
        assert stats["memory_stats"] == {} and stats["pids_stats"] == {}
        res = docker_cli(d, "stats", "--no-stream", cid)
        assert res.returncode == 0
        assert res.stdout.decode().splitlines()[1].split()[2:] == [
            "0.00%", "0B", "/", "0B", "0.00%", "0B", "/", "0B", "0B", "/", "0B", "0"]
        out = d.ok("stats", "--no-stream", cid).decode().splitlines()[1]
        assert out.split()[2:] == res.stdout.decode().splitlines()[1].split()[2:]
    finally:
        d.lp("rm", "-f", cid)


def test_a_stats_stream_ends_when_its_container_is_killed(d, module_docker_client):
    c = module_docker_client.containers.run("busybox", ["sleep", "300"], detach=True)
    try:
        stream = c.stats(decode=True)
        first = next(stream)
        assert first["read"] != ZERO_TIME
        c.kill()
        rest = list(stream)  # ends: the client's read would raise on a timeout (60 s)
        assert rest and rest[-1]["read"] == ZERO_TIME
    finally:
        c.remove(force=True)


def test_top_lists_the_containers_processes_with_ps_args(module_docker_client, busy):
    top = module_docker_client.containers.get(busy).top()
    assert "PID" in top["Titles"] and "CMD" in top["Titles"]
    assert any("while" in p[-1] for p in top["Processes"])
    aux = module_docker_client.api.top(busy, ps_args="aux")
    assert aux["Titles"][:2] == ["USER", "PID"]
    own = str(os.getpid())  # the host's other processes are not listed
    assert all(p[1] != own for p in aux["Processes"])


def test_top_refuses_a_stopped_container_and_a_renamed_pid_column(d, module_docker_client, busy):
    cid = d.ok("create", "busybox", "true").decode().strip()
    try:
        with pytest.raises(docker.errors.APIError) as err:
            module_docker_client.api.top(cid)
        assert err.value.status_code == 409
        assert err.value.explanation == f"Container {cid} is not running"
        with pytest.raises(docker.errors.APIError) as err:
            module_docker_client.api.top(busy, ps_args="-o user= PIDX")
        assert err.value.status_code == 400
    finally:
        d.lp("rm", "-f", cid)


def test_clients_that_stop_reading_or_leave_cost_the_daemon_nothing_lasting(d, busy):
    before_fds = _daemon_fds(d)
    pid = d.current.proc.pid
    before_rss = _rss_kib(pid)
    socks = [_raw_stream(d, f"/containers/{busy}/stats") for _ in range(20)]
    try:
        for s in socks:  # every stream is live: its headers and a first sample came
            s.settimeout(10)
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        # None of them reads now; each stream holds one sample, not a growing queue.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert d.ok("ps", "-q")  # the daemon keeps answering meanwhile
        assert _rss_kib(pid) - before_rss < 20 * 1024
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: _daemon_fds(d) <= before_fds + 2, timeout=15,
               what="the streams of the clients that left to end")
    res = json.loads(d.ok("inspect", "busy"))[0]
    assert res["State"]["Running"]


def test_a_process_runtime_container_counts_its_own_processes(api):
    """No cgroup of its own: its session's processes, not the host's or the daemon's."""
    cid = create(api, ["sh", "-c", "while :; do :; done"])
    api.post(f"/containers/{cid}/start")
    try:
        doc = api.json("GET", f"/containers/{cid}/stats", {"stream": 0})
        assert doc["pids_stats"] == {"current": 1}
        assert doc["cpu_stats"]["cpu_usage"]["total_usage"] > 0
        assert 0 < doc["memory_stats"]["usage"] < 64 << 20
        top = api.json("GET", f"/containers/{cid}/top")
        assert [p[-1] for p in top["Processes"]] == ["sh -c while :; do :; done"]
        with pytest.raises(LogpipeError, match="runs with runtime process: it has no "
                                               "filesystem of its own"):
            api.request("GET", f"/containers/{cid}/archive", {"path": "/etc"})
    finally:
        api.request("DELETE", f"/containers/{cid}", {"force": 1}).read()
