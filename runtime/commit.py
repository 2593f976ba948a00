"""Images made here: ``commit`` of a container, and the child images a build commits.

An image made by logpipe is stored like a loaded one (``runtime.images``: a flattened
``rootfs/`` and ``image.json``) plus, beside them, its image config exactly as Docker
writes it (``config.json``: ``config``, ``container_config``, ``history``, ``parent``,
``rootfs.diff_ids``; the image id is the sha256 of these bytes, as Docker's) and the size of
each of its layers (``layers.json``, what ``history`` shows). A loaded image keeps the
config of its archive the same way; an imported one has neither and is described as
Docker describes an import (one layer, ``Imported from -``).

A new image is its parent's rootfs copied, with the new layer applied, made in the store's
``tmp/`` and appearing by one rename: a full disk or a killed daemon leaves no half image
(the daemon's start empties ``tmp/``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from logpipe import __version__
from logpipe.errors import LogpipeError
from logpipe.timespec import parse_rfc3339

from runtime.images import Image, ImageStore, normalize_ref
from runtime.layer_diff import Layer, apply_layer, copy_rootfs, write_layer

if TYPE_CHECKING:
    from runtime.containers import Container, ContainerStore

CONFIG_BLOB = "config.json"
LAYER_SIZES = "layers.json"


class CommitError(LogpipeError):
    """A commit that could not be made (the container's changes cannot be read)."""


def now_rfc3339() -> str:
    """Docker's ``created``: RFC 3339 with nanoseconds, UTC."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


# -- what an image is made of ---------------------------------------------------------------


class ImageDocument(NamedTuple):
    """An image's config (Docker's image JSON) and the size of each of its layers."""

    config: dict[str, Any]
    sizes: list[int]


def image_document(image: Image) -> ImageDocument:
    """The image config of ``image``: kept by commit, build and load; an import is
    described as Docker describes one (its tarball is its one layer)."""
    base = os.path.dirname(image.rootfs)
    try:
        with open(os.path.join(base, CONFIG_BLOB), "rb") as f:
            config = json.loads(f.read())
    except (OSError, ValueError):
        config = {"architecture": _arch(), "os": "linux", "created": image.created,
                  "config": image.config,
                  "history": [{"created": image.created, "comment": "Imported from -"}],
                  "rootfs": {"type": "layers", "diff_ids": [image.id]}}
        return ImageDocument(config, [image.size])
    try:
        with open(os.path.join(base, LAYER_SIZES)) as f:
            sizes = [int(s) for s in json.load(f)]
    except (OSError, ValueError, TypeError):
        sizes = []
    return ImageDocument(config, sizes)


def keep_document(work: str, blob: bytes, sizes: list[int]) -> None:
    """Write an image's config blob and layer sizes beside its ``rootfs`` (``work`` is the
    image's directory being made)."""
    with open(os.path.join(work, CONFIG_BLOB), "wb") as f:
        f.write(blob)
    with open(os.path.join(work, LAYER_SIZES), "w") as f:
        json.dump(sizes, f)


def parent_of(image: Image) -> str:
    return image_document(image).config.get("parent") or ""


#: Go's names of the machines (``GOARCH``), as Docker writes them in an image config.
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def _arch() -> str:
    machine = os.uname().machine
    return GOARCH.get(machine, machine)


class Child(NamedTuple):
    """What a new image says about how it was made (Docker's ``ChildConfig``)."""

    config: dict[str, Any]  # the image's container config (Cmd, Env, ...)
    container_config: dict[str, Any]  # the config of the container that made it
    created_by: str
    comment: str = ""
    author: str = ""
    container: str = ""  # id of that container


def new_image(images: ImageStore, parent: Image | None, changes: str | None, child: Child,
              tags: list[str] = ()) -> Image:
    """Make the image ``parent`` + the changes in directory ``changes`` (an overlay upper
    dir or a staging dir; None: none) and tag it. A layer without changes is recorded as
    Docker does: ``empty_layer`` in the history, no diff id."""
    tags = [normalize_ref(t) for t in tags]
    work = tempfile.mkdtemp(dir=images.tmp, prefix="commit-")
    try:
        layer = None
        if changes is not None and os.path.isdir(changes):
            layer = write_layer(changes, os.path.join(work, "layer.tar"))
        empty = layer is None or layer.empty
        doc = image_document(parent) if parent else ImageDocument({}, [])
        blob, sizes = _child_config(parent, doc, layer, empty, child)
        hex_id = hashlib.sha256(blob).hexdigest()

        def build(rootfs: str) -> dict[str, Any]:
            os.rmdir(rootfs)
            copy_rootfs(parent.rootfs if parent else None, rootfs)
            if not empty:
                apply_layer(rootfs, layer.path)
                images.layers.put(layer.path, layer.diff_id)  # what push and save send
            keep_document(os.path.dirname(rootfs), blob, sizes)
            return {**child.config, "_created": json.loads(blob)["created"]}

        images.add_image(hex_id, build)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if tags:
        images.set_tags(f"sha256:{hex_id}", tags)
    return images.resolve(f"sha256:{hex_id}")


def _child_config(parent: Image | None, doc: ImageDocument, layer: Layer | None, empty: bool,
                  child: Child) -> tuple[bytes, list[int]]:
    """Docker's ``NewChildImage``: the parent's rootfs and history, one more of each."""
    created = now_rfc3339()
    diff_ids = list((doc.config.get("rootfs") or {}).get("diff_ids") or [])
    sizes = list(doc.sizes) + [0] * (len(diff_ids) - len(doc.sizes))
    if not empty:
        diff_ids.append(layer.diff_id)
        sizes.append(layer.size)
    entry: dict[str, Any] = {"created": created}
    if child.author:
        entry["author"] = child.author
    entry["created_by"] = child.created_by
    if child.comment:
        entry["comment"] = child.comment
    if empty:
        entry["empty_layer"] = True
    config = {"architecture": _arch(), "author": child.author, "config": child.config,
              "container": child.container, "container_config": child.container_config,
              "created": created, "docker_version": f"logpipe-{__version__}",
              "history": list(doc.config.get("history") or []) + [entry], "os": "linux",
              "parent": parent.id if parent else "",
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    if not config["parent"]:
        del config["parent"]
    return json.dumps(config, separators=(",", ":")).encode(), sizes


# -- history --------------------------------------------------------------------------------


def history(images: ImageStore, image: Image) -> list[dict[str, Any]]:
    """``GET /images/{name}/history``, as moby's ``ImageHistory``: one row per history
    entry, newest first; rows get the id (and tags) of the image they made while a
    ``parent`` chain leads there, ``<missing>`` below (a loaded image's own layers)."""
    doc = image_document(image)
    rows: list[dict[str, Any]] = []
    layer = 0
    for h in doc.config.get("history") or []:
        size = 0
        if not h.get("empty_layer"):
            size = doc.sizes[layer] if layer < len(doc.sizes) else 0
            layer += 1
        rows.insert(0, {"Id": "<missing>", "Created": _unix(h.get("created", "")),
                        "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": size,
                        "Comment": h.get("comment", "")})
    current: Image | None = image
    for row in rows:
        if current is None:
            break
        row["Id"] = current.id
        row["Tags"] = list(current.repo_tags) or None
        parent = parent_of(current)
        try:
            current = images.resolve(parent) if parent else None
        except LogpipeError:
            current = None
    return rows


def _unix(text: str) -> int:
    try:
        return parse_rfc3339(text) // 1_000_000_000
    except (ValueError, TypeError):
        return 0


def hide_intermediate(images: list[Image]) -> list[Image]:
    """``docker images`` without ``-a``: an untagged image that is the parent of another is
    an intermediate one (a build step) and is not listed."""
    parents = {parent_of(im) for im in images}
    return [im for im in images if im.repo_tags or im.id not in parents]


def remove_with_parents(images: ImageStore, ref: str, in_use: Callable[[str], Any],
                        force: bool = False) -> list[dict[str, str]]:
    """``rmi`` as Docker does it for built images: once an image is deleted, its untagged
    parents that nothing else uses (no other child, no container) go too — a build's
    intermediate images — each answered as one more ``Deleted``."""
    parent = parent_of(images.resolve(ref))
    result = images.remove(ref, in_use, force)
    if not any("Deleted" in item for item in result):
        return result
    while parent:
        try:
            image = images.resolve(parent)
        except LogpipeError:
            break
        if image.repo_tags or in_use(image.id) or any(
                parent_of(other) == image.id for other in images.list()):
            break
        parent = parent_of(image)
        result += images.remove(image.id, in_use)
    return result


# -- commit ---------------------------------------------------------------------------------


def container_config(c: Container) -> dict[str, Any]:
    """The container's ``Config`` as an image keeps it."""
    cfg = c.spec.to_json()["Config"]
    return {"Hostname": cfg.get("Hostname", ""), "User": cfg.get("User", ""),
            "ExposedPorts": cfg.get("ExposedPorts"), "Env": cfg.get("Env") or None,
            "Cmd": cfg.get("Cmd"), "Image": cfg.get("Image", ""),
            "Volumes": cfg.get("Volumes"), "WorkingDir": cfg.get("WorkingDir", ""),
            "Entrypoint": cfg.get("Entrypoint"), "Labels": cfg.get("Labels") or None}


def merge_config(user: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """moby's ``merge`` for commit: what the request leaves empty comes from the
    container's config (Env by variable, ExposedPorts and Volumes added, Labels kept)."""
    out = dict(user)
    for key in ("User", "WorkingDir", "StopSignal", "Hostname"):
        if not out.get(key) and base.get(key):
            out[key] = base[key]
    names = {e.split("=", 1)[0] for e in out.get("Env") or []}
    out["Env"] = (out.get("Env") or []) + [e for e in base.get("Env") or []
                                           if e.split("=", 1)[0] not in names] or None
    for key in ("ExposedPorts", "Volumes", "Labels"):
        merged = {**(base.get(key) or {}), **(out.get(key) or {})}
        out[key] = merged or None
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = base.get("Cmd")
        if out.get("Entrypoint") is None:
            out["Entrypoint"] = base.get("Entrypoint")
    return out


class CommitOptions(NamedTuple):
    repo_tag: str = ""
    comment: str = ""
    author: str = ""
    pause: bool = True
    changes: tuple[str, ...] = ()
    config: dict[str, Any] | None = None


async def commit_container(store: ContainerStore, c: Container, opts: CommitOptions) -> Image:
    """``POST /commit``: the container's changes (its overlay's upper dir) become one layer
    on its image; a running container is frozen meanwhile (``pause``, Docker's default)."""
    from runtime.build.dockerfile import apply_changes
    from runtime.rootfs import COPY_MARKER

    if os.path.exists(os.path.join(c.spec.dir, COPY_MARKER)):
        raise CommitError(f"container {c.id[:12]} has a copied root, not an overlay: its "
                          "changes cannot be told from its image's files")
    images = store.images
    parent = images.resolve(c.spec.image_id)
    base = container_config(c)
    user = dict(opts.config) if opts.config else dict(base)
    user = merge_config(apply_changes(user, opts.changes), base)
    child = Child(config=user, container_config=base,
                  created_by=" ".join(base.get("Cmd") or []), comment=opts.comment,
                  author=opts.author, container=c.id)
    tags = [opts.repo_tag] if opts.repo_tag else []
    paused = False
    if opts.pause and c.running and not c.paused:
        await store.pause(c, True)
        paused = True
    try:
        return await asyncio.to_thread(new_image, images, parent,
                                       os.path.join(c.spec.dir, "upper"), child, tags)
    finally:
        if paused and c.running:
            await store.pause(c, False)

