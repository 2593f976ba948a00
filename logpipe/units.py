"""Docker's units (go-units and Go's ``time``): sizes and durations, read and written.

Reading: Docker has two size parsers and they disagree: ``max-size`` uses decimal units
(``1k`` is 1000 bytes even when written ``1KiB``), ``max-buffer-size`` and ``--memory`` use
binary units (``1k`` is 1024). Both are reproduced because users' existing configs depend on
them. Durations are Go's ``time.ParseDuration``. Writing: the CLI's ``SIZE`` column and the
``Up 2 minutes`` of a container's status, with go-units' rounding.

This module imports only ``re``: the CLI loads it on every start.
"""

from __future__ import annotations

import re

from .errors import LogOptError

TYPE_CHECKING = False  # the CLI reads sizes at every start: typing is for the checker only
if TYPE_CHECKING:
    from typing import Mapping

_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def _parse_size(value: str, units: Mapping[str, int]) -> int:
    m = _SIZE_RE.match(value)
    if not m:
        raise LogOptError(f"invalid size: '{value}'")
    try:
        number = float(m.group(1))
    except ValueError:
        raise LogOptError(f"invalid size: '{value}'") from None
    unit = (m.group(2) or "").lower()
    return int(number * units[unit]) if unit else int(number)


def parse_human_size(value: str) -> int:
    """Docker's ``FromHumanSize``: decimal units, used by ``max-size``."""
    return _parse_size(value, _DECIMAL)


def parse_ram_size(value: str) -> int:
    """Docker's ``RAMInBytes``: binary units, used by ``max-buffer-size`` and ``--memory``."""
    return _parse_size(value, _BINARY)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([^\d.]*)")
_DURATION_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9,
                "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_duration(value: str) -> int:
    """Go's ``time.ParseDuration`` (``1h30m``, ``1.5s``, ``300ms``), in nanoseconds, with
    Go's error texts (``missing unit``, ``unknown unit``, ``invalid duration``)."""
    text = value
    sign = -1 if text[:1] == "-" else 1
    if text[:1] in "+-" and text:
        text = text[1:]
    if text == "0":
        return 0
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            raise ValueError(f'time: invalid duration "{value}"')
        unit = m.group(2)
        if not unit:
            raise ValueError(f'time: missing unit in duration "{value}"')
        if unit not in _DURATION_NS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{value}"')
        total += float(m.group(1)) * _DURATION_NS[unit]
        pos = m.end()
    if not text:
        raise ValueError(f'time: invalid duration "{value}"')
    return sign * int(total)


def human_size(size: float) -> str:
    """go-units ``HumanSizeWithPrecision(size, 3)``: decimal units, 3 significant digits."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.3g}{units[i]}"


def human_duration(seconds: float) -> str:
    """go-units ``HumanDuration``: the CLI's ``CREATED`` column and the daemon's Status."""
    if seconds < 1:
        return "Less than a second"
    if int(seconds) == 1:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"
