"""The registry client's pure parts: Docker's reference grammar, credentials files and headers,
challenges, the scheme choice, manifest lists, layer decompression and the daemon.json keys."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os

import pytest

from runtime.config import ConfigError, load_config
from runtime.registry import auth, manifests, reference
from runtime.registry.blobs import LayerSink
from runtime.registry.client import RegistryError, is_insecure

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text, expected", [
    ("busybox", ("docker.io", "library/busybox", "latest", "", "busybox:latest")),
    ("docker.io/library/busybox:1.36", ("docker.io", "library/busybox", "1.36", "",
                                        "busybox:1.36")),
    ("index.docker.io/user/app", ("docker.io", "user/app", "latest", "", "user/app:latest")),
    ("localhost/app", ("localhost", "app", "latest", "", "localhost/app:latest")),
    ("127.0.0.1:5000/a/b/c:v_1.0-rc", ("127.0.0.1:5000", "a/b/c", "v_1.0-rc", "",
                                       "127.0.0.1:5000/a/b/c:v_1.0-rc")),
    ("reg.example.com/x@sha256:" + "a" * 64, ("reg.example.com", "x", "", "sha256:" + "a" * 64,
                                              "reg.example.com/x@sha256:" + "a" * 64)),
])
def test_references_normalise_as_docker_does(text, expected):
    r = reference.parse(text)
    assert (r.domain, r.path, r.tag, r.digest, r.familiar) == expected


@pytest.mark.parametrize("text, message", [
    ("Busybox", "invalid reference format: repository name must be lowercase"),
    ("busybox:", "invalid reference format"),
    ("a b", "invalid reference format"),
    ("x@sha256:abc", "invalid reference format"),
    ("-x", "invalid reference format"),
    ("x:" + "t" * 129, "invalid reference format"),
])
def test_bad_references_are_docker_invalid_reference_format(text, message):
    with pytest.raises(reference.InvalidReference) as err:
        reference.parse(text)
    assert str(err.value) == message and err.value.status == 400


def test_create_query_tag_may_be_a_digest():
    digest = "sha256:" + "b" * 64
    assert reference.from_query("busybox", digest).digest == digest
    assert reference.from_query("busybox", "1.2").tag == "1.2"
    assert reference.from_query("busybox:9", "").tag == "9"


def test_registry_auth_header_round_trips_and_tolerates_padding_and_junk():
    creds = auth.Credentials("me", "p@ss:word")
    header = auth.encode_header(creds, "localhost:5000")
    assert "=" not in header.rstrip("=") and auth.decode_header(header) == creds
    assert auth.decode_header(header.rstrip("=")) == creds  # docker CLI sends it unpadded
    assert auth.decode_header("e30=") == auth.NONE  # "{}": what docker sends without a login
    assert auth.decode_header("%%%") == auth.NONE and auth.decode_header(None) == auth.NONE


def test_config_json_is_written_and_read_as_the_docker_cli_does(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "", "psFormat": "x"}))
    auth.save_credentials(auth.server_key("https://localhost:5000/"), auth.Credentials("u", "p"))
    auth.save_credentials(auth.server_key("docker.io"), auth.Credentials("hub", "pw"))
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["psFormat"] == "x"  # keys logpipe does not know stay
    assert data["auths"] == {"localhost:5000": {"auth": base64.b64encode(b"u:p").decode()},
                             "https://index.docker.io/v1/": {
                                 "auth": base64.b64encode(b"hub:pw").decode()}}
    assert oct(os.stat(tmp_path / "config.json").st_mode & 0o777) == "0o600"
    assert auth.stored_credentials("localhost:5000") == auth.Credentials("u", "p")
    assert auth.stored_credentials(reference.parse("busybox").auth_key).username == "hub"
    assert auth.remove_credentials("localhost:5000")
    assert not auth.remove_credentials("localhost:5000")
    assert auth.stored_credentials("localhost:5000") == auth.NONE


def test_challenges_parse_quoted_and_bare_values():
    scheme, params = auth.parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"')
    assert scheme == "bearer" and params == {
        "realm": "https://auth.docker.io/token", "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull"}
    assert auth.parse_challenge('Basic realm=basic-realm') == ("basic", {"realm": "basic-realm"})


def test_loopback_and_listed_registries_are_insecure():
    for host in ("localhost:5000", "127.0.0.1:5000", "127.3.4.5", "[::1]:5000", "localhost"):
        assert is_insecure(host, ()), host
    assert not is_insecure("registry-1.docker.io", ())
    assert is_insecure("10.1.2.3:5000", ["10.0.0.0/8"])
    assert is_insecure("myreg:5000", ["myreg:5000"]) and not is_insecure("other:5000",
                                                                          ["myreg:5000"])


def test_manifest_list_picks_the_platform_or_says_none_matches():
    doc = json.dumps({"manifests": [
        {"digest": "sha256:arm", "mediaType": manifests.OCI_MANIFEST, "size": 1,
         "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
        {"digest": "sha256:armv7", "mediaType": manifests.OCI_MANIFEST, "size": 1,
         "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"digest": "sha256:amd", "mediaType": manifests.OCI_MANIFEST, "size": 1,
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    assert manifests.pick_platform(doc, "linux/amd64").digest == "sha256:amd"
    assert manifests.pick_platform(doc, "linux/arm/v7").digest == "sha256:armv7"
    with pytest.raises(RegistryError, match="no matching manifest for windows/amd64"):
        manifests.pick_platform(doc, "windows/amd64")


@pytest.mark.parametrize("compress", ["gzip", "zstd", "none", "pigz-members"])
def test_layer_sink_inflates_and_hashes_in_any_chunking(compress):
    tar = os.urandom(3000) + b"x" * 100_000
    if compress == "gzip":
        blob = gzip.compress(tar)
    elif compress == "pigz-members":
        blob = gzip.compress(tar[:50_000]) + gzip.compress(tar[50_000:])
    elif compress == "zstd":
        zstandard = pytest.importorskip("zstandard")
        blob = zstandard.ZstdCompressor().compress(tar)
    else:
        blob = tar
    for size in (1, 3, 4096, len(blob)):
        out = io.BytesIO()
        sink = LayerSink(out)
        for i in range(0, len(blob), size):
            sink.feed(blob[i:i + size])
        sink.close()
        sink.check()
        assert out.getvalue() == tar
        assert sink.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
        assert sink.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()


def test_a_damaged_gzip_blob_is_refused_after_its_digest_is_known():
    blob = bytearray(gzip.compress(b"y" * 50_000))
    blob[len(blob) // 2] ^= 0xFF
    sink = LayerSink(io.BytesIO())
    sink.feed(bytes(blob))
    sink.close()
    assert sink.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    with pytest.raises(RegistryError, match="damaged compressed layer"):
        sink.check()


def test_daemon_json_registry_keys(tmp_path):
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"insecure-registries": ["10.0.0.0/8", "reg:5000"],
                               "registry-mirrors": ["https://mirror.example"]}))
    c = load_config(config_file=str(cfg), data_root=str(tmp_path / "root"))
    assert c.insecure_registries == ("10.0.0.0/8", "reg:5000")
    assert c.registry_mirrors == ("https://mirror.example",)
    cfg.write_text(json.dumps({"registry-mirrors": ["mirror.example"]}))
    with pytest.raises(ConfigError, match="invalid mirror"):
        load_config(config_file=str(cfg), data_root=str(tmp_path / "root"))
    cfg.write_text(json.dumps({"insecure-registries": "reg:5000"}))
    with pytest.raises(ConfigError, match="must be a list of strings"):
        load_config(config_file=str(cfg), data_root=str(tmp_path / "root"))
