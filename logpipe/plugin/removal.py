"""Removing the directories of removed containers. Docker never tells a logging plugin that
a container was removed (StopLogging only says it stopped logging, and a stopped container
can still be read by ``docker logs``), so the plugin asks Docker's API, on the socket
``--docker-host`` names, which containers still exist. A directory goes when its container
is not among them, no logger of this plugin has it open, and (remote drivers) its spool is
delivered. Nothing is removed while Docker's API cannot be asked: an unreachable or
misconfigured Docker must never cost a log Docker can still read."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from logpipe.errors import LogpipeError

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
#: Seconds between two looks at which containers still exist.
DEFAULT_INTERVAL = 30.0
API_TIMEOUT = 10.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=API_TIMEOUT)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(API_TIMEOUT)
        self.sock.connect(self.path)


def _connection(docker_host: str) -> http.client.HTTPConnection:
    """Docker's ``-H`` syntax: ``unix:///path`` or ``tcp://host:port``."""
    url = urlsplit(docker_host)
    if url.scheme == "unix":
        return _UnixConnection(url.path)
    if url.scheme in ("tcp", "http"):
        return http.client.HTTPConnection(url.hostname or "localhost", url.port or 2375,
                                          timeout=API_TIMEOUT)
    raise ValueError(f"unsupported docker host {docker_host!r} (unix:// or tcp://)")


def _get_json(docker_host: str, path: str) -> Any:
    """Docker's JSON answer to ``GET path``; None when it cannot be asked (down,
    restarting, an error answer)."""
    try:
        conn = _connection(docker_host)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        return json.loads(body) if resp.status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None


def existing_containers(docker_host: str) -> set[str] | None:
    """The ids of every container Docker knows (running or not); None when it cannot be
    asked."""
    listing = _get_json(docker_host, "/containers/json?all=1")
    try:
        return None if listing is None else {c["Id"] for c in listing}
    except (KeyError, TypeError):
        return None


def container_running(docker_host: str, container_id: str) -> bool | None:
    """Whether Docker says the container runs; None when it cannot be asked."""
    doc = _get_json(docker_host, f"/containers/{container_id}/json")
    try:
        return None if doc is None else bool(doc["State"]["Running"])
    except (KeyError, TypeError):
        return None


def removable(data_root: str, cid: str) -> bool:
    """Whether a container's directory holds nothing still to deliver: a local driver's log
    (its container is gone), or a remote driver's spool that its shipper has delivered."""
    from logpipe.registry import log_plan

    from .store import container_dir, load_meta, log_info

    meta = load_meta(data_root, cid)
    if not log_plan(meta["Driver"]).ships:
        return True
    from drivers.spool import spool_drained

    info = log_info(meta["DockerInfo"], container_dir(data_root, cid), meta["Opts"])
    return spool_drained(info, meta["Driver"])


def sweep(data_root: str, docker_host: str, busy: Iterable[str],
          shippers: Mapping[str, Any]) -> list[str]:
    """Remove the directories of removed containers; returns their ids. ``busy``: the ids
    of containers a logger of this plugin has open; ``shippers``: running shippers by id
    (a directory goes only once its shipper has ended). The directories are listed before
    Docker is asked, so a container created meanwhile is never taken for a removed one."""
    root = os.path.join(data_root, "containers")
    try:
        present = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    existing = existing_containers(docker_host)
    if existing is None:
        return []
    busy = set(busy)
    removed = []
    for cid in present:
        shipper = shippers.get(cid)
        if cid in existing or cid in busy or (shipper is not None and shipper.is_alive()):
            continue
        try:
            if not removable(data_root, cid):
                continue
        except (OSError, KeyError, ValueError, LogpipeError):
            continue  # not a log directory of ours, or torn: left alone
        shutil.rmtree(os.path.join(root, cid), ignore_errors=True)
        removed.append(cid)
    return removed
