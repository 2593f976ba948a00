"""``docker save``: images as the archive Docker 20.10 writes, which ``docker load`` (and
``logpipe load``) read back.

Layout: ``manifest.json`` ([{"Config", "RepoTags", "Layers"}]), ``repositories``
({"busybox": {"latest": "<top layer id>"}}), ``<config digest hex>.json`` and one directory
per layer (``VERSION``, ``json``, ``layer.tar``) named by its v1 id. Docker derives v1 ids
from the v1 image JSON; here a layer's v1 id is the sha256 of its chain (parent id and diff
id), stable and unique per position, which is all ``load`` needs of it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import IO

from ..images import Image, ImageStore

EPOCH = "1970-01-01T00:00:00Z"


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, *, directory: bool = False,
         path: str = "") -> None:
    ti = tarfile.TarInfo(name)
    if directory:
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(ti)
    elif path:
        tar.add(path, arcname=name)
    else:
        ti.size, ti.mode = len(data or b""), 0o644
        tar.addfile(ti, io.BytesIO(data or b""))


def write_save_archive(images: ImageStore, selected: list[tuple[Image, list[str]]],
                       out: IO[bytes]) -> None:
    """``selected``: each image with the tags the user named it by (none for an id)."""
    manifest, repositories, written = [], {}, set()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for image, tags in selected:
            config_data, diff_ids = images.ensure_layers(image)
            config_hex = hashlib.sha256(config_data).hexdigest()
            parent, layer_paths = "", []
            for diff_id in diff_ids:
                v1 = hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()
                if v1 not in written:
                    written.add(v1)
                    v1_json = {"id": v1, "created": EPOCH, **({"parent": parent} if parent else {})}
                    _add(tar, v1, directory=True)
                    _add(tar, f"{v1}/VERSION", b"1.0")
                    _add(tar, f"{v1}/json", json.dumps(v1_json).encode())
                    _add(tar, f"{v1}/layer.tar", path=images.layers.path(diff_id))
                layer_paths.append(f"{v1}/layer.tar")
                parent = v1
            if f"{config_hex}.json" not in written:
                written.add(f"{config_hex}.json")
                _add(tar, f"{config_hex}.json", config_data)
            manifest.append({"Config": f"{config_hex}.json", "RepoTags": tags or None,
                             "Layers": layer_paths})
            for t in tags:
                repo, _, tag = t.rpartition(":")
                repositories.setdefault(repo, {})[tag] = parent
        _add(tar, "manifest.json", json.dumps(manifest).encode())
        if repositories:
            _add(tar, "repositories", json.dumps(repositories).encode())
