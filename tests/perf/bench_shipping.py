"""Shipping benchmarks: the spool → shipper → driver → local receiver. Not part of the suite.

    .venv/bin/python tests/perf/bench_shipping.py            # every driver (a few minutes)
    .venv/bin/python tests/perf/bench_shipping.py --quick    # smaller volumes
    .venv/bin/python tests/perf/bench_shipping.py loki gelf-udp   # some drivers only
    .venv/bin/python tests/perf/bench_shipping.py --udp-loss      # UDP delivery only

For each driver, with the receiver the tests use (real rsyslogd, systemd-journald and moto
where they exist; the fakes of ``tests/receivers`` in count-only mode otherwise — a fake
costs less CPU than the real system would, which makes the figure an upper bound of what
the sender can do, not of the pair):

- throughput: N lines of 100 bytes are written to a spool first (``SpoolWriter``, as the shim
  does), then one ``Shipper`` delivers them; the clock runs from the shipper's start to its
  exit, which happens when everything has been confirmed (TCP write, fluentd ack, HTTP 2xx,
  journald socket). lines/s and MB/s of line data.
- CPU s per GB: CPU time of the shipper thread alone (``/proc/self/task/<tid>/stat``: the
  receivers run in other threads), per GB of line data.
- latency: 400 lines written one by one every 5 ms while the shipper runs; for each line,
  the time from the write to the spool (≈ the container's write, the shim adds < 1 ms) to
  the end of the ``send`` that delivered it; p50/p99. Drivers with a batch wait (loki 1 s,
  awslogs 5 s by default) are measured with it set to 0 / 1 s, as printed.

UDP delivery (``--udp-loss``, also part of a full run): 100 k lines of 100 bytes shipped over
UDP into a receiver that reads with the kernel's default buffer (``PlainUDPReceiver``: one
Python socket read in a loop, 208 KiB ``SO_RCVBUF``) and into rsyslogd; lines/s as the
receiver got them (received lines over the time from the shipper's start to its exit) and
the share lost. Each once paced (the default) and once with ``*-udp-rate=0`` (unpaced, as
Docker sends).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(REPO, "tests"), REPO]

from drivers.spool import SpoolTail, SpoolWriter  # noqa: E402
from logpipe.checkpoint import checkpoint_path  # noqa: E402
from logpipe.driver import LogInfo  # noqa: E402
from logpipe.message import STDOUT, Chunk  # noqa: E402
from logpipe.registry import get_driver  # noqa: E402
from logpipe.shipper import Shipper  # noqa: E402

LINE = 100
TICKS = os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def receiver(kind: str):
    """(driver name, log opts) for a receiver of ``kind``, running for the block."""
    if kind == "fluentd":
        from receivers.fluentd import FakeFluentd
        with FakeFluentd(count_only=True) as rx:
            yield "fluentd", {"fluentd-address": rx.address}
    elif kind.startswith("gelf-"):
        from receivers.gelf import FakeGraylog
        proto = kind.split("-")[1]
        with FakeGraylog(proto, store=False) as rx:
            yield "gelf", {"gelf-address": rx.address}
    elif kind.startswith("syslog-"):
        from receivers.syslog import Rsyslog
        with Rsyslog(tls=False) as rx:
            yield "syslog", {"syslog-address": getattr(rx, kind.split("-")[1] + "_address"),
                             "syslog-format": "rfc5424"}
    elif kind == "journald":
        from receivers.journald import JournaldReceiver
        with JournaldReceiver():
            yield "journald", {}
    elif kind == "loki":
        from receivers.loki import FakeLoki
        with FakeLoki(store=False) as rx:
            yield "loki", {"loki-url": rx.url, "loki-batch-wait": "0s"}
    elif kind == "gcplogs":
        from receivers.gcp import FakeCloudLogging
        with FakeCloudLogging(keep=False, check_schema=False) as rx:
            yield "gcplogs", {"gcp-project": "bench", "gcp-endpoint": rx.url}
    elif kind == "awslogs":
        from receivers.cloudwatch import FAKE_KEY_ID, FAKE_SECRET, CloudWatchReceiver
        os.environ.setdefault("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
        with CloudWatchReceiver() as rx:
            yield "awslogs", {"awslogs-region": "us-east-1", "awslogs-endpoint": rx.endpoint,
                              "awslogs-group": f"bench-{os.getpid()}-{time.monotonic_ns()}",
                              "awslogs-create-group": "true",
                              "awslogs-force-flush-interval-seconds": "1"}
    else:
        raise SystemExit(f"unknown driver {kind}")


def thread_cpu(tid: int) -> float:
    with open(f"/proc/self/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def setup(directory: str, driver: str, opts: dict) -> LogInfo:
    os.makedirs(os.path.join(directory, "ship"), exist_ok=True)
    config = {**opts, "cache-max-size": "100m", "cache-max-file": "20"}
    return LogInfo(container_id=os.urandom(32).hex(), log_dir=directory, config=config,
                   container_name="/bench", image_name="busybox:latest", hostname="bench")


def shipper_for(info: LogInfo, driver: str, on_send=None) -> Shipper:
    cls = get_driver(driver)

    def make():
        d = cls(info)
        if on_send is not None:
            send = d.send

            def timed(batch):
                result = send(batch)
                on_send(batch, time.time_ns())
                return result
            d.send = timed
        return d
    tail = SpoolTail(SpoolWriter.log_path(info), warn=lambda t: None)
    return Shipper("bench", make, tail, checkpoint_path(info.log_dir, driver))


def throughput(kind: str, n: int) -> dict:
    directory = tempfile.mkdtemp(prefix="lpship-")
    try:
        with receiver(kind) as (driver, opts):
            info = setup(directory, driver, opts)
            writer = SpoolWriter(info, driver)
            body = b"x" * (LINE - 9)
            for start in range(0, n, 2000):
                data = b"".join(b"%08d " % i + body + b"\n" for i in range(start, min(n, start + 2000)))
                writer.write([Chunk(STDOUT, time.time_ns(), data)])
            writer.close()
            shipper = shipper_for(info, driver)
            t0 = time.perf_counter()
            shipper.start()
            cpu0 = thread_cpu(shipper.native_id)
            cpu = cpu0
            while shipper.is_alive():
                cpu = thread_cpu(shipper.native_id)
                shipper.join(0.05)
            wall = time.perf_counter() - t0
            shipped = shipper.stats.shipped_lines
            assert shipped == n, f"{kind}: shipped {shipped} of {n} ({shipper.stats.last_error})"
            gb = n * LINE / 1e9
            return {"lines/s": n / wall, "MB/s": n * LINE / wall / 1e6,
                    "CPU s/GB": (cpu - cpu0) / gb}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def latency(kind: str, count: int = 400, interval: float = 0.005) -> dict:
    directory = tempfile.mkdtemp(prefix="lpship-")
    delays: list[float] = []
    try:
        with receiver(kind) as (driver, opts):
            info = setup(directory, driver, opts)
            writer = SpoolWriter(info, driver)
            lock = threading.Lock()

            def on_send(batch, done_ns):
                with lock:
                    delays.extend((done_ns - m.ts) / 1e6 for m in batch)
            shipper = shipper_for(info, driver, on_send)
            shipper.start()
            for i in range(count):
                writer.write([Chunk(STDOUT, time.time_ns(), b"%08d latency probe\n" % i)])
                time.sleep(interval)  # the pace of the writer, not a synchronisation
            writer.close()
            shipper.join(60)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    delays.sort()
    return {"p50 ms": statistics.median(delays), "p99 ms": delays[int(len(delays) * 0.99) - 1]}


KINDS = ["fluentd", "gelf-udp", "gelf-tcp", "syslog-udp", "syslog-tcp", "journald", "loki",
         "gcplogs", "awslogs"]
#: Lines per throughput run; slow receivers get fewer (they would take minutes otherwise).
VOLUME = {"journald": 50_000, "awslogs": 50_000, "gcplogs": 100_000, "syslog-udp": 100_000}


@contextlib.contextmanager
def udp_receiver(kind: str):
    """(driver, log opts, received-count function) for a UDP receiver of ``kind``."""
    if kind == "rsyslog":
        from receivers.syslog import Rsyslog
        with Rsyslog(tls=False) as rx:
            def stored() -> int:
                try:
                    with open(rx.fields_path, "rb") as f:
                        return f.read().count(b"\n")
                except FileNotFoundError:  # nothing stored yet
                    return 0
            yield "syslog", {"syslog-address": rx.udp_address, "syslog-format": "rfc5424"}, stored
        return
    from receivers.udp import PlainUDPReceiver
    with PlainUDPReceiver(keep=False) as rx:
        if kind == "syslog":
            yield "syslog", {"syslog-address": rx.address, "syslog-format": "rfc5424"}, \
                lambda: rx.count
        else:
            yield "gelf", {"gelf-address": rx.address, "gelf-compression-type": kind[5:]}, \
                lambda: rx.count


def udp_delivery(kind: str, n: int, rate: int | None) -> dict:
    """Lines/s received and loss % of ``n`` lines shipped into a UDP receiver."""
    directory = tempfile.mkdtemp(prefix="lpship-")
    try:
        with udp_receiver(kind) as (driver, opts, received):
            if rate is not None:
                opts[f"{driver}-udp-rate"] = str(rate)
            info = setup(directory, driver, opts)
            writer = SpoolWriter(info, driver)
            body = b"x" * (LINE - 9)
            for start in range(0, n, 2000):
                data = b"".join(b"%08d " % i + body + b"\n"
                                for i in range(start, min(n, start + 2000)))
                writer.write([Chunk(STDOUT, time.time_ns(), data)])
            writer.close()
            before = received()
            shipper = shipper_for(info, driver)
            t0 = time.perf_counter()
            shipper.start()
            shipper.join()
            wall = time.perf_counter() - t0
            # the receiver's own lag: poll until its count stands still (UDP says no more)
            last, still = -1, time.monotonic()
            while time.monotonic() - still < 0.5:
                count = received() - before
                if count != last:
                    last, still = count, time.monotonic()
                time.sleep(0.02)
            return {"lines/s": last / wall, "loss %": 100 * (n - last) / n}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


UDP_CASES = [("syslog", "syslog UDP → plain receiver"), ("gelf-none", "gelf UDP (none) → plain"),
             ("gelf-gzip", "gelf UDP (gzip) → plain"), ("rsyslog", "syslog UDP → rsyslogd")]


def udp_loss(quick: bool) -> None:
    n = 10_000 if quick else 100_000
    print(f"\n{'UDP, ' + format(n, ',') + ' lines':<30} {'paced lines/s':>14} {'loss':>7} "
          f"{'unpaced lines/s':>16} {'loss':>7}")
    for kind, label in UDP_CASES:
        try:
            paced, unpaced = udp_delivery(kind, n, None), udp_delivery(kind, n, 0)
        except Exception as err:  # no rsyslogd
            print(f"{label:<30} skipped: {err}")
            continue
        print(f"{label:<30} {paced['lines/s']:>14,.0f} {paced['loss %']:>6.2f}% "
              f"{unpaced['lines/s']:>16,.0f} {unpaced['loss %']:>6.2f}%", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kinds", nargs="*", default=KINDS)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--udp-loss", action="store_true", help="only the UDP delivery figures")
    args = ap.parse_args()
    if args.udp_loss:
        udp_loss(args.quick)
        return
    print(f"{'driver':<12} {'lines/s':>10} {'MB/s':>7} {'CPU s/GB':>9} {'p50 ms':>7} {'p99 ms':>7}")
    for kind in args.kinds:
        n = VOLUME.get(kind, 300_000) // (10 if args.quick else 1)
        try:
            t = throughput(kind, n)
            lat = latency(kind, 100 if args.quick else 400)
        except Exception as err:  # a missing receiver (no rsyslogd, no root for journald)
            print(f"{kind:<12} skipped: {err}")
            continue
        print(f"{kind:<12} {t['lines/s']:>10,.0f} {t['MB/s']:>7.1f} {t['CPU s/GB']:>9.1f} "
              f"{lat['p50 ms']:>7.1f} {lat['p99 ms']:>7.1f}", flush=True)
    if args.kinds == KINDS:
        udp_loss(args.quick)


if __name__ == "__main__":
    main()
