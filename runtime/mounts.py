"""What a container mounts, from a create request: ``-v`` (``HostConfig.Binds``),
``--mount`` (``HostConfig.Mounts``), ``--tmpfs`` (``HostConfig.Tmpfs``), anonymous volumes
(``Config.Volumes`` and the image's ``VOLUME``), checked with Docker's words
(moby ``volume/mounts/linux_parser.go``).

Docker's rule for ``-v SRC:DST``: a ``SRC`` without a ``/`` is a volume's name, else a host
path. Pure: it decides names and paths (a volume lives at
``<data-root>/volumes/<name>/_data``) but creates nothing; the container store makes the
volumes once the whole create has passed.
"""

from __future__ import annotations

import os
from typing import Any

from logpipe.errors import InvalidParameter

from . import schema
from .spec import Bind, ContainerSpec, Mount
from .volumes import DATA_DIR, check_name

BIND_MODES = ("ro", "rw", "z", "Z", "nocopy", "private", "rprivate", "shared", "rshared",
              "slave", "rslave")
#: What ``--tmpfs`` options may say (mount(8)'s tmpfs options and the generic flags).
TMPFS_FLAGS = {"ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime",
               "noatime", "diratime", "nodiratime", "relatime", "norelatime", "strictatime",
               "nostrictatime", "sync", "async", "dirsync", "mand", "nomand"}
TMPFS_KEYS = {"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"}
PROPAGATIONS = ("", "private", "rprivate", "shared", "rshared", "slave", "rslave")
#: Docker's default options of a tmpfs mount.
TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev")


class MountConfigError(InvalidParameter):
    def __init__(self, kind: str, text: str) -> None:
        super().__init__(f'invalid mount config for type "{kind}": {text}')


def volume_path(data_root: str, name: str) -> str:
    return os.path.join(data_root, "volumes", name, DATA_DIR)


def _absolute(kind: str, path: str) -> None:
    if not path.startswith("/"):
        raise MountConfigError(kind, f"invalid mount path: '{path}' mount path must be absolute")


def parse_bind(text: str, data_root: str) -> Bind | Mount:
    """One ``-v SRC:DST[:MODE]``: a host bind, or a (named) volume."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise InvalidParameter(f"invalid volume specification: '{text}'")
    mode = parts[2].split(",") if len(parts) == 3 else []
    if any(m not in BIND_MODES for m in mode):
        raise InvalidParameter(f"invalid mode: {parts[2]}")
    source, target = parts[0], parts[1]
    kind = "bind" if "/" in source else "volume"
    if not os.path.isabs(target):
        raise InvalidParameter(f"invalid volume specification: '{text}': invalid mount config "
                               f"for type \"{kind}\": invalid mount path: '{target}' mount "
                               "path must be absolute")
    readonly = "ro" in mode
    if kind == "bind":
        if not os.path.isabs(source):
            raise InvalidParameter(f"invalid volume specification: '{text}': invalid mount "
                                   f"config for type \"bind\": invalid mount path: '{source}' "
                                   "mount path must be absolute")
        return Bind(os.path.normpath(source), os.path.normpath(target), readonly)
    check_name(source)
    return Mount("volume", source, os.path.normpath(target), volume_path(data_root, source),
                 readonly, parts[2] if len(parts) == 3 else "z", nocopy="nocopy" in mode,
                 origin="binds")


def parse_mount(m: schema.Mount, data_root: str) -> Mount:
    """One ``HostConfig.Mounts`` item (``--mount``), validated as moby's ``validateMountConfig``."""
    kind = m.Type or ""
    source, target = m.Source or "", m.Target or ""
    if kind not in ("bind", "volume", "tmpfs"):
        raise MountConfigError(kind, "mount type unknown")
    if not target:
        raise MountConfigError(kind, "field Target must not be empty")
    _absolute(kind, target)
    target = os.path.normpath(target)
    ro = bool(m.ReadOnly)
    if kind == "bind":
        if not source:
            raise MountConfigError(kind, "field Source must not be empty")
        if m.VolumeOptions is not None:
            raise MountConfigError(kind, "field VolumeOptions must not be specified")
        if m.TmpfsOptions is not None:
            raise MountConfigError(kind, "field TmpfsOptions must not be specified")
        _absolute(kind, source)
        if not os.path.exists(source):
            raise MountConfigError(kind, f"bind source path does not exist: {source}")
        source = os.path.normpath(source)
        propagation = (m.BindOptions.Propagation if m.BindOptions else "") or ""
        if propagation not in PROPAGATIONS:
            raise MountConfigError(kind, f"invalid propagation mode: {propagation}")
        return Mount("bind", source, target, source, ro, "", propagation=propagation)
    if kind == "volume":
        if m.BindOptions is not None:
            raise MountConfigError(kind, "field BindOptions must not be specified")
        if m.TmpfsOptions is not None:
            raise MountConfigError(kind, "field TmpfsOptions must not be specified")
        vo = m.VolumeOptions or schema.VolumeOptions()
        driver = (vo.DriverConfig.Name if vo.DriverConfig else "") or ""
        if driver not in ("", "local"):
            raise InvalidParameter(f'error looking up volume plugin {driver}: plugin '
                                   f'"{driver}" not found')
        anonymous = not source
        if anonymous:
            source = os.urandom(32).hex()
        check_name(source)
        return Mount("volume", source, target, volume_path(data_root, source), ro, "",
                     anonymous=anonymous, nocopy=bool(vo.NoCopy), labels=vo.Labels)
    if source:
        raise MountConfigError(kind, "field Source must not be specified")
    if m.BindOptions is not None:
        raise MountConfigError(kind, "field BindOptions must not be specified")
    if m.VolumeOptions is not None:
        raise MountConfigError(kind, "field VolumeOptions must not be specified")
    to = m.TmpfsOptions or schema.TmpfsOptions()
    opts = list(TMPFS_DEFAULTS)
    if to.SizeBytes:
        if to.SizeBytes < 0:
            raise MountConfigError(kind, f"invalid tmpfs size: {to.SizeBytes}")
        opts.append(f"size={to.SizeBytes}")
    if to.Mode:
        opts.append(f"mode={to.Mode & 0o7777:o}")
    return Mount("tmpfs", "", target, "", ro, "", ",".join(opts))


def tmpfs_options(path: str, text: str) -> str:
    """``--tmpfs PATH:OPTS``: the mount options, Docker's defaults first; a word mount(8)
    would refuse is refused at create rather than at start."""
    _absolute("tmpfs", path)
    for opt in filter(None, text.split(",")):
        key, eq, value = opt.partition("=")
        if (eq and (key not in TMPFS_KEYS or not value)) or (not eq and opt not in TMPFS_FLAGS):
            raise InvalidParameter(f"invalid tmpfs option [{opt!r}] for {path}: want size=, "
                                   "mode=, uid=, gid=, nr_inodes= or a mount flag (ro, exec…)")
    return ",".join(list(TMPFS_DEFAULTS) + [o for o in text.split(",") if o])


def container_mounts(req: schema.ContainerCreate, host: schema.HostConfig,
                     image_volumes: Any, data_root: str
                     ) -> tuple[tuple[Bind, ...], tuple[Mount, ...], dict[str, str]]:
    """The container's host binds, its other mounts (sorted as they are mounted: parents
    first) and its ``--tmpfs`` mounts. A target may be mounted once."""
    binds: list[Bind] = []
    mounts: list[Mount] = []
    for text in host.Binds or []:
        item = parse_bind(text, data_root)
        (binds if isinstance(item, Bind) else mounts).append(item)  # type: ignore[arg-type]
    mounts += [parse_mount(m, data_root) for m in host.Mounts or []]
    tmpfs: dict[str, str] = {}
    for path, opts in (host.Tmpfs or {}).items():
        tmpfs_options(path, opts or "")  # checked now; mounted with them at start
        tmpfs[os.path.normpath(path)] = opts or ""
    seen: set[str] = set()
    for target in [b.target for b in binds] + [m.target for m in mounts] + list(tmpfs):
        if target in seen:
            raise InvalidParameter(f"Duplicate mount point: {target}")
        seen.add(target)
    # Anonymous volumes: the request's Config.Volumes and the image's VOLUME, where nothing
    # else is mounted (Docker).
    wanted = list((req.Volumes or {}).keys()) + list((image_volumes or {}).keys())
    for target in wanted:
        if not isinstance(target, str) or not target.startswith("/"):
            raise InvalidParameter(f"invalid mount config for type \"volume\": invalid mount "
                                   f"path: '{target}' mount path must be absolute")
        target = os.path.normpath(target)
        if target in seen:
            continue
        seen.add(target)
        name = os.urandom(32).hex()
        mounts.append(Mount("volume", name, target, volume_path(data_root, name),
                            anonymous=True, origin="volumes"))
    mounts.sort(key=lambda m: m.target.rstrip("/").count("/"))
    return tuple(binds), tuple(mounts), tmpfs


def oci_mounts(spec: ContainerSpec) -> list[dict[str, Any]]:
    """The OCI ``mounts`` of the container's volumes, ``--mount`` and ``--tmpfs`` (runc makes
    a missing mount point, inside the root)."""
    out: list[dict[str, Any]] = []
    for m in spec.mounts:
        if m.type == "tmpfs":
            opts = m.options.split(",") if m.options else list(TMPFS_DEFAULTS)
            out.append({"destination": m.target, "type": "tmpfs", "source": "tmpfs",
                        "options": opts + (["ro"] if m.readonly else [])})
        else:
            out.append({"destination": m.target, "type": "bind", "source": m.path,
                        "options": ["rbind", m.propagation or "rprivate",
                                    "ro" if m.readonly else "rw"]})
    for path, text in sorted(spec.tmpfs.items()):
        out.append({"destination": path, "type": "tmpfs", "source": "tmpfs",
                    "options": tmpfs_options(path, text).split(",")})
    return out


def inspect_mounts(spec: ContainerSpec) -> list[dict[str, Any]]:
    """``Mounts`` of ``inspect``, as Docker prints them (``--tmpfs`` is not listed there)."""
    out: list[dict[str, Any]] = [
        {"Type": "bind", "Source": b.source, "Destination": b.target,
         "Mode": "ro" if b.readonly else "", "RW": not b.readonly, "Propagation": "rprivate"}
        for b in spec.binds]
    for m in spec.mounts:
        item: dict[str, Any] = {"Type": m.type}
        if m.type == "volume":
            item.update({"Name": m.source, "Source": m.path, "Destination": m.target,
                         "Driver": "local"})
        else:
            item.update({"Source": m.path, "Destination": m.target})
        item.update({"Mode": m.mode, "RW": not m.readonly,
                     "Propagation": (m.propagation or "rprivate") if m.type == "bind" else ""})
        out.append(item)
    return out
