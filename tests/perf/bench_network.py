"""Network benchmarks: what the default bridge costs a container. Not part of the test suite.

    .venv/bin/python tests/perf/bench_network.py            # 30 containers per mode
    .venv/bin/python tests/perf/bench_network.py -n 10      # quicker

Needs root, runc, netavark and iptables. It starts its own daemon (``bench_runtime.Daemon``:
a temporary data root and socket), imports the busybox image, and removes everything at
the end.

- create+start latency, ``--network none`` against the default ``bridge`` with one ``-p``
  (a random host port): N ``POST /containers/create`` + ``POST /containers/{id}/start``
  per mode, the modes interleaved (none, bridge, none, ...) so that the machine's load
  weighs on both alike; p50/p99 and the difference of the p50s. Then ``rm -f`` of each.
- loopback HTTP: sequential requests (one connection each, Python ``http.client``) to a
  busybox ``httpd`` through its published port on 127.0.0.1 against straight to the
  container's address, for ``--seconds`` each, twice, alternated.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_runtime import IMAGE, LOGPIPE, Daemon, build_image, pct  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create(d: Daemon, network: str, publish: bool, cmd: list[str]) -> str:
    host: dict = {"NetworkMode": network}
    body: dict = {"Image": IMAGE, "Cmd": cmd, "HostConfig": host}
    if publish:
        host["PortBindings"] = {"80/tcp": [{"HostIp": "", "HostPort": ""}]}
        body["ExposedPorts"] = {"80/tcp": {}}
    return d.client.json("POST", "/containers/create", None, body)["Id"]


def bench_latency(d: Daemon, n: int) -> dict:
    print(f"== create+start latency, {n} containers per mode (API), modes interleaved")
    times: dict[str, list[float]] = {"none": [], "bridge -p": []}
    removal: dict[str, list[float]] = {"none": [], "bridge -p": []}
    ids: dict[str, list[str]] = {"none": [], "bridge -p": []}
    for _ in range(n):
        for mode in times:
            t0 = time.perf_counter()
            cid = create(d, "none" if mode == "none" else "bridge", mode != "none",
                         ["sleep", "3600"])
            d.start(cid)
            times[mode].append(time.perf_counter() - t0)
            ids[mode].append(cid)
    for mode in ids:
        for cid in ids[mode]:
            t0 = time.perf_counter()
            d.remove(cid)
            removal[mode].append(time.perf_counter() - t0)
    out = {}
    for mode, values in times.items():
        p50, p99 = pct(values, .5) * 1e3, pct(values, .99) * 1e3
        r50 = pct(removal[mode], .5) * 1e3
        print(f"  {mode:10} create+start p50 {p50:6.1f} ms  p99 {p99:6.1f} ms   "
              f"rm -f p50 {r50:6.1f} ms")
        out[mode] = {"p50 ms": round(p50, 1), "p99 ms": round(p99, 1), "rm p50 ms": round(r50, 1)}
    diff = out["bridge -p"]["p50 ms"] - out["none"]["p50 ms"]
    print(f"  bridge -p costs {diff:+.1f} ms at p50 (budget: under +100 ms)")
    out["bridge p50 overhead ms"] = round(diff, 1)
    return out


def requests_per_second(host: str, port: int, seconds: float) -> float:
    count, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("GET", "/hostname")
        conn.getresponse().read()
        conn.close()
        count += 1
    return count / seconds


def bench_loopback(d: Daemon, seconds: float) -> dict:
    print(f"== loopback HTTP, sequential requests for {seconds:g} s each")
    port = free_port()
    body = {"Image": IMAGE, "Cmd": ["httpd", "-f", "-p", "80", "-h", "/etc"],
            "ExposedPorts": {"80/tcp": {}},
            "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": str(port)}]}}}
    cid = d.client.json("POST", "/containers/create", None, body)["Id"]
    d.start(cid)
    ip = d.client.json("GET", f"/containers/{cid}/json")["NetworkSettings"]["IPAddress"]
    deadline = time.monotonic() + 10
    while True:
        try:
            requests_per_second("127.0.0.1", port, 0.01)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    out: dict[str, list[float]] = {"published 127.0.0.1": [], "container address": []}
    for _ in range(2):
        out["published 127.0.0.1"].append(requests_per_second("127.0.0.1", port, seconds))
        out["container address"].append(requests_per_second(ip, 80, seconds))
    for what, values in out.items():
        print(f"  {what:20} " + "  ".join(f"{v:7.0f} req/s" for v in values))
    d.remove(cid)
    return {k: [round(v) for v in values] for k, values in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=30, help="containers per mode")
    ap.add_argument("--seconds", type=float, default=3.0, help="per loopback measurement")
    ap.add_argument("--json", default="", help="write the figures to this file")
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("runc"):
        raise SystemExit("needs root and runc")
    base = tempfile.mkdtemp(prefix="lpbn-")
    d = None
    try:
        d = Daemon(base, "runc")
        tar = build_image(os.path.join(base, "busybox.tar"))
        import subprocess

        subprocess.run(LOGPIPE + ["-H", d.host, "import", tar, IMAGE], check=True,
                       stdout=subprocess.DEVNULL)
        with open("/proc/loadavg") as f:
            print(f"runc, {os.cpu_count()} CPUs, load {' '.join(f.read().split()[:3])}")
        figures = {"latency": bench_latency(d, args.n),
                   "loopback": bench_loopback(d, args.seconds)}
        if args.json:
            with open(args.json, "w") as f:
                json.dump(figures, f, indent=2)
    finally:
        if d is not None:
            d.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
