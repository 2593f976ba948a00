"""Every remote driver end to end: ``logpipe run --log-driver=X --log-opt …`` → its receiver,
and ``logpipe logs`` reading the same lines back.

Real daemon, real containers (``running_daemon`` of ``conftest.py``), real receivers where one
can be installed (rsyslogd, systemd-journald, moto for CloudWatch); for Fluentd, Graylog, Google
Cloud Logging and Loki, which cannot be installed from PyPI, Debian or npm, the fakes in
``tests/receivers/`` decode the real wire format (see each one's docstring).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Callable, Iterator, NamedTuple

import pytest

from conftest import IMAGE, running_daemon, wait_until

pytestmark = pytest.mark.e2e

OUT = [f"out {i} héllo ✓" for i in range(1, 301)]
ERR = [f"err {i}" for i in range(1, 4)]
COMMAND = ("for i in $(seq 1 300); do echo \"out $i héllo ✓\"; done; "
           "for i in 1 2 3; do echo \"err $i\" >&2; done")


class Receiver(NamedTuple):
    """How a test talks to one receiver: the options to log to it, and what it received as
    ``(source, line)`` pairs once ``n`` records are there (source None where the wire format
    has no stream: CloudWatch)."""

    driver: str
    opts: list[str]
    received: Callable[[int, str], list[tuple[str | None, str]]]  # (n, container id)


@contextlib.contextmanager
def fluentd() -> Iterator[Receiver]:
    from receivers.fluentd import FakeFluentd

    with FakeFluentd() as rx:
        yield Receiver("fluentd", [f"fluentd-address={rx.address}"],
                       lambda n, _: [(e.record["source"], e.record["log"])
                                     for e in rx.wait_for(n)])


@contextlib.contextmanager
def gelf(proto: str) -> Iterator[Receiver]:
    from receivers.gelf import FakeGraylog

    with FakeGraylog(proto) as rx:
        yield Receiver("gelf", [f"gelf-address={rx.address}"],
                       lambda n, _: [({6: "stdout", 3: "stderr"}[m["level"]], m["short_message"])
                                  for m in rx.wait_for(n)])


@contextlib.contextmanager
def loki() -> Iterator[Receiver]:
    from receivers.loki import FakeLoki

    with FakeLoki() as rx:
        yield Receiver("loki", [f"loki-url={rx.url}", "loki-batch-wait=100ms"],
                       lambda n, _: [(e.labels["source"], e.line) for e in rx.wait_for(n)])


@contextlib.contextmanager
def gcplogs() -> Iterator[Receiver]:
    from receivers.gcp import FakeCloudLogging

    with FakeCloudLogging() as rx:
        yield Receiver("gcplogs", ["gcp-project=logpipe-test", f"gcp-endpoint={rx.url}"],
                       lambda n, _: [({"INFO": "stdout", "ERROR": "stderr"}[e["severity"]],
                                   e["jsonPayload"]["message"]) for e in rx.wait_for(n)])


@contextlib.contextmanager
def awslogs() -> Iterator[Receiver]:
    from receivers.cloudwatch import CloudWatchReceiver

    group = f"e2e-{uuid.uuid4().hex[:8]}"
    with CloudWatchReceiver() as rx:
        def received(n: int, _cid: str) -> list[tuple[str | None, str]]:
            stream = rx.client().describe_log_streams(logGroupName=group)["logStreams"]
            return [(None, e["message"])
                    for e in rx.wait_for(group, stream[0]["logStreamName"], n, timeout=30)]
        yield Receiver("awslogs", ["awslogs-region=us-east-1", f"awslogs-endpoint={rx.endpoint}",
                                   f"awslogs-group={group}", "awslogs-create-group=true",
                                   "awslogs-force-flush-interval-seconds=1"], received)


@contextlib.contextmanager
def syslog(transport: str) -> Iterator[Receiver]:
    from receivers.syslog import Rsyslog, rsyslog_missing

    if rsyslog_missing():
        pytest.skip(rsyslog_missing())
    with Rsyslog(tls=transport == "tls") as rx:
        address = getattr(rx, f"{transport}_address")
        opts = [f"syslog-address={address}", "syslog-format=rfc5424", "tag=e2e"]
        if transport == "tls":
            opts.append(f"syslog-tls-ca-cert={rx.certs.ca_cert}")

        def received(n: int, _cid: str) -> list[tuple[str | None, str]]:
            records = rx.wait_for(n, timeout=20, app_name="e2e")
            return [({6: "stdout", 3: "stderr"}[r.pri % 8], r.msg.decode()) for r in records]
        yield Receiver("syslog", opts, received)


@contextlib.contextmanager
def journald() -> Iterator[Receiver]:
    """The real systemd-journald (started by the receiver helper if its socket is missing)."""
    from receivers.journald import JournaldReceiver, unavailable_reason

    if unavailable_reason():
        pytest.skip(unavailable_reason())
    with JournaldReceiver() as rx:
        def received(n: int, cid: str) -> list[tuple[str | None, str]]:
            return [({b"6": "stdout", b"3": "stderr"}[e["PRIORITY"]], e["MESSAGE"].decode())
                    for e in rx.wait_for(cid, n, timeout=20)]
        yield Receiver("journald", [], received)


RECEIVERS = {
    "journald": journald,
    "syslog-udp": lambda: syslog("udp"), "syslog-tcp": lambda: syslog("tcp"),
    "syslog-tls": lambda: syslog("tls"),
    "fluentd": fluentd, "gelf-udp": lambda: gelf("udp"), "gelf-tcp": lambda: gelf("tcp"),
    "loki": loki, "gcplogs": gcplogs, "awslogs": awslogs,
}


@pytest.fixture(scope="module")
def daemon(busybox_tar):  # this module's own: one for all tests, with the cloud environment
    """A daemon whose environment holds what cloud drivers look for: fake AWS credentials
    (moto accepts any), no Google credentials file."""
    from receivers.cloudwatch import FAKE_KEY_ID, FAKE_SECRET

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
        mp.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
        mp.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        with running_daemon("runc" if busybox_tar else "process", busybox_tar) as d:
            yield d


@pytest.mark.parametrize("kind", sorted(RECEIVERS))
def test_run_with_remote_driver_delivers_every_line_and_logs_reads_them_back(daemon, kind):
    with RECEIVERS[kind]() as rx:
        args = ["run", "--name", f"e2e-{kind}", "--log-driver", rx.driver]
        for opt in rx.opts:
            args += ["--log-opt", opt]
        res = daemon.lp(*args, IMAGE, "sh", "-c", COMMAND)
        assert res.returncode == 0, res.stderr.decode(errors="replace")
        assert res.stdout.decode().splitlines() == OUT  # attached, as Docker
        got = rx.received(len(OUT) + len(ERR), daemon.inspect(f"e2e-{kind}", "{{.Id}}"))
        if got and got[0][0] is None:
            assert sorted(line for _, line in got) == sorted(OUT + ERR)
        else:
            assert [line for src, line in got if src == "stdout"] == OUT
            assert sorted(line for src, line in got if src == "stderr") == ERR
        # The spool is Docker's dual-logging cache: logs works whatever the driver.
        logs = daemon.lp("logs", f"e2e-{kind}")
        assert logs.stdout.decode().splitlines() == OUT
        assert logs.stderr.decode().splitlines() == ERR
        assert daemon.inspect(f"e2e-{kind}", "{{.LogShipping.ShippedLines}}") == "303"


BAD_OPTIONS = [
    # (driver, options, what the error must say) — Docker's wording where Docker has one.
    ("syslog", ["foo=bar"], "unknown log opt 'foo' for syslog log driver"),
    ("syslog", ["syslog-address=http://127.0.0.1:514"],
     "syslog-address should be in form proto://address, got http://127.0.0.1:514"),
    ("syslog", ["syslog-facility=nosuch"], "invalid syslog facility"),
    ("syslog", ["syslog-format=rfc9999"], "Invalid syslog format"),
    ("syslog", ["syslog-address=tcp+tls://127.0.0.1:6514", "syslog-tls-ca-cert=/nonexistent/ca.pem"],
     'could not read CA certificate "/nonexistent/ca.pem"'),
    ("fluentd", ["foo=bar"], "unknown log opt 'foo' for fluentd log driver"),
    ("fluentd", ["fluentd-address=127.0.0.1:abc"], "invalid fluentd-address 127.0.0.1:abc"),
    ("fluentd", ["fluentd-retry-wait=abc"], 'time: invalid duration "abc"'),
    ("gelf", [], "gelf-address is a required parameter"),
    ("gelf", ["gelf-address=127.0.0.1:12201"], "gelf-address should be in form proto://address"),
    ("gelf", ["gelf-address=udp://127.0.0.1:12201", "gelf-compression-type=lz4"],
     'unknown value "lz4" for log opt "gelf-compression-type" for gelf log driver'),
    ("gelf", ["gelf-address=udp://127.0.0.1:12201", "foo=bar"],
     'unknown log opt "foo" for gelf log driver'),
    ("journald", ["foo=bar"], "unknown log opt 'foo' for journald log driver"),
    ("awslogs", ["awslogs-region=us-east-1"], "must specify a value for log opt 'awslogs-group'"),
    ("awslogs", ["awslogs-region=us-east-1", "awslogs-group=g", "awslogs-create-group=x"],
     "must specify valid value for log opt 'awslogs-create-group'"),
    ("gcplogs", ["tag=x"], '"tag" is not a valid option for the gcplogs driver'),
    ("loki", ["loki-url=http://127.0.0.1:3100", "loki-timeout=10"],
     'time: missing unit in duration "10"'),
    ("loki", ["loki-url=http://127.0.0.1:3100", "loki-relabel-config=x"], "loki-relabel-config"),
    ("fluentd", ["mode=sometimes"], "logger: logging mode not supported: sometimes"),
    ("gelf", ["gelf-address=udp://127.0.0.1:12201", "cache-max-size=abc"],
     "invalid value for cache-max-size: abc"),
]


@pytest.mark.parametrize("driver,opts,message", BAD_OPTIONS,
                         ids=[f"{d}-{o[-1].split('=')[0] if o else 'none'}"
                              for d, o, _ in BAD_OPTIONS])
def test_bad_options_are_refused_at_create_with_a_clear_message(daemon, driver, opts, message):
    args = ["create", "--log-driver", driver]
    for opt in opts:
        args += ["--log-opt", opt]
    res = daemon.lp(*args, IMAGE, "true")
    assert res.returncode != 0
    assert message in res.stderr.decode(), res.stderr.decode()
    assert b"true" not in daemon.ok("ps", "-a", "--format", "{{.Command}}")  # nothing created


# -- cloud receivers failing for a while: nothing lost; refused for good: counted -------------

def run_detached(daemon, name: str, driver: str, opts: list[str], command: str) -> str:
    args = ["run", "-d", "--name", name, "--log-driver", driver]
    for opt in opts:
        args += ["--log-opt", opt]
    return daemon.ok(*args, IMAGE, "sh", "-c", command).decode().strip()


def shipping(daemon, name: str) -> dict:
    import json

    return json.loads(daemon.inspect(name, "{{json .LogShipping}}"))


def wait_seconds_since(start: float, seconds: float) -> None:
    """The scenario's duration (an outage of N seconds), not a synchronisation."""
    wait_until(lambda: time.monotonic() - start >= seconds, timeout=seconds + 10,
               what=f"{seconds} s of outage")


@pytest.mark.slow
def test_cloudwatch_throttling_for_20s_loses_and_reorders_nothing(daemon):
    from receivers.cloudwatch import CloudWatchReceiver

    group = f"throttle-{uuid.uuid4().hex[:8]}"
    with CloudWatchReceiver() as rx:
        rx.fail("ThrottlingException", 400, "Rate exceeded", seconds=20)
        start = time.monotonic()
        cid = run_detached(daemon, "cw-throttled", "awslogs",
                           ["awslogs-region=us-east-1", f"awslogs-endpoint={rx.endpoint}",
                            f"awslogs-group={group}", "awslogs-create-group=true",
                            "awslogs-force-flush-interval-seconds=1"], "seq 1 5000")
        assert daemon.ok("wait", "cw-throttled") == b"0\n"
        wait_until(lambda: shipping(daemon, "cw-throttled")["Retries"] > 0, timeout=15,
                   what="a throttled PutLogEvents")
        assert "ThrottlingException" in shipping(daemon, "cw-throttled")["LastError"]
        assert rx.events(group, cid) == []  # all of it is waiting in the spool
        wait_seconds_since(start, 20)
        got = rx.wait_for(group, cid, 5000, timeout=60)
        assert [e["message"] for e in got] == [str(i) for i in range(1, 5001)]
        stamps = [e["timestamp"] for e in got]
        assert stamps == sorted(stamps)
        st = shipping(daemon, "cw-throttled")
        assert st["RejectedLines"] == 0 and st["DroppedLines"] == 0


@pytest.mark.slow
def test_loki_answering_429_then_500_for_20s_loses_nothing(daemon):
    from receivers.loki import FakeLoki

    with FakeLoki() as rx:
        rx.fail(429)
        start = time.monotonic()
        run_detached(daemon, "loki-outage", "loki",
                     [f"loki-url={rx.url}", "loki-batch-wait=100ms", "loki-max-backoff=2s"],
                     "seq 1 5000")
        assert daemon.ok("wait", "loki-outage") == b"0\n"
        wait_seconds_since(start, 10)
        rx.fail(500)
        wait_seconds_since(start, 20)
        assert rx.lines() == []
        rx.heal()
        got = rx.wait_for(5000, timeout=30)
        assert [e.line for e in got] == [str(i) for i in range(1, 5001)]
        st = shipping(daemon, "loki-outage")
        assert st["Retries"] >= 5 and st["RejectedLines"] == 0


@pytest.mark.slow
def test_loki_400_drops_that_batch_counts_and_reports_it_and_ships_the_rest(daemon):
    from receivers.loki import FakeLoki
    with FakeLoki() as rx:
        rx.fail(400, times=1, text="entry too far behind")
        run_detached(daemon, "loki-400", "loki",
                     [f"loki-url={rx.url}", "loki-batch-size=2000", "loki-batch-wait=100ms"],
                     "seq 1 3000")
        assert daemon.ok("wait", "loki-400") == b"0\n"
        wait_until(lambda: shipping(daemon, "loki-400")["BacklogLines"] == 0, timeout=30,
                   what="the spool to be shipped")
        st = shipping(daemon, "loki-400")
        rejected = st["RejectedLines"]
        assert 0 < rejected < 3000 and st["ShippedLines"] == 3000 - rejected
        assert [e.line for e in rx.wait_for(3000 - rejected)] == \
            [str(i) for i in range(rejected + 1, 3001)]
        assert any("400" in e and "entry too far behind" in e for e in st["Events"])


def test_credentials_never_appear_in_inspect_errors_or_the_daemon_log(daemon):
    from receivers.loki import FakeLoki
    with FakeLoki() as rx:
        rx.fail(500)
        url = rx.url_with_auth("tenant1", "s3cr3t-pa55")
        run_detached(daemon, "loki-secret", "loki", [f"loki-url={url}"], "echo hello")
        wait_until(lambda: shipping(daemon, "loki-secret")["Retries"] > 0, timeout=30,
                   what="a failed push")
        inspect = daemon.ok("inspect", "loki-secret").decode()
        assert "s3cr3t-pa55" not in inspect
        assert "500" in shipping(daemon, "loki-secret")["LastError"]
        with open(daemon.current.log, errors="replace") as f:
            assert "s3cr3t-pa55" not in f.read()
        rx.heal()
        assert [e.line for e in rx.wait_for(1)] == ["hello"]
        assert rx.wait_for_pushes(1)[-1].authorization.startswith("Basic ")


def test_unreachable_fluentd_without_async_refuses_the_start_as_docker_does(daemon):
    res = daemon.lp("run", "--name", "fl-refused", "--log-driver", "fluentd",
                    "--log-opt", "fluentd-address=tcp://127.0.0.1:1", IMAGE, "true")
    assert res.returncode == 125
    assert (b"failed to initialize logging driver: dial tcp 127.0.0.1:1: connect: "
            b"connection refused") in res.stderr
    assert daemon.inspect("fl-refused", "{{.State.Status}} {{.State.ExitCode}}") == "created 128"


def test_cache_disabled_keeps_shipping_but_refuses_logs_as_docker_does(daemon):
    from receivers.fluentd import FakeFluentd

    with FakeFluentd() as rx:
        res = daemon.lp("run", "--name", "fl-nocache", "--log-driver", "fluentd",
                        "--log-opt", f"fluentd-address={rx.address}",
                        "--log-opt", "cache-disabled=true", IMAGE, "echo", "shipped")
        assert res.returncode == 0
        assert [e.record["log"] for e in rx.wait_for(1)] == ["shipped"]
    logs = daemon.lp("logs", "fl-nocache")
    assert logs.returncode != 0
    assert b"configured logging driver does not support reading" in logs.stderr


def test_metrics_endpoint_serves_every_shipping_counter_in_prometheus_text(daemon):
    import http.client
    import socket

    from receivers.fluentd import FakeFluentd

    with FakeFluentd() as rx:
        daemon.ok("run", "--name", "fl-metrics", "--log-driver", "fluentd",
                  "--log-opt", f"fluentd-address={rx.address}", IMAGE, "seq", "1", "250")
        rx.wait_for(250)
    cid = daemon.inspect("fl-metrics", "{{.Id}}")
    conn = http.client.HTTPConnection("localhost", timeout=30)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.connect(daemon.host.removeprefix("unix://"))
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    text = resp.read().decode()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/plain")
    labels = f'{{container_id="{cid}",container_name="fl-metrics",driver="fluentd"}}'
    assert f"logpipe_shipped_lines_total{labels} 250" in text.splitlines()
    assert f"logpipe_captured_lines_total{labels} 250" in text.splitlines()
    assert f"logpipe_backlog_lines{labels} 0" in text.splitlines()
    for name in ("logpipe_dropped_lines_total", "logpipe_rejected_lines_total",
                 "logpipe_retries_total", "logpipe_lag_seconds"):
        assert f"# TYPE {name} " in text
