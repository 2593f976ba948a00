"""Networking on netavark: the default bridge, published ports (on 127.0.0.1 too),
``NetworkSettings``/``ps``/``port`` as Docker prints them, and teardown that leaves no veth,
namespace, firewall rule or address behind (rm, exit, failed start, daemon restart).

Traffic goes only to 127.0.0.1 and to the addresses of containers these tests start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from typing import Iterator

import pytest

from conftest import IMAGE, RUNC, RestartableDaemon, network_leftovers as leftovers, stop_daemon, \
    wait_until
from runtime.network import netavark, store

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    not RUNC or netavark.binary() is None or subprocess.run(
        ["which", "iptables-save"], capture_output=True).returncode != 0,
    reason="needs root, runc, busybox-static, netavark and iptables")]


@pytest.fixture
def net_daemon(busybox_tar) -> Iterator[RestartableDaemon]:
    """A runc daemon whose endpoints are all torn down afterwards, even when a test killed
    the daemon and left containers behind."""
    d = RestartableDaemon("runc")
    try:
        d.start()
        d.ok("import", busybox_tar, IMAGE)
        yield d
    finally:
        if d.current is not None and d.current.proc.poll() is None:
            stop_daemon(d.current)  # removes its containers: their endpoints go with them
        d.current = None
        d.close()  # runc state, overlays and endpoints of a killed daemon's containers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 10.0) -> bytes:
    """The body of ``url``, retried until the server in the container listens."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def httpd(d: RestartableDaemon, name: str, *flags: str) -> str:
    """A busybox web server serving the container's /etc (its hostname file: its id)."""
    return d.ok("run", "-d", "--name", name, *flags, IMAGE,
                "httpd", "-f", "-vv", "-p", "80", "-h", "/etc").decode().strip()


def settings(d: RestartableDaemon, name: str) -> dict:
    return json.loads(d.inspect(name, "{{json .NetworkSettings}}"))


def test_default_bridge_gives_an_address_and_publishes_on_loopback(net_daemon):
    d = net_daemon
    port = free_port()
    cid = httpd(d, "web", "-p", f"{port}:80")
    ns = settings(d, "web")
    net = store.load(d.root, "bridge")
    assert d.inspect("web", "{{.HostConfig.NetworkMode}}") == "bridge"
    ip = ns["IPAddress"]
    assert ns["Networks"]["bridge"]["IPAddress"] == ip
    assert ns["Gateway"] == net.gateway == ns["Networks"]["bridge"]["Gateway"]
    assert ns["Networks"]["bridge"]["NetworkID"] == net.id
    assert ns["IPPrefixLen"] == 16 and len(ns["MacAddress"].split(":")) == 6
    assert ns["Networks"]["bridge"]["EndpointID"] == ns["EndpointID"] != ""
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    # Through the published port on loopback, and straight to the container's address.
    assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == cid[:12].encode()
    assert http_get(f"http://{ip}:80/hostname").strip() == cid[:12].encode()
    # The log pipeline sees the web server's access log (-vv) of those requests.
    wait_until(lambda: b"/hostname" in d.lp("logs", "web").stdout + d.lp("logs", "web").stderr)
    # ps's PORTS column, logpipe port and the docker CLI's port (it reads inspect).
    assert f"0.0.0.0:{port}->80/tcp" in d.ok("ps").decode()
    assert d.ok("port", "web").decode() == f"80/tcp -> 0.0.0.0:{port}\n"
    assert d.ok("port", "web", "80").decode() == f"0.0.0.0:{port}\n"
    docker = subprocess.run(["docker", "-H", d.host, "port", "web"], capture_output=True,
                            text=True, timeout=30)
    assert f"80/tcp -> 0.0.0.0:{port}" in docker.stdout, docker.stderr
    # A second container gets the next address.
    d.ok("run", "-d", "--name", "second", IMAGE, "sleep", "30")
    assert settings(d, "second")["IPAddress"] not in ("", ip)


def test_default_subnet_avoids_host_routes_and_bip_sets_it(net_daemon, busybox_tar):
    net = store.load(net_daemon.root, "bridge")
    import ipaddress
    routes = store.host_routes(exclude_iface=net.interface)
    assert not any(ipaddress.ip_network(net.subnet).overlaps(r) for r in routes)
    stop_daemon(net_daemon.current)
    net_daemon.current = None
    other = store.free_subnet()  # not the one above if its bridge is up; any free one
    gw = str(next(other.hosts()))
    net_daemon.config["bip"] = f"{gw}/24"
    net_daemon.start()
    d = net_daemon
    d.ok("run", "-d", "--name", "bip1", IMAGE, "sleep", "30")
    ns = settings(d, "bip1")
    assert ns["Gateway"] == gw and ns["IPPrefixLen"] == 24
    assert ipaddress.ip_address(ns["IPAddress"]) in ipaddress.ip_network(f"{gw}/24", strict=False)


def test_none_and_host_modes_have_no_endpoint(net_daemon):
    d = net_daemon
    for mode in ("none", "host"):
        d.ok("run", "-d", "--name", f"{mode}net", "--network", mode, IMAGE, "sleep", "30")
        ns = settings(d, f"{mode}net")
        assert ns["IPAddress"] == "" and list(ns["Networks"]) == [mode]
    assert leftovers(d)["endpoints"] == [] and leftovers(d)["netns"] == []


def test_rm_exit_and_failed_start_leave_no_veth_namespace_or_rule(net_daemon):
    d = net_daemon
    before = leftovers(d)
    port = free_port()
    httpd(d, "web", "-p", f"{port}:80")
    ip = settings(d, "web")["IPAddress"]
    during = leftovers(d, ip, f"--dport {port} ")
    assert len(during["veth"]) == len(before["veth"]) + 1
    assert len(during["mounts"]) == 1 and len(during["netns"]) == 1
    assert during["rules"], "netavark's DNAT rule for the published port"
    d.ok("rm", "-f", "web")
    assert leftovers(d, ip, f"--dport {port} ") == before
    # A container that exits on its own releases its endpoint too.
    d.ok("run", "--name", "short", "-p", f"{port}:80", IMAGE, "true")
    assert d.inspect("short", "{{.State.Status}}") == "exited"
    assert leftovers(d, ip, f"--dport {port} ") == before
    assert settings(d, "short")["IPAddress"] == ""
    # A start that fails (no such command) leaves nothing either.
    res = d.lp("run", "-d", "--name", "bad", "-p", f"{port}:80", IMAGE, "/no/such/command")
    assert res.returncode != 0
    assert leftovers(d, ip, f"--dport {port} ") == before


def test_port_already_allocated_is_refused_with_nothing_left(net_daemon):
    d = net_daemon
    port = free_port()
    httpd(d, "web", "-p", f"{port}:80")
    before = leftovers(d)
    res = d.lp("run", "-d", "--name", "web2", "-p", f"{port}:80", IMAGE, "sleep", "30")
    assert res.returncode != 0
    assert (f"Bind for 0.0.0.0:{port} failed: port is already allocated"
            in res.stderr.decode()), res.stderr
    assert leftovers(d) == before
    # A host process on the port is refused the same way.
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        busy = s.getsockname()[1]
        res = d.lp("run", "-d", "-p", f"{busy}:80", IMAGE, "sleep", "30")
        assert f"Bind for 0.0.0.0:{busy} failed: port is already allocated" in res.stderr.decode()
    assert leftovers(d) == before
    # The first one still serves.
    assert http_get(f"http://127.0.0.1:{port}/hostname")


def test_publish_forms_random_ip_udp_and_publish_all(net_daemon):
    d = net_daemon
    port = free_port()
    httpd(d, "web", "-p", "80", "-p", f"127.0.0.1:{port}:80", "-p", "53/udp",
          "--expose", "8080")
    ports = settings(d, "web")["Ports"]
    random_port = next(h["HostPort"] for h in ports["80/tcp"] if h["HostIp"] == "0.0.0.0")
    assert {"HostIp": "127.0.0.1", "HostPort": str(port)} in ports["80/tcp"]
    assert ports["53/udp"][0]["HostPort"].isdigit() and ports["8080/tcp"] is None
    assert http_get(f"http://127.0.0.1:{random_port}/hostname")
    assert http_get(f"http://127.0.0.1:{port}/hostname")
    ps = d.ok("ps", "--format", "{{.Ports}}").decode()
    assert f"127.0.0.1:{port}->80/tcp" in ps and "8080/tcp" in ps and "/udp" in ps
    # /udp: netavark's DNAT rule for the datagrams (busybox has no UDP server to ask).
    udp_port = ports["53/udp"][0]["HostPort"]
    assert leftovers(d, f"-p udp -m udp --dport {udp_port} ")["rules"]
    # -P: every exposed port (here --expose, as an image's EXPOSE) on a random host port.
    httpd(d, "all", "-P", "--expose", "80", "--expose", "7/udp")
    ports = settings(d, "all")["Ports"]
    assert set(ports) == {"80/tcp", "7/udp"}
    assert http_get(f"http://127.0.0.1:{ports['80/tcp'][0]['HostPort']}/hostname")


def test_bad_publish_is_refused_at_create(net_daemon):
    d = net_daemon
    for bad in ("abc", "1:2:3:4", "70000:80", "8080:80/xyz"):
        res = d.lp("create", "-p", bad, IMAGE, "true")
        assert res.returncode != 0 and b"Traceback" not in res.stderr, (bad, res.stderr)


def test_running_container_keeps_address_and_ports_across_daemon_sigkill(net_daemon):
    d = net_daemon
    port = free_port()
    cid = httpd(d, "web", "-p", f"{port}:80")
    ip = settings(d, "web")["IPAddress"]
    d.sigkill()
    assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == cid[:12].encode()
    d.start()
    ns = settings(d, "web")
    assert ns["IPAddress"] == ip and ns["Ports"]["80/tcp"][0]["HostPort"] == str(port)
    assert http_get(f"http://{ip}/hostname").strip() == cid[:12].encode()
    # A new container does not take the address of the one that kept running.
    d.ok("run", "-d", "--name", "other", IMAGE, "sleep", "30")
    assert settings(d, "other")["IPAddress"] != ip


def test_daemon_restart_tears_down_a_container_that_died_meanwhile(net_daemon):
    d = net_daemon
    before = leftovers(d)
    port = free_port()
    httpd(d, "web", "-p", f"{port}:80")
    ip = settings(d, "web")["IPAddress"]
    cdir = os.path.join(d.root, "containers", d.container_dirs()[0])
    with open(os.path.join(cdir, "state.json")) as f:
        st = json.load(f)
    d.sigkill()
    os.kill(st["ShimPid"], signal.SIGKILL)  # the shim dies without cleaning up
    wait_until(lambda: not os.path.exists(f"/proc/{st['ShimPid']}"))
    assert leftovers(d, ip)["endpoints"]
    d.start()
    assert d.inspect("web", "{{.State.Running}}") == "false"
    assert leftovers(d, ip, f"--dport {port} ") == before


def docker(d: RestartableDaemon, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "-H", d.host, *args], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def user_nets(net_daemon) -> Iterator[list[str]]:
    """Names of the networks a test creates: removed afterwards, containers first."""
    names: list[str] = []
    yield names
    for name in names:
        if net_daemon.current is not None and net_daemon.current.proc.poll() is None:
            docker(net_daemon, "network", "rm", name)


def test_user_network_names_and_aliases_resolve_and_rm_cleans_up(net_daemon, user_nets):
    d = net_daemon
    before = leftovers(d)
    user_nets.append("proj_default")
    # docker-compose 1.29's first two calls: the network is looked up, then created.
    assert "not found" in docker(d, "network", "inspect", "proj_default").stderr
    res = docker(d, "network", "create", "--label", "com.docker.compose.project=proj",
                 "proj_default")
    assert res.returncode == 0, res.stderr
    net = json.loads(docker(d, "network", "inspect", "proj_default").stdout)[0]
    assert net["Driver"] == "bridge" and net["Labels"] == {"com.docker.compose.project": "proj"}
    subnet = net["IPAM"]["Config"][0]["Subnet"]
    assert subnet != store.load(d.root, "bridge").subnet
    ls = docker(d, "network", "ls", "--filter", "label=com.docker.compose.project=proj",
                "--format", "{{.Name}}")
    assert ls.stdout.split() == ["proj_default"]
    assert docker(d, "network", "create", "proj_default").returncode != 0  # exists
    res = docker(d, "run", "-d", "--network", "proj_default", "--network-alias", "www",
                 "--name", "web", IMAGE, "httpd", "-f", "-p", "80", "-h", "/etc")
    assert res.returncode == 0, res.stderr
    cid = res.stdout.strip()
    out = docker(d, "run", "--rm", "--network", "proj_default", IMAGE, "sh", "-c",
                 "wget -qO- http://web/hostname && wget -qO- http://www/hostname")
    assert out.stdout.split() == [cid[:12], cid[:12]], out.stderr
    inspect = json.loads(docker(d, "network", "inspect", "proj_default").stdout)[0]
    assert list(inspect["Containers"]) == [cid]
    ns = settings(d, "web")
    assert list(ns["Networks"]) == ["proj_default"] and "www" in ns["Networks"][
        "proj_default"]["Aliases"]
    res = docker(d, "network", "rm", "proj_default")
    assert res.returncode != 0 and "has active endpoints" in res.stderr
    d.ok("rm", "-f", "web")
    assert docker(d, "network", "rm", "proj_default").returncode == 0
    assert leftovers(d, subnet) == before
    assert docker(d, "network", "inspect", "proj_default").returncode != 0
    assert "not found" in d.lp("run", "--network", "proj_default", IMAGE, "true").stderr.decode()


def test_network_prune_and_predefined_networks(net_daemon, user_nets):
    d = net_daemon
    user_nets += ["keep1", "gone1"]
    assert docker(d, "network", "create", "--label", "keep=yes", "keep1").returncode == 0
    assert docker(d, "network", "create", "--subnet", "10.213.0.0/24", "gone1").returncode == 0
    gone = json.loads(docker(d, "network", "inspect", "gone1").stdout)[0]
    assert gone["IPAM"]["Config"] == [{"Subnet": "10.213.0.0/24", "Gateway": "10.213.0.1"}]
    res = docker(d, "network", "prune", "-f", "--filter", "label!=keep=yes")
    names = docker(d, "network", "ls", "--format", "{{.Name}}").stdout.split()
    assert sorted(names) == ["bridge", "host", "keep1", "none"], (names, res.stderr)
    assert "pre-defined" in docker(d, "network", "rm", "bridge").stderr
    assert docker(d, "network", "create", "host").returncode != 0


COMPOSE_FILE = """\
version: "3.7"
services:
  web:
    image: busybox:latest
    command: sh -c "echo stored > /data/v; exec httpd -f -vv -p 80 -h /etc"
    ports:
      - "{port}:80"
    volumes:
      - data:/data
    logging:
      driver: json-file
      options:
        max-size: "1m"
  client:
    image: busybox:latest
    command: sh -c "until wget -qO- http://web/hostname; do sleep 0.1; done; sleep 60"
volumes:
  data: {{}}
"""


@pytest.mark.skipif(subprocess.run(["which", "docker-compose"], capture_output=True)
                    .returncode != 0, reason="needs docker-compose (apt-get install docker-compose)")
def test_docker_compose_project_on_its_default_network(net_daemon, tmp_path):
    d = net_daemon
    before = leftovers(d)
    port = free_port()
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE.format(port=port))
    env = dict(os.environ, DOCKER_HOST=d.host, COMPOSE_INTERACTIVE_NO_CLI="1")

    def compose(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["docker-compose", "-p", "lpnet", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    try:
        res = compose("up", "-d")
        assert res.returncode == 0, res.stderr
        web_id = d.inspect("lpnet_web_1", "{{.Id}}")
        # The client reached the web server by its service name on lpnet_default...
        wait_until(lambda: web_id[:12] in d.lp("logs", "lpnet_client_1").stdout.decode(),
                   what="the client's fetch by service name")
        # ...the host reaches it on the published port, and its access log is in logs.
        assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == web_id[:12].encode()
        wait_until(lambda: "/hostname" in compose("logs", "--tail", "20", "web").stdout,
                   what="httpd's access log through compose logs")
        ps = compose("ps").stdout
        assert f"0.0.0.0:{port}->80/tcp" in ps and "Up" in ps
        assert d.inspect("lpnet_web_1", "{{.HostConfig.LogConfig.Config}}") == "map[max-size:1m]"
        assert "httpd -f -vv" in compose("top", "web").stdout
        # exec (docker-py's, as COMPOSE_INTERACTIVE_NO_CLI asks) sees the named volume.
        res = compose("exec", "-T", "web", "cat", "/data/v")
        assert (res.returncode, res.stdout) == (0, "stored\n"), res.stderr
        assert compose("stop", "-t", "1").returncode == 0
        assert "Exit" in compose("ps", "web").stdout
        # logs -f of stopped services ends at once, with the tail asked for.
        res = compose("logs", "-f", "--tail", "5", "web")
        assert res.returncode == 0 and "/hostname" in res.stdout, res.stderr
        assert compose("start").returncode == 0
        # The published port again, after the restart (http_get retries until it listens).
        assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == web_id[:12].encode()
    finally:
        res = compose("down", "-v", "-t", "1")
    assert res.returncode == 0, res.stderr
    assert docker(d, "network", "inspect", "lpnet_default").returncode != 0
    assert docker(d, "volume", "inspect", "lpnet_data").returncode != 0
    assert leftovers(d, f"--dport {port} ") == before


def test_network_container_mode_shares_the_other_containers_namespace(net_daemon):
    d = net_daemon
    cid = httpd(d, "web")
    res = d.lp("run", "--network", "container:web", IMAGE, "wget", "-qO-",
               "http://127.0.0.1/hostname")
    assert res.stdout.decode().strip() == cid[:12], res.stderr
    res = d.lp("run", "--network", "container:nosuch", IMAGE, "true")
    assert "No such container: nosuch" in res.stderr.decode()
    d.ok("create", "--name", "idle", IMAGE, "true")
    res = d.lp("run", "-d", "--network", "container:idle", IMAGE, "true")
    assert "cannot join network of a non running container" in res.stderr.decode()
    # Nothing of its own to tear down: web's endpoint is the only one.
    assert len(leftovers(d)["endpoints"]) == 1


def test_two_daemons_never_share_a_subnet(net_daemon, busybox_tar):
    """Both daemons pick the same free subnet while neither has a bridge up; the second to
    start a container moves to another one (its bridge does not exist yet)."""
    import ipaddress
    a = net_daemon
    b = RestartableDaemon("runc")
    try:
        b.start()
        b.ok("import", busybox_tar, IMAGE)
        assert store.load(a.root, "bridge").subnet == store.load(b.root, "bridge").subnet
        a.ok("run", "-d", "--name", "ina", IMAGE, "sleep", "30")
        b.ok("run", "-d", "--name", "inb", IMAGE, "sleep", "30")
        ip_a, ip_b = settings(a, "ina")["IPAddress"], settings(b, "inb")["IPAddress"]
        net_a = ipaddress.ip_network(store.load(a.root, "bridge").subnet)
        net_b = ipaddress.ip_network(store.load(b.root, "bridge").subnet)
        assert not net_a.overlaps(net_b)
        assert ipaddress.ip_address(ip_a) in net_a and ipaddress.ip_address(ip_b) in net_b
    finally:
        b.close()


def test_publish_all_publishes_the_images_expose(net_daemon, busybox_tar, tmp_path):
    """``-P`` with an image whose config says ``EXPOSE 80`` (a ``docker save`` archive)."""
    import tarfile
    from conftest import add, diff_id
    with open(busybox_tar, "rb") as f:
        layer = f.read()
    config = json.dumps({"created": "2024-01-02T03:04:05Z", "config": {
        "Cmd": ["httpd", "-f", "-p", "80", "-h", "/etc"], "ExposedPorts": {"80/tcp": {}}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id(layer)]}}).encode()
    archive = str(tmp_path / "web.tar")
    with tarfile.open(archive, "w") as tar:
        add(tar, "l0")
        add(tar, "l0/layer.tar", layer)
        add(tar, "cfg.json", config)
        add(tar, "manifest.json", json.dumps([{"Config": "cfg.json", "RepoTags": ["web:1"],
                                               "Layers": ["l0/layer.tar"]}]).encode())
    net_daemon.ok("load", "-i", archive)
    cid = net_daemon.ok("run", "-d", "--name", "exposed", "-P", "web:1").decode().strip()
    ports = settings(net_daemon, "exposed")["Ports"]
    assert list(ports) == ["80/tcp"]
    host_port = ports["80/tcp"][0]["HostPort"]
    assert http_get(f"http://127.0.0.1:{host_port}/hostname").strip() == cid[:12].encode()


def test_docker_py_ports_and_networks(net_daemon):
    docker_py = pytest.importorskip("docker")
    d = net_daemon
    client = docker_py.DockerClient(base_url=d.host, version="auto", timeout=60)
    port = free_port()
    net = client.networks.create("pynet", driver="bridge", labels={"by": "docker-py"})
    try:
        assert [n.name for n in client.networks.list(names=["pynet"])] == ["pynet"]
        assert client.networks.get("pynet").attrs["Labels"] == {"by": "docker-py"}
        web = client.containers.run(IMAGE, ["httpd", "-f", "-p", "80", "-h", "/etc"],
                                    name="pyweb", detach=True, ports={"80/tcp": port},
                                    network="pynet")
        web.reload()
        assert web.ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
        assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == web.id[:12].encode()
        assert [c.name for c in client.networks.get("pynet").containers] == ["pyweb"]
        web.remove(force=True)
    finally:
        net.remove()
    assert client.networks.list(names=["pynet"]) == []


def test_logpipe_network_commands(net_daemon):
    d = net_daemon
    nid = d.ok("network", "create", "--label", "team=a", "--subnet", "10.214.0.0/24",
               "clinet").decode().strip()
    try:
        assert len(nid) == 64
        ls = d.ok("network", "ls").decode().splitlines()
        assert ls[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
        assert any(line.split()[:3] == [nid[:12], "clinet", "bridge"] for line in ls[1:])
        assert d.ok("network", "ls", "-q", "--filter", "label=team=a").decode() == nid[:12] + "\n"
        assert d.ok("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
                    "clinet").decode() == "10.214.0.0/24\n"
        res = d.lp("network", "inspect", "nosuch")
        assert res.returncode == 1 and b"network nosuch not found" in res.stderr
    finally:
        assert d.ok("network", "rm", "clinet").decode() == "clinet\n"
    d.ok("network", "create", "prunable")
    assert d.ok("network", "prune", "-f").decode() == "Deleted Networks:\nprunable\n"
