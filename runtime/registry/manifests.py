"""Image manifests: Docker's v2 schema 2, OCI image manifests, and the lists of both that
name one manifest per platform (``linux/amd64``, ``linux/arm64/v8``, ...).

Pure functions of a manifest's bytes; the caller has verified them against their digest.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

from .client import RegistryError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
#: What a pull accepts, most wanted first (dockerd sends the same list).
ACCEPT = ", ".join([DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX])
LISTS = (DOCKER_LIST, OCI_INDEX)
#: Go's names of the machines (``GOARCH``) and ARM variants.
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


class Descriptor(NamedTuple):
    media_type: str
    digest: str
    size: int

    @property
    def compression(self) -> str:
        """``gzip``, ``zstd`` or ``""`` (an uncompressed tar), from the media type."""
        if self.media_type.endswith(("gzip", "+gzip")):
            return "gzip"
        if self.media_type.endswith("zstd"):
            return "zstd"
        return ""


class Manifest(NamedTuple):
    media_type: str
    config: Descriptor
    layers: list[Descriptor]


def host_platform() -> tuple[str, str, str]:
    machine = os.uname().machine
    return "linux", GOARCH.get(machine, machine), "v7" if machine == "armv7l" else ""


def parse_platform(text: str) -> tuple[str, str, str]:
    """``linux/arm64/v8`` (Docker's ``platform=``); "" is the host's."""
    if not text:
        return host_platform()
    parts = text.lower().split("/")
    if len(parts) == 1:
        parts = ["linux", parts[0]]
    return parts[0], parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else ""


def media_type_of(body: bytes, header: str) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        raise RegistryError("invalid manifest: not JSON") from None
    return (doc.get("mediaType") if isinstance(doc, dict) else None) or header.split(";")[0]


def pick_platform(body: bytes, platform: str) -> Descriptor:
    """The entry of a manifest list for ``platform`` (Docker's error when there is none)."""
    want_os, want_arch, want_variant = parse_platform(platform)
    entries = json.loads(body).get("manifests") or []
    for entry in entries:
        p = entry.get("platform") or {}
        if p.get("os") != want_os or p.get("architecture") != want_arch:
            continue
        if want_variant and p.get("variant") and p.get("variant") != want_variant:
            continue
        return Descriptor(entry.get("mediaType", ""), entry["digest"], int(entry.get("size", 0)))
    wanted = "/".join(x for x in (want_os, want_arch, want_variant) if x)
    raise RegistryError(f"no matching manifest for {wanted} in the manifest list entries")


def parse_manifest(body: bytes, media_type: str) -> Manifest:
    doc = json.loads(body)
    if doc.get("schemaVersion") != 2 or "config" not in doc:
        raise RegistryError(f"unsupported manifest media type and no default available: "
                            f"{media_type}")

    def desc(d: dict[str, Any]) -> Descriptor:
        return Descriptor(d.get("mediaType", ""), d["digest"], int(d.get("size", 0)))

    return Manifest(media_type, desc(doc["config"]), [desc(d) for d in doc.get("layers") or []])


def build_manifest(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """A schema 2 manifest as dockerd writes it (Go's ``MarshalIndent`` with 3 spaces)."""
    doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
           "config": {"mediaType": config.media_type, "size": config.size,
                      "digest": config.digest},
           "layers": [{"mediaType": d.media_type, "size": d.size, "digest": d.digest}
                      for d in layers]}
    return json.dumps(doc, indent=3).encode()
