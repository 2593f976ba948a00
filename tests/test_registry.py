"""Pull, push, tag, save, login and image prune against a real registry (Debian's
``docker-registry``, distribution 2.x) on loopback, through our CLI, the docker CLI and
docker-py, with the faults a pull meets: a registry or daemon killed mid-pull, a corrupted
blob, a full disk, bad references."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
import urllib.request
from typing import Any, Iterator

import pytest

from conftest import (RUNC, RestartableDaemon, add, api_daemon, cli_errors, diff_id, docker_cli,
                      logpipe, running_daemon, running_registry, stop_daemon, tar_bytes, tmpfs,
                      wait_until)
from runtime.cli.client import APIError, Client

pytestmark = pytest.mark.e2e

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
GZIP_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_TAR = "application/vnd.oci.image.layer.v1.tar"


# -- building images in the registry by hand (the distribution API, stdlib HTTP) --------------


def _http(method: str, url: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def put_blob(host: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, _ = _http("POST", f"http://{host}/v2/{repo}/blobs/uploads/")
    assert status == 202
    location = headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    status, _, body = _http("PUT", f"{location}{sep}digest={digest}", data,
                            {"Content-Type": "application/octet-stream"})
    assert status == 201, body
    return digest


def put_manifest(host: str, repo: str, ref: str, doc: dict, media_type: str) -> str:
    body = json.dumps(doc).encode()
    status, _, out = _http("PUT", f"http://{host}/v2/{repo}/manifests/{ref}", body,
                           {"Content-Type": media_type})
    assert status == 201, out
    return "sha256:" + hashlib.sha256(body).hexdigest()


def layer_of(files: dict[str, bytes]) -> bytes:
    def build(tar: tarfile.TarFile) -> None:
        for name, data in files.items():
            add(tar, name, data)
    return tar_bytes(build)


def push_image(host: str, repo: str, tag: str, layers: list[tuple[bytes, bytes, str]],
               manifest_type: str = DOCKER_MANIFEST, arch: str = "amd64",
               cmd: list[str] | None = None) -> tuple[str, str]:
    """``layers``: (uncompressed tar, blob as sent, media type). Returns the manifest digest
    and the image id (the config's digest)."""
    config = json.dumps({"architecture": arch, "os": "linux",
                         "config": {"Cmd": cmd or ["sh"], "Labels": {"built": "by-test"}},
                         "rootfs": {"type": "layers",
                                    "diff_ids": [diff_id(t) for t, _, _ in layers]}}).encode()
    config_type = "application/vnd.docker.container.image.v1+json" \
        if manifest_type == DOCKER_MANIFEST else "application/vnd.oci.image.config.v1+json"
    doc = {"schemaVersion": 2, "mediaType": manifest_type,
           "config": {"mediaType": config_type, "size": len(config),
                      "digest": put_blob(host, repo, config)},
           "layers": [{"mediaType": mt, "size": len(blob), "digest": put_blob(host, repo, blob)}
                      for _, blob, mt in layers]}
    return put_manifest(host, repo, tag, doc, manifest_type), \
        "sha256:" + hashlib.sha256(config).hexdigest()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def pull_messages(api: Client, image: str, tag: str = "", **query: str) -> list[dict]:
    resp = api.request("POST", "/images/create", {"fromImage": image, "tag": tag, **query})
    return [json.loads(line) for line in resp.read().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def shared_registry() -> Iterator[Any]:
    """One registry for the tests that do not kill it (each uses its own repositories)."""
    with running_registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def shared_daemon() -> Iterator[Any]:
    """One ``process`` daemon (``empty:latest``) for the tests that do not prune or kill it."""
    with api_daemon({"default-runtime": "process"}) as d:
        yield d


@pytest.fixture(scope="module")
def shared_engine(busybox_tar) -> Iterator[RestartableDaemon]:
    """One daemon on runc with busybox (root), else ``process`` with ``empty:latest``."""
    with running_daemon("runc" if RUNC else "process", busybox_tar) as d:
        yield d


@pytest.fixture
def shared_api(shared_daemon) -> Client:
    return Client(shared_daemon.host, autostart=False)


@pytest.fixture
def lp_env(tmp_path) -> Iterator[dict[str, str]]:
    """The environment of a CLI run with its own ``~/.docker`` (``DOCKER_CONFIG``)."""
    yield dict(os.environ, DOCKER_CONFIG=str(tmp_path / "dockercfg"), LOGPIPE_NO_AUTOSTART="1")


def lp(d, env: dict[str, str], *args: str, stdin: bytes | None = None
       ) -> subprocess.CompletedProcess:
    return logpipe(*args, env=dict(env, LOGPIPE_HOST=d.host), input=stdin, timeout=120)


# -- pull and push ---------------------------------------------------------------------------


@pytest.mark.skipif(not RUNC, reason="needs root, runc and busybox-static")
def test_push_then_pull_on_a_second_daemon_runs_the_image(shared_engine, shared_registry, lp_env):
    d = shared_engine
    name = f"{shared_registry.host}/team/busybox:v1"
    assert lp(d, lp_env, "tag", "busybox", name).returncode == 0
    res = lp(d, lp_env, "push", name)
    assert res.returncode == 0, cli_errors(res)
    lines = res.stdout.decode().splitlines()
    assert lines[0] == f"The push refers to repository [{shared_registry.host}/team/busybox]"
    assert lines[1].endswith(": Pushed") and lines[2].startswith("v1: digest: sha256:")
    digest = lines[2].split()[2]
    again = lp(d, lp_env, "push", name).stdout.decode().splitlines()
    assert again[1].endswith(": Layer already exists") and again[2] == lines[2]

    with running_daemon("runc", None) as other:
        res = lp(other, lp_env, "pull", name)
        assert res.returncode == 0, cli_errors(res)
        out = res.stdout.decode().splitlines()
        assert out[0] == "v1: Pulling from team/busybox"
        assert out[1].endswith(": Pull complete")
        assert out[-3:] == [f"Digest: {digest}", f"Status: Downloaded newer image for {name}",
                            name]
        res = lp(other, lp_env, "run", "--rm", name, "echo", "pulled and running")
        assert (res.returncode, res.stdout) == (0, b"pulled and running\n"), cli_errors(res)
        digests = other.inspect(name, "{{json .RepoDigests}}")
        assert json.loads(digests) == [f"{shared_registry.host}/team/busybox@{digest}"]
        table = lp(other, lp_env, "images", "--digests").stdout.decode()
        assert digest in table and "DIGEST" in table.splitlines()[0]
        up = lp(other, lp_env, "pull", name).stdout.decode().splitlines()
        assert up[1:] == [f"Digest: {digest}", f"Status: Image is up to date for {name}", name]


def test_pull_progress_messages_are_dockers(shared_api, shared_registry):
    layer = layer_of({"hello.txt": b"hello\n" * 50000})
    digest, image_id = push_image(shared_registry.host, "lib/app", "1.0",
                                  [(layer, gz(layer), GZIP_LAYER)])
    msgs = pull_messages(shared_api, f"{shared_registry.host}/lib/app", "1.0")
    short = hashlib.sha256(gz(layer)).hexdigest()[:12]
    statuses = [(m.get("status"), m.get("id")) for m in msgs]
    assert statuses[0] == ("Pulling from lib/app", "1.0")
    assert ("Pulling fs layer", short) in statuses and ("Pull complete", short) in statuses
    assert statuses.index(("Verifying Checksum", short)) < statuses.index(
        ("Download complete", short)) < statuses.index(("Pull complete", short))
    assert statuses[-2:] == [(f"Digest: {digest}", None),
                             ("Status: Downloaded newer image for "
                              f"{shared_registry.host}/lib/app:1.0",
                              None)]
    image = shared_api.json("GET", f"/images/{shared_registry.host}/lib/app:1.0/json")
    assert image["Id"] == image_id
    assert image["RepoDigests"] == [f"{shared_registry.host}/lib/app@{digest}"]
    assert image["Config"]["Labels"] == {"built": "by-test"}


def test_unknown_manifest_and_bad_references_are_dockers_errors(shared_api, shared_registry,
                                                                shared_daemon, lp_env):
    with pytest.raises(APIError) as err:
        shared_api.request("POST", "/images/create", {"fromImage": f"{shared_registry.host}/nope",
                                               "tag": "x"})
    assert (err.value.status, str(err.value)) == (
        404, f"manifest for {shared_registry.host}/nope:x not found: manifest unknown: "
             "manifest unknown")
    for bad in ("Busybox", "a b", "busybox:", "x@sha256:12"):
        with pytest.raises(APIError) as err:
            shared_api.request("POST", "/images/create", {"fromImage": bad})
        assert err.value.status == 400 and str(err.value).startswith("invalid reference format")
    res = lp(shared_daemon, lp_env, "pull", "UPPER")
    assert (res.returncode, res.stderr) == (
        1, b"invalid reference format: repository name must be lowercase\n")
    res = lp(shared_daemon, lp_env, "pull", "127.0.0.1:1/nothing-listens")
    assert res.returncode == 1 and b"connection refused" in res.stderr.lower()


def test_manifest_list_picks_the_platform_and_oci_zstd_and_plain_layers_work(
        shared_api, shared_registry, shared_daemon):
    zstandard = pytest.importorskip("zstandard")
    base = layer_of({"etc/os": b"base\n", "shared/big": os.urandom(1 << 16)})
    top = layer_of({"etc/top": b"zstd layer\n"})
    plain = layer_of({"etc/plain": b"uncompressed\n"})
    amd, amd_id = push_image(shared_registry.host, "multi", "amd", [
        (base, gz(base), GZIP_LAYER), (top, zstandard.ZstdCompressor().compress(top), OCI_ZSTD),
        (plain, plain, OCI_TAR)], OCI_MANIFEST)
    arm, arm_id = push_image(shared_registry.host, "multi", "arm", [(base, gz(base), GZIP_LAYER)],
                             OCI_MANIFEST, arch="arm64")

    def entry(digest: str, arch: str) -> dict:
        size = len(_http("GET", f"http://{shared_registry.host}/v2/multi/manifests/{digest}",
                         headers={"Accept": OCI_MANIFEST})[2])
        return {"mediaType": OCI_MANIFEST, "digest": digest, "size": size,
                "platform": {"os": "linux", "architecture": arch}}

    index = put_manifest(shared_registry.host, "multi", "latest", {
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [entry(arm, "arm64"), entry(amd, "amd64")]}, OCI_INDEX)
    msgs = pull_messages(shared_api, f"{shared_registry.host}/multi", "latest",
                         platform="linux/amd64")
    assert msgs[-2]["status"] == f"Digest: {index}"
    image = shared_api.json("GET", f"/images/{shared_registry.host}/multi:latest/json")
    assert image["Id"] == amd_id
    assert image["RepoDigests"] == [f"{shared_registry.host}/multi@{index}"]
    rootfs = os.path.join(shared_daemon.root, "images", amd_id[7:], "rootfs")
    with open(os.path.join(rootfs, "etc/top"), "rb") as f:
        assert f.read() == b"zstd layer\n"
    with open(os.path.join(rootfs, "etc/plain"), "rb") as f:
        assert f.read() == b"uncompressed\n"

    # The arm64 image shares the base layer: it is stored once, and not fetched again.
    msgs = pull_messages(shared_api, f"{shared_registry.host}/multi", "latest",
                         platform="linux/arm64")
    assert ("Already exists", hashlib.sha256(gz(base)).hexdigest()[:12]) in [
        (m.get("status"), m.get("id")) for m in msgs]
    pulled = shared_api.json("GET", f"/images/{shared_registry.host}/multi:latest/json")
    assert pulled["Id"] == arm_id
    layers = os.listdir(os.path.join(shared_daemon.root, "images", "layers"))
    assert {f"{diff_id(t)[7:]}.tar" for t in (base, top, plain)} <= set(layers)
    with pytest.raises(APIError) as err:
        shared_api.request("POST", "/images/create", {"fromImage": f"{shared_registry.host}/multi",
                                               "platform": "linux/s390x"})
    assert "no matching manifest for linux/s390x" in str(err.value)


def test_pull_by_digest_records_the_digest_and_no_tag(shared_api, shared_registry):
    layer = layer_of({"a": b"1"})
    digest, image_id = push_image(shared_registry.host, "bydigest", "t", [(layer, gz(layer),
                                                                     GZIP_LAYER)])
    msgs = pull_messages(shared_api, f"{shared_registry.host}/bydigest", digest)
    assert msgs[0] == {"status": "Pulling from bydigest", "id": digest}
    image = shared_api.json("GET", f"/images/{shared_registry.host}/bydigest@{digest}/json")
    assert image["Id"] == image_id and image["RepoTags"] == []


def test_corrupted_blob_in_the_registry_is_refused_and_nothing_is_stored(
        shared_api, shared_registry, shared_daemon):
    layer = layer_of({"data": os.urandom(4096)})
    blob = gz(layer)
    push_image(shared_registry.host, "corrupt", "1", [(layer, blob, GZIP_LAYER)])
    path = shared_registry.blob_path("sha256:" + hashlib.sha256(blob).hexdigest())
    with open(path, "r+b") as f:  # same length, other bytes: only the digest can tell
        f.seek(len(blob) // 2)
        f.write(b"\0" * 16)
    msgs = pull_messages(shared_api, f"{shared_registry.host}/corrupt", "1")
    assert msgs[-1]["error"].startswith("filesystem layer verification failed for digest")
    assert msgs[-1]["errorDetail"] == {"message": msgs[-1]["error"]}
    images = os.path.join(shared_daemon.root, "images")
    assert f"{diff_id(layer)[7:]}.tar" not in os.listdir(os.path.join(images, "layers"))
    assert os.listdir(os.path.join(images, "tmp")) == []
    assert "corrupt" not in json.dumps(shared_api.json("GET", "/images/json"))


# -- faults mid-pull ---------------------------------------------------------------------------


class ThrottledProxy:
    """A TCP relay in front of the registry that sends its answers at ``rate`` bytes/s, so
    that a pull is still downloading when the test kills something."""

    def __init__(self, upstream_port: int, rate: int = 4 << 20) -> None:
        self.upstream, self.rate = upstream_port, rate
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.sock.accept()
                server = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                return
            self.conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server, 0), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, self.rate),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, rate: int) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(64 << 10):
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)  # the throttle itself, not a wait for anything
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed.set()
        self.sock.close()
        for s in self.conns:  # shutdown first: it wakes the relay threads blocked in recv
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def big_image(registry) -> Iterator[tuple[ThrottledProxy, str]]:
    """A 12 MB image (incompressible) behind a 2 MB/s relay: ~6 s of download."""
    layer = layer_of({"big": os.urandom(12 << 20)})
    push_image(registry.host, "big", "1", [(layer, gz(layer), GZIP_LAYER)])
    proxy = ThrottledProxy(registry.port, rate=2 << 20)
    try:
        yield proxy, f"{proxy.host}/big"
    finally:
        proxy.close()


def _stream_until_downloading(host: str, image: str) -> Any:
    resp = Client(host, autostart=False).request("POST", "/images/create",
                                                 {"fromImage": image, "tag": "1"})
    for line in resp:
        if json.loads(line).get("status") == "Downloading":
            return resp
    raise AssertionError("the pull ended before downloading")


def _nothing_half_written(root: str) -> None:
    images = os.path.join(root, "images")
    assert [n for n in os.listdir(os.path.join(images, "layers"))] == []
    assert not [n for n in os.listdir(images) if len(n) == 64]


def test_registry_killed_mid_pull_then_a_second_pull_works(shared_api, shared_daemon, registry,
                                                           big_image):
    proxy, image = big_image
    images = os.path.join(shared_daemon.root, "images")
    before = len([n for n in os.listdir(images) if len(n) == 64])
    resp = _stream_until_downloading(shared_daemon.host, image)
    registry.kill()
    proxy.close()
    rest = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert "error" in rest[-1]
    assert f"{image}:1" not in json.dumps(shared_api.json("GET", "/images/json"))
    assert len([n for n in os.listdir(images) if len(n) == 64]) == before
    assert not [n for n in os.listdir(os.path.join(images, "layers")) if n.endswith(".tar")
                and os.path.getsize(os.path.join(images, "layers", n)) > 10 << 20]
    assert os.listdir(os.path.join(images, "tmp")) == []
    registry.start()
    msgs = pull_messages(shared_api, f"{registry.host}/big", "1")
    assert msgs[-1]["status"] == f"Status: Downloaded newer image for {registry.host}/big:1"


def test_client_that_hangs_up_mid_pull_leaves_nothing_half_written(shared_api, shared_daemon,
                                                                    registry, big_image):
    proxy, image = big_image
    images = os.path.join(shared_daemon.root, "images")
    before = sorted(os.listdir(images))
    conn = socket.socket(socket.AF_UNIX)
    conn.connect(shared_daemon.host.removeprefix("unix://"))
    conn.sendall(f"POST /v1.41/images/create?fromImage={image}&tag=1 HTTP/1.1\r\n"
                 "Host: localhost\r\nContent-Length: 0\r\n\r\n".encode())
    received = b""
    while b"Downloading" not in received:
        data = conn.recv(65536)
        assert data, received
        received += data
    conn.close()

    def abandoned() -> bool:
        return os.listdir(os.path.join(images, "tmp")) == [] and \
            sorted(os.listdir(images)) == before
    wait_until(abandoned, timeout=30, what="the abandoned pull to clean up")
    assert f"{image}:1" not in json.dumps(shared_api.json("GET", "/images/json"))


def test_daemon_killed_mid_pull_leaves_nothing_and_the_pull_works_after_restart(
        registry, big_image, lp_env):
    proxy, image = big_image
    d = RestartableDaemon("process")
    try:
        d.start()
        _stream_until_downloading(d.host, image)
        d.sigkill()
        d.start()
        _nothing_half_written(d.root)
        assert os.listdir(os.path.join(d.root, "images", "tmp")) == []
        res = lp(d, lp_env, "pull", f"{registry.host}/big:1")
        assert res.returncode == 0, cli_errors(res)
    finally:
        d.close()


def test_full_disk_during_pull_is_an_error_and_stores_nothing(registry):
    layer = layer_of({"big": os.urandom(12 << 20)})
    push_image(registry.host, "toobig", "1", [(layer, gz(layer), GZIP_LAYER)])
    d = RestartableDaemon("process")
    try:
        with tmpfs(d.root, "8m"):
            try:
                d.start()
                try:
                    msgs = pull_messages(Client(d.host, autostart=False),
                                         f"{registry.host}/toobig", "1")
                    assert "no space left on device" in msgs[-1]["error"]
                except APIError as err:  # the disk filled before the first message
                    assert "no space left on device" in str(err)
                _nothing_half_written(d.root)
                assert os.listdir(os.path.join(d.root, "images", "tmp")) == []
            finally:
                if d.current is not None:
                    stop_daemon(d.current)
                    d.current = None
    finally:
        d.close()


# -- docker CLI and docker-py ------------------------------------------------------------------


def test_docker_cli_pull_push_tag_save_images_digests(shared_engine, shared_registry, tmp_path):
    if shutil.which("docker") is None:
        pytest.skip("needs the docker CLI")
    d = shared_engine
    image = "busybox:latest" if d.runtime == "runc" else "empty:latest"
    target = f"{shared_registry.host}/cli/img:7"
    assert docker_cli(d, "tag", image, target).returncode == 0
    res = docker_cli(d, "push", target)
    assert res.returncode == 0, res.stderr
    assert b"7: digest: sha256:" in res.stdout
    assert docker_cli(d, "rmi", target).returncode == 0
    res = docker_cli(d, "pull", target)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().splitlines()[-1] == target
    res = docker_cli(d, "images", "--digests", f"{shared_registry.host}/cli/img")
    assert b"sha256:" in res.stdout, res
    res = docker_cli(d, "pull", f"{shared_registry.host}/cli/img:nope")
    assert res.returncode == 1 and b"manifest unknown" in res.stderr
    out = tmp_path / "saved.tar"
    res = docker_cli(d, "save", "-o", str(out), target)
    assert res.returncode == 0, res.stderr
    with tarfile.open(out) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
        repositories = json.load(tar.extractfile("repositories"))
    assert manifest[0]["RepoTags"] == [target]
    assert all(layer in names for layer in manifest[0]["Layers"])
    assert manifest[0]["Config"] in names
    assert list(repositories) == [f"{shared_registry.host}/cli/img"]
    assert all(f"{os.path.dirname(p)}/VERSION" in names for p in manifest[0]["Layers"])
    # and our own load takes it back
    assert docker_cli(d, "rmi", target).returncode == 0
    res = d.lp("load", "-i", str(out))
    assert res.returncode == 0 and res.stdout == f"Loaded image: {target}\n".encode()


def test_docker_cli_run_pulls_a_missing_image(shared_engine, shared_registry):
    if shutil.which("docker") is None:
        pytest.skip("needs the docker CLI")
    d = shared_engine
    image = "busybox:latest" if d.runtime == "runc" else "empty:latest"
    target = f"{shared_registry.host}/auto:1"
    d.ok("tag", image, target)
    d.ok("push", target)
    d.ok("rmi", target)
    res = docker_cli(d, "create", target, "true")
    assert res.returncode == 0, res.stderr
    assert res.stderr.decode().startswith(f"Unable to find image '{target}' locally\n")
    # and ours: the same line, the pull on stderr, the container id on stdout
    d.ok("rmi", "-f", target)
    res = d.lp("create", target, "true")
    assert res.returncode == 0, res.stderr
    err = res.stderr.decode().splitlines()
    assert err[0] == f"Unable to find image '{target}' locally"
    assert err[-1] == target and len(res.stdout.strip()) == 64
    res = d.lp("create", "--pull", "never", f"{shared_registry.host}/absent:1", "true")
    assert res.returncode != 0
    assert b"No such image: " + f"{shared_registry.host}/absent:1".encode() in res.stderr


def test_docker_py_pull_push_tag_save(shared_engine, shared_registry):
    docker = pytest.importorskip("docker")
    d = shared_engine
    image = "busybox:latest" if d.runtime == "runc" else "empty:latest"
    client = docker.DockerClient(base_url=d.host)
    try:
        local = client.images.get(image)
        assert local.tag(f"{shared_registry.host}/py", "1")
        lines = list(client.images.push(f"{shared_registry.host}/py", tag="1", stream=True,
                                        decode=True))
        assert lines[0] == {"status": f"The push refers to repository [{shared_registry.host}/py]"}
        assert lines[-1]["aux"]["Tag"] == "1"
        pulled = client.images.pull(f"{shared_registry.host}/py", tag="1")
        assert f"{shared_registry.host}/py:1" in pulled.tags
        assert f"{shared_registry.host}/py@{lines[-1]['aux']['Digest']}" in \
            pulled.attrs["RepoDigests"]
        data = b"".join(pulled.save())
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            assert "manifest.json" in tar.getnames()
        with pytest.raises(docker.errors.NotFound):
            client.images.pull(f"{shared_registry.host}/py", tag="missing")
    finally:
        client.close()


# -- login ---------------------------------------------------------------------------------------


def test_login_logout_and_basic_auth_registry(htpasswd_registry, shared_daemon, lp_env):
    reg = htpasswd_registry
    target = f"{reg.host}/secret:1"
    assert lp(shared_daemon, lp_env, "tag", "empty:latest", target).returncode == 0
    res = lp(shared_daemon, lp_env, "push", target)
    assert res.returncode == 1 and b"unauthorized" in res.stderr.lower(), res
    res = lp(shared_daemon, lp_env, "login", "-u", "lp", "--password-stdin", reg.host,
             stdin=b"wrong\n")
    assert res.returncode == 1
    assert res.stderr.decode() == (f"Error response from daemon: login attempt to "
                                   f"https://{reg.host}/v2/ failed with status: 401 "
                                   "Unauthorized\n").replace("https", "http")
    res = lp(shared_daemon, lp_env, "login", "-u", "lp", "-p", "secret", reg.host)
    assert res.returncode == 0 and res.stdout == b"Login Succeeded\n", res
    with open(os.path.join(lp_env["DOCKER_CONFIG"], "config.json")) as f:
        auths = json.load(f)["auths"]
    import base64
    assert auths == {reg.host: {"auth": base64.b64encode(b"lp:secret").decode()}}
    res = lp(shared_daemon, lp_env, "push", target)
    assert res.returncode == 0, cli_errors(res)
    assert lp(shared_daemon, lp_env, "rmi", target).returncode == 0
    res = lp(shared_daemon, lp_env, "pull", target)
    assert res.returncode == 0, cli_errors(res)
    res = lp(shared_daemon, lp_env, "logout", reg.host)
    assert res.stdout == f"Removing login credentials for {reg.host}\n".encode()
    res = lp(shared_daemon, lp_env, "pull", target)
    assert res.returncode == 1
    assert res.stderr.decode() == (
        f"Error response from daemon: pull access denied for {reg.host}/secret, repository "
        "does not exist or may require 'docker login': denied: requested access to the "
        "resource is denied\n")


# -- tag, images filters, prune, save --------------------------------------------------------


def test_tag_filters_and_prune(api, daemon, lp_env):
    assert lp(daemon, lp_env, "tag", "empty:latest", "other/name:v2").returncode == 0
    status = api.request("POST", "/images/empty:latest/tag", {"repo": "x", "tag": "1"})
    assert status.status == 201 and status.read() == b""
    with pytest.raises(APIError) as err:
        api.request("POST", "/images/empty:latest/tag", {"repo": "Bad"})
    assert err.value.status == 400
    with pytest.raises(APIError) as err:
        api.request("POST", "/images/nothere/tag", {"repo": "x"})
    assert (err.value.status, str(err.value)) == (404, "No such image: nothere:latest")
    ref = lp(daemon, lp_env, "images", "-f", "reference=other/*")
    assert [line.split()[:2] for line in ref.stdout.decode().splitlines()[1:]] == [
        ["other/name", "v2"]]
    dangling = api.json("GET", "/images/json", {"filters": '{"dangling":["true"]}'})
    assert dangling == []
    with pytest.raises(APIError) as err:
        api.json("GET", "/images/json", {"filters": '{"nope":["1"]}'})
    assert (err.value.status, str(err.value)) == (400, "invalid filter 'nope'")
    res = lp(daemon, lp_env, "image", "prune", "-f")
    assert res.stdout == b"Total reclaimed space: 0B\n"
    for t in ("empty:latest", "x:1"):
        lp(daemon, lp_env, "rmi", t)
    res = lp(daemon, lp_env, "image", "prune", "-a", "-f")
    out = res.stdout.decode()
    assert out.startswith("Deleted Images:\nuntagged: other/name:v2\ndeleted: sha256:")
    assert api.json("GET", "/images/json") == []


def test_save_of_several_names_is_one_archive_our_load_reads(shared_api, shared_daemon, lp_env,
                                                             tmp_path):
    lp(shared_daemon, lp_env, "tag", "empty:latest", "second:1")
    out = tmp_path / "both.tar"
    res = lp(shared_daemon, lp_env, "save", "-o", str(out), "empty:latest", "second:1")
    assert res.returncode == 0, cli_errors(res)
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        config = json.load(tar.extractfile(manifest[0]["Config"]))
    assert len(manifest) == 1 and manifest[0]["RepoTags"] == ["empty:latest", "second:1"]
    assert len(config["rootfs"]["diff_ids"]) == len(manifest[0]["Layers"]) == 1
    for t in ("empty:latest", "second:1"):
        lp(shared_daemon, lp_env, "rmi", t)
    res = lp(shared_daemon, lp_env, "load", "-i", str(out))
    assert res.stdout == b"Loaded image: empty:latest\nLoaded image: second:1\n", res
    res = lp(shared_daemon, lp_env, "save", "empty:latest")
    assert res.returncode == 0 and res.stdout[257:262] == b"ustar"  # a tar on stdout
    with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tar:  # what was loaded, kept as is
        assert json.load(tar.extractfile("manifest.json"))[0]["Config"] == manifest[0]["Config"]
    image_id = shared_api.json("GET", "/images/empty:latest/json")["Id"]
    assert f"{image_id[7:]}.json" == manifest[0]["Config"]


def test_token_auth_registry_pull_push_and_login(token_registry, shared_daemon, lp_env):
    """Bearer tokens: the registry is real; its token server is ``FakeTokenServer`` because
    no real one (Docker Hub's, docker_auth, Harbor) installs from Debian or PyPI here."""
    reg, tokens = token_registry
    target = f"{reg.host}/private/app:1"
    assert lp(shared_daemon, lp_env, "tag", "empty:latest", target).returncode == 0
    res = lp(shared_daemon, lp_env, "push", target)  # anonymous: a token granting nothing
    assert res.returncode == 1 and b"unauthorized" in res.stderr.lower(), res
    res = lp(shared_daemon, lp_env, "login", "-u", "lp", "-p", "bad", reg.host)
    assert res.returncode == 1 and b"unauthorized" in res.stderr.lower(), res
    res = lp(shared_daemon, lp_env, "login", "-u", "lp", "--password-stdin", reg.host,
             stdin=b"secret\n")
    assert res.stdout == b"Login Succeeded\n", res
    res = lp(shared_daemon, lp_env, "push", target)
    assert res.returncode == 0, cli_errors(res)
    assert any("scope=repository:private/app:pull,push" in urllib.parse.unquote(r)
               for r in tokens.requests)
    assert lp(shared_daemon, lp_env, "rmi", target).returncode == 0
    res = lp(shared_daemon, lp_env, "pull", target)
    assert res.returncode == 0, cli_errors(res)
    # The docker CLI's login goes through our POST /auth, and its pull sends X-Registry-Auth
    docker = shutil.which("docker")
    if docker is None:
        return
    env = dict(lp_env, DOCKER_CONFIG=os.path.join(lp_env["DOCKER_CONFIG"], "docker"))
    res = subprocess.run([docker, "-H", shared_daemon.host, "login", "-u", "lp",
                          "--password-stdin", reg.host], input=b"secret\n", env=env,
                         capture_output=True, timeout=60)
    assert res.returncode == 0 and b"Login Succeeded" in res.stdout, res
    assert lp(shared_daemon, lp_env, "rmi", target).returncode == 0
    res = subprocess.run([docker, "-H", shared_daemon.host, "pull", target], env=env,
                         capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr


def test_docker_hub_names_are_pulled_from_the_registry_mirror(shared_registry):
    layer = layer_of({"m": b"from the mirror\n"})
    digest, image_id = push_image(shared_registry.host, "library/mirrored", "1",
                                  [(layer, gz(layer), GZIP_LAYER)])
    with api_daemon({"default-runtime": "process",
                     "registry-mirrors": [f"http://{shared_registry.host}"]}) as d:
        api = Client(d.host, autostart=False)
        msgs = pull_messages(api, "mirrored", "1")
        assert msgs[0] == {"status": "Pulling from library/mirrored", "id": "1"}
        image = api.json("GET", "/images/mirrored:1/json")
        assert image["Id"] == image_id and image["RepoDigests"] == [f"mirrored@{digest}"]
        assert api.json("GET", "/images/docker.io/library/mirrored:1/json")["Id"] == image_id


@pytest.mark.parametrize("method, path, query, body, status, message", [
    ("POST", "/auth", None, b"{not json", 400, None),
    ("POST", "/auth", None, b'{"username": 5}', 400, None),
    ("POST", "/images/nothere:1/push", None, None, 404,
     "An image does not exist locally with the tag: nothere"),
    ("POST", "/images/empty:latest/tag", {"tag": "x"}, None, 400, None),
    ("POST", "/images/empty:latest/tag", {"repo": "ok", "tag": "bad tag"}, None, 400,
     "invalid reference format"),
    ("GET", "/images/nothere/get", None, None, 404, "No such image: nothere:latest"),
    ("GET", "/images/get", None, None, 400, "no images specified"),
    ("POST", "/images/prune", {"filters": '{"until":["yesterday"]}'}, None, 400, None),
    ("POST", "/images/prune", {"filters": '{"bogus":["1"]}'}, None, 400,
     "invalid filter 'bogus'"),
    ("GET", "/images/json", {"filters": "{"}, None, 400, None),
    ("POST", "/images/create", {"fromImage": "x", "platform": "linux/amd64", "tag": "a b"},
     None, 400, "invalid reference format"),
])
def test_bad_requests_to_the_registry_routes_are_dockers_4xx(shared_api, method, path, query,
                                                             body, status, message):
    with pytest.raises(APIError) as err:
        shared_api.request(method, path, query, body=body,
                           headers={"Content-Type": "application/json"} if body else None)
    assert err.value.status == status
    if message:
        assert str(err.value) == message


@pytest.mark.skipif(not RUNC, reason="needs root, runc and busybox-static")
def test_build_pulls_a_base_image_that_is_not_here(shared_engine, shared_registry, lp_env,
                                                   tmp_path):
    d = shared_engine
    name = f"{shared_registry.host}/base/busybox:b1"
    assert lp(d, lp_env, "tag", "busybox", name).returncode == 0
    assert lp(d, lp_env, "push", name).returncode == 0
    assert lp(d, lp_env, "rmi", name).returncode == 0
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(
        f'FROM {name}\nCMD ["echo", "built on a pulled base"]\n')
    res = lp(d, lp_env, "build", "-t", "onpulled:1", str(tmp_path / "ctx"))
    assert res.returncode == 0, cli_errors(res)
    out = res.stdout.decode()
    assert "b1: Pulling from base/busybox" in out, out
    assert out.rstrip().endswith("Successfully tagged onpulled:1")
    res = lp(d, lp_env, "run", "--rm", "--network", "none", "onpulled:1")
    assert res.stdout == b"built on a pulled base\n", cli_errors(res)
    # A base that no registry has: the registry's refusal ends the build.
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM {shared_registry.host}/nosuch:1\n")
    res = lp(d, lp_env, "build", str(tmp_path / "ctx"))
    assert res.returncode != 0
    assert "manifest unknown" in res.stderr.decode() or "not found" in res.stderr.decode()
    assert lp(d, lp_env, "rmi", "onpulled:1", name).returncode == 0
