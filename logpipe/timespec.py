"""Time formats of Docker's log pipeline.

Two renderings of the same instant matter: json-file stores Go's RFC3339Nano, which trims
trailing zeros of the fraction (``…59.0504822Z``, even ``…59Z``); ``logs -t`` prints a fixed
nine-digit fraction. ``--since``/``--until`` accept what the docker CLI accepts.
"""

from __future__ import annotations

import re
import time

from .units import parse_duration

NS = 1_000_000_000


def _base(ns: int) -> tuple[str, int]:
    sec, frac = divmod(ns, NS)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)), frac


def format_rfc3339nano(ns: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: fraction with trailing zeros trimmed."""
    base, frac = _base(ns)
    if not frac:
        return base + "Z"
    return f"{base}.{frac:09d}".rstrip("0") + "Z"


def format_fixed(ns: int) -> str:
    """The ``logs -t`` prefix: always nine fraction digits."""
    base, frac = _base(ns)
    return f"{base}.{frac:09d}Z"


_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?)?"
    r"([Zz]|[+-]\d{2}:\d{2})?")


def parse_rfc3339(text: str) -> int:
    """An RFC 3339 time (or a prefix of one) in ns; no zone means the local zone, as the CLI."""
    m = _RFC3339_RE.fullmatch(text)
    if not m:
        raise ValueError(f'parsing time "{text}": cannot parse as RFC 3339')
    import calendar  # parsing happens once per command: keep it off every start-up
    from datetime import datetime

    y, mo, d, h, mi, s, frac, zone = m.groups()
    if not 1 <= int(mo) <= 12:
        raise ValueError(f'parsing time "{text}": month out of range')
    fields = (int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0))
    try:
        datetime(*fields)
    except ValueError as err:
        raise ValueError(f'parsing time "{text}": {err}') from None
    nanos = int((frac or "").ljust(9, "0") or 0)
    if zone is None:
        sec = int(time.mktime(fields + (0, 0, -1)))
    else:
        sec = calendar.timegm(fields)
        if zone not in ("Z", "z"):
            sign = 1 if zone[0] == "+" else -1
            sec -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return sec * NS + nanos


_UNIX_RE = re.compile(r"(\d+)(?:\.(\d{1,9}))?")


def parse_unix(text: str) -> int:
    """The API's ``since``/``until`` format: ``<seconds>[.<fraction>]``; ``.1`` is 100 ms."""
    m = _UNIX_RE.fullmatch(text)
    if not m:
        raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    if int(m.group(1)) >= 1 << 63:  # Docker parses the seconds with ParseInt(s, 10, 64)
        raise ValueError(f'strconv.ParseInt: parsing "{m.group(1)}": value out of range')
    return int(m.group(1)) * NS + int((m.group(2) or "").ljust(9, "0") or 0)


def parse_time_arg(text: str, now_ns: int | None = None, name: str = "since") -> int:
    """A ``--since``/``--until`` value as the docker CLI reads it, in ns since the epoch.

    A Go duration counts back from now and, like the CLI, is truncated to whole seconds.
    """
    if now_ns is None:
        now_ns = time.time_ns()
    try:
        return (now_ns - parse_duration(text)) // NS * NS
    except ValueError:
        pass
    try:
        if _UNIX_RE.fullmatch(text):
            return parse_unix(text)
        return parse_rfc3339(text)
    except ValueError as err:
        reason = str(err) if "out of range" in str(err) else f'"{text}"'
        raise ValueError(
            f'invalid value for "{name}": failed to parse value as time or duration: {reason}'
        ) from None


def parse_since(text: str, name: str = "since", *, api: bool = False,
                now_ns: int | None = None) -> int:
    """A ``since``/``until`` bound of ``logs`` in ns since the epoch; ``0`` means no bound.

    The one reading of both doors: the CLI's flags accept what the docker CLI accepts (see
    ``parse_time_arg``) and send the API ``<seconds>.<nanoseconds>``; the API accepts only
    that form (``api=True``), where ``0`` is no bound and anything else is strconv's error.
    """
    if not text:
        return 0
    if api:
        return 0 if text == "0" else parse_unix(text)
    return parse_time_arg(text, now_ns, name)


def now_utc():
    """Current time as an aware UTC datetime (container ``Created`` fields)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)
