"""The daemon's event hub: what ``GET /events`` streams (Docker's ``events.Message``).

Every part of the daemon reports what happened to a container, an image, a network or a
volume through one call, ``Events.emit(type, action, actor_id, attributes)``; the hub stamps
it, keeps it, and hands it to the subscribers whose filters it matches. It never blocks the
caller and never grows without bound:

- **The ring**: the newest ``RING_SIZE`` (256, Docker's ``eventsLimit``) events, in memory,
  for ``since``/``until`` queries — Docker answers those from the same 256.
- **The file**: each event is appended as one JSON line to ``<data-root>/events/events.log``
  (one ``write`` to an ``O_APPEND`` descriptor: the page cache, no fsync, a few µs on the
  loop), rotated to ``events.log.1`` past ``FILE_LIMIT`` bytes. A daemon that starts again
  (even after a SIGKILL) fills its ring from them, so ``since`` reaches events from before
  the restart, which Docker forgets. A torn last line is skipped.
- **Subscribers**: each has a queue of at most ``QUEUE_LIMIT`` (1024, Docker's
  ``bufferSize``) events. Docker's publisher waits up to 100 ms per event for a subscriber
  that does not read, then drops that event for it; here emitters never wait: a subscriber
  whose queue is full is cut off (``Subscription.overflowed``; ``on_overflow`` runs, which
  for ``/events`` aborts the connection: what its socket holds is dropped, and the client
  sees its stream end without the clean end of a chunked response — Docker's clients say
  "unexpected EOF"), with a warning in the daemon's log. A client that falls that far
  behind has lost events anyway; a broken stream says so, a silently gappy one would not.

What emits what (Docker's actions and attributes; container events also carry the
container's labels, ``image`` and ``name``):

========== ==================================================================================
type       actions
========== ==================================================================================
container  create, attach, start, kill (``signal``), oom, die (``exitCode``), stop, pause, unpause,
           restart, rename (``oldName``), update, destroy, prune (``reclaimed``); from exec
           (Docker's words: the command joined by spaces after the colon):
           ``store.container_event(c, f"exec_create: {cmd}", {"execID": eid})``, the same
           for ``exec_start: {cmd}``, and ``exec_die`` with ``{"execID": eid,
           "exitCode": "0"}``; a terminal's ``resize`` with ``{"height", "width"}``
image      delete, untag, load, import (``name``: the id), and for a registry: tag, pull,
           push (``name``: the reference, ``store.events.emit("image", "pull", ref,
           {"name": ref})``)
network    create, connect, disconnect, destroy (``name``, ``type``; ``container`` for
           connect and disconnect)
volume     create, mount (``container``, ``destination``, ``read/write``, ``propagation``),
           unmount (``container``), destroy (``driver`` always)
========== ==================================================================================

Filters (``matcher``) are Docker's (daemon/events/filter.go), with its fuzzy and exact
matches. Nothing here knows the container store: callers pass what an event says.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import threading
import time
from typing import Any, Callable, Iterable, Mapping

from logpipe.errors import InvalidParameter

log = logging.getLogger("logpipe.daemon")

RING_SIZE = 256
QUEUE_LIMIT = 1024
FILE_LIMIT = 1 << 20
EVENTS_DIR, EVENTS_FILE = "events", "events.log"
#: The filter keys Docker accepts on ``/events`` (others: ``invalid filter 'x'``).
FILTER_KEYS = ("config", "container", "daemon", "event", "image", "label", "network", "node",
               "plugin", "scope", "secret", "service", "type", "volume")
#: Types whose messages also carry the legacy ``status``, ``id`` (and ``from``) fields.
_LEGACY = ("container", "image")

Message = dict[str, Any]


def message(type_: str, action: str, actor_id: str, attributes: Mapping[str, str],
            time_ns: int) -> Message:
    """One ``events.Message`` in Go's field order (the docker CLI's ``{{json .}}`` prints it
    so): the legacy fields first, only for containers and images, as Docker fills them."""
    msg: Message = {}
    if type_ in _LEGACY:
        msg["status"] = action
        msg["id"] = actor_id
        if type_ == "container" and attributes.get("image"):
            msg["from"] = attributes["image"]
    msg.update({"Type": type_, "Action": action,
                # Go marshals a map with its keys sorted: clients see them in that order.
                "Actor": {"ID": actor_id, "Attributes": dict(sorted(attributes.items()))},
                "scope": "local", "time": time_ns // 1_000_000_000, "timeNano": time_ns})
    return msg


# -- filters ----------------------------------------------------------------------------


def check_filters(filters: Mapping[str, list[str]]) -> None:
    for key in filters:
        if key not in FILTER_KEYS:
            raise InvalidParameter(f"invalid filter '{key}'")


def _fuzzy(values: list[str] | None, source: str) -> bool:
    """Docker's ``FuzzyMatch``: no filter, an equal value, or a value ``source`` starts with."""
    return not values or any(source == v or (v and source.startswith(v)) for v in values)


def _exact(values: list[str] | None, source: str) -> bool:
    return not values or source in values


def _strip_tag(ref: str) -> str:
    slash, colon = ref.rfind("/"), ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def _named(filters: Mapping[str, list[str]], kind: str, msg: Message) -> bool:
    values = filters.get(kind)
    actor = msg["Actor"]
    return _fuzzy(values, actor["ID"]) or _fuzzy(values, actor["Attributes"].get("name", ""))


def _image(filters: Mapping[str, list[str]], msg: Message) -> bool:
    values = filters.get("image")
    if not values:
        return True
    actor = msg["Actor"]
    name = actor["Attributes"].get("name" if msg["Type"] == "image" else "image", "")
    return any(s in values for s in (actor["ID"], name, _strip_tag(actor["ID"]), _strip_tag(name)))


def _labels(values: list[str] | None, attributes: Mapping[str, str]) -> bool:
    for v in values or ():
        key, eq, want = v.partition("=")
        if key not in attributes or (eq and attributes[key] != want):
            return False
    return True


def _event(values: list[str] | None, action: str) -> bool:
    """``event=exec_start`` matches ``exec_start: sh`` (Docker's #25798: a fuzzy match when
    the filter names health_status, exec_create or exec_start)."""
    if values and any(v in ("health_status", "exec_create", "exec_start") for v in values):
        return _fuzzy(values, action)
    return _exact(values, action)


def matcher(filters: Mapping[str, list[str]]) -> Callable[[Message], bool] | None:
    """Docker's ``Filter.Include`` for ``filters`` (checked); None when there are none."""
    check_filters(filters)
    if not any(filters.values()):
        return None

    def include(msg: Message) -> bool:
        attrs = msg["Actor"]["Attributes"]
        return (_event(filters.get("event"), msg["Action"])
                and _exact(filters.get("type"), msg["Type"])
                and _exact(filters.get("scope"), msg["scope"])
                and all(_named(filters, kind, msg) for kind in
                        ("daemon", "container", "plugin", "volume", "network", "node",
                         "service", "secret", "config"))
                and _image(filters, msg)
                and _labels(filters.get("label"), attrs))

    return include


# -- subscribers ---------------------------------------------------------------------------


class Subscription:
    """One ``/events`` stream's queue; lives on the daemon's loop."""

    def __init__(self, include: Callable[[Message], bool] | None,
                 on_overflow: Callable[[], None] | None = None) -> None:
        self.include = include
        self.on_overflow = on_overflow
        self.queue: collections.deque[Message] = collections.deque()
        self.ready = asyncio.Event()
        self.overflowed = False

    def offer(self, msg: Message) -> None:
        if self.overflowed or (self.include is not None and not self.include(msg)):
            return
        if len(self.queue) >= QUEUE_LIMIT:
            self.overflowed = True
            self.queue.clear()
            log.warning("an /events client fell %d events behind: its stream is ended",
                        QUEUE_LIMIT)
            if self.on_overflow is not None:
                self.on_overflow()
        else:
            self.queue.append(msg)
        self.ready.set()

    async def next(self, timeout: float | None) -> Message | None:
        """The next event, or None after ``timeout`` seconds or once cut off."""
        if not self.queue and not self.overflowed:
            self.ready.clear()
            try:
                await asyncio.wait_for(self.ready.wait(), timeout)
            except asyncio.TimeoutError:
                return None
        if self.overflowed or not self.queue:
            return None
        return self.queue.popleft()


# -- the hub -------------------------------------------------------------------------------


class Events:
    """Emit, keep and hand out the daemon's events (see the module's docstring)."""

    def __init__(self, data_root: str) -> None:
        self.dir = os.path.join(data_root, EVENTS_DIR)
        self.path = os.path.join(self.dir, EVENTS_FILE)
        self.ring: collections.deque[Message] = collections.deque(maxlen=RING_SIZE)
        self.subscribers: set[Subscription] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lock = threading.Lock()  # emit may be called from a worker thread
        self.last_ns = 0
        self.write_failed = False
        self.fd = -1
        self._load()
        self._open()

    def _load(self) -> None:
        for path in (self.path + ".1", self.path):
            try:
                with open(path, "rb") as f:
                    lines = f.read().splitlines()
            except OSError:
                continue
            for line in lines:
                try:
                    msg = json.loads(line)
                    self.ring.append(msg)
                    self.last_ns = max(self.last_ns, int(msg["timeNano"]))
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a crash

    def _open(self) -> None:
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                              0o600)
        except OSError as err:
            self._failed(err)

    def _failed(self, err: OSError) -> None:
        if not self.write_failed:
            log.warning("events are kept in memory only: %s: %s", self.path, err)
        self.write_failed = True

    def _persist(self, msg: Message) -> None:
        if self.fd < 0:
            return
        try:
            if os.fstat(self.fd).st_size >= FILE_LIMIT:
                os.replace(self.path, self.path + ".1")
                os.close(self.fd)
                self.fd = -1
                self._open()
                if self.fd < 0:
                    return
            os.write(self.fd, json.dumps(msg, separators=(",", ":")).encode() + b"\n")
            self.write_failed = False
        except OSError as err:  # a full disk: the ring still has it
            self._failed(err)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The daemon's loop, where subscribers live."""
        self.loop = loop

    def emit(self, type_: str, action: str, actor_id: str,
             attributes: Mapping[str, str] | None = None) -> Message:
        """Record an event and hand it to the subscribers. ``type_`` is ``container``,
        ``image``, ``network`` or ``volume``; ``action`` and ``attributes`` as listed in the
        module's docstring. Callable from any thread; never blocks on a subscriber."""
        with self.lock:
            now = max(time.time_ns(), self.last_ns)  # non-decreasing: the ring stays sorted
            self.last_ns = now
            msg = message(type_, action, actor_id, attributes or {}, now)
            self.ring.append(msg)
            self._persist(msg)
            subs = list(self.subscribers)
        if subs and self.loop is not None:
            if _on_loop(self.loop):
                for sub in subs:
                    sub.offer(msg)
            else:
                try:
                    self.loop.call_soon_threadsafe(_offer_all, subs, msg)
                except RuntimeError:
                    pass  # the loop is closed: the daemon is exiting
        return msg

    def subscribe(self, since_ns: int, until_ns: int,
                  include: Callable[[Message], bool] | None,
                  on_overflow: Callable[[], None] | None = None
                  ) -> tuple[list[Message], Subscription]:
        """Docker's ``SubscribeTopic``: the kept events between ``since`` and ``until`` (none
        when neither is given) that match, and a subscription to what comes next;
        ``on_overflow`` runs on the loop if the subscriber falls ``QUEUE_LIMIT`` behind."""
        sub = Subscription(include, on_overflow)
        with self.lock:
            past = [] if not since_ns and not until_ns else [
                m for m in self.ring if m["timeNano"] >= since_ns
                and (not until_ns or m["timeNano"] <= until_ns)
                and (include is None or include(m))]
            self.subscribers.add(sub)
        return past, sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self.lock:
            self.subscribers.discard(sub)

    def close(self) -> None:
        with self.lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _offer_all(subs: Iterable[Subscription], msg: Message) -> None:
    for sub in subs:
        sub.offer(msg)


def container_attributes(name: str, image: str, labels: Mapping[str, str],
                         extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A container event's attributes as Docker builds them: its labels, then ``image`` and
    ``name`` (without "/") over them, then the action's own."""
    attrs = dict(labels)
    attrs.update({"image": image, "name": name.lstrip("/")})
    attrs.update(extra or {})
    return attrs
