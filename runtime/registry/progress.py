"""Docker's JSON progress messages (``jsonmessage``), as the docker CLI and docker-py read
them from ``POST /images/create`` and ``/images/{name}/push``."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from logpipe.units import human_size

Emit = Callable[[dict[str, Any]], Awaitable[None]]
BAR_WIDTH = 50


def bar(current: int, total: int) -> str:
    """``[=====>      ]  1.2MB/3.4MB``: the ``progress`` text dockerd sends."""
    if total <= 0:
        return f"{human_size(current)}"
    filled = min(BAR_WIDTH, BAR_WIDTH * current // total)
    arrow = "=" * max(0, filled - 1) + (">" if filled < BAR_WIDTH else "=") if filled else ">"
    return f"[{arrow.ljust(BAR_WIDTH)}] {human_size(current):>8}/{human_size(total)}"


def status(text: str, id_: str = "", detail: bool = True) -> dict[str, Any]:
    """A status line; a layer's (``id_``) carries an empty ``progressDetail`` as in dockerd,
    the "Pulling from" one (``detail=False``) does not."""
    msg: dict[str, Any] = {"status": text}
    if id_:
        msg.update(progressDetail={}, id=id_) if detail else msg.update(id=id_)
    return msg


def progress(text: str, id_: str, current: int, total: int) -> dict[str, Any]:
    return {"status": text, "progressDetail": {"current": current, "total": total},
            "progress": bar(current, total), "id": id_}


def error(message: str) -> dict[str, Any]:
    return {"errorDetail": {"message": message}, "error": message}


def short(digest: str) -> str:
    """A layer's id in the messages: 12 hex digits of its digest."""
    return digest.split(":", 1)[-1][:12]
