"""The docker CLI's listings: its tabwriter, ``--format`` templates (``table`` or per line),
and the ``2 minutes ago`` of a CREATED column."""

from __future__ import annotations

import json
import time

from logpipe.units import human_duration

TYPE_CHECKING = False  # typing costs milliseconds at every start: for the checker only
if TYPE_CHECKING:
    from typing import Any, Iterable, Sequence


def go_render(fmt: str, data: Any) -> str:
    """``--format``: Go's template engine, loaded only when a command is given one."""
    from logpipe.template.cliformat import render_format

    return render_format(fmt, data)


def print_documents(docs: list[Any], fmt: str) -> None:
    """What every ``inspect`` prints: each document through ``--format``, else all of them as
    one indented JSON array, UTF-8 as it is (Docker's ``IndentedJSON``)."""
    if fmt:
        for doc in docs:
            print(go_render(fmt, doc))
    else:
        print(json.dumps(docs, indent=4, ensure_ascii=False))


def ago(rfc3339_or_unix: Any) -> str:
    """The CREATED column: ``2 minutes ago`` from a Unix or an RFC 3339 time; ``""`` when
    the time cannot be read."""
    if isinstance(rfc3339_or_unix, (int, float)):
        ts = float(rfc3339_or_unix)
    else:
        from logpipe.timespec import NS, parse_rfc3339  # ``ps`` gives Unix times

        try:
            ts = parse_rfc3339(rfc3339_or_unix) / NS
        except (ValueError, TypeError):
            return ""
    return human_duration(max(0.0, time.time() - ts)) + " ago"


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """The docker CLI's tabwriter (minwidth 10, padding 3)."""
    rows = [list(map(str, r)) for r in rows]
    table = [list(headers)] + rows
    widths = [max(10, max(len(r[i]) for r in table) + 3) for i in range(len(headers))]
    for r in table:
        line = "".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:-1])) + r[-1]
        print(line.rstrip() if not r[-1] else line)


def table_format(fmt: str, items: list[dict[str, Any]], headers: dict[str, str]) -> None:
    """``--format 'table {{.A}}\\t{{.B}}'`` or a plain template per line."""
    if fmt.startswith("table"):
        body = fmt[len("table"):].strip() or "{{.ID}}"
        head = go_render(body, {k: v for k, v in headers.items()})
        lines = [head] + [go_render(body, it) for it in items]
        cells = [line.split("\t") for line in lines]
        ncol = max(len(c) for c in cells)
        cells = [c + [""] * (ncol - len(c)) for c in cells]
        print_table(cells[0], cells[1:])
    else:
        for it in items:
            print(go_render(fmt.encode().decode("unicode_escape") if "\\t" in fmt else fmt, it))
