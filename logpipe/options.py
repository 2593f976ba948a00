"""Parsing and validation of ``--log-opt`` values with Docker's grammar and error wording.

The options every driver shares (``mode``, ``max-buffer-size``, ``cache-*``) and Go's
``strconv`` texts for booleans and integers; sizes and durations are ``units.py``'s.
"""

from __future__ import annotations

import re
from typing import Mapping

from .errors import LogOptError
from .units import parse_ram_size

#: Keys handled by the pipeline itself, never passed to a driver's own validator.
PIPELINE_KEYS = frozenset({"mode", "max-buffer-size", "cache-disabled", "cache-max-size",
                           "cache-max-file", "cache-compress"})

MODES = ("blocking", "non-blocking")
#: Docker's RingLogger default: 1e6 bytes of line data, not a MiB.
DEFAULT_MAX_BUFFER_SIZE = 1_000_000


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
