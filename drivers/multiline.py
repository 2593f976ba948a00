"""Multi-line events: Docker's ``awslogs-multiline-pattern`` and ``awslogs-datetime-format``.

Owns two things the awslogs driver reproduces from Docker (moby ``daemon/logger/awslogs``):
turning a strftime-style ``awslogs-datetime-format`` into the regular expression Docker
builds from it, and grouping decoded lines into events by that expression. It knows nothing
about CloudWatch's API or batches; it must not do I/O.

Docker's grouping, reproduced here (``collectBatch``): a line the pattern matches (Go's
unanchored ``Match``) starts a new event; every line of an event keeps a ``\\n``, the last one
included, unless the line alone is the maximum event size; the event's timestamp is its first
line's; an event is also ended before a line that would take it over the maximum size. Lines
before the first match form an event of their own. Docker keeps the timestamp of an event
flushed by its timer for the next event (a bug); here every event has its first line's.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from logpipe.errors import LogOptError
from logpipe.extras import compile_go_regexp
from logpipe.template.literals import go_quote

#: Docker's ``strftimeToRegex``, verbatim. Any other ``%x`` (``%%`` included) becomes empty.
STRFTIME_TO_REGEX = {
    "%a": r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)",
    "%A": r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)",
    "%w": r"[0-6]",
    "%d": r"(?:0[1-9]|[1,2][0-9]|3[0,1])",
    "%b": r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)",
    "%B": r"(?:January|February|March|April|May|June|July|August|September|October|November"
          r"|December)",
    "%m": r"(?:0[1-9]|1[0-2])",
    "%Y": r"\d{4}",
    "%y": r"\d{2}",
    "%H": r"(?:[0,1][0-9]|2[0-3])",
    "%I": r"(?:0[0-9]|1[0-2])",
    "%p": r"[A,P]M",
    "%M": r"[0-5][0-9]",
    "%S": r"[0-5][0-9]",
    "%f": r"\d{6}",
    "%z": r"[+-]\d{4}",
    "%Z": r"[A-Z]{1,4}T",
    "%j": r"(?:0[0-9][1-9]|[1,2][0-9][0-9]|3[0-5][0-9]|36[0-6])",
    "%L": r"\.\d{3}",
}

# Go's regexp.MustCompile("%."): "." is any character but a newline, as in Python.
_SEQUENCE = re.compile(r"%.")


def strftime_to_regex(fmt: str) -> str:
    """Docker's conversion: each ``%x`` replaced from the table, literal text kept as it is
    (Docker does not escape it, so a ``.`` in the format matches any character)."""
    return _SEQUENCE.sub(lambda m: STRFTIME_TO_REGEX.get(m.group(0), ""), fmt)


def start_pattern(datetime_format: str | None, multiline_pattern: str | None
                  ) -> re.Pattern[str] | None:
    """The compiled start-of-event expression, or None when neither option is set (or both
    are empty, which Docker treats as unset). Raises ``LogOptError`` in Docker's words."""
    expr = multiline_pattern or ""
    if datetime_format:
        expr = strftime_to_regex(datetime_format)
    if not expr:
        return None
    try:
        return compile_go_regexp(expr)
    except LogOptError as err:
        raise LogOptError(
            f"awslogs could not parse multiline pattern key {go_quote(expr)}: {err}") from None


class Events(NamedTuple):
    """Log events as parallel lists (one index per event): what grouping returns and what the
    awslogs driver sends."""

    messages: list[str]
    ts: list[int]
    sizes: list[int]  # UTF-8 length of each message
    records: list[int]  # how many input records each event holds


def group_lines(lines: list[str], ts: list[int], sizes: list[int], records: list[int],
                pattern: re.Pattern[str], max_size: int) -> Events:
    """Group decoded lines into multi-line events exactly as Docker's ``collectBatch``.

    ``sizes`` are the lines' UTF-8 lengths and ``records`` how many input records each line
    stands for (a re-joined long line stands for all its pieces). An event may come out
    longer than ``max_size`` only when a single line is; the caller splits those.
    """
    out = Events([], [], [], [])
    search = pattern.search
    buf: list[str] = []
    buf_size = buf_records = 0
    buf_ts = 0

    def flush() -> None:
        if buf:
            out.messages.append("".join(buf))
            out.ts.append(buf_ts)
            out.sizes.append(buf_size)
            out.records.append(buf_records)

    for line, t, size, n in zip(lines, ts, sizes, records):
        if search(line) is not None or buf_size + size > max_size:
            flush()
            buf, buf_size, buf_records = [], 0, 0
        if not buf:
            buf_ts = t
        if size < max_size:  # Docker: "Append newline if event is less than max event size"
            line += "\n"
            size += 1
        buf.append(line)
        buf_size += size
        buf_records += n
    flush()
    return out
