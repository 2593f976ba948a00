"""``/_ping``, ``/version``, ``/info``, ``/system/df`` and ``/metrics`` (Prometheus' text,
not Docker's)."""

from __future__ import annotations

import asyncio
import os
import platform

from aiohttp import web

from logpipe.metrics import CONTENT_TYPE
from logpipe.registry import driver_names

from ..executors import available_runtimes, default_runtime
from ..views import GOARCH, disk_usage
from .common import API_VERSION, IMAGES_KEY, MIN_API_VERSION, SERVER_VERSION, store_of



async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK", headers={"Cache-Control": "no-cache, no-store, must-revalidate",
                                            "Pragma": "no-cache"})


async def version(request: web.Request) -> web.Response:
    uname = os.uname()
    arch = GOARCH.get(uname.machine, uname.machine)
    return web.json_response({
        "Platform": {"Name": "logpipe"}, "Version": SERVER_VERSION, "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": arch,
        "KernelVersion": uname.release, "GoVersion": f"python{platform.python_version()}",
        "GitCommit": "", "BuildTime": "",
        "Components": [{"Name": "Engine", "Version": SERVER_VERSION,
                        "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                                    "Os": "linux", "Arch": arch}}]})


async def info(request: web.Request) -> web.Response:
    store = store_of(request)
    uname = os.uname()
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = 0
    images = await asyncio.to_thread(request.app[IMAGES_KEY].list)
    body = {"ID": "", "Name": uname.nodename, "ServerVersion": SERVER_VERSION,
            **store.counts(), "Images": len(images), "Driver": "", "DriverStatus": [],
            "LoggingDriver": store.config.log_driver, "DockerRootDir": store.config.data_root,
            "Plugins": {"Log": driver_names(), "Volume": [], "Network": ["host", "none"],
                        "Authorization": None},
            "OSType": "linux", "OperatingSystem": platform.platform(),
            "Architecture": uname.machine, "KernelVersion": uname.release,
            "NCPU": os.cpu_count() or 1, "MemTotal": mem,
            "DefaultRuntime": store.config.default_runtime or default_runtime(),
            "Runtimes": {name: {"path": name} for name in available_runtimes()},
            "LiveRestoreEnabled": True, "Warnings": []}
    if body["DefaultRuntime"] != "process":  # runc/crun apply runtime/seccomp/default.json
        body["SecurityOptions"] = ["name=seccomp,profile=builtin"]
    return web.json_response(body)


async def system_df(request: web.Request) -> web.Response:
    """``docker system df``: images, containers and volumes with what they hold on disk."""
    store = store_of(request)
    images = await asyncio.to_thread(request.app[IMAGES_KEY].list)
    volumes = await asyncio.to_thread(store.volumes.list)
    body = await asyncio.to_thread(disk_usage, store.list(all=True), images, volumes,
                                   store.volume_users)
    return web.json_response(body)


# -- containers -----------------------------------------------------------------------------


async def metrics(request: web.Request) -> web.Response:
    """Shipping counters of every container in Prometheus' text format (not a Docker API)."""
    store = store_of(request)
    items = [(c.spec, c.state) for c in store.list(all=True)]
    text = await asyncio.to_thread(store.shipping.metrics, items)
    return web.Response(text=text, headers={"Content-Type": CONTENT_TYPE})



ROUTES = [
    ("GET", "/_ping", ping), ("HEAD", "/_ping", ping),
    ("GET", "/version", version), ("GET", "/info", info), ("GET", "/metrics", metrics),
    ("GET", "/system/df", system_df),
]
