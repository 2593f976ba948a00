"""Registry benchmark: ``docker pull`` of a ~100 MB image from a loopback registry through
logpipe's daemon. Not part of the test suite.

    .venv/bin/python tests/perf/bench_registry.py            # 4 layers of 25 MB
    .venv/bin/python tests/perf/bench_registry.py --mb 20    # smaller

It starts Debian's ``docker-registry`` on 127.0.0.1:<free port> with a temporary storage
directory, uploads an image of 4 gzip layers (half random bytes, half text: about what real
layers compress to) with the distribution API, starts ``logpipe daemon`` on a temporary data
root, and times ``POST /images/create?fromImage=`` from the request to the last progress
message (download, digest checks, decompression, layer store, extraction of the rootfs).
Figures: wall-clock MB/s of compressed bytes and of the uncompressed image, and the daemon's
CPU seconds (user + system, from ``/proc/<pid>/stat``) spent on the pull. Everything is
removed at the end.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from runtime.cli.client import Client  # noqa: E402

LOGPIPE = [sys.executable, "-m", "runtime.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, ctype: str = "") -> tuple[dict, bytes]:
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": ctype} if ctype else {})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return dict(resp.headers), resp.read()


def put_blob(host: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    headers, _ = http("POST", f"http://{host}/v2/{repo}/blobs/uploads/")
    loc = headers["Location"]
    loc = loc if loc.startswith("http") else f"http://{host}{loc}"
    http("PUT", f"{loc}{'&' if '?' in loc else '?'}digest={digest}", data,
         "application/octet-stream")
    return digest


def layer(i: int, size: int) -> bytes:
    path = os.path.join(tempfile.gettempdir(), f"bench-layer-{os.getpid()}-{i}")
    text = (b"GET /index.html 200 %d\n" * (size // 48))[: size // 2]
    with tarfile.open(path, "w") as tar:
        for name, data in ((f"layer{i}/random", os.urandom(size // 2)),
                           (f"layer{i}/text", text)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    return data


def upload_image(host: str, layers: int, mb: int) -> tuple[int, int]:
    tars = [layer(i, mb << 20) for i in range(layers)]
    blobs = [gzip.compress(t, compresslevel=6, mtime=0) for t in tars]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [
                             "sha256:" + hashlib.sha256(t).hexdigest() for t in tars]}}).encode()
    doc = {"schemaVersion": 2,
           "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
           "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                      "size": len(config), "digest": put_blob(host, "bench", config)},
           "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                       "size": len(b), "digest": put_blob(host, "bench", b)} for b in blobs]}
    http("PUT", f"http://{host}/v2/bench/manifests/1", json.dumps(doc).encode(),
         doc["mediaType"])
    return sum(len(b) for b in blobs), sum(len(t) for t in tars)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_pull(client: Client, host: str, pid: int) -> tuple[float, float, str]:
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    resp = client.request("POST", "/images/create", {"fromImage": f"{host}/bench", "tag": "1"})
    last = ""
    for line in resp:
        if line.strip():
            last = json.loads(line).get("status") or json.loads(line).get("error", "")
    return time.perf_counter() - t0, cpu_seconds(pid) - cpu0, last


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=25, help="uncompressed MB per layer (4 layers)")
    args = ap.parse_args()
    registry = shutil.which("docker-registry")
    if registry is None:
        sys.exit("needs Debian's docker-registry (apt-get install docker-registry)")
    base = tempfile.mkdtemp(prefix="lpbench-")
    port = free_port()
    host = f"127.0.0.1:{port}"
    with open(os.path.join(base, "config.yml"), "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                f"    rootdirectory: {base}/storage\nhttp:\n  addr: {host}\n")
    reg = subprocess.Popen([registry, "serve", os.path.join(base, "config.yml")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock = os.path.join(base, "d.sock")
    daemon = subprocess.Popen(LOGPIPE + ["daemon", "--data-root", os.path.join(base, "root"),
                                         "-H", f"unix://{sock}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(3000):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                if os.path.exists(sock):
                    break
            except OSError:
                pass
            time.sleep(0.01)
        compressed, raw = upload_image(host, 4, args.mb)
        client = Client(f"unix://{sock}", autostart=False)
        wall, cpu, last = timed_pull(client, host, daemon.pid)
        print(f"pull of {compressed / 1e6:.0f} MB compressed ({raw / 1e6:.0f} MB of layers), "
              f"4 gzip layers: {wall:.2f} s, {compressed / 1e6 / wall:.0f} MB/s compressed, "
              f"{raw / 1e6 / wall:.0f} MB/s uncompressed, daemon CPU {cpu:.2f} s  [{last}]")
    finally:
        daemon.terminate()
        reg.terminate()
        daemon.wait(10)
        reg.wait(10)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
