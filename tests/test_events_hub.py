"""The event hub on its own (``runtime.events``): Docker's filter semantics, the kept ring
and its file across a restart and a torn write, rotation, and subscribers that do not read
(bounded, cut off, never blocking an emitter)."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from logpipe.errors import InvalidParameter
from runtime import events as ev
from runtime.events import Events, container_attributes, matcher

pytestmark = pytest.mark.unit


def container(hub: Events, action: str, cid: str = "abc123", name: str = "web",
              **extra: str) -> dict:
    return hub.emit("container", action, cid, container_attributes(
        name, "busybox:latest", {"team": "logs"}, extra))


def test_filters_match_as_dockers(tmp_path):
    hub = Events(str(tmp_path))
    start = container(hub, "start")
    die = container(hub, "die", exitCode="1")
    vol = hub.emit("volume", "create", "data", {"driver": "local"})
    img = hub.emit("image", "delete", "sha256:ff", {"name": "sha256:ff"})
    exec_ = container(hub, "exec_start: sh -c true", execID="e1")
    cases = [
        ({"container": ["abc"]}, [start, die, exec_]),  # an id prefix
        ({"container": ["web"]}, [start, die, exec_]),  # the name
        ({"container": ["nosuch"]}, []),
        ({"type": ["volume"]}, [vol]),
        ({"event": ["die"]}, [die]),
        ({"event": ["exec_start"]}, [exec_]),  # Docker's fuzzy match for exec_start
        ({"image": ["busybox"]}, [start, die, exec_]),  # the tag stripped
        ({"image": ["sha256:ff"]}, [img]),
        ({"label": ["team=logs"]}, [start, die, exec_]),
        ({"label": ["team=other"]}, []),
        ({"volume": ["data"], "event": ["create"]}, [vol]),
    ]
    every = [start, die, vol, img, exec_]
    for filters, want in cases:
        include = matcher(filters)
        assert [m for m in every if include(m)] == want, filters
    assert matcher({}) is None
    with pytest.raises(InvalidParameter, match="invalid filter 'nosuch'"):
        matcher({"nosuch": ["x"]})
    assert die["Actor"]["Attributes"] == {"exitCode": "1", "image": "busybox:latest",
                                          "name": "web", "team": "logs"}
    assert (die["status"], die["id"], die["from"]) == ("die", "abc123", "busybox:latest")
    assert "from" not in img and img["status"] == "delete" and "status" not in vol


def test_since_until_come_from_the_ring_which_survives_a_restart_and_a_torn_line(tmp_path):
    hub = Events(str(tmp_path))
    for i in range(300):
        hub.emit("volume", "create", f"v{i}")
    last = hub.ring[-1]
    hub.close()
    with open(hub.path, "ab") as f:
        f.write(b'{"Type":"volume","Act')  # a write cut short by a crash
    again = Events(str(tmp_path))
    assert len(again.ring) == ev.RING_SIZE and again.ring[-1] == last
    past, sub = again.subscribe(1, 0, matcher({"volume": ["v299"]}))
    assert [m["Actor"]["ID"] for m in past] == ["v299"]
    past, _ = again.subscribe(0, 0, None)
    assert past == []  # neither since nor until: nothing from the past (Docker)
    later = again.emit("volume", "create", "after")
    assert later["timeNano"] >= last["timeNano"]
    past, _ = again.subscribe(0, last["timeNano"], matcher({"type": ["volume"]}))
    assert past[-1] == last  # only until: everything kept up to it


def test_the_file_is_rotated_and_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "FILE_LIMIT", 4096)
    hub = Events(str(tmp_path))
    for i in range(500):
        hub.emit("volume", "create", f"volume-{i}")
    hub.close()
    sizes = [os.path.getsize(hub.path), os.path.getsize(hub.path + ".1")]
    assert all(s <= 4096 + 200 for s in sizes), sizes
    assert Events(str(tmp_path)).ring[-1]["Actor"]["ID"] == "volume-499"


def test_a_subscriber_that_does_not_read_is_cut_off_without_slowing_emitters(tmp_path):
    async def scenario() -> None:
        hub = Events(str(tmp_path))
        hub.bind(asyncio.get_running_loop())
        cut = []
        _, idle = hub.subscribe(0, 0, None, lambda: cut.append(True))
        _, other = hub.subscribe(0, 0, matcher({"type": ["image"]}))
        started = time.monotonic()
        for i in range(ev.QUEUE_LIMIT + 500):
            hub.emit("volume", "create", f"v{i}")
        assert time.monotonic() - started < 5  # no emit waited for anyone
        assert idle.overflowed and cut == [True] and len(idle.queue) == 0
        assert await idle.next(0.01) is None
        assert not other.overflowed and not other.queue  # what it filters out costs nothing
        hub.unsubscribe(idle)
        hub.unsubscribe(other)
        # From another thread: handed over through the loop.
        _, sub = hub.subscribe(0, 0, None)
        threading.Thread(target=hub.emit, args=("image", "load", "sha256:aa")).start()
        msg = await sub.next(5)
        assert msg is not None and msg["Action"] == "load"
        hub.close()

    asyncio.run(scenario())
