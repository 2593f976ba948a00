"""``/etc/resolv.conf`` and ``/etc/hosts`` of a container, as Docker writes them, from a given
host resolv.conf (no daemon, no container: ``runtime.network.etcfiles`` alone)."""

from __future__ import annotations

import pytest

from runtime.network import etcfiles
from runtime.spec import ContainerSpec

pytestmark = pytest.mark.unit


def spec(**fields) -> ContainerSpec:
    base = ContainerSpec("c" * 64, "/box", "/nonexistent", "", "", "", "", (), ("true",), (), "",
                         "", "box", {}, "json-file", {}, network_mode="bridge")
    return base._replace(**fields)


@pytest.fixture
def host_conf(tmp_path, monkeypatch):
    path = tmp_path / "resolv.conf"
    monkeypatch.setattr(etcfiles, "HOST_RESOLV_CONF", str(path))
    monkeypatch.setattr(etcfiles, "RESOLVED_CONF", str(tmp_path / "absent"))
    return path


def test_loopback_nameservers_are_dropped_and_googles_added_when_none_is_left(host_conf):
    host_conf.write_text("# host\nnameserver 127.0.0.1\nsearch lan\nnameserver ::1\n")
    assert etcfiles.resolv_conf(spec(), {}) == (
        "# host\nsearch lan\n\nnameserver 8.8.8.8\nnameserver 8.8.4.4")
    host_conf.write_text("nameserver 127.0.0.53\nnameserver 192.0.2.1\noptions edns0\n")
    assert etcfiles.resolv_conf(spec(), {}) == "nameserver 192.0.2.1\noptions edns0\n"


def test_given_dns_fields_replace_the_hosts_one_by_one(host_conf):
    host_conf.write_text("nameserver 192.0.2.1\nsearch lan\noptions edns0\n")
    assert etcfiles.resolv_conf(spec(dns=("192.0.2.9",)), {}) == (
        "search lan\nnameserver 192.0.2.9\noptions edns0\n")
    assert etcfiles.resolv_conf(spec(dns_search=("a.test", "b.test")), {}) == (
        "search a.test b.test\nnameserver 192.0.2.1\noptions edns0\n")
    # a user-defined network: aardvark-dns, ndots:0 unless the user set ndots
    aardvark = {"n": {"DNS": ["10.89.0.1"], "IPAddress": "10.89.0.2"}}
    assert etcfiles.resolv_conf(spec(), aardvark) == (
        "search lan\nnameserver 10.89.0.1\noptions edns0 ndots:0\n")
    assert etcfiles.resolv_conf(spec(dns_options=("ndots:3",)), aardvark) == (
        "search lan\nnameserver 10.89.0.1\noptions ndots:3\n")
    assert etcfiles.resolv_conf(spec(network_mode="none"), {}) is None


def test_hosts_lists_extra_hosts_then_every_address_with_the_fqdn():
    records = {"a": {"IPAddress": "10.1.0.2"}, "b": {"IPAddress": "10.2.0.2"}}
    text = etcfiles.hosts(spec(extra_hosts=("db:192.0.2.10", "gw:host-gateway"),
                               domainname="example.org"), "box", records, "172.17.0.1")
    assert text.startswith(etcfiles.DEFAULT_HOSTS)
    assert text[len(etcfiles.DEFAULT_HOSTS):] == (
        "192.0.2.10\tdb\n172.17.0.1\tgw\n10.1.0.2\tbox.example.org box\n"
        "10.2.0.2\tbox.example.org box\n")
    assert etcfiles.hosts(spec(network_mode="none"), "box", {}, "").endswith("127.0.1.1\tbox\n")
