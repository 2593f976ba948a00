"""The functions a template may call: Docker's and Go's builtins, in ``FUNCS``.

Docker's are moby's ``daemon/logger/templates.basicFunctions`` (json, split, join, title,
lower, upper, pad, truncate); the builtins are Go 1.19's ``text/template/funcs.go``, minus
``html``, ``js``, ``urlquery``, ``slice`` and ``call``, which Docker's tags have no use
for: a name missing from ``FUNCS`` is refused by the parser with Go's own error
(``function "html" not defined``). Each function takes and returns the values of
``values``; an error Go would return is raised as ``CallError``.
"""

from __future__ import annotations

from typing import Any

from .gofmt import Printer, format_float, sprint_v
from .gotime import GoTime
from .literals import from_go_bytes
from .members import INFO_FIELDS
from .values import (ANY, INT, NO_VALUE, STRING, VALUE, CallError, Func, InfoRef, InfoValue,
                     JSONObject, Uint8, indirect, is_true, type_name)

# -- json: Go's encoding/json as Docker calls it (SetEscapeHTML(false), newline trimmed) ----


def _json_string(s: str) -> str:
    out = ['"']
    for c in s:
        o = ord(c)
        if c == '"' or c == "\\":
            out.append("\\" + c)
        elif o < 0x20:
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c) or f"\\u{o:04x}")
        elif c in "\u2028\u2029":
            out.append(f"\\u{o:04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _json_float(f: float) -> str:
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        s = format_float(f, "e")
        if s[-4:-1] == "e-0":  # Go cleans e-07 up to e-7
            s = s[:-2] + s[-1]
        return s
    return format_float(f, "f")


def go_json(v: Any) -> str:
    if v is None or v is NO_VALUE:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return _json_float(v)
    if isinstance(v, str):
        return _json_string(v)
    if isinstance(v, tuple):
        return "[" + ",".join(_json_string(e) for e in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{_json_string(k)}:{_json_string(v[k])}" for k in sorted(v)) + "}"
    if isinstance(v, GoTime):
        return _json_string(v.rfc3339nano())
    if isinstance(v, (InfoRef, InfoValue)):
        return "{" + ",".join(f'"{name}":{go_json(get(v.info))}'
                              for name, (_, get) in INFO_FIELDS.items()) + "}"
    return "null"


# -- Docker's string functions: Go's strings package ---------------------------------------

def _simple_upper(c: str) -> str:
    # Go maps rune by rune with the simple (one-to-one) case mappings; Python's full
    # mappings can grow a rune ("ß".upper() == "SS"), which Go never does.
    u = c.upper()
    if len(u) == 1:
        return u
    t = c.title()
    return t if len(t) == 1 else c


def _simple_lower(c: str) -> str:
    if c == "\u0130":
        return "i"
    low = c.lower()
    return low if len(low) == 1 else c


def go_upper(s: str) -> str:
    return s.upper() if s.isascii() else "".join(map(_simple_upper, s))


def go_lower(s: str) -> str:
    return s.lower() if s.isascii() else "".join(map(_simple_lower, s))


def _is_separator(r: str) -> bool:
    if r <= "\x7f":
        return not (r.isalnum() or r == "_")
    if r.isalpha() or r.isdecimal():
        return False
    return r.isspace()


def go_title(s: str) -> str:
    """``strings.Title``: upper-cases word starts only; the rest is left as is."""
    out, prev = [], " "
    for r in s:
        if _is_separator(prev):
            t = r.title()
            out.append(t if len(t) == 1 else _simple_upper(r))
        else:
            out.append(r)
        prev = r
    return "".join(out)


def go_split(s: str, sep: str) -> tuple:
    return tuple(s) if sep == "" else tuple(s.split(sep))


def go_pad(s: str, prefix: int, suffix: int) -> str:
    if s == "":
        return s
    if prefix < 0 or suffix < 0:
        raise CallError("strings: negative Repeat count")
    return " " * prefix + s + " " * suffix


def go_truncate(s: str, length: int) -> str:
    b = s.encode("utf-8")
    if len(b) < length:
        return s
    if length < 0:
        raise CallError(f"runtime error: slice bounds out of range [:{length}]")
    return from_go_bytes(b[:length])  # Go slices bytes, and may cut a rune in two


# -- Go's comparisons: eq, ne, lt, le, gt, ge ----------------------------------------------

_KINDS = ((bool, "bool"), (Uint8, "uint"), (int, "int"), (float, "float"), (str, "string"),
          (tuple, "slice"), (dict, "map"), (InfoRef, "ptr"))
_BASIC_KINDS = frozenset({"invalid", "bool", "uint", "int", "float", "string"})


def _kind(v: Any) -> str:
    """The ``reflect.Kind`` of a value, as Go's comparisons see it."""
    if v is NO_VALUE or v is None:
        return "invalid"
    for cls, kind in _KINDS:
        if isinstance(v, cls):
            return kind
    return "struct"


def _basic_kind(v: Any) -> str:
    """Go's ``basicKind``: the kind of a basic value, "other" for the rest."""
    k = _kind(v)
    return k if k in _BASIC_KINDS else "other"


def _eq(arg1: Any, *arg2: Any) -> bool:
    """Go 1.19's ``eq``; its basicKind calls every non-basic value "invalid"."""
    if not arg2:
        raise CallError("missing argument for comparison")
    k1 = _basic_kind(arg1).replace("other", "invalid")
    for arg in arg2:
        k2 = _basic_kind(arg).replace("other", "invalid")
        if k1 != k2:
            if {k1, k2} == {"int", "uint"}:
                truth = int(arg1) == int(arg)
            elif arg1 is not NO_VALUE and arg is not NO_VALUE:
                raise CallError("incompatible types for comparison")
            else:
                truth = False
        elif k1 != "invalid":
            truth = arg1 == arg
        else:
            truth = _eq_non_basic(arg1, arg)
        if truth:
            return True
    return False


def _eq_non_basic(arg1: Any, arg: Any) -> bool:
    """Go's eq for values that are not basic: nil, pointers, structs; slices and maps fail."""
    r1, r2 = _kind(arg1), _kind(arg)
    if r1 != r2 and "invalid" not in (r1, r2):
        raise CallError(f"non-comparable types {sprint_v(arg1)}: {type_name(arg1)}, "
                        f"{type_name(arg)}: {sprint_v(arg)}")
    if "invalid" in (r1, r2):  # isNil: only the zero Value is nil here
        return r1 == r2
    if r2 in ("slice", "map"):
        raise CallError(f"non-comparable type {sprint_v(arg)}: {type_name(arg)}")
    if r1 == "ptr":
        return arg.info is arg1.info
    return arg1 == arg


def _lt(arg1: Any, arg2: Any) -> bool:
    k1, k2 = _basic_kind(arg1), _basic_kind(arg2)
    if "other" in (k1, k2) or "invalid" in (k1, k2):
        raise CallError("invalid type for comparison")
    if k1 != k2:
        if {k1, k2} == {"int", "uint"}:
            return int(arg1) < int(arg2)
        raise CallError("incompatible types for comparison")
    if k1 == "bool":
        raise CallError("invalid type for comparison")
    return arg1 < arg2


def _le(arg1: Any, arg2: Any) -> bool:
    return _lt(arg1, arg2) or _eq(arg1, arg2)


# -- Go's index and len ---------------------------------------------------------------------

def _index_arg(index: Any, cap: int) -> int:
    if index is NO_VALUE or index is None:
        raise CallError("cannot index slice/array with nil")
    if isinstance(index, bool) or not isinstance(index, int):
        raise CallError(f"cannot index slice/array with type {type_name(index)}")
    if index < 0 or index > cap:
        raise CallError(f"index out of range: {int(index)}")
    return int(index)


def _index(item: Any, *indexes: Any) -> Any:
    if item is NO_VALUE or item is None:
        raise CallError("index of untyped nil")
    for index in indexes:
        item = indirect(item)
        if isinstance(item, (tuple, str)):
            data = item.encode("utf-8") if isinstance(item, str) else item
            x = _index_arg(index, len(data))
            if x == len(data):
                kind = "string" if isinstance(item, str) else "slice"
                raise CallError(f"reflect: {kind} index out of range")
            item = Uint8(data[x]) if isinstance(item, str) else data[x]
        elif isinstance(item, dict):
            if index is NO_VALUE or index is None:
                raise CallError("value is nil; should be of type string")
            if not isinstance(index, str):
                raise CallError(f"value has type {type_name(index)}; should be string")
            # A missing key gives the map's zero value: "" for map[string]string, a nil
            # interface (printed <no value>) for a JSON object.
            item = item.get(index, None if isinstance(item, JSONObject) else "")
        else:
            raise CallError(f"can't index item of type {type_name(item)}")
    return item


def go_len(item: Any) -> int:
    if item is NO_VALUE or item is None:
        raise CallError("reflect: call of reflect.Value.Type on zero Value")
    if isinstance(item, str):
        return len(item.encode("utf-8"))  # Go's len counts bytes
    if isinstance(item, (tuple, dict)):
        return len(item)
    raise CallError(f"len of type {type_name(indirect(item))}")


# -- The table ----------------------------------------------------------------------------

_S, _I, _V, _A = STRING, INT, VALUE, ANY

FUNCS: dict[str, Func] = {
    # Docker's daemon/logger/templates.basicFunctions.
    "json": Func((_A,), False, go_json, _S),
    "split": Func((_S, _S), False, go_split, "[]string"),
    "join": Func(("[]string", _S), False, lambda elems, sep: sep.join(elems), _S),
    "title": Func((_S,), False, go_title, _S),
    "lower": Func((_S,), False, go_lower, _S),
    "upper": Func((_S,), False, go_upper, _S),
    "pad": Func((_S, _I, _I), False, go_pad, _S),
    "truncate": Func((_S, _I), False, go_truncate, _S),
    # Go's text/template builtins.
    "and": Func((_V, _V), True, lambda *a: None, None, builtin=True),
    "or": Func((_V, _V), True, lambda *a: None, None, builtin=True),
    "not": Func((_V,), False, lambda v: not is_true(v), "bool"),
    "index": Func((_V, _V), True, _index),
    "len": Func((_V,), False, go_len, "int"),
    "print": Func((_A,), True, lambda *a: Printer().do_print(list(a)), _S),
    "printf": Func((_S, _A), True, lambda f, *a: Printer().do_printf(f, list(a)), _S),
    "println": Func((_A,), True, lambda *a: Printer().do_println(list(a)), _S),
    "eq": Func((_V, _V), True, _eq, "bool"),
    "ne": Func((_V, _V), False, lambda a, b: not _eq(a, b), "bool"),
    "lt": Func((_V, _V), False, _lt, "bool"),
    "le": Func((_V, _V), False, _le, "bool"),
    "gt": Func((_V, _V), False, lambda a, b: not _le(a, b), "bool"),
    "ge": Func((_V, _V), False, lambda a, b: not _lt(a, b), "bool"),
}
