"""The Engine API's JSON views: a container's ``inspect``, a ``ps`` item, an image's
``inspect`` and ``images`` item, and the ``LogStorage`` counters.

Every document the API answers about a container or an image is assembled here, from what
the store knows (``Container``: spec, state, lifecycle) and, for ``inspect``, the shim's live
counters and the shipping; nothing here changes anything. ``config.json`` and
``state.json`` have the shape of the matching parts of ``inspect`` on purpose
(``ContainerSpec.to_json``, ``State.to_json``: the files' format), so ``inspect`` starts from
them and adds the rest.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from logpipe.driver import hook
from logpipe.errors import LogpipeError
from logpipe.registry import get_driver
from logpipe.timespec import parse_rfc3339

from .create import PROCESS_WARNING
from .images import Image
from .mounts import inspect_mounts
from .network.settings import network_names, network_settings, summary_ports
from .shimclient import live_state
from .spec import ContainerSpec
from .state import RUNNING, State

if TYPE_CHECKING:
    from .containers import Container
    from .shipping import Shipping

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


def container_inspect(c: Container) -> dict[str, Any]:
    """``GET /containers/{id}/json``: Docker's inspect shape."""
    data = c.spec.to_json()
    data.pop("LogPlan", None)  # logpipe's own record, not part of Docker's inspect
    data.pop("MountPoints", None)  # shown as Docker's Mounts
    data.pop("NetworkAliases", None)  # shown in NetworkSettings.Networks
    log_config = data["HostConfig"]["LogConfig"]
    log_config["Config"] = redacted_log_opts(log_config["Type"], log_config["Config"])
    argv = c.spec.argv
    data.update({
        "Path": argv[0] if argv else "", "Args": argv[1:], "State": container_state(c),
        "RestartCount": c.restart_count, "LogPath": log_path(c.spec),
        "Driver": "", "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
        "AppArmorProfile": "", "ExecIDs": None,
        "Mounts": inspect_mounts(c.spec),
        "NetworkSettings": network_settings(c.spec),
    })
    # logpipe has no TTY or stdin: Docker's clients read these to choose the framing.
    data["Config"].update({"Tty": False, "OpenStdin": False, "StdinOnce": False,
                           "AttachStdin": False, "AttachStdout": False,
                           "AttachStderr": False})
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


# -- images ---------------------------------------------------------------------------------


def image_summary(im: Image) -> dict[str, Any]:
    """One item of ``GET /images/json``."""
    return {"Id": im.id, "ParentId": "", "RepoTags": list(im.repo_tags) or None,
            "RepoDigests": None, "Created": _created_unix(im.created), "Size": im.size,
            "VirtualSize": im.size, "SharedSize": -1, "Labels": {}, "Containers": -1}


def image_inspect(im: Image) -> dict[str, Any]:
    """``GET /images/{name}/json``."""
    return {"Id": im.id, "RepoTags": list(im.repo_tags), "RepoDigests": [],
            "Created": im.created, "Size": im.size, "VirtualSize": im.size,
            "Config": im.config, "Os": "linux", "Architecture":
            GOARCH.get(os.uname().machine, os.uname().machine)}
