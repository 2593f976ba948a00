"""``docker push``: the layers (gzip-compressed as dockerd compresses them), the config,
then the manifest, with dockerd's progress messages.

A layer the registry already has (a HEAD of a digest it was pulled or pushed as) is not sent
again: "Layer already exists". Uploads are monolithic (``POST`` then one ``PUT`` with the
digest), the simplest form every registry accepts; the body streams from a temporary file.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import shutil
from typing import AsyncIterator, Sequence

from logpipe.errors import LogpipeError, NotFound

from ..images import ImageStore
from . import manifests
from .auth import Credentials
from .client import RegistryClient, RegistryError
from .progress import Emit, progress, short, status
from .pull import session
from .reference import Reference

CHUNK = 1 << 18
PROGRESS_EVERY = 1 << 20


class PushNotFound(NotFound):
    """No local image of that name (dockerd: "An image does not exist locally with the tag")."""


def compress(src: str, dst: str) -> tuple[str, int]:
    """gzip ``src`` to ``dst`` (level 6, no name or time: same bytes every time): the digest
    and size of the blob."""
    with open(src, "rb") as fin, open(dst, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0, filename="") as gz:
            shutil.copyfileobj(fin, gz, 1 << 20)
    h = hashlib.sha256()
    with open(dst, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest(), os.path.getsize(dst)


async def _exists(client: RegistryClient, ref: Reference, digest: str) -> bool:
    resp = await client.request("HEAD", f"/v2/{ref.path}/blobs/{digest}")
    resp.release()
    if resp.status in (401, 403):
        await client.check(resp, (200,))
    return resp.status == 200


async def _upload(client: RegistryClient, ref: Reference, path: str, digest: str, size: int,
                  emit: Emit | None, id_: str) -> None:
    resp = await client.request("POST", f"/v2/{ref.path}/blobs/uploads/")
    await client.check(resp, (202,))
    location = resp.headers.get("Location", "")
    sep = "&" if "?" in location else "?"

    async def body() -> AsyncIterator[bytes]:
        sent = reported = 0
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
                sent += len(chunk)
                if emit and (sent - reported >= PROGRESS_EVERY or sent == size):
                    reported = sent
                    await emit(progress("Pushing", id_, sent, size))

    resp = await client.request("PUT", f"{location}{sep}digest={digest}", data=body(),
                                headers={"Content-Type": "application/octet-stream",
                                         "Content-Length": str(size)})
    await client.check(resp, (201, 204))


async def _push_layer(client: RegistryClient, ref: Reference, images: ImageStore,
                      diff_id: str, emit: Emit) -> manifests.Descriptor:
    id_ = short(diff_id)
    for digest, info in images.layers.blobs(diff_id).items():
        if info.get("MediaType", "").endswith("gzip") and await _exists(client, ref, digest):
            await emit(status("Layer already exists", id_))
            return manifests.Descriptor(info["MediaType"], digest, int(info["Size"]))
    fd, tmp = images.layers.temp_file("push-")
    os.close(fd)
    try:
        digest, size = await asyncio.to_thread(compress, images.layers.path(diff_id), tmp)
        images.layers.note_blob(diff_id, digest, manifests.DOCKER_LAYER_GZIP, size)
        if await _exists(client, ref, digest):
            await emit(status("Layer already exists", id_))
        else:
            await _upload(client, ref, tmp, digest, size, emit, id_)
            await emit(status("Pushed", id_))
    finally:
        os.unlink(tmp)
    return manifests.Descriptor(manifests.DOCKER_LAYER_GZIP, digest, size)


async def push(images: ImageStore, ref: Reference, creds: Credentials, emit: Emit, *,
               insecure: Sequence[str] = ()) -> str:
    """Push the local ``ref``; returns the manifest's digest."""
    try:
        image = images.resolve(ref.familiar)
    except LogpipeError:
        raise PushNotFound(f"An image does not exist locally with the tag: "
                           f"{ref.familiar_name}") from None
    config_data, diff_ids = await asyncio.to_thread(images.ensure_layers, image)
    await emit(status(f"The push refers to repository [{ref.name}]"))
    async with session() as s:
        client = RegistryClient(s, ref.registry_host, ref.path, creds, insecure, push=True)
        for diff_id in reversed(diff_ids):  # dockerd lists the top layer first
            await emit(status("Preparing", short(diff_id)))
        layers = {}
        for diff_id in reversed(diff_ids):
            layers[diff_id] = await _push_layer(client, ref, images, diff_id, emit)
        config = manifests.Descriptor(manifests.DOCKER_CONFIG,
                                      "sha256:" + hashlib.sha256(config_data).hexdigest(),
                                      len(config_data))
        if not await _exists(client, ref, config.digest):
            fd, tmp = images.layers.temp_file("config-")
            with os.fdopen(fd, "wb") as f:
                f.write(config_data)
            try:
                await _upload(client, ref, tmp, config.digest, config.size, None, "")
            finally:
                os.unlink(tmp)
        body = manifests.build_manifest(config, [layers[d] for d in diff_ids])
        resp = await client.request("PUT", f"/v2/{ref.path}/manifests/{ref.tag}", data=body,
                                    headers={"Content-Type": manifests.DOCKER_MANIFEST})
        await client.check(resp, (201, 202))
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    await asyncio.to_thread(images.add_repo_digest, image.id, f"{ref.familiar_name}@{digest}")
    await emit(status(f"{ref.tag}: digest: {digest} size: {len(body)}"))
    await emit({"progressDetail": {}, "aux": {"Tag": ref.tag, "Digest": digest,
                                              "Size": len(body)}})
    return digest


__all__ = ["push", "PushNotFound", "RegistryError"]
