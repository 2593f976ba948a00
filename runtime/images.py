"""The image store: ``docker import`` rootfs tarballs, ``docker load`` archives and pulled
images, on disk; tags, registry digests and prune.

Size: longer than 500 lines because import, load (with its diffID checks), pull's install
and removal share the store's one lock; the registry protocol lives in ``runtime.registry``,
the layer files in ``runtime.layers`` and the safe extraction of layer tarballs in
``runtime.layer_tar``.

Layout under ``<data-root>/images/``::

    <id-hex>/rootfs/          the image's files, flattened (the containers' read-only lower layer)
    <id-hex>/image.json       {"Id", "RepoTags", "Created", "Size", "Config": {...}}
    <id-hex>/config.json      the image config as a registry has it (pulled images; made on the
                              first push or save of an imported or loaded one)
    layers/                   each layer once, by diff id (``runtime.layers``)
    repositories.json         {"busybox:latest": "sha256:<hex>", ...}
    repodigests.json          {"busybox@sha256:<manifest>": "sha256:<hex>", ...}
    tmp/                      half-extracted images and layers; an image appears by one rename

Extraction (``runtime.layer_tar``) is the security boundary: nothing in an archive can
write or link outside the image's rootfs. The store never touches a container's files;
whether an image is in use is asked of the caller.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterator

from logpipe.errors import Conflict, NotFound

from runtime.layers import LayerStore, tar_rootfs
from runtime.layer_tar import InvalidImage, LayerExtractor, open_tar, tar_members, verify_layers
from runtime.spec import write_json_atomic

Progress = Callable[[int, int], None]
Source = str | os.PathLike | IO[bytes]

class NoSuchImage(NotFound):
    """No image has this name, tag or id (HTTP 404)."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"No such image: {ref}")


class ImageConflict(Conflict):
    """The image is used by a container (HTTP 409)."""


@dataclass(slots=True, frozen=True)
class Image:
    """One stored image, as ``image.json`` describes it."""

    id: str  # "sha256:<64 hex>"
    repo_tags: tuple[str, ...]
    created: str  # RFC 3339
    size: int  # bytes of regular files in the rootfs
    config: dict[str, Any] = field(default_factory=dict)  # Cmd, Entrypoint, Env, WorkingDir
    rootfs: str = ""  # host path of the flattened files
    repo_digests: tuple[str, ...] = ()  # "busybox@sha256:...": what a registry calls it

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]

    def to_json(self) -> dict[str, Any]:
        return {"Id": self.id, "RepoTags": list(self.repo_tags), "Created": self.created,
                "Size": self.size, "Config": self.config}


def _rfc3339_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def normalize_ref(ref: str) -> str:
    """``name[:tag]`` → ``name:tag``, Docker's way: default tag ``latest``, and
    ``docker.io/library/busybox`` is ``busybox``."""
    name, tag = ref, "latest"
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        name, tag = ref[:colon], ref[colon + 1:]
    for prefix in ("docker.io/library/", "index.docker.io/library/", "library/", "docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    if not name or not tag or "@" in ref or any(c.isspace() for c in ref) or name != name.lower():
        raise InvalidImage(f"invalid reference format: {ref!r}")
    return f"{name}:{tag}"


def _tree_size(root: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, f))
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
    return total


# -- the store -------------------------------------------------------------------------


class ImageStore:
    """Images under ``<data_root>/images``; safe to use from several processes (flock)."""

    def __init__(self, data_root: str) -> None:
        self.dir = os.path.join(data_root, "images")
        self.tmp = os.path.join(self.dir, "tmp")
        os.makedirs(self.tmp, exist_ok=True)
        os.chmod(self.dir, 0o700)  # setuid files of images are nobody else's business
        self._repos_path = os.path.join(self.dir, "repositories.json")
        self._digests_path = os.path.join(self.dir, "repodigests.json")
        self.layers = LayerStore(self.dir)

    def clean_tmp(self) -> int:
        """Delete what an interrupted import, load or rmi left in ``tmp/`` (uploads spooled by
        the API, half-extracted images, renamed-away deleted ones); how many entries went.

        Only for the daemon's start: it holds the data root's lock, so no other process can
        be writing there, and everything in ``tmp/`` belongs to a request that is gone."""
        removed = 0
        for entry in os.listdir(self.tmp):
            path = os.path.join(self.tmp, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            removed += 1
        return removed

    # -- bookkeeping -----------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(os.path.join(self.dir, ".lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def _repos(self) -> dict[str, str]:
        try:
            with open(self._repos_path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def _read(self, hex_id: str, repos: dict[str, str] | None = None) -> Image:
        d = os.path.join(self.dir, hex_id)
        with open(os.path.join(d, "image.json")) as f:
            data = json.load(f)
        repos = self._repos() if repos is None else repos
        tags = tuple(sorted(t for t, i in repos.items() if i == data["Id"]))
        digests = tuple(sorted(t for t, i in self._digests().items() if i == data["Id"]))
        return Image(id=data["Id"], repo_tags=tags, created=data["Created"],
                     size=data["Size"], config=data.get("Config") or {},
                     rootfs=os.path.join(d, "rootfs"), repo_digests=digests)

    def _ids(self) -> list[str]:
        return [n for n in os.listdir(self.dir)
                if len(n) == 64 and os.path.exists(os.path.join(self.dir, n, "image.json"))]

    def set_tags(self, image_id: str, tags: list[str]) -> None:
        """Point ``tags`` at the image; an older image losing its tag stays, untagged."""
        with self._locked():
            repos = self._repos()
            for t in tags:
                repos[t] = image_id
            write_json_atomic(self._repos_path, repos)

    # -- reading -------------------------------------------------------------------------

    def resolve(self, ref: str) -> Image:
        """By ``name[:tag]``, full or short id, or ``sha256:`` id; Docker's 404 otherwise."""
        repos = self._repos()
        with contextlib.suppress(InvalidImage):
            image_id = repos.get(normalize_ref(ref))
            if image_id:
                return self._read(image_id.split(":", 1)[1], repos)
        by_digest = self._digests().get(ref.replace("docker.io/library/", "", 1))
        if "@" in ref and by_digest:
            return self._read(by_digest.split(":", 1)[1], repos)
        hex_part = ref[7:] if ref.startswith("sha256:") else ref
        if hex_part and all(c in "0123456789abcdef" for c in hex_part):
            found = [i for i in self._ids() if i.startswith(hex_part)]
            if len(found) == 1:
                return self._read(found[0], repos)
        raise NoSuchImage(_familiar_or_id(ref))

    def list(self) -> list[Image]:
        """Every image, newest first (``docker images`` order)."""
        repos = self._repos()
        images = [self._read(i, repos) for i in self._ids()]
        return sorted(images, key=lambda im: im.created, reverse=True)

    # -- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _source(self, src: Source) -> Iterator[tuple[IO[bytes], int]]:
        """An open, seekable file for ``src`` and its size; streams are spooled to disk."""
        if isinstance(src, (str, os.PathLike)):
            with open(src, "rb") as f:
                yield f, os.fstat(f.fileno()).st_size
            return
        try:
            seekable = src.seekable()
        except (AttributeError, OSError):
            seekable = False
        if seekable:
            start = src.tell()
            size = src.seek(0, os.SEEK_END) - start
            src.seek(start)
            yield src, size
            return
        with tempfile.TemporaryFile(dir=self.tmp) as f:
            shutil.copyfileobj(src, f, 1 << 20)
            size = f.tell()
            f.seek(0)
            yield f, size

    @staticmethod
    def _hash(f: IO[bytes]) -> str:
        start = f.tell()
        h = hashlib.sha256()
        while chunk := f.read(1 << 20):
            h.update(chunk)
        f.seek(start)
        return h.hexdigest()

    def add_image(self, hex_id: str, build: Callable[[str], dict[str, Any]]) -> None:
        """Build ``<tmp>/rootfs`` with ``build`` (returns the Config), then appear by rename."""
        final = os.path.join(self.dir, hex_id)
        if os.path.exists(os.path.join(final, "image.json")):
            return  # same content, same id: nothing to extract
        work = tempfile.mkdtemp(dir=self.tmp)
        try:
            rootfs = os.path.join(work, "rootfs")
            os.mkdir(rootfs, 0o755)
            config = build(rootfs)
            record = {"Id": f"sha256:{hex_id}", "RepoTags": [], "Created": config.pop(
                "_created", None) or _rfc3339_now(), "Size": _tree_size(rootfs),
                "Config": config}
            write_json_atomic(os.path.join(work, "image.json"), record)
            with self._locked():
                if os.path.exists(os.path.join(final, "image.json")):
                    return
                shutil.rmtree(final, ignore_errors=True)
                os.rename(work, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def import_tar(self, src: Source, ref: str | None, progress: Progress | None = None) -> Image:
        """``docker import``: a rootfs tarball (optionally compressed) becomes an image.

        The id is the sha256 of the tarball's bytes; like Docker, the image has no Cmd.
        """
        tags = [normalize_ref(ref)] if ref else []
        with self._source(src) as (f, size):
            hex_id = self._hash(f)

            def build(rootfs: str) -> dict[str, Any]:
                start = f.tell()
                tar = open_tar(f, "the imported file")
                members = tar_members(tar, "the imported file")
                ex = LayerExtractor(rootfs)
                ex.apply_whiteouts(members)
                ex.extract(tar, members, lambda: progress and progress(f.tell() - start, size))
                ex.finish_dirs()
                return {"Cmd": None, "Entrypoint": None, "Env": [], "WorkingDir": ""}

            self.add_image(hex_id, build)
            if progress:
                progress(size, size)
        self.set_tags(f"sha256:{hex_id}", tags)
        return self._read(hex_id)

    def load(self, src: Source, progress: Progress | None = None) -> list[str]:
        """``docker load``: a ``docker save`` archive (manifest.json + layer tars).

        Returns what Docker prints after "Loaded image: ": the tags, or the id of an untagged
        image.
        """
        loaded: list[str] = []
        with self._source(src) as (f, size):
            start = f.tell()
            outer = open_tar(f, "the archive")
            index = {os.path.normpath(m.name).lstrip("/"): m
                     for m in tar_members(outer, "the archive")}

            def read_member(name: str) -> IO[bytes]:
                m = index.get(os.path.normpath(name).lstrip("/"))
                if m is None or not m.isreg():
                    raise InvalidImage(f"invalid docker save archive: {name} is missing")
                return outer.extractfile(m)

            try:
                manifest = json.load(read_member("manifest.json"))
            except ValueError as e:
                raise InvalidImage(f"invalid docker save archive: manifest.json: {e}") from None
            if not isinstance(manifest, list):
                raise InvalidImage("invalid docker save archive: manifest.json is not a list")
            for entry in manifest:
                config_bytes = read_member(entry["Config"]).read()
                hex_id = hashlib.sha256(config_bytes).hexdigest()
                try:
                    image_config = json.loads(config_bytes)
                except ValueError as e:
                    raise InvalidImage(f"invalid image config {entry['Config']}: {e}") from None
                layers = entry.get("Layers") or []
                verify_layers(image_config, layers, read_member)

                def build(rootfs: str) -> dict[str, Any]:
                    ex = LayerExtractor(rootfs)
                    sizes = []  # what ``history`` shows per layer
                    for layer in layers:
                        tar = open_tar(read_member(layer), f"layer {layer}")
                        members = tar_members(tar, f"layer {layer}")
                        sizes.append(sum(m.size for m in members if m.isreg()))
                        ex.apply_whiteouts(members)
                        ex.extract(tar, members, lambda: progress and progress(
                            min(f.tell() - start, size), size))
                        ex.finish_dirs()
                    from runtime.commit import keep_document  # the config, for history

                    keep_document(os.path.dirname(rootfs), config_bytes, sizes)
                    c = image_config.get("config") or image_config.get("Config") or {}
                    return {"Cmd": c.get("Cmd"), "Entrypoint": c.get("Entrypoint"),
                            "Env": c.get("Env") or [], "WorkingDir": c.get("WorkingDir") or "",
                            "User": c.get("User") or "",
                            "_created": image_config.get("created"),
                            # EXPOSE: what -P publishes
                            **({"ExposedPorts": c["ExposedPorts"]}
                               if isinstance(c.get("ExposedPorts"), dict) else {}),
                            "Volumes": c.get("Volumes") or None}  # VOLUME: anonymous ones

                self.add_image(hex_id, build)
                self._keep_layers(hex_id, config_bytes, image_config, layers, read_member)
                tags = [normalize_ref(t) for t in entry.get("RepoTags") or []]
                self.set_tags(f"sha256:{hex_id}", tags)
                loaded.extend(tags or [f"sha256:{hex_id}"])
            if progress:
                progress(size, size)
        return loaded

    def remove(self, ref: str, in_use: Callable[[str], str | bool | None] | None = None,
               force: bool = False) -> list[dict[str, str]]:
        """``docker rmi``: untag, and delete the image once no tag and no container is left.

        ``in_use(image_id)`` returns the id of a container using the image (or a false value).
        Returns Docker's response items: ``[{"Untagged": ...}, {"Deleted": ...}]``.
        """
        image = self.resolve(ref)
        hex_id = image.id.split(":", 1)[1]
        by_tag = False
        with contextlib.suppress(InvalidImage):
            by_tag = normalize_ref(ref) in image.repo_tags
        user = in_use(image.id) if in_use else None
        result: list[dict[str, str]] = []
        with self._locked():
            repos = self._repos()
            if by_tag and len(image.repo_tags) > 1:
                tag = normalize_ref(ref)
                del repos[tag]  # other tags remain: only this name goes, in use or not
                write_json_atomic(self._repos_path, repos)
                return [{"Untagged": tag}]
            if user and not force:
                cid = user[:12] if isinstance(user, str) else "?"
                if by_tag:
                    raise ImageConflict(
                        f'conflict: unable to remove repository reference "{ref}" (must force) '
                        f"- container {cid} is using its referenced image {image.short_id}")
                raise ImageConflict(f"conflict: unable to delete {image.short_id} (must be forced)"
                                    f" - image is being used by stopped container {cid}")
            for tag in image.repo_tags:
                del repos[tag]
                result.append({"Untagged": tag})
            write_json_atomic(self._repos_path, repos)
            if user:
                return result  # forced: the name goes, the files stay for the container
            trash = os.path.join(self.tmp, f"deleted-{hex_id}")
            os.rename(os.path.join(self.dir, hex_id), trash)
        shutil.rmtree(trash, ignore_errors=True)
        result.extend({"Untagged": d} for d in self._forget_digests(image.id))
        result.append({"Deleted": image.id})
        self.layers.remove_unused(self.used_layers())
        return result

    # -- layers, registries, tags, prune ------------------------------------------------

    def _digests(self) -> dict[str, str]:
        """``repodigests.json``: {"busybox@sha256:<manifest>": "sha256:<image id>"}."""
        try:
            with open(self._digests_path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def add_repo_digest(self, image_id: str, name_digest: str) -> None:
        """After a pull or push: the image is ``name@digest`` on that registry."""
        with self._locked():
            digests = self._digests()
            digests[name_digest] = image_id
            write_json_atomic(self._digests_path, digests)

    def _forget_digests(self, image_id: str) -> list[str]:
        with self._locked():
            digests = self._digests()
            gone = sorted(k for k, v in digests.items() if v == image_id)
            for k in gone:
                del digests[k]
            if gone:
                write_json_atomic(self._digests_path, digests)
        return gone

    def tag(self, ref: str, new_ref: str) -> Image:
        """``docker tag``: ``new_ref`` names the image ``ref`` names (a former holder of
        that name keeps its files, untagged)."""
        image = self.resolve(ref)
        self.set_tags(image.id, [normalize_ref(new_ref)])
        return self._read(image.id.split(":", 1)[1])

    def config_bytes(self, image: Image) -> bytes | None:
        """The image's config as a registry has it (its digest is the image id), if kept."""
        try:
            with open(os.path.join(os.path.dirname(image.rootfs), "config.json"), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def used_layers(self) -> set[str]:
        used: set[str] = set()
        for hex_id in self._ids():
            data = self.config_bytes(Image(f"sha256:{hex_id}", (), "", 0,
                                           rootfs=os.path.join(self.dir, hex_id, "rootfs")))
            if data:
                used.update((json.loads(data).get("rootfs") or {}).get("diff_ids") or [])
        return used

    def ensure_layers(self, image: Image) -> tuple[bytes, list[str]]:
        """The config and diff ids of ``image`` for a push or a save. An image stored flat
        (imported, loaded) gets one layer made of its rootfs and a config naming it, kept,
        so that pushing twice sends the same digests."""
        data = self.config_bytes(image)
        if data is not None:
            diff_ids = (json.loads(data).get("rootfs") or {}).get("diff_ids") or []
            if all(self.layers.has(d) for d in diff_ids):
                return data, diff_ids
        fd, tmp = self.layers.temp_file()
        os.close(fd)
        try:
            tar_rootfs(image.rootfs, tmp)
            with open(tmp, "rb") as f:
                diff_id = "sha256:" + self._hash(f)
            self.layers.put(tmp, diff_id)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        c = image.config
        config = {"architecture": _goarch(), "os": "linux", "created": image.created,
                  "config": {k: c[k] for k in ("Cmd", "Entrypoint", "Env", "WorkingDir", "User",
                                               "ExposedPorts", "Volumes", "Labels") if c.get(k)},
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                  "history": [{"created": image.created, "created_by": "logpipe import"}]}
        data = json.dumps(config, separators=(",", ":")).encode()
        path = os.path.join(os.path.dirname(image.rootfs), "config.json")
        with open(f"{path}.tmp{os.getpid()}", "wb") as f:
            f.write(data)
        os.replace(f"{path}.tmp{os.getpid()}", path)  # a push and a save at once agree
        return data, [diff_id]

    def _keep_layers(self, hex_id: str, config_data: bytes, image_config: dict[str, Any],
                     layers: list[str], read_member: Callable[[str], IO[bytes]]) -> None:
        """A loaded image keeps its config and layers (verified already), so that a push or
        a save sends what was loaded: same config, same image id as in Docker."""
        import zlib

        config_path = os.path.join(self.dir, hex_id, "config.json")
        diff_ids = (image_config.get("rootfs") or {}).get("diff_ids") or []
        for name, diff_id in zip(layers, diff_ids):
            if self.layers.has(diff_id):
                continue
            fd, tmp = self.layers.temp_file()
            try:
                with os.fdopen(fd, "wb") as out:
                    src, inflate = read_member(name), None
                    while block := src.read(1 << 20):
                        if inflate is None:
                            inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) \
                                if block[:2] == b"\x1f\x8b" else False
                        out.write(inflate.decompress(block) if inflate else block)
                    if inflate:
                        out.write(inflate.flush())
                self.layers.put(tmp, diff_id)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        if os.path.exists(config_path):
            return  # kept already (with the image's history: ``runtime.commit``)
        with open(f"{config_path}.tmp", "wb") as f:
            f.write(config_data)
        os.replace(f"{config_path}.tmp", config_path)

    def install_layers(self, config_data: bytes, tags: list[str]) -> Image:
        """A pulled image: its layers (all in the layer store, verified) applied in order to
        a new rootfs; the id is the config's digest, as in Docker."""
        hex_id = hashlib.sha256(config_data).hexdigest()
        image_config = json.loads(config_data)
        diff_ids = (image_config.get("rootfs") or {}).get("diff_ids") or []

        def build(rootfs: str) -> dict[str, Any]:
            ex = LayerExtractor(rootfs)
            for diff_id in diff_ids:
                with open(self.layers.path(diff_id), "rb") as f:
                    tar = open_tar(f, f"layer {diff_id}")
                    members = tar_members(tar, f"layer {diff_id}")
                    ex.apply_whiteouts(members)
                    ex.extract(tar, members, lambda: None)
                    ex.finish_dirs()
            with open(os.path.join(os.path.dirname(rootfs), "config.json"), "wb") as out:
                out.write(config_data)
            return _record_config(image_config)

        self.add_image(hex_id, build)
        self.set_tags(f"sha256:{hex_id}", tags)
        return self._read(hex_id)

    def prune(self, keep: Callable[[Image], bool], in_use: Callable[[str], Any]
              ) -> tuple[list[dict[str, str]], int]:
        """``docker image prune``: every image ``keep`` rejects and no container uses;
        Docker's ``ImagesDeleted`` items and the bytes reclaimed."""
        deleted: list[dict[str, str]] = []
        space = 0
        for image in self.list():
            if keep(image) or in_use(image.id):
                continue
            for tag in image.repo_tags[1:]:
                deleted.extend(self.remove(tag))
            items = self.remove(image.repo_tags[0] if image.repo_tags else image.id)
            deleted.extend(items)
            if any("Deleted" in i for i in items):
                space += image.size
        return deleted, space


def _familiar_or_id(ref: str) -> str:
    """How dockerd names a missing image: ``busybox:latest`` for a name, the id as given."""
    if "@" in ref or all(c in "0123456789abcdef" for c in ref.removeprefix("sha256:")):
        return ref
    try:
        return normalize_ref(ref)
    except InvalidImage:
        return ref


def _goarch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine)


def _record_config(image_config: dict[str, Any]) -> dict[str, Any]:
    """The parts of an image config the store keeps in ``image.json`` (what create uses)."""
    c = image_config.get("config") or image_config.get("Config") or {}
    record = {"Cmd": c.get("Cmd"), "Entrypoint": c.get("Entrypoint"),
              "Env": c.get("Env") or [], "WorkingDir": c.get("WorkingDir") or "",
              "User": c.get("User") or "", "_created": image_config.get("created"),
              "Volumes": c.get("Volumes") or None}
    if isinstance(c.get("ExposedPorts"), dict):
        record["ExposedPorts"] = c["ExposedPorts"]
    if isinstance(c.get("Labels"), dict):
        record["Labels"] = c["Labels"]
    return record
