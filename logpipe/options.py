"""Parsing and validation of ``--log-opt`` values with Docker's grammar and error wording.

Docker has two size parsers and they disagree: ``max-size`` uses decimal units (``1k`` is
1000 bytes even when written ``1KiB``), ``max-buffer-size`` uses binary units (``1k`` is 1024).
Both are reproduced here because users' existing configs depend on them.
"""

from __future__ import annotations

import re
from typing import Mapping

from .errors import LogOptError

_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

#: Keys handled by the pipeline itself, never passed to a driver's own validator.
PIPELINE_KEYS = frozenset({"mode", "max-buffer-size", "cache-disabled", "cache-max-size",
                           "cache-max-file", "cache-compress"})

MODES = ("blocking", "non-blocking")
#: Docker's RingLogger default: 1e6 bytes of line data, not a MiB.
DEFAULT_MAX_BUFFER_SIZE = 1_000_000


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
    """Docker's ``RAMInBytes``: binary units, used by ``max-buffer-size``."""
    return _parse_size(value, _BINARY)


def parse_bool(value: str) -> bool:
    """Go's ``strconv.ParseBool``, with its error text."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise LogOptError(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def parse_int(value: str) -> int:
    """Go's ``strconv.Atoi``, with its error text."""
    if not re.fullmatch(r"[+-]?\d+", value):
        raise LogOptError(f'strconv.Atoi: parsing "{value}": invalid syntax')
    return int(value)


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


def validate_pipeline_opts(opts: Mapping[str, str]) -> None:
    """Docker's checks of the keys every driver shares, in Docker's order (see ValidateLogOpts)."""
    mode = opts.get("mode", "")
    if mode not in ("",) + MODES:
        raise LogOptError(f"logger: logging mode not supported: {mode}")
    if "max-buffer-size" in opts:
        if mode != "non-blocking":
            raise LogOptError(
                "logger: max-buffer-size option is only supported with 'mode=non-blocking'")
        try:
            parse_ram_size(opts["max-buffer-size"])
        except LogOptError as err:
            raise LogOptError(f"error parsing option max-buffer-size: {err}") from None
    if "cache-disabled" in opts:
        try:
            parse_bool(opts["cache-disabled"])
        except LogOptError:
            raise LogOptError(
                f"invalid value for option cache-disabled: {opts['cache-disabled']}") from None


def check_known_keys(opts: Mapping[str, str], allowed: frozenset[str], driver: str) -> None:
    """Reject the first unknown key with Docker's json-file wording."""
    for key in opts:
        if key not in allowed:
            raise LogOptError(f"unknown log opt '{key}' for {driver} log driver")


def driver_opts(opts: Mapping[str, str]) -> dict[str, str]:
    """The options a driver sees: everything but the pipeline's own keys."""
    return {k: v for k, v in opts.items() if k not in PIPELINE_KEYS}
