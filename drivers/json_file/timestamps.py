"""The times of json-file lines, read as Go's ``time.Parse`` reads RFC 3339.

Owns ``parse_time``: any fraction length, ``Z`` or an offset, Go's range checks, and a cache
of minutes that makes the common case (a UTC time whose minute was seen before) two ``int()``
calls. Used by the reader only; the writer formats times in ``encode.py``.
"""

from __future__ import annotations

import re

from logpipe.timespec import NS

_TIME_RE = re.compile(rb"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
                      rb"([Zz]|([+-])(\d\d):(\d\d))")
#: Nanoseconds per unit of a fraction of 1 … 9 digits.
_SCALE = tuple(10 ** (8 - i) for i in range(9))
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
#: Entries a cache of parsed line parts holds before it starts again (the reader's too).
CACHE_LIMIT = 1 << 14


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _fraction(digits: bytes | None) -> int:
    """Nanoseconds of a fraction's digits; beyond nine digits is below a nanosecond."""
    return int(digits[:9].ljust(9, b"0")) if digits else 0


def parse_time(text: bytes, minutes: dict[bytes, int] | None = None) -> int | None:
    """An RFC 3339 time as json-file stores it (any fraction length, ``Z`` or an offset) in
    ns since the epoch; None if it is not one (Go's parser rejects out-of-range fields).

    ``minutes`` caches the epoch second of ``YYYY-MM-DDTHH:MM:`` prefixes of UTC times: the
    times of one file share them, and the rest is then two ``int()`` calls.
    """
    if minutes is not None:
        base = minutes.get(text[:17])
        if base is not None:
            n = len(text)
            if n == 20 and text[19] == 0x5A:  # "…:SSZ"
                digits = text[17:19]
                frac = 0
            elif 22 <= n <= 30 and text[19] == 0x2E and text[-1] == 0x5A:  # "…:SS.fffZ"
                digits = text[17:19] + text[20:-1]
                frac = -1
            else:
                digits = b""
            if digits.isdigit() and text[17] <= 0x35:
                if frac:
                    return (base + int(digits[:2])) * NS + int(digits[2:]) * _SCALE[n - 22]
                return (base + int(digits)) * NS
    m = _TIME_RE.fullmatch(text)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, zone, sign, oh, om = m.groups()
    y, mo, d, h, mi, s = int(y), int(mo), int(d), int(h), int(mi), int(s)
    if not 1 <= mo <= 12 or h > 23 or mi > 59 or s > 59 or d < 1:
        return None
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if d > (29 if mo == 2 and leap else _MONTH_DAYS[mo - 1]):
        return None
    minute = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60
    if sign:
        off = int(oh) * 3600 + int(om) * 60
        minute -= off if sign == b"+" else -off
    elif minutes is not None and zone == b"Z":
        if len(minutes) >= CACHE_LIMIT:
            minutes.clear()
        minutes[text[:17]] = minute
    return (minute + s) * NS + _fraction(frac)
