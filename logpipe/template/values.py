"""How Go values are modelled by Python ones while a template runs.

string -> str, int -> int, bool -> bool, float64 -> float, []string -> tuple,
map[string]string -> dict, *logger.Info -> ``InfoRef``, time.Time -> ``gotime.GoTime``.
A ``--format`` template's JSON document is Go's ``map[string]interface{}`` and
``[]interface{}`` (``JSONObject``, ``JSONArray``), with JSON's null as None inside them.
An invalid reflect.Value (printed ``<no value>``) is ``NO_VALUE``; a nil interface handed
to a function is None. Types Go distinguishes but Python does not (int64, uint8,
time.Month) are ``int`` subclasses that carry their Go name in ``gotype``.

Also here: ``Func``, a callable with Go's parameter types, which the function table and
the methods of ``*logger.Info`` share. Nothing here reads a template or a ``LogInfo``.
Small immutable values are NamedTuples, not dataclasses: importing ``dataclasses`` would
double this package's import time, which a container with a ``tag`` pays at start.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NO_VALUE = _Sentinel("<no value>")
MISSING = _Sentinel("<missing>")  # Go's missingVal: "no final value from a pipeline"


class TypedInt(int):
    gotype = "int"


class Uint8(TypedInt):
    """A byte, as ``index`` of a string returns it."""

    gotype = "uint8"


class Int64(TypedInt):
    gotype = "int64"


class Struct:
    """A Go struct, or a pointer to one: time.Time, logger.Info, *logger.Info."""

    __slots__ = ()
    gotype = ""


class InfoRef(Struct):
    """``*logger.Info``: the template's dot."""

    __slots__ = ("info",)
    gotype = "*logger.Info"

    def __init__(self, info: Any) -> None:
        self.info = info


class InfoValue(Struct):
    """``logger.Info`` (the struct a pointer points at), for printing and error texts."""

    __slots__ = ("info",)
    gotype = "logger.Info"

    def __init__(self, info: Any) -> None:
        self.info = info


class JSONObject(dict):
    """A JSON object as docker's CLI decodes it for a template: ``map[string]interface {}``."""

    __slots__ = ()
    gotype = "map[string]interface {}"


class JSONArray(tuple):
    """A JSON array: ``[]interface {}``."""

    __slots__ = ()
    gotype = "[]interface {}"


_BASIC_TYPES = ((int, "int"), (float, "float64"), (str, "string"), (tuple, "[]string"),
                (dict, "map[string]string"))


def type_name(v: Any) -> str:
    """Go's ``%T`` of a value: the name error texts and ``printf`` show."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (TypedInt, Struct, JSONObject, JSONArray)):
        return v.gotype
    for cls, name in _BASIC_TYPES:
        if isinstance(v, cls):
            return name
    return "<nil>"


def indirect(v: Any) -> Any:
    """What Go prints for a pointer's target: the struct, not the pointer."""
    return InfoValue(v.info) if isinstance(v, InfoRef) else v


def is_true(v: Any) -> bool:
    """Go's ``isTrue``: the truth of a value for if/with/and/or/not."""
    if v is NO_VALUE or v is None:
        return False
    if isinstance(v, (bool, int, float, str, tuple, dict)):
        return bool(v)
    return True  # structs and non-nil pointers


# -- Functions and methods ------------------------------------------------------------------

# Parameter types beyond Go's own names: ANY is interface{} (gets the value), VALUE is
# reflect.Value (gets it even when invalid, as and/or/eq/index do).
STRING, INT, VALUE, ANY = "string", "int", "value", "any"

NILABLE = frozenset({"[]string", "map[string]string", "func(string) string", ANY, VALUE})


def nil_of(typ: str) -> Any:
    """The zero value Go passes for nil (or a missing value) to a parameter of ``typ``."""
    return {"[]string": (), "map[string]string": {}, VALUE: NO_VALUE}.get(typ)


class CallError(Exception):
    """An error returned (or a panic raised) by a called Go function."""


class Func(NamedTuple):
    """A callable with Go's parameter types, so that argument errors read like Go's."""

    params: tuple[str, ...]
    variadic: bool
    fn: Callable[..., Any]
    result: str | None = None  # static result type, for compile-time field checks
    builtin: bool = False  # and/or: evaluated by the executor, short-circuiting

    def arity_error(self, name: str, nargs: int, piped: bool) -> str | None:
        """Go's check of the argument count: ``nargs`` written, plus the piped value."""
        num_in = nargs + piped
        want = len(self.params)
        if self.variadic and num_in < want - 1:  # Go counts only the written ones here
            return f"wrong number of args for {name}: want at least {want - 1} got {nargs}"
        if not self.variadic and num_in != want:
            return f"wrong number of args for {name}: want {want} got {num_in}"
        return None
