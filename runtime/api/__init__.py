"""The daemon's HTTP API: a subset of the Docker Engine API with v1.41 semantics.

One module per resource (``containers``, ``logs`` for logs and attach, ``stats`` for
stats and top, ``files`` for archive, export and changes, ``exec``, ``images``,
``volumes``, ``system``, ``events``, ``build``; ``/networks`` lives with the networking in
``runtime.network.api``), each with its ``ROUTES``; ``common`` holds what they share and
``streams`` how lasting answers are written. Routes are served with and without a version
prefix (``/v1.41/containers/json``), so that docker-py and the docker CLI work unchanged.

Every error a user can cause is a ``LogpipeError`` whose category (``logpipe/errors.py``)
carries its HTTP status; ``common.error_middleware`` is the one place where it becomes
Docker's ``{"message": ...}`` answer. Handlers stay a few lines: the documents they answer
are built in ``runtime.views``, the operations done by the stores.

Streams that last (``logs -f``, ``attach``, ``wait``, ``events``) go through
``streams.serve_stream``: a client that hangs up is normal and costs one debug line, and a
daemon that shuts down ends them at once rather than waiting for them (it would keep its
data root locked meanwhile).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..containers import ContainerStore
from ..execs import ExecRegistry
from ..images import ImageStore
from ..network import api as network_api
from . import (build, containers, events, exec as exec_routes, files, images as image_routes,
               logs, stats as stats_routes, system, volumes)
from .common import (ENDING_KEY, IMAGES_KEY, SHUTDOWN_GRACE, STORE_KEY, docker_headers,
                     error_middleware)
from .streams import end_streams

__all__ = ["SHUTDOWN_GRACE", "make_app"]

ROUTE_MODULES = (system, containers, logs, volumes, image_routes, exec_routes, events, build,
                 stats_routes, files)


def make_app(store: ContainerStore, images: ImageStore) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=1 << 20)
    app[STORE_KEY] = store
    app[IMAGES_KEY] = images
    app[ENDING_KEY] = asyncio.Event()
    app[exec_routes.EXECS_KEY] = ExecRegistry(store.exec_event)
    app.on_response_prepare.append(docker_headers)
    app.on_shutdown.append(end_streams)
    for module in ROUTE_MODULES:
        for method, path, handler in module.ROUTES:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, r"/v{version:[0-9.]+}" + path, handler)
    network_api.add_routes(app, store)  # /networks
    return app
