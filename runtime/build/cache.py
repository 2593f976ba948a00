"""The build cache, keyed as Docker's classic builder keys it: a step is cached when an
image exists whose parent is the step's base image and whose ``container_config`` (the
step's config with its ``Cmd``: the instruction, ARG values, COPY's content checksum) is
the step's. The images are the cache: there is no index to go stale, and an image deleted
is a cache entry gone."""

from __future__ import annotations

import json
from typing import Any

from runtime.commit import image_document
from runtime.images import Image, ImageStore


def _normal(value: Any) -> Any:
    """A config as it reads back from JSON (tuples are lists, keys are strings)."""
    return json.loads(json.dumps(value, sort_keys=True))


def find_cached(images: ImageStore, parent_id: str, probe: dict[str, Any]) -> Image | None:
    """The newest image made from ``parent_id`` by a step with config ``probe``."""
    want = _normal(probe)
    for image in images.list():  # newest first
        config = image_document(image).config
        if (config.get("parent") or "") != parent_id or "container_config" not in config:
            continue
        if _normal(config["container_config"]) == want:
            return image
    return None
