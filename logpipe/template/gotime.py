"""Go's ``time.Time``, as far as ``.ContainerCreated`` needs it.

Docker stores the creation time as RFC 3339 text; a template prints it with
``Time.String()``, ``json`` writes it as RFC 3339 with nanoseconds, and ``%#v`` as
``time.Date(...)``. Which methods a template may call is decided in ``members``, not here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .values import Struct, TypedInt

if TYPE_CHECKING:
    from datetime import datetime

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})")


class GoMonth(TypedInt):
    gotype = "time.Month"

    def string(self) -> str:
        return _MONTHS[self - 1] if 1 <= self <= 12 else f"%!Month({int(self)})"


class GoTime(Struct):
    """A ``time.Time`` parsed from ``LogInfo.created``."""

    __slots__ = ("dt", "nsec", "offset", "zone", "raw")
    gotype = "time.Time"

    def __init__(self, dt: datetime, nsec: int, offset: int, zone: str, raw: str = "") -> None:
        self.dt, self.nsec, self.offset, self.zone, self.raw = dt, nsec, offset, zone, raw

    @classmethod
    def parse(cls, text: str) -> "GoTime":
        # datetime is imported here, not above: a --format over JSON never makes a time,
        # and the CLI should not pay for the import (about 1 ms).
        from datetime import datetime

        zero = cls(datetime(1, 1, 1), 0, 0, "UTC")
        if not text:
            return zero
        m = _RFC3339.fullmatch(text)
        try:
            dt = datetime(*(int(g) for g in m.groups()[:6])) if m else None
        except ValueError:
            dt = None
        if dt is None:
            zero.raw = text  # not RFC 3339: printed as given
            return zero
        nsec = int((m.group(7) or "0")[:9].ljust(9, "0"))
        z = m.group(8)
        if z == "Z":
            return cls(dt, nsec, 0, "UTC")
        offset = (int(z[1:3]) * 60 + int(z[4:6])) * 60 * (-1 if z[0] == "-" else 1)
        return cls(dt, nsec, offset, "")  # Go: a fabricated zone without a name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoTime) and (self.dt, self.nsec, self.offset, self.raw) == (
            other.dt, other.nsec, other.offset, other.raw)

    def __hash__(self) -> int:
        return hash((self.dt, self.nsec, self.offset))

    def _clock(self, sep: str) -> str:
        d = self.dt  # not strftime: it drops the zeros of years before 1000
        return (f"{d.year:04d}-{d.month:02d}-{d.day:02d}{sep}"
                f"{d.hour:02d}:{d.minute:02d}:{d.second:02d}")

    def _frac(self) -> str:
        return ("." + f"{self.nsec:09d}".rstrip("0")) if self.nsec else ""

    def _numeric_zone(self, colon: bool) -> str:
        off = abs(self.offset) // 60
        sign = "-" if self.offset < 0 else "+"
        return f"{sign}{off // 60:02d}{':' if colon else ''}{off % 60:02d}"

    def string(self) -> str:
        """``Time.String()``: ``2006-01-02 15:04:05.999999999 -0700 MST``."""
        if self.raw:
            return self.raw
        zone = self._numeric_zone(False)
        return f"{self._clock(' ')}{self._frac()} {zone} {self.zone or zone}"

    def rfc3339nano(self) -> str:
        if self.raw:
            return self.raw
        zone = "Z" if self.offset == 0 else self._numeric_zone(True)
        return f"{self._clock('T')}{self._frac()}{zone}"

    def go_string(self) -> str:
        """``Time.GoString()``, which ``%#v`` prints."""
        loc = "time.UTC" if self.zone == "UTC" else 'time.Location("")'
        d = self.dt
        return (f"time.Date({d.year}, time.{_MONTHS[d.month - 1]}, {d.day}, {d.hour}, "
                f"{d.minute}, {d.second}, {self.nsec}, {loc})")

    def unix(self) -> int:
        d = self.dt - self.dt.replace(1970, 1, 1, 0, 0, 0, 0)
        return d.days * 86400 + d.seconds - self.offset

    def month(self) -> GoMonth:
        return GoMonth(self.dt.month)
