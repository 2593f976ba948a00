"""``GET /events``: the daemon's events as a stream of JSON lines (``runtime.events``).

As Docker's (api/server/router/system): the kept events between ``since`` and ``until``
first, then, unless ``until`` is past, each new one as it happens, until ``until`` comes or
the client goes. ``since``/``until`` are Unix seconds with an optional fraction (what the
docker CLI and docker-py send); RFC 3339 times and Go durations (counted back from now) are
accepted too. A client that stops reading is cut off once ``QUEUE_LIMIT`` events wait for
it (its connection is aborted, see ``runtime.events``); one that goes away is noticed
within ``IDLE_CHECK`` seconds even when nothing happens.
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from logpipe.errors import InvalidParameter
from logpipe.timespec import NS, parse_time_arg, parse_unix

from .. import schema
from ..events import matcher
from .common import store_of
from .streams import flush_headers, serve_stream

#: How often a quiet stream checks that its client is still there.
IDLE_CHECK = 1.0


def event_time(request: web.Request, key: str) -> int:
    """``since``/``until`` in ns since the epoch; 0 when absent."""
    text = request.query.get(key, "")
    if not text:
        return 0
    try:
        if text[:1].isdigit() and all(ch.isdigit() or ch == "." for ch in text):
            return parse_unix(text)
        return parse_time_arg(text, name=key)
    except ValueError as err:
        raise InvalidParameter(str(err)) from None


def _line(msg: dict) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


async def get_events(request: web.Request) -> web.StreamResponse:
    since, until = event_time(request, "since"), event_time(request, "until")
    if until and until < since:
        raise InvalidParameter(f"`since` time ({request.query['since']}) cannot be after "
                               f"`until` time ({request.query['until']})")
    include = matcher(schema.filters(request.query.get("filters", "")))
    hub = store_of(request).events
    def cut_off() -> None:  # it stopped reading: drop what its socket holds, and it
        if request.transport is not None:
            request.transport.abort()

    past, sub = hub.subscribe(since, until, include, cut_off)
    only_past = bool(until) and until < time.time_ns()
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    try:
        await resp.prepare(request)
        await flush_headers(resp)
    except BaseException:
        hub.unsubscribe(sub)
        raise

    async def body() -> None:
        try:
            if past:
                await resp.write(b"".join(_line(m) for m in past))
            while not only_past:
                wait = IDLE_CHECK
                if until:
                    wait = min(wait, max(0.0, (until - time.time_ns()) / NS))
                msg = await sub.next(wait)
                if msg is not None:
                    await resp.write(_line(msg))
                    continue
                if sub.overflowed or (until and time.time_ns() >= until):
                    return
                if request.transport is None or request.transport.is_closing():
                    return  # the client went away while nothing happened
        finally:
            hub.unsubscribe(sub)

    return await serve_stream(request, resp, body())


ROUTES = [("GET", "/events", get_events)]
