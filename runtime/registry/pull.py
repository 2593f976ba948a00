"""``docker pull``: manifest (list → the platform's), config, layers, as dockerd does it and
with its progress messages.

Every byte is checked: the manifest against the digest it was asked by, the config and each
blob against the manifest's digests while they stream, each layer's tar against the config's
``rootfs.diff_ids``. A layer enters the layer store only whole and verified, the image only
once all its layers are in (``ImageStore.install_layers``: one rename), so a pull that dies
(daemon killed, registry gone, disk full) leaves completed layers and nothing half-written;
the next pull fetches only what is missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from typing import Sequence

import aiohttp

from logpipe.errors import LogpipeError, NotFound

from ..images import Image, ImageStore
from . import manifests
from .auth import Credentials
from .blobs import LayerSink
from .client import (RegistryClient, RegistryError, RegistryNotFound, RegistryUnauthorized)
from .progress import Emit, progress, short, status
from .reference import DEFAULT_DOMAIN, Reference

#: dockerd's ``max-concurrent-downloads`` default.
CONCURRENT_DOWNLOADS = 3
CHUNK = 1 << 18
#: Bytes between two "Downloading" messages.
PROGRESS_EVERY = 1 << 20


class PullNotFound(NotFound):
    """The manifest or repository does not exist, or is not ours to see (Docker: 404)."""


class PullError(LogpipeError):
    """A pull failed once under way (reported in the stream)."""


def session() -> aiohttp.ClientSession:
    # Blobs are bytes to verify, never to be decoded on the way.
    return aiohttp.ClientSession(auto_decompress=False)


def _not_found(ref: Reference, err: RegistryError) -> PullNotFound:
    """dockerd's texts for a manifest it cannot have."""
    if isinstance(err, RegistryUnauthorized):
        return PullNotFound(f"pull access denied for {ref.familiar_name}, repository does not "
                            "exist or may require 'docker login': denied: requested access "
                            "to the resource is denied")
    text = str(err)
    if text.startswith("name unknown"):
        return PullNotFound(f"repository {ref.familiar_name} not found: {text}")
    what = ref.familiar_name + (f":{ref.tag}" if not ref.digest else f"@{ref.digest}")
    return PullNotFound(f"manifest for {what} not found: {text}")


async def _get_manifest(client: RegistryClient, ref: Reference, which: str) -> tuple[bytes, str]:
    resp = await client.request("GET", f"/v2/{ref.path}/manifests/{which}",
                                headers={"Accept": manifests.ACCEPT})
    body = await client.check(resp, (200,))
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if which.startswith("sha256:") and digest != which:
        raise RegistryError(f"manifest verification failed for digest {which}")
    return body, manifests.media_type_of(body, resp.headers.get("Content-Type", ""))


async def resolve(client: RegistryClient, ref: Reference, platform: str
                  ) -> tuple[str, manifests.Manifest]:
    """The digest the reference names (a list's, if a list) and the platform's manifest."""
    try:
        body, media_type = await _get_manifest(client, ref, ref.digest or ref.tag)
    except (RegistryNotFound, RegistryUnauthorized) as err:
        raise _not_found(ref, err) from None
    digest = ref.digest or "sha256:" + hashlib.sha256(body).hexdigest()
    try:
        if media_type in manifests.LISTS:
            entry = manifests.pick_platform(body, platform)
            body, media_type = await _get_manifest(client, ref, entry.digest)
        return digest, manifests.parse_manifest(body, media_type)
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise RegistryError(f"invalid manifest for {ref.familiar}: {err!r}") from None


async def _fetch_config(client: RegistryClient, ref: Reference,
                        desc: manifests.Descriptor) -> bytes:
    resp = await client.request("GET", f"/v2/{ref.path}/blobs/{desc.digest}")
    body = await client.check(resp, (200,))
    if "sha256:" + hashlib.sha256(body).hexdigest() != desc.digest:
        raise PullError(f"image config verification failed for digest {desc.digest}")
    return body


async def _download(client: RegistryClient, ref: Reference, desc: manifests.Descriptor,
                    diff_id: str, images: ImageStore, emit: Emit) -> None:
    """One layer into the layer store, verified twice, with Docker's messages."""
    id_ = short(desc.digest)
    fd, tmp = images.layers.temp_file()
    try:
        with os.fdopen(fd, "wb") as out:
            sink = LayerSink(out)
            resp = await client.request("GET", f"/v2/{ref.path}/blobs/{desc.digest}")
            try:
                if resp.status != 200:
                    await client.check(resp, (200,))
                done = reported = 0
                async for chunk in resp.content.iter_chunked(CHUNK):
                    sink.feed(chunk)
                    done += len(chunk)
                    if desc.size and done > desc.size:
                        raise PullError(f"filesystem layer verification failed for digest "
                                        f"{desc.digest}: more bytes than the manifest says")
                    if done - reported >= PROGRESS_EVERY:
                        reported = done
                        await emit(progress("Downloading", id_, done, desc.size))
            except aiohttp.ClientError as err:
                raise PullError(f"failed to download layer {desc.digest}: {err}") from None
            finally:
                resp.release()
            sink.close()
        await emit(status("Verifying Checksum", id_))
        if sink.digest != desc.digest:
            raise PullError(f"filesystem layer verification failed for digest {desc.digest}")
        sink.check()
        if sink.diff_id != diff_id:
            raise PullError(f"failed to register layer: layer {desc.digest} has diff id "
                            f"{sink.diff_id}, the image config says {diff_id}")
        await emit(status("Download complete", id_))
        images.layers.put(tmp, diff_id)
        images.layers.note_blob(diff_id, desc.digest, desc.media_type, desc.size)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


async def pull(images: ImageStore, ref: Reference, creds: Credentials, emit: Emit, *,
               platform: str = "", insecure: Sequence[str] = (),
               mirrors: Sequence[str] = ()) -> Image:
    """Pull ``ref`` into ``images``; errors before the first message are the caller's HTTP
    answer (dockerd's 404s), later ones go in the stream."""
    async with session() as s:
        client, digest, manifest = await _connect(s, ref, creds, platform, insecure, mirrors)
        await emit(status(f"Pulling from {ref.path}", ref.tag or ref.digest, detail=False))
        config_data = await _fetch_config(client, ref, manifest.config)
        image_id = "sha256:" + hashlib.sha256(config_data).hexdigest()
        if _current(images, ref) == image_id or (ref.digest and _exists(images, image_id)):
            await asyncio.to_thread(images.add_repo_digest, image_id,
                                    f"{ref.familiar_name}@{digest}")
            await emit(status(f"Digest: {digest}"))
            await emit(status(f"Status: Image is up to date for {ref.familiar}"))
            return images.resolve(image_id)
        try:
            diff_ids = list((json.loads(config_data).get("rootfs") or {}).get("diff_ids") or [])
        except (ValueError, AttributeError, TypeError):
            raise PullError(f"invalid image config {manifest.config.digest}") from None
        if len(diff_ids) != len(manifest.layers):
            raise PullError(f"invalid manifest, layers length mismatch: expected "
                            f"{len(diff_ids)}, got {len(manifest.layers)}")
        with images.layers.pin(diff_ids):  # a concurrent rmi must not take them meanwhile
            return await _fetch_and_install(client, ref, manifest, config_data, diff_ids,
                                            digest, images, emit)


async def _fetch_and_install(client: RegistryClient, ref: Reference,
                             manifest: manifests.Manifest, config_data: bytes,
                             diff_ids: list[str], digest: str, images: ImageStore,
                             emit: Emit) -> Image:
    """The layers not stored yet (three at a time), then the image from all of them."""
    todo = []
    for desc, diff_id in zip(manifest.layers, diff_ids):
        if images.layers.has(diff_id):
            await emit(status("Already exists", short(desc.digest)))
        else:
            await emit(status("Pulling fs layer", short(desc.digest)))
            todo.append((desc, diff_id))
    gate = asyncio.Semaphore(CONCURRENT_DOWNLOADS)

    async def one(desc: manifests.Descriptor, diff_id: str) -> None:
        async with gate:
            await _download(client, ref, desc, diff_id, images, emit)

    await _gather([one(d, i) for d, i in todo])
    for desc, _ in todo:
        await emit(progress("Extracting", short(desc.digest), desc.size, desc.size))
    tags = [ref.familiar] if ref.tag else []
    image = await asyncio.to_thread(images.install_layers, config_data, tags)
    for desc, _ in todo:
        await emit(status("Pull complete", short(desc.digest)))
    await asyncio.to_thread(images.add_repo_digest, image.id, f"{ref.familiar_name}@{digest}")
    await emit(status(f"Digest: {digest}"))
    await emit(status(f"Status: Downloaded newer image for {ref.familiar}"))
    return image


async def _gather(tasks: list) -> None:
    """All downloads, or the first failure with the others cancelled (no orphan tasks)."""
    running = [asyncio.ensure_future(t) for t in tasks]
    try:
        await asyncio.gather(*running)
    finally:
        for t in running:
            t.cancel()
        await asyncio.gather(*running, return_exceptions=True)


def _exists(images: ImageStore, image_id: str) -> bool:
    try:
        return images.resolve(image_id).id == image_id
    except LogpipeError:
        return False


def _current(images: ImageStore, ref: Reference) -> str:
    try:
        return images.resolve(ref.familiar).id
    except LogpipeError:
        return ""


async def _connect(s: aiohttp.ClientSession, ref: Reference, creds: Credentials,
                   platform: str, insecure: Sequence[str], mirrors: Sequence[str]):
    """The registry (a mirror first, for Docker Hub) that has the reference."""
    candidates: list[tuple[str, list[str]]] = []
    if ref.domain == DEFAULT_DOMAIN:
        for m in mirrors:
            host = m.split("://", 1)[-1].rstrip("/")
            candidates.append((host, [host] if m.startswith("http://") else []))
    candidates.append((ref.registry_host, list(insecure)))
    last: Exception | None = None
    for host, insecure_hosts in candidates:
        client = RegistryClient(s, host, ref.path, creds, insecure_hosts)
        try:
            digest, manifest = await resolve(client, ref, platform)
            return client, digest, manifest
        except (RegistryError, PullNotFound) as err:
            last = err
            if host == ref.registry_host:
                raise
    raise last  # pragma: no cover - the last candidate always raises or returns
