"""Every field and method a template can reach, and nothing else.

This is the one place where a name written in a template leads to Python code: the
fields and methods of ``*logger.Info`` (moby ``daemon/logger/loginfo.go``) and the few
``time.Time`` methods logpipe keeps. Each is listed by name and read explicitly; no
attribute of a Python object is ever looked up by a name taken from a template.

``method_of`` is the run-time view (a method bound to its receiver), ``static_member`` the
compile-time one (the Go type a member yields), so that the two can never disagree.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from ..driver import LogInfo
from ..errors import LogOptError
from .gotime import GoMonth, GoTime
from .values import CallError, Func, InfoRef, Int64

INFO_TYPE = "*logger.Info"


def _raw_name(info: LogInfo) -> str:
    # Docker's ContainerName keeps the leading "/" that LogInfo may have dropped.
    n = info.container_name
    return n if not n or n.startswith("/") else "/" + n


# Field name -> (Go type, getter), in logger.Info's order (the order Go prints them in).
INFO_FIELDS: dict[str, tuple[str, Callable[[LogInfo], Any]]] = {
    "Config": ("map[string]string", lambda i: dict(i.config)),
    "ContainerID": ("string", lambda i: i.container_id),
    "ContainerName": ("string", _raw_name),
    "ContainerEntrypoint": ("string", lambda i: i.entrypoint),
    "ContainerArgs": ("[]string", lambda i: tuple(i.args)),
    "ContainerImageID": ("string", lambda i: i.image_id),
    "ContainerImageName": ("string", lambda i: i.image_name),
    "ContainerCreated": ("time.Time", lambda i: GoTime.parse(i.created)),
    "ContainerEnv": ("[]string", lambda i: tuple(i.env)),
    "ContainerLabels": ("map[string]string", lambda i: dict(i.labels)),
    "LogPath": ("string", lambda i: ""),
    "DaemonName": ("string", lambda i: i.daemon_name),
}


def _extra_attributes(info: LogInfo, key_mod: Any) -> dict:
    from ..extras import extra_attrs  # rarely called: keep it off the import path

    try:
        return extra_attrs(info.config, info)
    except LogOptError as e:
        raise CallError(str(e)) from None


def _getter(fn: Callable[[Any], Any], result: str) -> Func:
    """A method without arguments."""
    return Func((), False, fn, result)


_INFO_METHODS: dict[str, Func] = {
    # ID and ImageID slice [:12] in Go; Docker's IDs are always long enough.
    "ID": _getter(lambda i: i.container_id[:12], "string"),
    "FullID": _getter(lambda i: i.container_id, "string"),
    "Name": _getter(lambda i: _raw_name(i).removeprefix("/"), "string"),
    "ImageID": _getter(lambda i: i.image_id[:12], "string"),
    "ImageFullID": _getter(lambda i: i.image_id, "string"),
    "ImageName": _getter(lambda i: i.image_name, "string"),
    "Command": _getter(lambda i: i.command, "string"),
    "Hostname": _getter(lambda i: i.host_name(), "string"),
    "ExtraAttributes": Func(("func(string) string",), False, _extra_attributes,
                            "map[string]string"),
}

_TIME_METHODS: dict[str, Func] = {
    "String": _getter(lambda t: t.string(), "string"),
    "Unix": _getter(lambda t: Int64(t.unix()), "int64"),
    "Month": _getter(lambda t: t.month(), "time.Month"),
}

# Methods Go's time.Time has but logpipe does not implement: refused with our own error,
# never with Go's "can't evaluate field", which would be false. Docker's documented tags
# only print the time; these were dropped to keep the engine small.
_TIME_REFUSED = frozenset({
    "Add", "AddDate", "After", "AppendFormat", "Before", "Clock", "Date", "Day", "Equal",
    "Format", "GoString", "GobDecode", "GobEncode", "Hour", "ISOWeek", "In", "IsDST",
    "IsZero", "Local", "Location", "MarshalBinary", "MarshalJSON", "MarshalText", "Minute",
    "Nanosecond", "Round", "Second", "Sub", "Truncate", "UTC", "UnixMicro", "UnixMilli",
    "UnixNano", "UnmarshalBinary", "UnmarshalJSON", "UnmarshalText", "Weekday", "Year",
    "YearDay", "Zone", "ZoneBounds",
})

_STRING_METHOD = _getter(lambda v: v.string(), "string")


def refused_time_method(name: str) -> str | None:
    """The error for a ``time.Time`` method logpipe refuses, or None if it is not one."""
    return f"logpipe does not support the time.Time method {name}" \
        if name in _TIME_REFUSED else None


def method_of(receiver: Any, name: str) -> Func | None:
    """Method ``name`` of a run-time value, bound to it; None if it has no such method."""
    if isinstance(receiver, InfoRef):
        m = _INFO_METHODS.get(name)
        recv: Any = receiver.info
    elif isinstance(receiver, GoTime):
        m, recv = _TIME_METHODS.get(name), receiver
    elif isinstance(receiver, GoMonth) and name == "String":
        m, recv = _STRING_METHOD, receiver
    else:
        return None
    return None if m is None else Func(m.params, m.variadic, functools.partial(m.fn, recv))


def static_member(typ: str, name: str) -> tuple[str | None, Func | None, str | None]:
    """Field or method ``name`` of a value of Go type ``typ``: (type, method, error)."""
    if typ == INFO_TYPE:
        if name in _INFO_METHODS:
            return _INFO_METHODS[name].result, _INFO_METHODS[name], None
        if name in INFO_FIELDS:
            return INFO_FIELDS[name][0], None, None
    elif typ == "time.Time":
        if name in _TIME_METHODS:
            return _TIME_METHODS[name].result, _TIME_METHODS[name], None
        if name in _TIME_REFUSED:
            return None, None, refused_time_method(name)
    elif typ == "time.Month" and name == "String":
        return "string", _STRING_METHOD, None
    return None, None, f"can't evaluate field {name} in type {typ}"
