"""A container on several networks: ``network connect``/``disconnect`` of created and running
containers (docker-py, the docker CLI, logpipe's CLI), names and aliases on each network,
Docker's refusals, a daemon SIGKILL with two networks attached; ``--dns``, ``--dns-search``,
``--dns-option``, ``--add-host``, ``--hostname``/``--domainname`` in the files Docker
writes; ``--internal`` and ``--ip-range`` networks.

Traffic goes only to the containers these tests start (names resolved by aardvark-dns).
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Iterator

import pytest

from conftest import IMAGE, RUNC, RestartableDaemon, network_leftovers, stop_daemon
from runtime.network import etcfiles, netavark, store

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    not RUNC or netavark.binary() is None or subprocess.run(
        ["which", "iptables-save"], capture_output=True).returncode != 0,
    reason="needs root, runc, busybox-static, netavark and iptables")]


def _daemon(busybox_tar: str) -> RestartableDaemon:
    d = RestartableDaemon("runc")
    d.start()
    d.ok("import", busybox_tar, IMAGE)
    return d


def _close(d: RestartableDaemon) -> None:
    if d.current is not None and d.current.proc.poll() is None:
        stop_daemon(d.current)  # removes its containers: their endpoints go with them
    d.current = None
    d.close()  # runc state, overlays and endpoints of a killed daemon's containers


@pytest.fixture(scope="module")
def netd(busybox_tar) -> Iterator[RestartableDaemon]:
    """One daemon for the tests that do not kill it."""
    d = _daemon(busybox_tar)
    try:
        yield d
    finally:
        _close(d)


@pytest.fixture
def nets(netd) -> Iterator[list[str]]:
    """Names of the networks a test creates: its containers, then they, removed after."""
    names: list[str] = []
    yield names
    for cid in netd.ok("ps", "-aq").decode().split():
        netd.lp("rm", "-f", cid)
    for name in names:
        netd.lp("network", "rm", name)


def docker(d: RestartableDaemon, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "-H", d.host, *args], capture_output=True, text=True,
                          timeout=60)


def networks(d: RestartableDaemon, name: str) -> dict:
    return json.loads(d.inspect(name, "{{json .NetworkSettings.Networks}}"))


def run_out(d: RestartableDaemon, *args: str) -> str:
    """What a short-lived container prints (``run --rm`` attached)."""
    res = d.lp("run", "--rm", *args)
    assert res.returncode == 0, res.stderr
    return res.stdout.decode()


def test_connect_and_disconnect_a_running_container(netd, nets):
    docker_py = pytest.importorskip("docker")
    d = netd
    client = docker_py.DockerClient(base_url=d.host, version="1.41", timeout=60)
    nets += ["front", "back"]
    for name in nets:
        client.networks.create(name, driver="bridge")
    web = client.containers.run(IMAGE, ["httpd", "-f", "-p", "80", "-h", "/etc"], name="web",
                                detach=True, network="front")
    before = network_leftovers(d)["veth"]
    client.networks.get("back").connect(web, aliases=["api"])
    web.reload()
    eps = web.attrs["NetworkSettings"]["Networks"]
    assert list(eps) == ["front", "back"]
    for name, ep in eps.items():
        net = store.load(d.root, name)
        assert ep["Gateway"] == net.gateway and ep["IPPrefixLen"] == 16
        assert ep["IPAddress"].rsplit(".", 2)[0] == net.subnet.rsplit(".", 2)[0]
        assert len(ep["MacAddress"]) == 17 and ep["NetworkID"] == net.id
    assert "api" in eps["back"]["Aliases"] and web.id[:12] in eps["back"]["Aliases"]
    assert len(network_leftovers(d)["veth"]) == len(before) + 1
    hosts = run_out(d, "--network", "back", IMAGE, "sh", "-c",
                    "wget -qO- http://api/hostname; wget -qO- http://web/hostname")
    assert hosts.split() == [web.id[:12]] * 2
    front = run_out(d, "--network", "front", IMAGE, "wget", "-qO-", "http://web/hostname")
    assert front.strip() == web.id[:12]
    # The running container's own files name both addresses.
    with open(os.path.join(d.root, "containers", web.id, "hosts")) as f:
        lines = f.read().splitlines()
    assert [line.split("\t")[0] for line in lines[-2:]] == [
        eps["front"]["IPAddress"], eps["back"]["IPAddress"]]
    assert sorted(client.networks.get("back").attrs["Containers"]) == [web.id]

    with pytest.raises(docker_py.errors.APIError) as err:
        client.networks.get("back").connect(web)
    assert err.value.status_code == 403
    assert err.value.explanation == "endpoint with name web already exists in network back"

    client.networks.get("back").disconnect(web)
    web.reload()
    assert list(web.attrs["NetworkSettings"]["Networks"]) == ["front"]
    assert network_leftovers(d)["veth"] == before
    lookup = d.lp("run", "--rm", "--network", "back", IMAGE, "nslookup", "api")
    assert lookup.returncode != 0  # gone from the network's names
    with pytest.raises(docker_py.errors.APIError) as err:
        client.networks.get("back").disconnect(web)
    assert err.value.status_code == 400
    assert f"container {web.id} is not connected to network back" in err.value.explanation
    assert client.networks.get("back").attrs["Containers"] == {}


def test_connect_before_start_and_the_cli_commands(netd, nets):
    d = netd
    nets += ["one", "two"]
    for name in nets:
        d.ok("network", "create", name)
    res = docker(d, "create", "--name", "multi", "--network", "one", IMAGE, "sh", "-c",
                 "ip -o -4 addr show | grep -c eth; cat /etc/resolv.conf")
    assert res.returncode == 0, res.stderr
    res = docker(d, "network", "connect", "--alias", "second", "two", "multi")
    assert res.returncode == 0 and res.stdout == "", res.stderr
    assert docker(d, "network", "connect", "two", "multi").returncode == 0  # created: no-op
    out = d.ok("start", "-a", "multi").decode().splitlines()
    assert out[0] == "2"
    gateways = [store.load(d.root, n).gateway for n in nets]
    assert [line.split()[1] for line in out if line.startswith("nameserver")] == gateways
    assert list(networks(d, "multi")) == ["one", "two"]
    assert networks(d, "multi")["two"]["Aliases"] == ["second"]
    # logpipe's own commands: disconnect the first network; the second is NetworkMode now
    assert d.ok("network", "disconnect", "one", "multi") == b""
    assert list(networks(d, "multi")) == ["two"]
    assert d.inspect("multi", "{{.HostConfig.NetworkMode}}") == "two"
    res = d.lp("network", "disconnect", "-f", "one", "multi")
    assert res.returncode == 1 and b"is not connected to network one" in res.stderr
    d.ok("network", "connect", "--alias", "again", "one", "multi")
    assert list(networks(d, "multi")) == ["two", "one"]


def test_connect_refusals_in_dockers_words(netd, nets, busybox_tar):
    d = netd
    nets.append("side")
    d.ok("network", "create", "side")
    d.ok("run", "-d", "--name", "onhost", "--network", "host", IMAGE, "sleep", "60")
    d.ok("run", "-d", "--name", "alone", "--network", "none", IMAGE, "sleep", "60")
    cases = [
        (("nosuch", "onhost"), "network nosuch not found"),
        (("side", "nosuch"), "No such container: nosuch"),
        (("side", "onhost"), "container cannot be disconnected from host network or "
                             "connected to host network"),
        (("side", "alone"), "container cannot be connected to multiple networks with one of "
                            "the networks in private (none) mode"),
        (("--ip", "10.99.0.5", "side", "alone"), "user specified IP address is supported only "
                                                 "when connecting to networks with user "
                                                 "configured subnets"),
    ]
    for args, text in cases:
        res = docker(d, "network", "connect", *args)
        assert res.returncode != 0 and text in res.stderr, (args, res.stderr)
    res = docker(d, "network", "disconnect", "side", "alone")
    assert "container" in res.stderr and "is not connected to network side" in res.stderr
    # API < 1.44: one network at create.
    docker_py = pytest.importorskip("docker")
    api = docker_py.APIClient(base_url=d.host, version="1.41")
    with pytest.raises(docker_py.errors.APIError) as err:
        api.create_container(IMAGE, ["true"], networking_config={"EndpointsConfig": {
            "side": {}, "bridge": {}}}, host_config=api.create_host_config(
            network_mode="side"))
    assert err.value.status_code == 400
    assert err.value.explanation == ("Container cannot be connected to network endpoints: "
                                     "side, bridge")


def test_static_address_and_ip_range(netd, nets):
    d = netd
    nets.append("ranged")
    res = docker(d, "network", "create", "--subnet", "10.231.0.0/16", "--gateway",
                 "10.231.0.254", "--ip-range", "10.231.5.0/24", "--label", "tier=db", "ranged")
    assert res.returncode == 0, res.stderr
    net = json.loads(docker(d, "network", "inspect", "ranged").stdout)[0]
    assert net["IPAM"]["Config"] == [{"Subnet": "10.231.0.0/16", "Gateway": "10.231.0.254",
                                      "IPRange": "10.231.5.0/24"}]
    assert net["Labels"] == {"tier": "db"}
    d.ok("run", "-d", "--name", "r1", "--network", "ranged", IMAGE, "sleep", "60")
    assert networks(d, "r1")["ranged"]["IPAddress"] == "10.231.5.1"
    assert networks(d, "r1")["ranged"]["Gateway"] == "10.231.0.254"
    d.ok("run", "-d", "--name", "r2", IMAGE, "sleep", "60")
    res = docker(d, "network", "connect", "--ip", "10.231.0.7", "ranged", "r2")
    assert res.returncode == 0, res.stderr
    ep = networks(d, "r2")["ranged"]
    assert ep["IPAddress"] == "10.231.0.7" and ep["IPAMConfig"] == {"IPv4Address": "10.231.0.7"}
    assert "Address: 10.231.0.7\n" in run_out(d, "--network", "ranged", IMAGE, "nslookup", "r2")
    d.ok("run", "-d", "--name", "r3", IMAGE, "sleep", "60")
    res = docker(d, "network", "connect", "--ip", "10.231.0.7", "ranged", "r3")
    assert res.returncode != 0 and "Address already in use" in res.stderr
    assert list(networks(d, "r3")) == ["bridge"]


def test_internal_network_has_no_route_out_but_its_containers_meet(netd, nets):
    d = netd
    nets.append("sealed")
    d.ok("network", "create", "--internal", "sealed")
    assert json.loads(docker(d, "network", "inspect", "sealed").stdout)[0]["Internal"] is True
    cid = d.ok("run", "-d", "--name", "inner", "--network", "sealed", IMAGE,
               "httpd", "-f", "-p", "80", "-h", "/etc").decode().strip()
    out = run_out(d, "--network", "sealed", IMAGE, "sh", "-c",
                  "ip route; wget -qO- http://inner/hostname")
    assert "default" not in out and out.split()[-1] == cid[:12]
    routes = run_out(d, IMAGE, "ip", "route")  # the default bridge has one
    assert routes.startswith("default via " + store.load(d.root, "bridge").gateway)


def test_dns_flags_and_extra_hosts_as_docker_writes_them(netd, nets):
    d = netd
    nets.append("named")
    d.ok("network", "create", "named")
    gateway = store.load(d.root, "bridge").gateway
    flags = ["--dns", "192.0.2.53", "--dns-search", "example.com", "--dns-option", "ndots:2",
             "--add-host", "db:192.0.2.10", "--add-host", "hostgw:host-gateway",
             "--hostname", "box", "--domainname", "example.org"]
    out = run_out(d, *flags, IMAGE, "sh", "-c",
                  "cat /etc/resolv.conf; echo ---; cat /etc/hosts; echo ---; hostname")
    resolv, hosts, hostname = out.split("---\n")
    assert resolv == "search example.com\nnameserver 192.0.2.53\noptions ndots:2\n"
    lines = hosts.splitlines()
    assert lines[:2] == ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    assert lines[6:8] == ["192.0.2.10\tdb", f"{gateway}\thostgw"]
    assert lines[8].split("\t")[1] == "box.example.org box" and hostname.strip() == "box"
    # The docker CLI, on a user-defined network: aardvark-dns on the gateway, ndots:0 added.
    res = docker(d, "run", "--rm", "--network", "named", "--dns-search", "corp.test",
                 "--add-host", "db:192.0.2.10", IMAGE, "cat", "/etc/resolv.conf", "/etc/hosts")
    assert res.returncode == 0, res.stderr
    named_gw = store.load(d.root, "named").gateway
    assert res.stdout.startswith(f"search corp.test\nnameserver {named_gw}\noptions ndots:0\n")
    assert "192.0.2.10\tdb\n" in res.stdout
    # Without flags, on the default bridge: the host's file without loopback nameservers.
    plain = run_out(d, IMAGE, "cat", "/etc/resolv.conf")
    host = etcfiles.host_resolv_conf()
    assert "nameserver 127." not in plain
    for line in host.splitlines():
        if line.startswith("nameserver") and not line.split()[1].startswith("127."):
            assert line in plain
    # inspect's HostConfig, through the docker CLI's create
    res = docker(d, "create", "--name", "shown", *flags, IMAGE, "true")
    assert res.returncode == 0, res.stderr
    host_config = json.loads(d.inspect("shown", "{{json .HostConfig}}"))
    assert (host_config["Dns"], host_config["DnsSearch"], host_config["DnsOptions"]) == (
        ["192.0.2.53"], ["example.com"], ["ndots:2"])
    assert host_config["ExtraHosts"] == ["db:192.0.2.10", "hostgw:host-gateway"]
    assert d.inspect("shown", "{{.Config.Domainname}}") == "example.org"
    res = d.lp("run", "--rm", "--add-host", "bad:notanip", IMAGE, "true")
    assert res.returncode != 0 and b'invalid IP address in add-host: "notanip"' in res.stderr


def test_two_networks_survive_a_daemon_sigkill_and_rm_leaves_nothing(busybox_tar):
    d = _daemon(busybox_tar)
    try:
        before = network_leftovers(d)
        for name, subnet in (("ka", "10.241.0.0/24"), ("kb", "10.242.0.0/24")):
            d.ok("network", "create", "--subnet", subnet, name)  # no other daemon's
        d.ok("run", "-d", "--name", "both", "--network", "ka", IMAGE, "sleep", "300")
        d.ok("network", "connect", "kb", "both")
        addrs = {k: v["IPAddress"] for k, v in networks(d, "both").items()}
        subnets = [store.load(d.root, n).subnet for n in ("ka", "kb")]
        d.sigkill()
        d.start()
        assert {k: v["IPAddress"] for k, v in networks(d, "both").items()} == addrs
        assert d.inspect("both", "{{.State.Running}}") == "true"
        # a new container on either network does not take the kept addresses
        d.ok("run", "-d", "--name", "next", "--network", "kb", IMAGE, "sleep", "300")
        assert networks(d, "next")["kb"]["IPAddress"] != addrs["kb"]
        bridges = [store.load(d.root, n).interface for n in ("ka", "kb")]
        d.ok("rm", "-f", "both", "next")
        after = network_leftovers(d, *subnets)
        # veth: host-wide (other daemons' too); this daemon's are on its bridges, gone now
        assert {k: v for k, v in after.items() if k != "veth"} == {
            k: v for k, v in before.items() if k != "veth"}
        assert not any(os.path.exists(f"/sys/class/net/{b}") for b in bridges)
        for name in ("ka", "kb"):
            d.ok("network", "rm", name)
    finally:
        _close(d)
