"""The layer store: each image layer once, as its uncompressed tar, named by its diff id.

Images stay flattened for the containers (``runtime.images``: ``<id>/rootfs``); the layers
are what a ``push`` uploads, a ``save`` writes and a ``pull`` can skip ("Already exists").
A layer shared by two images is one file here. Layout under ``<data-root>/images/layers/``::

    <diff-id-hex>.tar     the layer (what ``rootfs.diff_ids`` of an image config hashes)
    <diff-id-hex>.json    {"Blobs": {"sha256:<compressed>": {"MediaType", "Size"}}}: the
                          compressed forms a registry knows the layer by

A layer appears by one ``rename`` from ``images/tmp/`` once its digest is verified, so a pull
killed at any point leaves either the whole layer or nothing (the daemon empties ``tmp/`` at
start); layers already complete are not fetched again. This module never extracts anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
import tempfile
from typing import Any, Iterable, Iterator

from .spec import write_json_atomic


class LayerStore:
    """Uncompressed layer tars by diff id; safe across processes (rename, atomic JSON)."""

    def __init__(self, images_dir: str) -> None:
        self.dir = os.path.join(images_dir, "layers")
        self.tmp = os.path.join(images_dir, "tmp")
        os.makedirs(self.dir, exist_ok=True)
        #: Layers of pulls under way (no image lists them yet): ``remove_unused`` spares them.
        self.pinned: dict[str, int] = {}

    @contextlib.contextmanager
    def pin(self, diff_ids: Iterable[str]) -> Iterator[None]:
        """Keep ``diff_ids`` while a pull downloads and installs them (the daemon is the one
        process that pulls, so a count in memory is enough)."""
        ids = list(diff_ids)
        for d in ids:
            self.pinned[d] = self.pinned.get(d, 0) + 1
        try:
            yield
        finally:
            for d in ids:
                self.pinned[d] -= 1
                if not self.pinned[d]:
                    del self.pinned[d]

    def path(self, diff_id: str) -> str:
        return os.path.join(self.dir, diff_id.split(":", 1)[-1] + ".tar")

    def has(self, diff_id: str) -> bool:
        return os.path.exists(self.path(diff_id))

    def size(self, diff_id: str) -> int:
        return os.path.getsize(self.path(diff_id))

    def temp_file(self, prefix: str = "layer-") -> tuple[int, str]:
        """A new file in ``tmp/`` (same filesystem: ``put`` is a rename)."""
        return tempfile.mkstemp(dir=self.tmp, prefix=prefix)

    def put(self, tmp_path: str, diff_id: str) -> None:
        """Make a verified ``tmp_path`` the layer ``diff_id`` (a second copy is dropped)."""
        if self.has(diff_id):
            os.unlink(tmp_path)
            return
        os.chmod(tmp_path, 0o600)
        os.rename(tmp_path, self.path(diff_id))

    def _meta_path(self, diff_id: str) -> str:
        return os.path.join(self.dir, diff_id.split(":", 1)[-1] + ".json")

    def blobs(self, diff_id: str) -> dict[str, dict[str, Any]]:
        """The compressed digests a registry knows this layer by."""
        try:
            with open(self._meta_path(diff_id)) as f:
                return json.load(f).get("Blobs") or {}
        except (FileNotFoundError, ValueError):
            return {}

    def note_blob(self, diff_id: str, digest: str, media_type: str, size: int) -> None:
        blobs = self.blobs(diff_id)
        if digest in blobs:
            return
        blobs[digest] = {"MediaType": media_type, "Size": size}
        write_json_atomic(self._meta_path(diff_id), {"Blobs": blobs})

    def remove_unused(self, used: Iterable[str]) -> int:
        """Delete the layers no image lists (after ``rmi``/``prune``); how many went."""
        keep = {d.split(":", 1)[-1] for d in [*used, *list(self.pinned)]}
        removed = 0
        for name in os.listdir(self.dir):
            hex_id = name.split(".", 1)[0]
            if hex_id not in keep:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.dir, name))
                    removed += name.endswith(".tar")
        return removed


def tar_rootfs(rootfs: str, out: str) -> None:
    """A layer of a flattened rootfs (images imported before layers were kept): names
    relative, sorted, numeric owners, as Docker's layer tars are."""

    def clean(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
        ti.uname = ti.gname = ""
        return ti

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(os.listdir(rootfs)):
            tar.add(os.path.join(rootfs, entry), arcname=entry, filter=clean)
