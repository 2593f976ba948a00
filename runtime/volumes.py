"""Named volumes: the ``local`` driver's store under ``<data-root>/volumes/<name>/_data``.

Docker's layout, so that a user (or a backup script) finds the data where Docker keeps it:
a volume is the directory ``<name>/_data``; what Docker keeps in its metadata database
(creation time, labels, options, whether it was made anonymous) is ``<name>/volume.json``
here. The store knows nothing of containers: whether a volume is in use is asked of the
``users`` function it is given (the container store's answer), so it can be read and
tested alone. It never mounts anything: the OCI bundle bind-mounts ``_data``.

Copy-up (Docker's ``copyExistingContents``): a volume that is still empty when a container
mounts it over a directory of its image gets that directory's content first, owners and
modes kept, unless the mount says ``nocopy``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from typing import Any, Callable, Mapping, NamedTuple

from logpipe.errors import Conflict, InvalidParameter, LogpipeError, NotFound

from .rootfs import resolve_in_root
from .spec import write_json_atomic

#: Docker's rule for a local volume's name (volume/local/local.go).
VOLUME_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
META_FILE = "volume.json"
DATA_DIR = "_data"


class NoSuchVolume(NotFound):
    def __init__(self, op: str, name: str) -> None:
        super().__init__(f"{op} {name}: no such volume")


class VolumeInUse(Conflict):
    def __init__(self, name: str, users: list[str]) -> None:
        super().__init__(f"remove {name}: volume is in use - [{', '.join(users)}]")


class Volume(NamedTuple):
    """One volume, as ``volume.json`` keeps it."""

    name: str
    mountpoint: str  # <data-root>/volumes/<name>/_data
    created: str  # RFC 3339, seconds (Docker's CreatedAt)
    labels: Mapping[str, str] | None
    options: Mapping[str, str] | None
    anonymous: bool = False

    def to_json(self) -> dict[str, Any]:
        """Docker 20.10's ``Volume`` document (inspect, list, create)."""
        return {"CreatedAt": self.created, "Driver": "local",
                "Labels": dict(self.labels) if self.labels is not None else None,
                "Mountpoint": self.mountpoint, "Name": self.name,
                "Options": dict(self.options) if self.options is not None else None,
                "Scope": "local"}


def check_name(name: str) -> None:
    """Docker's refusal of a name the local driver cannot take (400)."""
    if not VOLUME_NAME_RE.fullmatch(name):
        raise InvalidParameter(
            f'create {name}: "{name}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class VolumeStore:
    """Every volume of one data root. ``users(name)`` gives the ids of the containers that
    mount a volume (a volume in use is not removed)."""

    def __init__(self, data_root: str, users: Callable[[str], list[str]]) -> None:
        self.dir = os.path.join(data_root, "volumes")
        os.makedirs(self.dir, mode=0o701, exist_ok=True)
        self.users = users
        self.lock = threading.Lock()  # create/remove run in threads of the daemon
        self.copy_lock = threading.Lock()  # two creates copying up into one volume

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def get(self, name: str, op: str = "get") -> Volume:
        if not VOLUME_NAME_RE.fullmatch(name or ""):
            raise NoSuchVolume(op, name)
        try:
            with open(os.path.join(self._path(name), META_FILE)) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            raise NoSuchVolume(op, name) from None
        return Volume(name, os.path.join(self._path(name), DATA_DIR), meta.get("CreatedAt", ""),
                      meta.get("Labels"), meta.get("Options"), bool(meta.get("Anonymous")))

    def list(self) -> list[Volume]:
        out = []
        for name in sorted(os.listdir(self.dir)):
            try:
                out.append(self.get(name))
            except NoSuchVolume:
                continue  # not a volume (a half-removed one, a stray file)
        return out

    def create(self, name: str = "", driver: str = "", labels: Mapping[str, str] | None = None,
               options: Mapping[str, str] | None = None, anonymous: bool = False) -> Volume:
        """``POST /volumes/create``: a new volume, or the existing one of that name (Docker
        answers with it). No name: an anonymous-looking 64-hex name, as Docker gives."""
        if driver not in ("", "local"):
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" '
                           "not found")
        if options:
            # The local driver's type/device/o would mount a filesystem: not supported, and
            # refused rather than ignored.
            key = sorted(options)[0]
            raise InvalidParameter(f'invalid option key: "{key}" (logpipe\'s local volumes '
                                   "are plain directories and take no options)")
        name = name or os.urandom(32).hex()
        check_name(name)
        with self.lock:
            try:
                return self.get(name)
            except NoSuchVolume:
                pass
            path = self._path(name)
            os.makedirs(os.path.join(path, DATA_DIR), mode=0o755, exist_ok=True)
            meta = {"CreatedAt": _now(), "Labels": dict(labels) if labels is not None else None,
                    "Options": dict(options) if options is not None else None,
                    "Anonymous": anonymous}
            write_json_atomic(os.path.join(path, META_FILE), meta)
            return self.get(name)

    def remove(self, name: str, force: bool = False) -> None:
        """``DELETE /volumes/{name}``: refused while a container uses it; ``force`` only
        forgives a volume that does not exist (Docker)."""
        with self.lock:
            try:
                vol = self.get(name, "get")
            except NoSuchVolume:
                if force:
                    return
                raise
            users = self.users(vol.name)
            if users:
                raise VolumeInUse(vol.name, users)
            self._delete(vol.name)

    def _delete(self, name: str) -> None:
        path = self._path(name)
        # The metadata goes first: a crash mid-way leaves a directory ``list`` skips.
        try:
            os.unlink(os.path.join(path, META_FILE))
        except FileNotFoundError:
            pass
        shutil.rmtree(path, ignore_errors=True)

    def prune(self, keep: Callable[[Volume], bool] = lambda v: False) -> tuple[list[str], int]:
        """``POST /volumes/prune``: every volume no container uses (API 1.41 prunes named
        ones too) and ``keep`` does not protect; the names and the bytes freed."""
        deleted, reclaimed = [], 0
        with self.lock:
            for vol in self.list():
                if keep(vol) or self.users(vol.name):
                    continue
                size = _du(vol.mountpoint)
                self._delete(vol.name)
                deleted.append(vol.name)
                reclaimed += size
        return deleted, reclaimed

    def copy_up(self, name: str, rootfs: str, target: str) -> None:
        """Fill an empty volume with the image's content at ``target`` (Docker's copy-up).
        A volume that holds anything already is left alone. Runs in a thread of the daemon
        (the container store's create), one copy-up at a time."""
        with self.copy_lock:
            self._copy_up(name, rootfs, target)

    def _copy_up(self, name: str, rootfs: str, target: str) -> None:
        data = self.get(name).mountpoint
        try:
            if os.listdir(data):
                return
            src = resolve_in_root(rootfs, target, follow_last=True)
        except (OSError, LogpipeError):
            return
        if not os.path.isdir(src) or os.path.islink(src):
            return
        shutil.copytree(src, data, symlinks=True, dirs_exist_ok=True, copy_function=shutil.copy2)
        st = os.stat(src)
        os.chown(data, st.st_uid, st.st_gid)
        os.chmod(data, st.st_mode & 0o7777)


def _du(path: str) -> int:
    """Bytes held by the files under ``path`` (what a prune reclaims)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def matches(vol: Volume, filters: Mapping[str, list[str]], in_use: bool) -> bool:
    """``GET /volumes?filters=``: ``name`` (substring), ``dangling``, ``label``, ``driver``."""
    for key, values in filters.items():
        if key == "name":
            if not any(v in vol.name for v in values):
                return False
        elif key == "dangling":
            for v in values:
                if v.lower() not in ("true", "1", "false", "0"):
                    raise InvalidParameter(f'Invalid filter: \'dangling\'=\'{v}\'')
            if not any((v.lower() in ("true", "1")) != in_use for v in values):
                return False
        elif key == "label":
            if not label_matches(vol.labels or {}, values):
                return False
        elif key == "driver":
            if "local" not in values:
                return False
        else:
            raise InvalidParameter(f"invalid filter '{key}'")
    return True


def label_matches(labels: Mapping[str, str], values: list[str]) -> bool:
    """Every ``key`` or ``key=value`` of ``values`` holds (Docker's label filter)."""
    for v in values:
        k, eq, want = v.partition("=")
        if k not in labels or (eq and labels[k] != want):
            return False
    return True
