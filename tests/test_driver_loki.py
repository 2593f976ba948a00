"""The loki driver against ``FakeLoki`` (Grafana Loki is a Go binary that no package registry
reachable here ships; the fake decodes the real push API): labels, streams, ordering,
tenants, credentials, answers, TLS, and the options' validation."""

from __future__ import annotations

import base64
import gzip
import json
import os
import socket

import pytest

from drivers.loki import LokiDriver, redact_url
from logpipe.driver import BatchLimits, LogInfo
from logpipe.errors import LogOptError, PermanentError, RetryableError
from logpipe.message import Message, PartialMeta
from logpipe.registry import load_driver
from receivers.loki import FakeLoki, server_context

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_123_456_789
SECRET = "s3cr/et pass"  # percent-encoded in URLs below
SECRET_URL = "s3cr%2Fet%20pass"


@pytest.fixture
def loki():
    with FakeLoki() as fake:
        yield fake


@pytest.fixture
def drivers():
    """Build drivers that are closed after the test, even if it fails."""
    made: list[LokiDriver] = []

    def make(url: str, **opts: str) -> LokiDriver:
        info = container_info(url, **opts)
        LokiDriver.validate(info.config, info)
        driver = LokiDriver(info)
        made.append(driver)
        return driver

    yield make
    for d in made:
        d.close()


def container_info(url: str | None, container_labels=None, container_env=(),
                   **opts: str) -> LogInfo:
    """A container's info with log opts (``loki_url`` stands for ``loki-url``)."""
    config = {k.replace("_", "-"): v for k, v in opts.items()}
    if url is not None:
        config["loki-url"] = url
    return LogInfo("4f1c2d3e5a6b" + "0" * 52, "/nonexistent", config=config,
                   container_name="/web-1", image_name="nginx:1.25",
                   labels=container_labels or {}, env=tuple(container_env), hostname="node7")


def out(line: bytes, ts: int = T0, source: str = "stdout") -> Message:
    return Message(line, source, ts)


# -- labels and streams ----------------------------------------------------------------


def test_default_labels_are_container_name_host_and_source_without_filename(loki, drivers):
    drivers(loki.url).send([out(b"hello")])
    [entry] = loki.wait_for(1)
    assert entry.labels == {"container_name": "web-1", "host": "node7", "source": "stdout"}


def test_compose_and_swarm_container_labels_become_stream_labels(loki, drivers):
    labels = {"com.docker.compose.project": "shop", "com.docker.compose.service": "db",
              "com.docker.swarm.service.name": "shop_db", "com.docker.stack.namespace": "shop",
              "unrelated": "x"}
    d = drivers(loki.url, container_labels=labels)
    d.send([out(b"hello")])
    [entry] = loki.wait_for(1)
    assert entry.labels == {"container_name": "web-1", "host": "node7", "source": "stdout",
                            "compose_project": "shop", "compose_service": "db",
                            "swarm_service": "shop_db", "swarm_stack": "shop"}


def test_external_labels_replace_the_default_and_expand_tag_templates(loki, drivers):
    d = drivers(loki.url, loki_external_labels="job=docker,image={{.ImageName}},id={{.ID}}")
    d.send([out(b"hello")])
    [entry] = loki.wait_for(1)
    # As in Grafana's plugin, container_name is only the default of loki-external-labels.
    assert entry.labels == {"job": "docker", "image": "nginx:1.25", "id": "4f1c2d3e5a6b",
                            "host": "node7", "source": "stdout"}


def test_labels_and_env_options_add_labels_with_dots_and_dashes_mangled(loki, drivers):
    d = drivers(loki.url, container_labels={"com.example.team-name": "core", "tier": "web"},
                container_env=["APP-MODE=prod", "SECRET=x"],
                **{"labels": "com.example.team-name", "env-regex": "^APP"})
    d.send([out(b"hello")])
    [entry] = loki.wait_for(1)
    assert entry.labels["com_example_team_name"] == "core"
    assert entry.labels["APP_MODE"] == "prod"
    assert "tier" not in entry.labels and "SECRET" not in entry.labels


def test_host_label_wins_over_a_container_label_of_the_same_name(loki, drivers):
    d = drivers(loki.url, container_labels={"host": "spoofed"}, **{"labels": "host"})
    d.send([out(b"hello")])
    assert loki.wait_for(1)[0].labels["host"] == "node7"


def test_stdout_and_stderr_are_two_streams_of_one_push(loki, drivers):
    d = drivers(loki.url)
    d.send([out(b"o1", T0), out(b"e1", T0 + 1, "stderr"), out(b"o2", T0 + 2),
            out(b"e2", T0 + 3, "stderr")])
    loki.wait_for(4)
    [push] = loki.pushes
    assert push.streams == 2
    body = json.loads(push.body)
    assert [(s["stream"]["source"], s["values"]) for s in body["streams"]] == [
        ("stderr", [[str(T0 + 1), "e1"], [str(T0 + 3), "e2"]]),
        ("stdout", [[str(T0), "o1"], [str(T0 + 2), "o2"]]),
    ]


def test_push_body_is_loki_json_with_record_timestamps_in_ns_as_strings(loki, drivers):
    drivers(loki.url).send([out(b'say "hi" <&>\tok', T0)])
    loki.wait_for(1)
    push = loki.pushes[0]
    assert push.content_type == "application/json"
    assert push.content_encoding == ""
    assert push.body == (b'{"streams":[{"stream":{"container_name":"web-1","host":"node7",'
                         b'"source":"stdout"},"values":[["1700000000123456789",'
                         b'"say \\"hi\\" <&>\\tok"]]}]}')


def test_invalid_utf8_is_replaced_and_whitespace_only_lines_are_dropped(loki, drivers):
    d = drivers(loki.url)
    d.send([out(b"bad \xff\xfe end"), out(b""), out(b" \t "), out("\u00a0\u3000".encode()),
            out(b"\xc3\xa9t\xc3\xa9"), out(b"  kept  ")])
    assert loki.wait_for(3) and loki.lines() == ["bad \ufffd\ufffd end", "été", "  kept  "]


def test_a_batch_of_only_whitespace_lines_sends_nothing(loki, drivers):
    assert drivers(loki.url).send([out(b""), out(b"   ")]) is None
    assert loki.pushes == []


def test_lines_sharing_a_timestamp_all_arrive_in_order(loki, drivers):
    """logpipe stamps every line of one read() alike; Loki would keep one of equal lines."""
    d = drivers(loki.url)
    d.send([out(b"tick", T0), out(b"tick", T0), out(b"tock", T0), out(b"late", T0 - 50)])
    d.send([out(b"tick", T0)])  # the same read() continued in the next batch
    loki.wait_for(5)
    [(labels, values)] = loki.streams().items()
    assert values == [(T0, "tick"), (T0 + 1, "tick"), (T0 + 2, "tock"), (T0 + 3, "late"),
                      (T0 + 4, "tick")]


def test_older_entries_than_the_stream_holds_are_permanent_error_on_ordered_loki(loki, drivers):
    drivers(loki.url).send([out(b"new", T0)])
    loki.wait_for(1)
    other = drivers(loki.url)  # a new driver knows nothing of what was sent before
    with pytest.raises(PermanentError) as err:
        other.send([out(b"old", T0 - 10**9), out(b"newer", T0 + 1)])
    assert "HTTP status 400 Bad Request (400): entry with timestamp 2023-11-14 22:13:19." \
           "123456789 +0000 UTC ignored, reason: 'entry out of order'" in str(err.value)
    assert "total ignored: 1 out of 2" in str(err.value)
    assert loki.lines() == ["new", "newer"]  # Loki keeps the rest of the push


def test_unordered_loki_takes_older_entries(drivers):
    with FakeLoki(ordered=False) as fake:
        drivers(fake.url).send([out(b"new", T0)])
        drivers(fake.url).send([out(b"old", T0 - 10**9)])
        assert [e.line for e in fake.wait_for(2)] == ["new", "old"]


def test_pieces_of_a_long_line_are_entries_of_their_own(loki, drivers):
    d = drivers(loki.url)
    d.send([Message(b"a" * 16384, "stdout", T0, False, PartialMeta("p", 1, False)),
            Message(b"b" * 10, "stdout", T0, True, PartialMeta("p", 2, True))])
    assert loki.wait_for(2) and loki.lines() == ["a" * 16384, "b" * 10]


# -- headers and credentials ---------------------------------------------------------------


def test_tenant_id_is_sent_as_x_scope_orgid(loki, drivers):
    drivers(loki.url, loki_tenant_id="team-a").send([out(b"a")])
    drivers(loki.url).send([out(b"b")])
    loki.wait_for(2)
    assert [p.tenant for p in loki.pushes] == ["team-a", ""]
    assert [v for vs in loki.streams("team-a").values() for v in vs] == [(T0, "a")]


def test_url_userinfo_becomes_basic_auth_and_never_appears_in_errors(loki, drivers):
    d = drivers(loki.url_with_auth("tenant42", SECRET_URL))
    d.send([out(b"a")])
    loki.wait_for(1)
    expected = "Basic " + base64.b64encode(f"tenant42:{SECRET}".encode()).decode()
    assert loki.pushes[0].authorization == expected
    loki.fail(500, 1)
    with pytest.raises(RetryableError) as answered:
        d.send([out(b"b")])
    loki.stop()
    with pytest.raises(RetryableError) as refused:
        d.send([out(b"b")])
    for text in (str(answered.value), str(refused.value), repr(d)):
        assert f"http://***@127.0.0.1:{loki.port}/loki/api/v1/push" in text
        assert "tenant42" not in text and "s3cr" not in text
    assert "ConnectionRefusedError" in str(refused.value)


def test_options_shown_by_inspect_hide_the_url_credentials():
    opts = {"loki-url": "https://42:glc_tok@logs.example/loki/api/v1/push", "loki-retries": "3"}
    assert LokiDriver.redacted_opts(opts) == {
        "loki-url": "https://***@logs.example/loki/api/v1/push", "loki-retries": "3"}


def test_invalid_url_error_hides_credentials():
    info = container_info("http://user:hunter2@host:notaport/loki/api/v1/push")
    with pytest.raises(LogOptError) as err:
        LokiDriver.validate(info.config, info)
    assert "hunter2" not in str(err.value) and "user" not in str(err.value)
    assert str(err.value).startswith('loki: option loki-url is invalid "http://***@host:notaport')


@pytest.mark.parametrize("url, shown", [
    ("https://u:p@h/x", "https://***@h/x"),
    ("http://u:p/w?#d@h:1/x", "http://***@h:1/x"),
    ("http://h/x?q=a@b", "http://***@b"),  # over-redacted rather than a secret shown
    ("u:p@h", "***@h"),
    ("http://h/x", "http://h/x"),
])
def test_redact_url_hides_userinfo_even_in_broken_urls(url, shown):
    assert redact_url(url) == shown


def test_gzip_compression_on_request(loki, drivers):
    drivers(loki.url, loki_compress="true").send([out(b"zipped " * 100)])
    assert loki.wait_for(1)[0].line == "zipped " * 100
    assert loki.pushes[0].content_encoding == "gzip"


def test_fake_loki_decodes_gzip_bodies_byte_for_byte(loki):
    """The receiver side of Content-Encoding, checked with a body built by hand."""
    import http.client

    body = gzip.compress(b'{"streams":[{"stream":{"job":"x"},"values":[["5","l\\u00e9"]]}]}')
    conn = http.client.HTTPConnection("127.0.0.1", loki.port, timeout=5)
    conn.request("POST", "/loki/api/v1/push", body,
                 {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert conn.getresponse().status == 204
    conn.close()
    assert loki.wait_for(1) == [("", {"job": "x"}, 5, "lé")]


@pytest.mark.parametrize("body, ctype, error", [
    (b'{"streams":[{"stream":{"job":"x"},"values":[[5,"line"]]}]}', "application/json",
     "entry must be"),
    (b'{"streams":[{"stream":{"job":"x"},"values":[["5.0","line"]]}]}', "application/json",
     'strconv.ParseInt: parsing "5.0"'),
    (b'{"streams":[{"stream":{},"values":[["5","line"]]}]}', "application/json",
     "at least one label pair is required per stream"),
    (b'{"streams":[{"stream":{"a.b":"x"},"values":[["5","line"]]}]}', "application/json",
     "error parsing labels"),
    (b'{"streams":[{"stream":{"job":"x"},"values":[["5","line"]]}]}', "text/plain",
     "unsupported Content-Type"),
])
def test_fake_loki_refuses_what_loki_refuses(loki, body, ctype, error):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", loki.port, timeout=5)
    conn.request("POST", "/loki/api/v1/push", body, {"Content-Type": ctype})
    resp = conn.getresponse()
    assert (resp.status, error in resp.read().decode()) == (400, True)
    conn.close()
    assert loki.entries == []


# -- answers, outages, retries ---------------------------------------------------------------


@pytest.mark.parametrize("status, reason", [(429, "Too Many Requests"),
                                            (500, "Internal Server Error"),
                                            (503, "Service Unavailable")])
def test_throttling_and_server_errors_are_retryable_then_the_batch_arrives_once(
        loki, drivers, status, reason):
    d = drivers(loki.url)
    batch = [out(b"one", T0), out(b"one", T0), out(b"two", T0 + 5)]
    loki.fail(status, times=2)
    for _ in range(2):
        with pytest.raises(RetryableError) as err:
            d.send(batch)
        assert f"server returned HTTP status {status} {reason} ({status})" in str(err.value)
    d.send(batch)
    assert loki.wait_for(3) and loki.lines() == ["one", "one", "two"]
    assert [p.status for p in loki.pushes] == [status, status, 204]
    assert loki.pushes[0].body == loki.pushes[2].body  # the retry is the same request


def test_rate_limit_error_carries_lokis_text(loki, drivers):
    loki.fail(429, times=1)
    with pytest.raises(RetryableError, match="Ingestion rate limit exceeded for user fake"):
        drivers(loki.url).send([out(b"a")])


def test_bad_request_is_permanent_and_carries_lokis_text_truncated(loki, drivers):
    loki.fail(400, times=1, text="line too long\n" + "x" * 3000)
    with pytest.raises(PermanentError) as err:
        drivers(loki.url).send([out(b"a")])
    text = str(err.value)
    assert "server returned HTTP status 400 Bad Request (400): line too long x" in text
    assert text.endswith("x …") and len(text) < 1200


def test_wrong_push_path_is_permanent(loki, drivers):
    url = loki.url.replace("/loki/api/v1/push", "/api/prom/wrong")
    with pytest.raises(PermanentError, match=r"404 Not Found \(404\): 404 page not found"):
        drivers(url).send([out(b"a")])


def test_url_without_path_pushes_to_the_push_path(loki, drivers):
    drivers(f"http://127.0.0.1:{loki.port}").send([out(b"a")])
    assert loki.wait_for(1)[0].line == "a"
    assert loki.pushes[0].path == "/loki/api/v1/push"


def test_url_query_is_kept_and_spaces_and_non_ascii_are_escaped_as_go_does(loki, drivers):
    drivers(loki.url + "?team=a b&who=é").send([out(b"a")])
    loki.wait_for(1)
    assert loki.pushes[0].path == "/loki/api/v1/push?team=a%20b&who=%C3%A9"


def test_receiver_down_is_retryable_and_a_restart_on_the_same_port_gets_the_batch(
        loki, drivers):
    d = drivers(loki.url)
    d.send([out(b"before")])
    loki.wait_for(1)
    loki.stop()
    with pytest.raises(RetryableError, match="Connection refused"):
        d.send([out(b"during")])
    loki.start()
    d.send([out(b"during")])
    assert loki.wait_for(2) and loki.lines() == ["before", "during"]


def test_batches_reuse_one_keep_alive_connection(loki, drivers):
    d = drivers(loki.url)
    for i in range(5):
        d.send([out(b"line %d" % i, T0 + i)])
    loki.wait_for(5)
    assert {p.connection for p in loki.pushes} == {1} and loki.connections == 1


def test_slow_receiver_times_out_retryable_and_the_retry_is_deduplicated(loki, drivers):
    d = drivers(loki.url, loki_timeout="200ms")
    batch = [out(b"slow", T0), out(b"slow", T0)]
    loki.delay = 0.6
    with pytest.raises(RetryableError, match=r"TimeoutError: timed out \(loki-timeout 0.2s\)"):
        d.send(batch)
    loki.wait_for(2)  # Loki stored the push whose answer the driver did not wait for
    loki.delay = 0
    d.send(batch)
    loki.wait_for_pushes(2)
    assert loki.lines() == ["slow", "slow"]  # the resent entries were exact duplicates


# -- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca():
    trustme = pytest.importorskip("trustme", reason="trustme (test extra) is not installed")
    return trustme.CA()


@pytest.fixture
def tls_files(ca, tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client = ca.issue_cert("logpipe-client")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert_file))
    client.private_key_pem.write_to_path(str(key_file))
    return {"ca": str(ca_file), "cert": str(cert_file), "key": str(key_file)}


def test_https_with_a_private_ca(ca, tls_files, drivers):
    with FakeLoki(tls=server_context(ca.issue_cert("127.0.0.1"))) as fake:
        drivers(fake.url, loki_tls_ca_file=tls_files["ca"]).send([out(b"secure")])
        assert fake.wait_for(1)[0].line == "secure"
        assert fake.pushes[0].server_name is None  # no SNI for an IP address


def test_https_with_an_unknown_ca_is_retryable_with_the_reason(ca, drivers):
    with FakeLoki(tls=server_context(ca.issue_cert("127.0.0.1"))) as fake:
        with pytest.raises(RetryableError, match="CERTIFICATE_VERIFY_FAILED"):
            drivers(fake.url).send([out(b"a")])
        assert fake.pushes == []


def test_tls_server_name_is_verified_and_sent_as_sni(ca, tls_files, drivers):
    with FakeLoki(tls=server_context(ca.issue_cert("loki.internal"))) as fake:
        with pytest.raises(RetryableError, match="CERTIFICATE_VERIFY_FAILED"):
            drivers(fake.url, loki_tls_ca_file=tls_files["ca"]).send([out(b"a")])
        drivers(fake.url, loki_tls_ca_file=tls_files["ca"],
                loki_tls_server_name="loki.internal").send([out(b"b")])
        assert fake.wait_for(1)[0].line == "b"
        assert fake.pushes[0].server_name == "loki.internal"


def test_tls_insecure_skip_verify_accepts_any_certificate(ca, drivers):
    with FakeLoki(tls=server_context(ca.issue_cert("elsewhere.example"))) as fake:
        drivers(fake.url, loki_tls_insecure_skip_verify="true").send([out(b"a")])
        assert fake.wait_for(1)[0].line == "a"


def test_tls_client_certificate_for_mutual_tls(ca, tls_files, drivers):
    ctx = server_context(ca.issue_cert("127.0.0.1"), require_client_cert_from=ca)
    with FakeLoki(tls=ctx) as fake:
        with pytest.raises(RetryableError, match="SSL"):  # the server wants a certificate
            drivers(fake.url, loki_tls_ca_file=tls_files["ca"]).send([out(b"a")])
        assert fake.pushes == []
        drivers(fake.url, loki_tls_ca_file=tls_files["ca"], loki_tls_cert_file=tls_files["cert"],
                loki_tls_key_file=tls_files["key"]).send([out(b"b")])
        assert fake.wait_for(1)[0].line == "b"
        assert fake.pushes[0].client_cert["subjectAltName"] == (("DNS", "logpipe-client"),)


# -- options -------------------------------------------------------------------------------


def test_defaults_follow_grafanas_plugin_but_retry_until_loki_is_back(loki, drivers):
    d = drivers(loki.url)
    assert d.limits == BatchLimits(max_count=10_000, max_bytes=1024 * 1024, wait=1.0)
    # Grafana's plugin gives a batch up after 10 retries; logpipe's spool holds it instead.
    assert (d.max_retries, d.retry_wait, d.retry_max_wait) == (None, 0.5, 300.0)
    assert d._cfg.timeout == 10.0
    assert drivers(loki.url, loki_retries="10").max_retries == 10


def test_batch_and_backoff_options_set_limits_and_retry_attributes(loki, drivers):
    d = drivers(loki.url, loki_batch_size="4096", loki_batch_wait="250ms", loki_retries="0",
                loki_min_backoff="2s", loki_max_backoff="1m30s", loki_timeout="0")
    assert d.limits.max_bytes == 4096 and d.limits.wait == 0.25
    assert d.max_retries is None  # 0: retry forever, as dskit's backoff
    assert (d.retry_wait, d.retry_max_wait) == (2.0, 90.0)
    assert d._cfg.timeout is None


def test_the_registry_finds_the_driver():
    assert load_driver("loki") is LokiDriver


@pytest.mark.parametrize("opts, message", [
    ({}, "loki: loki-url is required in the config"),
    ({"loki-url": "http://h", "tag": "x"}, "loki: wrong log-opt: 'tag'"),
    ({"loki-url": "localhost:3100"},
     'loki: option loki-url is invalid "localhost:3100": want http:// or https://'),
    ({"loki-url": "ftp://h/x"}, 'loki: option loki-url is invalid "ftp://h/x"'),
    ({"loki-url": "http:///x"}, 'loki: option loki-url is invalid "http:///x"'),
    ({"loki-url": "http://h/a\x01b"},
     'loki: option loki-url is invalid "http://h/a\x01b": net/url: invalid control character'),
    ({"loki-url": "http://h", "loki-tenant-id": "team a"},
     "loki: invalid option loki-tenant-id: tenant ID 'team a' contains unsupported "
     "character ' '"),
    ({"loki-url": "http://h", "loki-tenant-id": ".."},
     "loki: invalid option loki-tenant-id: tenant ID is '.' or '..'"),
    ({"loki-url": "http://h", "loki-tenant-id": "t" * 151},
     "loki: invalid option loki-tenant-id: tenant ID is too long: max 150 characters"),
    ({"loki-url": "http://h", "loki-timeout": "10"},
     'loki: invalid option loki-timeout format: 10: time: missing unit in duration "10"'),
    ({"loki-url": "http://h", "loki-batch-wait": "1x"},
     "loki: invalid option loki-batch-wait format: 1x"),
    ({"loki-url": "http://h", "loki-min-backoff": "-1s"},
     "loki: invalid option loki-min-backoff format: -1s: a duration must not be negative"),
    ({"loki-url": "http://h", "loki-batch-size": "1MiB"},
     'loki: invalid option loki-batch-size format: 1MiB: strconv.Atoi: parsing "1MiB"'),
    ({"loki-url": "http://h", "loki-batch-size": "0"},
     "loki: invalid option loki-batch-size format: 0: want a positive number of bytes"),
    ({"loki-url": "http://h", "loki-retries": "-1"},
     "loki: invalid option loki-retries format: -1: want 0 (retry forever)"),
    ({"loki-url": "http://h", "loki-compress": "yes"},
     'loki: invalid option loki-compress format: yes: strconv.ParseBool: parsing "yes"'),
    ({"loki-url": "http://h", "loki-external-labels": "job=a=b"},
     "loki: invalid external labels: job=a=b"),
    ({"loki-url": "http://h", "loki-external-labels": "job=x,"},
     "loki: invalid external labels: job=x,"),
    ({"loki-url": "http://h", "loki-external-labels": "1job=x"},
     "loki: invalid external label name: 1job"),
    ({"loki-url": "http://h", "loki-external-labels": "job={{.Nope}}"},
     "loki: could not expand label value: {{.Nope}} err : template: label_value:1:2: "
     'executing "label_value" at <.Nope>: can\'t evaluate field Nope'),
    ({"loki-url": "http://h", "loki-tls-ca-file": "/ca.pem"},
     'loki: option loki-tls-ca-file needs an https:// loki-url, not "http://h"'),
    ({"loki-url": "https://h", "loki-tls-ca-file": "/nonexistent/ca.pem"},
     "loki: unable to load specified CA cert /nonexistent/ca.pem: [Errno 2] No such file"),
    ({"loki-url": "https://h", "loki-tls-cert-file": "/c.pem"},
     'loki: client cert file "/c.pem" specified without client key file'),
    ({"loki-url": "https://h", "loki-tls-insecure-skip-verify": "maybe"},
     "loki: invalid option loki-tls-insecure-skip-verify format: maybe"),
])
def test_invalid_options_are_refused_at_create(opts, message):
    info = container_info(None, **{k.replace("-", "_"): v for k, v in opts.items()})
    with pytest.raises(LogOptError) as err:
        LokiDriver.validate(info.config, info)
    assert str(err.value).startswith(message), str(err.value)


@pytest.mark.parametrize("key", ["max-size", "max-file", "no-file", "keep-file",
                                 "loki-pipeline-stages", "loki-pipeline-stage-file",
                                 "loki-relabel-config", "loki-proxy-url"])
def test_grafana_plugin_options_without_meaning_here_are_refused_by_name(key):
    with pytest.raises(LogOptError, match=f"^loki: option {key} is not supported: .+"):
        LokiDriver.validate({"loki-url": "http://h", key: "x"})


def test_bad_label_from_an_attribute_is_refused_at_create():
    info = container_info("http://h", container_labels={"9lives": "x"}, **{"labels": "9lives"})
    with pytest.raises(LogOptError, match="^loki: invalid label name from attribute: 9lives$"):
        LokiDriver.validate(info.config, info)


def test_unreadable_client_key_is_refused_at_create(tls_files, tmp_path):
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("not a key")
    with pytest.raises(LogOptError, match=r"^loki: unable to use specified client cert"):
        LokiDriver.validate({"loki-url": "https://h", "loki-tls-cert-file": tls_files["cert"],
                             "loki-tls-key-file": str(bad_key)})


def test_validation_without_container_info_checks_templates_and_regexes():
    LokiDriver.validate({"loki-url": "http://h", "loki-external-labels": "n={{.Name}}"})
    with pytest.raises(LogOptError, match="error parsing regexp"):
        LokiDriver.validate({"loki-url": "http://h", "labels-regex": "["})


def test_constructor_does_no_network_io():
    """A receiver that does not exist is found out in send, not in the constructor."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        d = LokiDriver(container_info(f"http://127.0.0.1:{port}"))
        with pytest.raises(RetryableError, match="Connection refused"):
            d.send([out(b"a")])
        d.close()


def test_tls_files_are_loaded_when_connecting_not_when_constructing(tls_files, tmp_path):
    ca_file = tmp_path / "moved.pem"
    os.link(tls_files["ca"], ca_file)
    info = container_info("https://127.0.0.1:1", loki_tls_ca_file=str(ca_file))
    LokiDriver.validate(info.config, info)
    ca_file.unlink()
    d = LokiDriver(info)
    with pytest.raises(RetryableError, match="unable to load specified CA cert"):
        d.send([out(b"a")])
