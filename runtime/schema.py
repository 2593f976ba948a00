"""The Engine-API request bodies the daemon accepts, as typed structs, and Go's words for
a body that does not fit them.

dockerd decodes a create body with Go's ``encoding/json`` into ``ContainerConfigWrapper``
(``container.Config`` embedded, ``HostConfig``, ``NetworkingConfig``): unknown fields are
ignored, ``null`` is the zero value, and a value of the wrong JSON type is refused with
``json: cannot unmarshal <json type> into Go struct field <Struct>.<path> of type <go type>``
(Go 1.19 names the innermost struct, then the path from the top; a number that does not fit
its integer is ``number <literal>``). The structs below are those Go types, reduced to the
fields a client may send; msgspec checks a body against them and ``go_error`` words what it
finds as Go would. Values (a relative working directory, an unknown restart policy) are
the caller's business: this module checks shapes, not meanings.

It never touches the daemon's state and imports nothing of ``runtime``.

Size: longer than 500 lines because it holds every request body of the API subset (create,
update, exec, volumes, networks, auth) beside the one Go-error translator they share;
split by resource, the shared Go types (``HostConfig``'s parts) would need a home of their own.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

import msgspec
import msgspec.inspect as mi

from logpipe.errors import InvalidParameter

# -- Go's scalar types --------------------------------------------------------------------

Int64 = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1, extra={"go": "int64"})]
#: Go's ``int`` is 64 bits on every platform logpipe runs on.
Int = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1, extra={"go": "int"})]
UInt16 = Annotated[int, msgspec.Meta(ge=0, le=(1 << 16) - 1, extra={"go": "uint16"})]
#: (msgspec bounds stop at int64; nothing here needs the top half of a uint64.)
UInt = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1, extra={"go": "uint"})]
Duration = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1,
                                       extra={"go": "time.Duration"})]
#: ``strslice.StrSlice``: a list of strings, or one string. Its own ``UnmarshalJSON`` falls
#: back to decoding a string, so a wrong value is reported "of type string", whole.
StrSlice = Annotated[list[str] | str, msgspec.Meta(extra={"go": "strslice.StrSlice",
                                                          "unmarshaler": "string"})]
Object = dict[str, Any]


class GoStruct(msgspec.Struct, omit_defaults=True):
    """A Go struct: ``go_type`` is its qualified name (``container.HostConfig``)."""

    go_type: ClassVar[str] = ""


class LogConfig(GoStruct):
    go_type: ClassVar[str] = "container.LogConfig"
    Type: str | None = None
    Config: dict[str, str] | None = None


class RestartPolicy(GoStruct):
    go_type: ClassVar[str] = "container.RestartPolicy"
    Name: str | None = None
    MaximumRetryCount: Int | None = None


class HealthConfig(GoStruct):
    go_type: ClassVar[str] = "container.HealthConfig"
    Test: list[str] | None = None
    Interval: Duration | None = None
    Timeout: Duration | None = None
    StartPeriod: Duration | None = None
    Retries: Int | None = None


class BindOptions(GoStruct):
    go_type: ClassVar[str] = "mount.BindOptions"
    Propagation: str | None = None
    NonRecursive: bool | None = None


class Driver(GoStruct):
    go_type: ClassVar[str] = "mount.Driver"
    Name: str | None = None
    Options: dict[str, str] | None = None


class VolumeOptions(GoStruct):
    go_type: ClassVar[str] = "mount.VolumeOptions"
    NoCopy: bool | None = None
    Labels: dict[str, str] | None = None
    DriverConfig: Driver | None = None


class TmpfsOptions(GoStruct):
    go_type: ClassVar[str] = "mount.TmpfsOptions"
    SizeBytes: Int64 | None = None
    Mode: Annotated[int, msgspec.Meta(ge=0, le=(1 << 32) - 1,
                                      extra={"go": "fs.FileMode"})] | None = None


class Mount(GoStruct):
    """``mount.Mount``: one item of ``HostConfig.Mounts`` (``--mount``)."""

    go_type: ClassVar[str] = "mount.Mount"
    Type: str | None = None
    Source: str | None = None
    Target: str | None = None
    ReadOnly: bool | None = None
    Consistency: str | None = None
    BindOptions: BindOptions | None = None
    VolumeOptions: VolumeOptions | None = None
    TmpfsOptions: TmpfsOptions | None = None


class VolumeCreate(GoStruct):
    """``POST /volumes/create``: ``volume.VolumeCreateBody``."""

    go_type: ClassVar[str] = "volume.VolumeCreateBody"
    Name: str | None = None
    Driver: str | None = None
    DriverOpts: dict[str, str] | None = None
    Labels: dict[str, str] | None = None


class HostConfig(GoStruct):
    """``container.HostConfig`` with its embedded ``Resources`` (Go promotes their fields)."""

    go_type: ClassVar[str] = "container.HostConfig"
    Binds: list[str] | None = None
    ContainerIDFile: str | None = None
    LogConfig: LogConfig | None = None
    NetworkMode: str | None = None
    PortBindings: Object | None = None
    RestartPolicy: RestartPolicy | None = None
    AutoRemove: bool | None = None
    VolumeDriver: str | None = None
    VolumesFrom: list[str] | None = None
    CapAdd: StrSlice | None = None
    CapDrop: StrSlice | None = None
    CgroupnsMode: str | None = None
    Dns: list[str] | None = None
    DnsOptions: list[str] | None = None
    DnsSearch: list[str] | None = None
    ExtraHosts: list[str] | None = None
    GroupAdd: list[str] | None = None
    IpcMode: str | None = None
    Cgroup: str | None = None
    Links: list[str] | None = None
    OomScoreAdj: Int | None = None
    PidMode: str | None = None
    Privileged: bool | None = None
    PublishAllPorts: bool | None = None
    ReadonlyRootfs: bool | None = None
    SecurityOpt: list[str] | None = None
    StorageOpt: dict[str, str] | None = None
    Tmpfs: dict[str, str] | None = None
    UTSMode: str | None = None
    UsernsMode: str | None = None
    ShmSize: Int64 | None = None
    Sysctls: dict[str, str] | None = None
    Runtime: str | None = None
    ConsoleSize: list[UInt] | None = None
    Isolation: str | None = None
    # Resources
    CpuShares: Int64 | None = None
    Memory: Int64 | None = None
    NanoCpus: Int64 | None = None
    CgroupParent: str | None = None
    BlkioWeight: UInt16 | None = None
    CpuPeriod: Int64 | None = None
    CpuQuota: Int64 | None = None
    CpuRealtimePeriod: Int64 | None = None
    CpuRealtimeRuntime: Int64 | None = None
    CpusetCpus: str | None = None
    CpusetMems: str | None = None
    Devices: list[Object] | None = None
    DeviceCgroupRules: list[str] | None = None
    DeviceRequests: list[Object] | None = None
    KernelMemory: Int64 | None = None
    KernelMemoryTCP: Int64 | None = None
    MemoryReservation: Int64 | None = None
    MemorySwap: Int64 | None = None
    MemorySwappiness: Int64 | None = None
    OomKillDisable: bool | None = None
    PidsLimit: Int64 | None = None
    Ulimits: list[Object] | None = None
    Mounts: list[Mount] | None = None
    MaskedPaths: list[str] | None = None
    ReadonlyPaths: list[str] | None = None
    Init: bool | None = None


class ContainerUpdate(HostConfig):
    """``POST /containers/{id}/update``: Docker's ``container.UpdateConfig``, the
    ``Resources`` of a ``HostConfig`` and its ``RestartPolicy`` (the docker CLI sends every
    field, zero when unchanged)."""

    go_type: ClassVar[str] = "container.UpdateConfig"


class EndpointSettings(GoStruct):
    go_type: ClassVar[str] = "network.EndpointSettings"
    Aliases: list[str] | None = None
    IPAMConfig: Object | None = None  # {"IPv4Address": ...}: network connect's


class NetworkingConfig(GoStruct):
    """The aliases of the container on its network (``--network-alias``, compose's service
    name); the rest is passed through unread."""

    go_type: ClassVar[str] = "network.NetworkingConfig"
    EndpointsConfig: dict[str, EndpointSettings | None] | None = None


class ContainerCreate(GoStruct):
    """``POST /containers/create``: ``container.Config`` fields, ``HostConfig``,
    ``NetworkingConfig`` — Docker's ``ContainerConfigWrapper``."""

    go_type: ClassVar[str] = "runconfig.ContainerConfigWrapper"
    Hostname: str | None = None
    Domainname: str | None = None
    User: str | None = None
    AttachStdin: bool | None = None
    AttachStdout: bool | None = None
    AttachStderr: bool | None = None
    ExposedPorts: Object | None = None
    Tty: bool | None = None
    OpenStdin: bool | None = None
    StdinOnce: bool | None = None
    Env: list[str] | None = None
    Cmd: StrSlice | None = None
    Healthcheck: HealthConfig | None = None
    ArgsEscaped: bool | None = None
    Image: str | None = None
    Volumes: Object | None = None
    WorkingDir: str | None = None
    Entrypoint: StrSlice | None = None
    NetworkDisabled: bool | None = None
    MacAddress: str | None = None
    OnBuild: list[str] | None = None
    Labels: dict[str, str] | None = None
    StopSignal: str | None = None
    StopTimeout: Int | None = None
    Shell: StrSlice | None = None
    HostConfig: HostConfig | None = None
    NetworkingConfig: NetworkingConfig | None = None


class ExecCreate(GoStruct):
    """``POST /containers/{id}/exec``: Docker's ``types.ExecConfig``."""

    go_type: ClassVar[str] = "types.ExecConfig"
    User: str | None = None
    Privileged: bool | None = None
    Tty: bool | None = None
    AttachStdin: bool | None = None
    AttachStderr: bool | None = None
    AttachStdout: bool | None = None
    Detach: bool | None = None
    DetachKeys: str | None = None
    Env: list[str] | None = None
    WorkingDir: str | None = None
    Cmd: list[str] | None = None


class ExecStart(GoStruct):
    """``POST /exec/{id}/start``: Docker's ``types.ExecStartCheck``."""

    go_type: ClassVar[str] = "types.ExecStartCheck"
    Detach: bool | None = None
    Tty: bool | None = None
    ConsoleSize: list[UInt] | None = None


class ImageConfig(GoStruct):
    """The part of an image's config a container is made from (``Config`` of image.json)."""

    go_type: ClassVar[str] = "container.Config"
    Cmd: list[str] | None = None
    Entrypoint: list[str] | None = None
    Env: list[str] | None = None
    WorkingDir: str | None = None
    User: str | None = None
    Volumes: Object | None = None


#: ``filters`` query values: ``{"key": {"value": true}}``, or the legacy ``{"key": ["value"]}``.
Filters = dict[str, dict[str, bool]]
LegacyFilters = dict[str, list[str]]


# -- decoding ------------------------------------------------------------------------------


class BadBody(InvalidParameter):
    """A request body (or JSON query value) that is not valid JSON or not of the right shape."""


def decode_json(data: bytes) -> Any:
    """Any JSON document; a syntax error is ``invalid JSON: ...``; an empty body is Docker's
    ``invalid JSON: got EOF while reading request body``."""
    if not data.strip():
        raise BadBody("invalid JSON: got EOF while reading request body")
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as err:
        raise BadBody(f"invalid JSON: {err}") from None


class AuthConfig(GoStruct):
    """``POST /auth`` (``docker login``): ``registry.AuthConfig``."""

    go_type: ClassVar[str] = "registry.AuthConfig"
    username: str | None = None
    password: str | None = None
    auth: str | None = None
    email: str | None = None
    serveraddress: str | None = None
    identitytoken: str | None = None
    registrytoken: str | None = None


def auth_config(body: Any) -> AuthConfig:
    return AuthConfig() if body is None else convert(body, AuthConfig)


def container_create(body: Any) -> ContainerCreate:
    """The create body (already parsed JSON) as a typed request, or Go's refusal."""
    if body is None:
        return ContainerCreate()
    if isinstance(body, ContainerCreate):
        return body
    return convert(body, ContainerCreate)


def container_update(body: Any) -> ContainerUpdate:
    """The update body (parsed JSON) as a typed request, or Go's refusal."""
    return ContainerUpdate() if body is None else convert(body, ContainerUpdate)


def volume_create(body: Any) -> VolumeCreate:
    """The ``/volumes/create`` body as a typed request, or Go's refusal."""
    return VolumeCreate() if body is None else convert(body, VolumeCreate)


def exec_create(body: Any) -> ExecCreate:
    """The exec create body as a typed request, or Go's refusal."""
    return ExecCreate() if body is None else convert(body, ExecCreate)


def exec_start(body: Any) -> ExecStart:
    """The exec start body (may be empty: docker-py sends ``{}``) as a typed request."""
    return ExecStart() if body is None else convert(body, ExecStart)


def image_config(ref: str, config: Any) -> ImageConfig:
    """An image's stored config, checked before a container is made from it: a config a
    start could not use (``"Cmd": "sh"``) is refused at create, naming the image."""
    try:
        return msgspec.convert(config or {}, ImageConfig)
    except msgspec.ValidationError as err:
        raise InvalidParameter(f"the image {ref} has an unusable config: "
                               f"{go_error(err, config, ImageConfig)}") from None


def filters(text: str) -> dict[str, list[str]]:
    """Docker's ``filters.FromJSON``: the map-of-sets form, else the legacy map-of-lists
    form; when neither fits, the first form's error."""
    if not text:
        return {}
    raw = decode_json(text.encode())
    try:
        parsed = msgspec.convert(raw, Filters)
        return {k: [v for v, on in values.items() if on] for k, values in parsed.items()}
    except msgspec.ValidationError as err:
        first = err
    try:
        return msgspec.convert(raw, LegacyFilters)
    except msgspec.ValidationError:
        raise BadBody(go_error(first, raw, Filters)) from None


def convert(raw: Any, kind: Any) -> Any:
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as err:
        raise BadBody(go_error(err, raw, kind)) from None


# -- Go's wording ----------------------------------------------------------------------------

_AT = re.compile(r" - at `\$(?P<path>.*)`$")
_GOT = re.compile(r", got `(?P<got>[a-z]+)`")
_TOKEN = re.compile(r"\.(?P<field>[^.\[]+)|\[(?P<index>\d+)\]|\[\.\.\.\]")
_JSON_TYPES = {"int": "number", "float": "number", "str": "string", "bool": "bool",
               "object": "object", "array": "array", "null": "null"}


def json_type(value: Any) -> str:
    """Go's name for a decoded JSON value's type (``UnmarshalTypeError.Value``)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def go_type(info: mi.Type) -> str:
    """Go's name for a schema type (``UnmarshalTypeError.Type``)."""
    if isinstance(info, mi.Metadata):
        return (info.extra or {}).get("go") or go_type(info.type)
    if isinstance(info, mi.UnionType):
        rest = [t for t in info.types if not isinstance(t, mi.NoneType)]
        return go_type(rest[0]) if len(rest) == 1 else "interface {}"
    if isinstance(info, mi.StrType):
        return "string"
    if isinstance(info, mi.BoolType):
        return "bool"
    if isinstance(info, mi.IntType):
        return "int"
    if isinstance(info, mi.FloatType):
        return "float64"
    if isinstance(info, mi.ListType):
        return "[]" + go_type(info.item_type)
    if isinstance(info, mi.DictType):
        return f"map[{go_type(info.key_type)}]{go_type(info.value_type)}"
    if isinstance(info, mi.StructType):
        return info.cls.go_type
    return "interface {}"


def _strip(info: mi.Type) -> mi.Type:
    """The type under ``| None`` (a Go pointer) and under metadata that is not an
    ``UnmarshalJSON`` of its own."""
    while True:
        if isinstance(info, mi.UnionType):
            rest = [t for t in info.types if not isinstance(t, mi.NoneType)]
            if len(rest) != 1:
                return info
            info = rest[0]
        elif isinstance(info, mi.Metadata) and "unmarshaler" not in (info.extra or {}):
            if "go" in (info.extra or {}):
                return info
            info = info.type
        else:
            return info


def go_error(err: msgspec.ValidationError, raw: Any, kind: Any) -> str:
    """``json: cannot unmarshal ...`` for msgspec's ``err`` about ``raw`` against ``kind``.

    msgspec says where (``$.HostConfig.LogConfig``) and what it expected; walking the same
    path through the schema and the document gives Go's struct, field path, Go type and the
    offending value, the way ``encoding/json`` reports them."""
    text = str(err)
    at = _AT.search(text)
    path = at.group("path") if at else ""
    info: mi.Type = _strip(mi.type_info(kind))
    value = raw
    struct = ""  # the innermost struct a field of which was entered
    fields: list[str] = []
    for token in _TOKEN.finditer(path):
        if isinstance(info, mi.Metadata) and "unmarshaler" in (info.extra or {}):
            break  # a type with its own UnmarshalJSON reports the whole value
        if token.group("field") is not None:
            name = token.group("field")
            if not isinstance(info, mi.StructType):
                break
            struct = info.cls.go_type.rsplit(".", 1)[-1]
            fields.append(name)
            info = _strip(next(f.type for f in info.fields if f.encode_name == name))
            value = value.get(name) if isinstance(value, dict) else None
        elif token.group("index") is not None:
            if not isinstance(info, mi.ListType):
                break
            info = _strip(info.item_type)
            index = int(token.group("index"))
            value = value[index] if isinstance(value, list) and index < len(value) else None
        else:  # a map's value: msgspec does not say which key; find the first that fails
            if not isinstance(info, mi.DictType):
                break
            value_kind = _python_type(info.value_type)
            bad = None
            for item in (value.values() if isinstance(value, dict) else ()):
                try:
                    msgspec.convert(item, value_kind)
                except msgspec.ValidationError:
                    bad = item
                    break
            info = _strip(info.value_type)
            value = bad
    if isinstance(info, mi.Metadata) and "unmarshaler" in info.extra:
        target = info.extra["unmarshaler"]
    else:
        target = go_type(info)
    got = _GOT.search(text)
    base = info.type if isinstance(info, mi.Metadata) else info
    if isinstance(info, mi.Metadata) and "unmarshaler" in info.extra:
        what = json_type(value)
    elif got and not (got.group("got") == "float" and isinstance(base, mi.IntType)):
        what = _JSON_TYPES.get(got.group("got"), got.group("got"))
    else:  # a number that is not an integer, or out of its integer's range (ParseInt fails)
        what = f"number {value}" if isinstance(value, (int, float)) else json_type(value)
    if fields:
        return (f"json: cannot unmarshal {what} into Go struct field "
                f"{struct}.{'.'.join(fields)} of type {target}")
    return f"json: cannot unmarshal {what} into Go value of type {target}"


def _python_type(info: mi.Type) -> Any:
    """The Python annotation to check one map value against (for finding the bad one)."""
    info = _strip(info)
    if isinstance(info, mi.Metadata):
        info = info.type
    simple = {mi.StrType: str, mi.BoolType: bool, mi.IntType: int, mi.FloatType: float,
              mi.AnyType: Any}
    for cls, py in simple.items():
        if isinstance(info, cls):
            return py
    if isinstance(info, mi.ListType):
        return list[_python_type(info.item_type)]
    if isinstance(info, mi.DictType):
        return dict[str, _python_type(info.value_type)]
    if isinstance(info, mi.StructType):
        return info.cls
    return Any
