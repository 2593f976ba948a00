"""Go-template ``--format``/``-f`` over JSON values, for ``inspect`` and ``ps`` (docker CLI).

``logpipe.template`` is a faithful port of Go's ``text/template`` typed against ``LogInfo``
(the ``tag`` option); it cannot evaluate over arbitrary JSON. The CLI only needs the subset
people type after ``docker inspect -f``: field chains (``{{.State.Pid}}``, ``{{.}}``),
string and number literals, pipelines (``{{.Name | upper}}``) and the functions ``json``,
``index``, ``join``, ``upper``, ``lower``, ``title``, ``split``, ``len``, ``println``. Values
print as Go's ``%v`` prints them (``[a b]``, ``map[k:v]``, ``<no value>`` for null).
Anything else (``range``, ``if``, variables) is refused with a clear error, not misrendered.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from .errors import LogpipeError

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(`[^`]*`)|(\|)|([^\s|]+))')


class FormatError(LogpipeError):
    """The template does not parse or cannot be executed (docker: ``template: ...``)."""


def go_value(value: Any) -> str:
    """Go's ``%v`` of a JSON-decoded value."""
    if value is None:
        return "<no value>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "[" + " ".join(_inner(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_inner(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _inner(value: Any) -> str:
    return "<nil>" if value is None else go_value(value)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int):
            if not 0 <= key < len(value):
                raise FormatError(f"error calling index: index out of range: {key}")
            value = value[key]
        else:
            raise FormatError(f"error calling index: cannot index {go_value(value)}")
    return value


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "index": _index,
    "join": lambda items, sep: sep.join(go_value(i) for i in items or []),
    "upper": lambda s: go_value(s).upper(),
    "lower": lambda s: go_value(s).lower(),
    "title": lambda s: go_value(s).title(),
    "split": lambda s, sep: go_value(s).split(sep),
    "len": lambda v: len(v or ()),
    "println": lambda *a: " ".join(go_value(x) for x in a) + "\n",
}


def _field(data: Any, chain: str, text: str) -> Any:
    value = data
    for name in [p for p in chain.split(".") if p]:
        if isinstance(value, dict):
            if name not in value:
                raise FormatError(f'template: :1: executing "" at <{text}>: map has no '
                                  f'entry for key "{name}"')
            value = value[name]
        elif value is None:
            return None
        else:
            raise FormatError(f'template: :1: executing "" at <{text}>: can\'t evaluate '
                              f"field {name} in type {type(value).__name__}")
    return value


def _arg(token: str, data: Any) -> Any:
    if token.startswith("."):
        return _field(data, token, token)
    if token.startswith('"'):
        return json.loads(token)
    if token.startswith("`"):
        return token[1:-1]
    if re.fullmatch(r"-?\d+", token):
        return int(token)
    if token in ("true", "false"):
        return token == "true"
    if token == "nil":
        return None
    raise FormatError(f'template: :1: function "{token}" not defined')


def _command(words: list[str], data: Any, piped: tuple[Any, ...]) -> Any:
    head = words[0]
    if head in FUNCTIONS:
        args = [_arg(w, data) for w in words[1:]] + list(piped)
        try:
            return FUNCTIONS[head](*args)
        except TypeError:
            raise FormatError(f"template: :1: wrong number of args for {head}") from None
    if len(words) > 1 or piped:
        raise FormatError(f"template: :1: can't give argument to non-function {head}")
    return _arg(head, data)


def _pipeline(text: str, data: Any) -> Any:
    words: list[list[str]] = [[]]
    for m in _TOKEN.finditer(text):
        tok = m.group(1) or m.group(2) or m.group(3) or m.group(4)
        if tok == "|":
            words.append([])
        elif tok:
            words[-1].append(tok)
    if not words[0]:
        raise FormatError("template: :1: missing value for command")
    first = words[0][0]
    if first in ("range", "if", "with", "else", "end", "define", "template", "block") \
            or first.startswith("$"):
        raise FormatError(f"template: {{{{{first}}}}} is not supported by logpipe's --format "
                          "(supported: field chains, json, index, join, upper, lower, "
                          "title, split, len, println, pipelines)")
    value = _command(words[0], data, ())
    for cmd in words[1:]:
        if not cmd:
            raise FormatError("template: :1: missing command after |")
        value = _command(cmd, data, (value,))
    return value


def render(template: str, data: Any) -> str:
    """Execute ``template`` against ``data`` (a JSON-decoded value)."""
    out: list[str] = []
    pos = 0
    for m in _ACTION.finditer(template):
        text = template[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        out.append(text)
        body = m.group(2).strip()
        if not body.startswith("/*"):
            out.append(go_value(_pipeline(body, data)))
        pos = m.end()
        if m.group(3):
            while pos < len(template) and template[pos].isspace():
                pos += 1
    tail = template[pos:]
    if "{{" in tail:
        raise FormatError('template: :1: unclosed action')
    out.append(tail)
    return "".join(out)
