"""``--format`` templates: the engine run over the Engine API's JSON, as docker's CLI runs
``inspect -f``, ``ps --format`` and ``info --format``.

docker/cli parses these with ``templates.Parse`` (an anonymous template, so errors read
``template: :1: ...``) and, for ``inspect``, executes them over the decoded JSON with
``missingkey=error``: a field naming a key the document lacks is an error, while
``index`` of a missing key prints ``<no value>``. Dot is the document, with objects and
arrays as ``map[string]interface {}`` and ``[]interface {}``; ``range``, ``if``, ``with``,
variables and Go's builtins work as in Go.

The functions are docker/cli's ``templates.basicFunctions`` (``json``, ``split``, ``join``,
``title``, ``lower``, ``upper``, ``pad``, ``truncate``) plus Go's builtins. Docker's typed
structs let ``{{upper .State.Pid}}`` or ``{{join .Config.Cmd " "}}`` through where raw
JSON would not, so the string functions here take any value and print it as Go's ``%v``
does; ``json`` keeps the daemon's key order (Docker's structs' field order), and ``len``
of null is 0. What is CLI-specific and not a template (``table``, tab widths) stays with
the CLI. Nothing here talks to the daemon.
"""

from __future__ import annotations

import functools
import json
from typing import Any, NamedTuple

from .check import check
from .dialect import Dialect
from .execute import execute
from .functions import (FUNCS, go_len, go_lower, go_pad, go_split, go_title, go_truncate,
                        go_upper)
from .gofmt import sprint_v
from .nodes import ListNode
from .parser import parse
from .values import ANY, INT, NO_VALUE, STRING, VALUE, CallError, Func, JSONArray, JSONObject

_NAME = ""  # docker/cli's templates.Parse: template.New("")


def from_json(value: Any) -> Any:
    """A decoded JSON document as the engine's values: objects and arrays typed as Go's
    ``map[string]interface {}`` and ``[]interface {}``; null stays None."""
    if isinstance(value, dict):
        return JSONObject((k, from_json(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return JSONArray(from_json(v) for v in value)
    return value


def _text(v: Any) -> str:
    """A value as the string functions see it: Go's ``%v``, null as ``<no value>``."""
    if isinstance(v, str):
        return v
    return "<no value>" if v is None or v is NO_VALUE else sprint_v(v)


def _json(v: Any) -> str:
    # Go's encoder with SetEscapeHTML(false), as docker/cli calls it: "<" stays "<".
    return json.dumps(None if v is NO_VALUE else v, ensure_ascii=False, separators=(",", ":"))


def _join(elems: Any, sep: str) -> str:
    if elems is None:
        return ""
    if not isinstance(elems, (tuple, dict, str)):
        raise CallError(f"cannot join a value of type {sprint_v(elems)}")
    return sep.join(_text(e) for e in elems)


def _len_or_zero(item: Any) -> int:
    """Go's ``len``, with null as an empty list (docker's typed nil slices)."""
    return 0 if item is None or item is NO_VALUE else go_len(item)


_S, _I, _A = STRING, INT, ANY

FUNCS_CLI: dict[str, Func] = {
    **FUNCS,
    # docker/cli's templates.basicFunctions, taking any value as text.
    "json": Func((_A,), False, _json, _S),
    "split": Func((_A, _S), False, lambda s, sep: go_split(_text(s), sep), "[]string"),
    "join": Func((_A, _S), False, _join, _S),
    "title": Func((_A,), False, lambda s: go_title(_text(s)), _S),
    "lower": Func((_A,), False, lambda s: go_lower(_text(s)), _S),
    "upper": Func((_A,), False, lambda s: go_upper(_text(s)), _S),
    "pad": Func((_A, _I, _I), False, lambda s, p, q: go_pad(_text(s), p, q), _S),
    "truncate": Func((_A, _I), False, lambda s, n: go_truncate(_text(s), n), _S),
    "len": Func((VALUE,), False, _len_or_zero, "int"),
}

FORMAT = Dialect("--format", FUNCS_CLI, None, True)


class Format(NamedTuple):
    """A compiled ``--format`` template: compile once, render per object or table row."""

    text: str
    root: ListNode

    def render(self, data: Any) -> str:
        """Execute against ``data``, a decoded JSON document (dicts, lists, scalars)."""
        return execute(_NAME, self.text, self.root, from_json(data), FORMAT)


@functools.lru_cache(maxsize=64)
def compile_format(text: str) -> Format:
    """Parse ``text``; raise ``TemplateError`` in Go's wording (``template: :1: ...``)."""
    root = parse(_NAME, text, FORMAT)
    check(_NAME, text, root, FORMAT)
    return Format(text, root)


def render_format(text: str, data: Any) -> str:
    """``text`` executed against ``data``: what ``inspect -f TEXT`` prints for one object."""
    return compile_format(text).render(data)
