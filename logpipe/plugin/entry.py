"""The ``LogEntry`` message of ``entry.proto``, built with protobuf's descriptor API (no
generated code to keep in step with the protobuf runtime), and its FIFO framing:
``[u32 big-endian length][LogEntry]``, no trailer (Docker's logdriver/io.go)."""

from __future__ import annotations

import struct
from functools import cache
from typing import Any

from logpipe.message import Chunk, PartialMeta

#: Docker's decoder refuses bigger records (``log message is too large``); so do we.
MAX_RECORD = 1_000_000
_LEN = struct.Struct(">I")


@cache
def log_entry_class() -> Any:
    """The ``LogEntry`` message class (protobuf imported on first use only)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="logpipe/plugin/entry.proto",
                                               package="logpipe.plugin", syntax="proto3")
    meta = proto.message_type.add(name="PartialLogEntryMetadata")
    meta.field.add(name="last", number=1, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    meta.field.add(name="id", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    meta.field.add(name="ordinal", number=3, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    entry = proto.message_type.add(name="LogEntry")
    entry.field.add(name="source", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="time_nano", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    entry.field.add(name="line", number=3, type=F.TYPE_BYTES, label=F.LABEL_OPTIONAL)
    entry.field.add(name="partial", number=4, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    entry.field.add(name="partial_log_metadata", number=5, type=F.TYPE_MESSAGE,
                    label=F.LABEL_OPTIONAL, type_name=".logpipe.plugin.PartialLogEntryMetadata")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logpipe.plugin.LogEntry"))


def to_chunk(entry: Any) -> Chunk:
    """One decoded entry as the chunk the shim would have stored: a complete line gets its
    newline back; a piece of a long line keeps Docker's partial id/ordinal, and only the
    last piece ends the line."""
    if entry.HasField("partial_log_metadata"):
        meta = entry.partial_log_metadata
        data = entry.line + b"\n" if meta.last else entry.line
        return Chunk(entry.source, entry.time_nano, data,
                     PartialMeta(meta.id, meta.ordinal, meta.last))
    return Chunk(entry.source, entry.time_nano, entry.line + b"\n")


def decode_frames(buf: bytes | bytearray) -> tuple[list[Chunk], int]:
    """The chunks of every whole frame in ``buf`` and how many bytes they took; a frame cut
    at the end waits for the next read. A length over ``MAX_RECORD`` is a ``ValueError``:
    the stream cannot be resynchronised (there is no trailer), as in Docker."""
    cls = log_entry_class()
    out: list[Chunk] = []
    pos, end = 0, len(buf)
    view = memoryview(buf)
    while end - pos >= 4:
        (size,) = _LEN.unpack_from(buf, pos)
        if size > MAX_RECORD:
            raise ValueError(f"log message is too large ({size} > {MAX_RECORD})")
        if end - pos - 4 < size:
            break
        entry = cls.FromString(bytes(view[pos + 4:pos + 4 + size]))
        out.append(to_chunk(entry))
        pos += 4 + size
    return out, pos


def _frame_at(buf: bytes | bytearray, pos: int) -> int:
    """The end of a plausible whole frame at ``pos`` (a known source, a timestamp), or -1."""
    if len(buf) - pos < 4:
        return -1
    (size,) = _LEN.unpack_from(buf, pos)
    if size > MAX_RECORD or len(buf) - pos - 4 < size:
        return -1
    try:
        entry = log_entry_class().FromString(bytes(buf[pos + 4:pos + 4 + size]))
    except Exception:  # protobuf's DecodeError: garbage, not a frame
        return -1
    return pos + 4 + size if entry.source in ("stdout", "stderr") and entry.time_nano else -1


def resync(buf: bytes | bytearray) -> int | None:
    """Where the first whole frame starts in ``buf``, which may begin inside one: a plugin
    killed after reading part of a frame leaves its rest in the FIFO for the next. A start
    counts when two frames in a row parse (or one ends exactly at the end of ``buf``).
    None: not enough data to tell yet."""
    for pos in range(len(buf) - 3):
        end = _frame_at(buf, pos)
        if end < 0:
            continue
        if end == len(buf) or _frame_at(buf, end) >= 0:
            return pos
    return None


def encode_chunk(chunk: Chunk, newlines: bool = True) -> bytes:
    """The frames of one stored chunk. ``ReadLogs``' answer keeps each line's newline in
    ``line`` (Docker's adapter writes ``line`` to ``docker logs`` as it is, as it does a
    json-file record's ``log``); the FIFO direction has none (``newlines=False``)."""
    cls = log_entry_class()
    frames = []
    for msg in chunk.messages():
        line = msg.line + b"\n" if newlines and msg.newline else msg.line
        entry = cls(source=msg.source, time_nano=msg.ts, line=line)
        if msg.partial is not None and msg.partial.id:
            entry.partial = True
            entry.partial_log_metadata.id = msg.partial.id
            entry.partial_log_metadata.ordinal = msg.partial.ordinal
            entry.partial_log_metadata.last = msg.partial.last
        data = entry.SerializeToString()
        frames.append(_LEN.pack(len(data)) + data)
    return b"".join(frames)
