"""What every route module of the API shares: the app's keys, Docker's query parsing
(``qbool``, Go's ``Atoi``), and the one place where errors become Docker's answers
(``error_middleware``) with Docker's headers on every response."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from typing import Any, Callable

from aiohttp import web

from logpipe import __version__
from logpipe.errors import InvalidParameter, LogpipeError, NotModified

from .. import schema
from ..containers import ContainerStore
from ..images import ImageStore

API_VERSION = "1.41"
MIN_API_VERSION = "1.12"
SERVER_VERSION = f"logpipe-{__version__}"
STORE_KEY = web.AppKey("store", ContainerStore)
IMAGES_KEY = web.AppKey("images", ImageStore)
#: Set when the daemon shuts down: every lasting stream ends.
ENDING_KEY = web.AppKey("ending", asyncio.Event)
#: How long a shutting-down daemon lets requests other than streams finish (an image load,
#: a stop): then they are cancelled.
SHUTDOWN_GRACE = 5.0
#: Frames queued between a reader thread and its response before the reader waits.
QUEUE_LIMIT = 256
#: Bytes queued likewise: a client that stops reading holds its reader (a follower then keeps
#: its place in the log's files, which are bounded) instead of growing the daemon.
QUEUE_BYTES = 4 << 20
log = logging.getLogger("logpipe.daemon")


class ServerError(LogpipeError):
    """A malformed value Docker reports as 500 (its strconv errors, e.g. ``since=abc``)."""


# -- request helpers ------------------------------------------------------------------------


def qbool(request: web.Request, key: str, default: bool = False) -> bool:
    """Docker's boolean query values: false iff ``""``, ``0``, ``no``, ``false`` or ``none``."""
    if key not in request.query:
        return default
    return request.query[key].strip().lower() not in ("", "0", "no", "false", "none")


#: What Go's ``strconv.Atoi`` accepts (Python's ``int`` also takes spaces, ``_``, other digits).
_ATOI = re.compile(r"[+-]?[0-9]+")


def go_atoi(text: str) -> int:
    """Go's ``strconv.Atoi`` on a 64-bit machine, with its error texts (as ValueError)."""
    quoted = json.dumps(text, ensure_ascii=False)
    if not _ATOI.fullmatch(text):
        raise ValueError(f"strconv.Atoi: parsing {quoted}: invalid syntax")
    num = int(text)
    if not -(1 << 63) <= num < 1 << 63:
        raise ValueError(f"strconv.Atoi: parsing {quoted}: value out of range")
    return num


def qint(request: web.Request, key: str) -> int | None:
    """An integer query value as Docker parses it (``t``, ``limit``): 400 with Go's text."""
    value = request.query.get(key, "")
    if value == "":
        return None
    try:
        return go_atoi(value)
    except ValueError as err:
        raise InvalidParameter(str(err)) from None


async def json_body(request: web.Request) -> Any:
    """The body as parsed JSON (its shape is checked by the handler, against ``schema``);
    no body at all is Docker's ``invalid JSON: got EOF while reading request body``."""
    return schema.decode_json(await request.read())


def store_of(request: web.Request) -> ContainerStore:
    return request.app[STORE_KEY]


def container_of(request: web.Request):
    return store_of(request).get(request.match_info["id"])




#: Set on a request once its response's headers are on their way: an error after that
#: point can no longer be answered with a status, only by closing the connection.
PREPARED = "logpipe.prepared"
#: Marks a streamed response that must go without the Content-Type aiohttp would add.
NO_CONTENT_TYPE = "logpipe.no-content-type"


def error_status(err: BaseException) -> int:
    """The HTTP status of an error: its category's (set in ``logpipe/errors.py`` only),
    aiohttp's for its own errors (unknown route or method), else 500."""
    if isinstance(err, LogpipeError):
        return err.status
    if isinstance(err, web.HTTPException):
        return err.status
    return 500


def error_message(err: BaseException) -> str:
    """Docker's ``message`` for an error; a system error reads as Go's ``*PathError``
    (``/var/lib/logpipe/containers/…: no space left on device``), not as Python's repr."""
    if isinstance(err, (web.HTTPNotFound, web.HTTPMethodNotAllowed)):
        return "page not found"
    if isinstance(err, web.HTTPException):
        return err.reason if not err.text or err.text.startswith(f"{err.status}:") else err.text
    if isinstance(err, OSError) and err.errno is not None:
        text = os.strerror(err.errno)
        text = text[:1].lower() + text[1:]
        return f"{err.filename}: {text}" if err.filename else text
    return str(err) or type(err).__name__


@web.middleware
async def error_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    """The one place where errors become Docker's answers: ``{"message": ...}`` with the
    error's status. An error nobody expected is a 500 of the same shape, logged once with
    its traceback — never aiohttp's plain-text page."""
    try:
        return await handler(request)
    except NotModified:
        return web.Response(status=304)
    except ConnectionError:
        raise  # the client went away: there is nobody to answer
    except Exception as err:  # noqa: BLE001 - every error gets an answer
        if request.get(PREPARED):
            raise  # headers already sent: aiohttp logs it and closes the connection
        status = error_status(err)
        if status >= 500 and not isinstance(err, LogpipeError):
            log.error("%s %s failed", request.method, request.path, exc_info=err)
        return web.json_response({"message": error_message(err)}, status=status)


async def docker_headers(request: web.Request, resp: web.StreamResponse) -> None:
    """Docker's headers on every response, streamed ones included (they are prepared
    before the middleware sees them). JSON goes as exactly ``application/json``: the
    docker CLI parses an error body only for that type, and prints anything else raw."""
    request[PREPARED] = True
    resp.headers["Api-Version"] = API_VERSION
    resp.headers["Docker-Experimental"] = "false"
    resp.headers["Ostype"] = "linux"
    resp.headers["Server"] = f"Logpipe/{__version__} (linux)"
    if resp.get(NO_CONTENT_TYPE):
        resp.headers.pop("Content-Type", None)
    elif resp.headers.get("Content-Type", "").startswith("application/json"):
        resp.headers["Content-Type"] = "application/json"
