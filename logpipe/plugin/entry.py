"""The ``LogEntry`` message of ``entry.proto``, built with protobuf's descriptor API (no
generated code to keep in step with the protobuf runtime), and its FIFO framing:
``[u32 big-endian length][LogEntry]``, no trailer (Docker's logdriver/io.go).

Decoding is batch-shaped (``decode_frames``): one read's frames are parsed by a single
protobuf call, as the columns of a ``LogEntryColumns`` message (every field repeated), and
turned into chunks without a Python call per entry. Per-entry parsing remains for the reads
the columns cannot describe (long lines' pieces, empty lines, a zero timestamp).
"""

from __future__ import annotations

import struct
from functools import cache
from itertools import repeat
from operator import add
from typing import Any

from logpipe.message import Chunk, PartialMeta

#: Docker's decoder refuses bigger records (``log message is too large``); so do we.
MAX_RECORD = 1_000_000
_LEN = struct.Struct(">I")


@cache
def _message_classes() -> tuple[Any, Any]:
    """``LogEntry`` and ``LogEntryColumns`` (protobuf imported on first use only)."""
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
    # Parsed as one message, concatenated entries merge: each repeated field collects that
    # field of every entry, in order (protobuf's merge rule for repeated fields). The
    # metadata stays raw bytes: only whether any entry had one matters here.
    cols = proto.message_type.add(name="LogEntryColumns")
    for name, number, kind in (("source", 1, F.TYPE_STRING), ("time_nano", 2, F.TYPE_INT64),
                               ("line", 3, F.TYPE_BYTES), ("partial", 4, F.TYPE_BOOL),
                               ("partial_log_metadata", 5, F.TYPE_BYTES)):
        cols.field.add(name=name, number=number, type=kind, label=F.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"logpipe.plugin.{n}"))
                 for n in ("LogEntry", "LogEntryColumns"))


def log_entry_class() -> Any:
    """The ``LogEntry`` message class (protobuf imported on first use only)."""
    return _message_classes()[0]


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


def split_frames(buf: bytes | bytearray) -> tuple[list[bytes], int]:
    """The ``LogEntry`` bytes of every whole frame in ``buf`` and how many bytes they took;
    a frame cut at the end waits for the next read. A length over ``MAX_RECORD`` is a
    ``ValueError``: the stream cannot be resynchronised (there is no trailer), as in Docker."""
    entries: list[bytes] = []
    append, unpack = entries.append, _LEN.unpack_from
    pos, end = 0, len(buf)
    while end - pos >= 4:
        (size,) = unpack(buf, pos)
        if size > MAX_RECORD:
            raise ValueError(f"log message is too large ({size} > {MAX_RECORD})")
        stop = pos + 4 + size
        if stop > end:
            break
        append(buf[pos + 4:stop])
        pos = stop
    return entries, pos


def decode_frames(buf: bytes | bytearray) -> tuple[list[Chunk], int]:
    """The chunks of every whole frame in ``buf`` and how many bytes they took (see
    ``split_frames``). One protobuf parse for all of them when every entry is a whole line
    with a source, a timestamp and some text (each column then has one value per entry:
    Docker's encoder writes every field once); per entry otherwise. An entry protobuf
    cannot parse is a ``ValueError``."""
    from google.protobuf.message import DecodeError

    entries, used = split_frames(buf)
    if not entries:
        return [], used
    entry_cls, columns_cls = _message_classes()
    n = len(entries)
    try:
        cols = columns_cls.FromString(b"".join(entries))
        if not (cols.partial or cols.partial_log_metadata) and \
                len(cols.source) == len(cols.time_nano) == len(cols.line) == n:
            # tuple.__new__ builds each Chunk in C; the map is over (source, ts, data,
            # partial, attrs), Chunk's fields in order.
            return list(map(tuple.__new__, repeat(Chunk), zip(
                cols.source, cols.time_nano, map(add, cols.line, repeat(b"\n")),
                repeat(None), repeat(None)))), used
        return [to_chunk(entry_cls.FromString(e)) for e in entries], used
    except DecodeError as err:
        raise ValueError(f"undecodable log entry: {err}") from None


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
