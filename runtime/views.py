"""The Engine API's JSON views: a container's ``inspect``, a ``ps`` item, an image's
``inspect`` and ``images`` item, the ``LogStorage`` counters, and ``/system/df``.

Every document the API answers about a container or an image is assembled here, from what
the store knows (``Container``: spec, state, lifecycle) and, for ``inspect``, the shim's live
counters and the shipping; nothing here changes anything. ``config.json`` and
``state.json`` have the shape of the matching parts of ``inspect`` on purpose
(``ContainerSpec.to_json``, ``State.to_json``: the files' format), so ``inspect`` starts from
them and adds the rest.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

from logpipe.driver import hook
from logpipe.errors import InvalidParameter, LogpipeError
from logpipe.registry import get_driver
from logpipe.timespec import parse_rfc3339

from .create import PROCESS_WARNING
from .commit import image_document, parent_of
from .images import Image
from .mounts import inspect_mounts
from .network.settings import network_names, network_settings, summary_ports
from .rootfs import tree_size, writable_size
from .shimclient import live_state
from .spec import ContainerSpec
from .state import RUNNING, State

if TYPE_CHECKING:
    from .containers import Container
    from .execs import Exec
    from .shipping import Shipping
    from .volumes import Volume

#: Go's names of the machines (``GOARCH``), as Docker reports them.
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def _created_unix(text: str) -> int:
    try:
        return parse_rfc3339(text) // 1_000_000_000
    except ValueError:
        return 0


def log_path(spec: ContainerSpec) -> str:
    """Docker's ``LogPath``: the json-file log, and "" for every other driver."""
    if spec.log_type != "json-file":
        return ""
    return get_driver("json-file").log_path(spec.log_info())


def container_state(c: Container) -> dict[str, Any]:
    """``State`` of ``inspect``: what the shim recorded, as the daemon sees the container."""
    st = c.state
    data = st.to_json()
    data.update({"Status": c.status, "Running": c.running,
                 "Paused": c.status == "paused",
                 "Restarting": c.restarting, "Dead": st.status == "dead",
                 "Pid": st.pid if st.status == RUNNING else 0})
    if c.start_failed:
        data["ExitCode"] = st.exit_code or 128
    return data


#: ``HostConfig`` keys Docker always shows, with its values for what was not asked for (a
#: container's own values, in ``config.json``, take precedence).
HOST_CONFIG_DEFAULTS: dict[str, Any] = {
    "ContainerIDFile": "", "VolumeDriver": "", "VolumesFrom": None, "CapAdd": None,
    "CapDrop": None, "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None,
    "GroupAdd": None, "IpcMode": "private", "Cgroup": "", "Links": None, "OomScoreAdj": 0,
    "PidMode": "", "Privileged": False, "ReadonlyRootfs": False, "UTSMode": "",
    "UsernsMode": "", "ShmSize": 64 << 20, "ConsoleSize": [0, 0], "Isolation": "",
    "CpuShares": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
    "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None, "BlkioDeviceReadIOps": None,
    "BlkioDeviceWriteIOps": None, "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
    "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
    "DeviceCgroupRules": None, "DeviceRequests": None, "KernelMemory": 0,
    "KernelMemoryTCP": 0, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None,
    "OomKillDisable": False, "Ulimits": None, "CpuCount": 0, "CpuPercent": 0,
    "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "Init": None,
}


def host_config(spec: ContainerSpec, stored: dict[str, Any]) -> dict[str, Any]:
    """``HostConfig`` of ``inspect``: what the container was created with, and Docker's
    defaults for the rest (a container created before they were stored gets the defaults)."""
    from .hostopts import unified_cgroup
    from .oci import MASKED_PATHS, READONLY_PATHS

    out = dict(HOST_CONFIG_DEFAULTS)
    out.update({"CgroupnsMode": "private" if unified_cgroup() else "host",
                "MaskedPaths": list(MASKED_PATHS), "ReadonlyPaths": list(READONLY_PATHS)})
    out.update(stored)
    return out


def container_inspect(c: Container) -> dict[str, Any]:
    """``GET /containers/{id}/json``: Docker's inspect shape."""
    data = c.spec.to_json()
    data.pop("LogPlan", None)  # logpipe's own record, not part of Docker's inspect
    data.pop("MountPoints", None)  # shown as Docker's Mounts
    data.pop("NetworkAliases", None)  # shown in NetworkSettings.Networks
    data["HostConfig"] = host_config(c.spec, data["HostConfig"])
    log_config = data["HostConfig"]["LogConfig"]
    log_config["Config"] = redacted_log_opts(log_config["Type"], log_config["Config"])
    argv = c.spec.argv
    data.update({
        "Path": argv[0] if argv else "", "Args": argv[1:], "State": container_state(c),
        "RestartCount": c.restart_count, "LogPath": log_path(c.spec),
        "Driver": "", "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
        "AppArmorProfile": "", "ExecIDs": list(c.exec_ids) or None,
        "Mounts": inspect_mounts(c.spec),
        "NetworkSettings": network_settings(c.spec),
    })
    if c.spec.runtime == "process":
        data["IsolationWarning"] = PROCESS_WARNING
    return data


def container_inspect_live(c: Container, shipping: Shipping) -> dict[str, Any]:
    """``inspect`` plus logpipe's own keys, with the shim's live counters (blocking I/O:
    run in a thread): ``LogStorage`` for every driver, ``LogShipping`` for remote ones."""
    data = container_inspect(c)
    state = live_state(c.spec.dir, c.state)
    data["State"].update(state.counters())
    data["LogStorage"] = log_storage(state, c.spec.log_type)
    if not c.spec.plan().ships:
        return data
    stats = shipping.stats(c.spec, state)
    if stats is not None:
        data["LogShipping"] = stats
    return data


def container_summary(c: Container) -> dict[str, Any]:
    """One item of ``GET /containers/json``."""
    return {
        "Id": c.id, "Names": [c.spec.name], "Image": c.spec.image,
        "ImageID": c.spec.image_id, "Command": " ".join(c.spec.argv),
        "Created": _created_unix(c.spec.created), "Ports": summary_ports(c.spec),
        "Labels": dict(c.spec.labels),
        "State": c.status, "Status": c.status_text(),
        "HostConfig": {"NetworkMode": c.spec.network_mode},
        "NetworkSettings": {"Networks": {n: {} for n in network_names(c.spec)}},
        "Mounts": inspect_mounts(c.spec),
    }


def log_storage(state: State, driver: str) -> dict[str, Any]:
    """``LogStorage`` of ``inspect`` (and the series of ``/metrics``): what the shim read
    from the container, stored, and could not store, for every driver."""
    return {
        "Driver": driver,
        "CapturedLines": state.lines_logged + state.lines_dropped,
        "CapturedBytes": state.bytes_logged + state.bytes_dropped,
        "StoredLines": state.lines_logged, "StoredBytes": state.bytes_logged,
        "DroppedLines": state.lines_dropped, "DroppedBytes": state.bytes_dropped,
        "Failing": state.storage_failing, "LastError": state.storage_error,
        "LastDropAt": state.last_drop_at,
    }


def redacted_log_opts(driver: str, opts: dict[str, str]) -> dict[str, str]:
    """Log options as ``inspect`` shows them: without credentials (a password in
    ``loki-url``), which Docker would show and logpipe does not."""
    try:
        return hook(get_driver(driver), "redacted_opts")(opts)
    except LogpipeError:
        return opts


# -- execs ----------------------------------------------------------------------------------


def exec_inspect(e: Exec) -> dict[str, Any]:
    """``GET /exec/{id}/json``: Docker's ``ExecInspect`` (ExitCode null until it ends;
    ``user`` only when one was asked for, as Docker's ``omitempty``)."""
    cfg = e.config
    process = {"tty": cfg.tty, "entrypoint": cfg.cmd[0], "arguments": list(cfg.cmd[1:]),
               "privileged": cfg.privileged}
    if cfg.user:
        process["user"] = cfg.user
    return {
        "ID": e.id, "Running": e.running, "ExitCode": e.exit_code, "ProcessConfig": process,
        "OpenStdin": cfg.attach_stdin, "OpenStderr": cfg.attach_stderr,
        "OpenStdout": cfg.attach_stdout, "CanRemove": e.finished_at > 0,
        "ContainerID": e.container_id, "DetachKeys": cfg.detach_keys, "Pid": e.pid,
    }


# -- images ---------------------------------------------------------------------------------


def image_summary(im: Image) -> dict[str, Any]:
    """One item of ``GET /images/json``."""
    return {"Id": im.id, "ParentId": parent_of(im), "RepoTags": list(im.repo_tags) or None,
            "RepoDigests": list(im.repo_digests) or None, "Created": _created_unix(im.created),
            "Size": im.size, "VirtualSize": im.size, "SharedSize": -1,
            "Labels": im.config.get("Labels") or {}, "Containers": -1}


def image_inspect(im: Image) -> dict[str, Any]:
    """``GET /images/{name}/json``; what the image config says of how the image was made
    (parent, commit's comment and author, the container it came from) as Docker shows it."""
    doc = image_document(im).config
    return {"Id": im.id, "RepoTags": list(im.repo_tags),
            "RepoDigests": list(im.repo_digests),
            "Parent": doc.get("parent") or "", "Comment": doc.get("comment") or "",
            "Created": im.created, "Container": doc.get("container") or "",
            "ContainerConfig": doc.get("container_config") or {},
            "DockerVersion": doc.get("docker_version") or "", "Author": doc.get("author") or "",
            "Size": im.size, "VirtualSize": im.size,
            "Config": im.config, "Os": "linux", "Architecture":
            GOARCH.get(os.uname().machine, os.uname().machine),
            "RootFS": {"Type": "layers", "Layers": (doc.get("rootfs") or {}).get("diff_ids")
                       or []}}


# -- disk usage -----------------------------------------------------------------------------


def container_sizes(c: Container, image_size: int = 0) -> dict[str, int]:
    """``SizeRw`` (its writable layer) and ``SizeRootFs`` (that and its image) of a ``ps``
    item with ``size=1`` (blocking I/O: a walk of the layer)."""
    rw = writable_size(c.spec)
    return {"SizeRw": rw, "SizeRootFs": rw + image_size}


def disk_usage(containers: list[Container], images: list[Image], volumes: list[Volume],
               volume_users: Any) -> dict[str, Any]:
    """``GET /system/df`` (blocking I/O). logpipe's images are one flattened layer each, so
    nothing is shared between them (``SharedSize`` 0) and ``LayersSize`` is their sum."""
    image_size = {im.id: im.size for im in images}
    image_docs = []
    for im in images:
        doc = image_summary(im)
        doc.update({"SharedSize": 0, "Containers": sum(c.spec.image_id == im.id
                                                       for c in containers)})
        image_docs.append(doc)
    container_docs = []
    for c in containers:
        doc = container_summary(c)
        doc.update(container_sizes(c, image_size.get(c.spec.image_id, 0)))
        container_docs.append(doc)
    volume_docs = []
    for v in volumes:
        doc = v.to_json()
        doc["UsageData"] = {"Size": tree_size(v.mountpoint), "RefCount": len(volume_users(v.name))}
        volume_docs.append(doc)
    return {"LayersSize": sum(image_size.values()), "Images": image_docs,
            "Containers": container_docs, "Volumes": volume_docs, "BuildCache": []}


def _labels_match(im: Image, wanted: list[str]) -> bool:
    labels = im.config.get("Labels") or {}
    for w in wanted:
        key, eq, value = w.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def filter_images(text: str, images: list[Image]) -> list[Image]:
    """``GET /images/json?filters=``: ``dangling``, ``label``, ``before``, ``since``,
    ``reference`` (a glob on ``name`` or ``name:tag``; as in Docker, an image matched by
    reference lists only the tags that match)."""
    import dataclasses
    import fnmatch

    from .schema import filters as parse_filters

    f = parse_filters(text)
    unknown = sorted(set(f) - {"dangling", "label", "before", "since", "reference"})
    if unknown:
        raise InvalidParameter(f"invalid filter '{unknown[0]}'")
    for v in f.get("dangling", []):
        if v.lower() not in ("true", "false", "1", "0"):
            raise InvalidParameter(f"invalid filter 'dangling={v}'")
    bounds = {key: _find(images, ref).created for key in ("before", "since")
              for ref in f.get(key, [])}

    def matching_tags(im: Image) -> tuple[str, ...]:
        return tuple(tag for tag in im.repo_tags for pat in f["reference"]
                     if fnmatch.fnmatchcase(tag, pat)
                     or fnmatch.fnmatchcase(tag.rpartition(":")[0], pat))

    out = []
    for im in images:
        if any((v.lower() in ("true", "1")) != (not im.repo_tags) for v in f.get("dangling", [])):
            continue
        if "label" in f and not _labels_match(im, f["label"]):
            continue
        if "before" in bounds and not im.created < bounds["before"]:
            continue
        if "since" in bounds and not im.created > bounds["since"]:
            continue
        if "reference" in f:
            tags = matching_tags(im)
            if not tags:
                continue
            im = dataclasses.replace(im, repo_tags=tags)
        out.append(im)
    return out


def _find(images: list[Image], ref: str) -> Image:
    from .images import NoSuchImage, normalize_ref

    for im in images:
        if ref in im.repo_tags or im.id == ref or im.id[7:].startswith(ref.removeprefix(
                "sha256:")) or (":" not in ref.rsplit("/", 1)[-1]
                                and normalize_ref(ref) in im.repo_tags):
            return im
    raise NoSuchImage(ref)


def prune_filter(text: str) -> Callable[[Image], bool]:
    """``POST /images/prune?filters=``: which images stay. By default only dangling ones
    go; ``dangling=false`` (``prune -a``) lets every unused one go; ``until`` and
    ``label``/``label!`` narrow it."""
    from logpipe.timespec import parse_time_arg

    from .schema import filters as parse_filters

    f = parse_filters(text)
    unknown = sorted(set(f) - {"dangling", "until", "label", "label!"})
    if unknown:
        raise InvalidParameter(f"invalid filter '{unknown[0]}'")
    dangling_only = all(v.lower() in ("true", "1") for v in f.get("dangling", ["true"]))
    until = None
    for v in f.get("until", []):
        try:
            until = parse_time_arg(v, name="until") // 1_000_000_000
        except ValueError as err:
            raise InvalidParameter(str(err)) from None

    def keep(im: Image) -> bool:
        if dangling_only and im.repo_tags:
            return True
        if until is not None and _created_unix(im.created) >= until:
            return True
        if "label" in f and not _labels_match(im, f["label"]):
            return True
        if "label!" in f and any(_labels_match(im, [w]) for w in f["label!"]):
            return True
        return False

    return keep
