"""Docker's json-file lines, written: every byte a container prints goes through here.

Owns the Go-JSON details of the encoding (Docker's escaping of ``log``, Go's marshalling of
``attrs``, RFC3339Nano times with trailing zeros trimmed, the generic record for an empty
``log`` or ``stream``) and cutting a batch into blocks of whole records. It is the capture
path's hottest code: a few C-level ``bytes`` calls per chunk, never a Python call per line.
It must not decode (``reader.py`` does): the shim imports this module and never the reader.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, Mapping

from logpipe.gojson import ascii_escapes, go_json_string
from logpipe.message import STDERR, STDOUT, Chunk
from logpipe.timespec import NS, format_rfc3339nano

#: How every record this module writes begins; the reader finds runs of lines by it.
RECORD_HEAD = b'{"log":"'
#: A newline inside ``log``, as written.
ESCAPED_NL = b"\\n"


# Docker's own encoder for ``log`` (jsonlog.ffjsonWriteJSONBytesAsString) writes TAB as
# ``\u0009``, unlike Go's encoding/json; the rest is Go's table.
_LOG_ESCAPES = ascii_escapes(tab=b"\\u0009")
_LOG_CODES = sorted(_LOG_ESCAPES)
_LOG_NEEDLES = {c: bytes([c]) for c in _LOG_ESCAPES}
# Deleting every byte that needs no escape leaves exactly the ones that do (ASCII only).
_NOT_SPECIAL = bytes(c for c in range(256) if c not in _LOG_ESCAPES)
_LINE_SEPS = (("\u2028", b"\\u2028"), ("\u2029", b"\\u2029"))
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_log(data: bytes) -> bytes:
    """``data`` escaped as Docker writes it in ``log``, except that ``\\n`` stays raw.

    Invalid UTF-8 becomes one ``\\ufffd`` escape per byte (Go decodes byte by byte, and so
    does Python's strict decoder: ``surrogateescape`` yields one lone surrogate per bad byte);
    U+2028/U+2029 are escaped, every other valid character is kept raw.
    """
    found = data.translate(None, _NOT_SPECIAL)
    is_ascii = data.isascii()
    if is_ascii and not found:
        return data
    if found:
        # ``int in bytes`` is a memchr (``bytes in bytes`` first tries, and fails, to read
        # the needle as an int, which costs more than the search).
        codes = set(found) if len(found) < 256 else [c for c in _LOG_CODES if c in found]
        if 0x5C in codes:  # first: every other escape introduces a backslash
            data = data.replace(b"\\", b"\\\\")
        for c in codes:
            if c != 0x5C:
                data = data.replace(_LOG_NEEDLES[c], _LOG_ESCAPES[c])
    if is_ascii:
        return data
    try:
        text = data.decode()
    except UnicodeDecodeError:
        # The ASCII escapes above cannot change how the non-ASCII bytes decode.
        text = data.decode("utf-8", "surrogateescape")
        return LONE_SURROGATE.sub(r"\\ufffd", text).replace(
            "\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()
    # searching the decoded text is much faster than a 3-byte search of the bytes
    for sep, esc in _LINE_SEPS:
        if sep in text:
            data = data.replace(sep.encode(), esc)
    return data


def encode_attrs(attrs: Mapping[str, str]) -> bytes:
    """The ``attrs`` object as Go marshals a ``map[string]string``: keys sorted, no spaces.
    Empty when there are no attrs (Docker then leaves the key out)."""
    if not attrs:
        return b""
    items = sorted(attrs.items(), key=lambda kv: kv[0].encode("utf-8", "surrogatepass"))
    return b"{" + b",".join(go_json_string(k) + b":" + go_json_string(v)
                            for k, v in items) + b"}"


class _Clock:
    """RFC3339Nano of a timestamp, with the date part cached per second (chunks are
    stamped close together). Docker trims trailing zeros of the fraction."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[int, bytes] = (0, b"1970-01-01T00:00:00")  # replaced as one value

    def text(self, ts: int) -> bytes:
        sec, frac = divmod(ts, NS)
        last_sec, base = self.last
        if sec != last_sec:
            base = format_rfc3339nano(sec * NS)[:-1].encode()
            self.last = (sec, base)
        if not frac:
            return base + b"Z"
        return b"%s.%sZ" % (base, (b"%09d" % frac).rstrip(b"0"))


_CLOCK = _Clock()
_STREAM_TEXT = {STDOUT: b"stdout", STDERR: b"stderr"}


def _generic_record(log: bytes, stream: bytes, attrs: bytes, time: bytes) -> bytes:
    """Docker's MarshalJSONBuf for the rare records with an empty ``log`` or ``stream``:
    empty fields are left out, ``time`` is always there."""
    fields = []
    if log:
        fields.append(b'"log":"%s"' % log)
    if stream:
        fields.append(b'"stream":"%s"' % stream)
    if attrs:
        fields.append(b'"attrs":' + attrs)
    fields.append(b'"time":"%s"' % time)
    return b"{" + b",".join(fields) + b"}\n"


def encode_batch(batch: Iterable[Chunk], attrs: bytes = b"") -> bytes:
    """The json-file lines of a batch of chunks, ready to append.

    ``attrs`` is the already encoded attrs object (``encode_attrs``), the same for every line
    (Docker's attrs come from the container's config only). Each chunk is escaped as one
    block; its ``\\n`` separators then become "end of this record, start of the next" in a
    single ``replace``, so the cost per line is a few bytes of memcpy. Large temporaries are
    kept to two (the replaced chunk and the joined batch): on a VM every fresh page of a
    megabyte-sized buffer costs a page fault.
    """
    attrs_field = b'"attrs":%s,' % attrs if attrs else b""
    out: list[bytes | memoryview] = []
    append = out.append
    text = _CLOCK.text
    for chunk in batch:
        stream = _STREAM_TEXT.get(chunk.source)
        if stream is None:
            stream = escape_log(chunk.source.encode("utf-8", "surrogateescape"))
        data = chunk.data
        if not data or not stream:
            esc = escape_log(data)
            if esc.endswith(b"\n"):
                esc = esc[:-1] + ESCAPED_NL
            append(_generic_record(esc, stream, attrs, text(chunk.ts)))
            continue
        end = b'","stream":"%s",%s"time":"%s"}\n' % (stream, attrs_field, text(chunk.ts))
        esc = escape_log(data)
        append(RECORD_HEAD)
        if esc[-1] == 0x0A:
            # every line, the last included, ends in "\n" + end; drop the last line's
            # "start of the next record" without copying
            lines = esc.replace(b"\n", ESCAPED_NL + end + RECORD_HEAD)
            append(memoryview(lines)[:-len(RECORD_HEAD)] if len(lines) > 4096 else lines[:-len(RECORD_HEAD)])
        else:  # a partial piece: no newline at all
            append(esc)
            append(end)
    return b"".join(out)


#: Input bytes encoded and written at a time: the temporaries of a block stay small enough
#: for malloc to recycle them, where a fresh multi-megabyte buffer costs a page fault per
#: 4 KiB on a VM (measured: 1 MiB reads encoded whole ran at a quarter of the speed).
BLOCK_SIZE = 1 << 16


def encode_blocks(batch: Iterable[Chunk], attrs: bytes = b"",
                  size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """``encode_batch`` in blocks of whole records, each from about ``size`` bytes of input:
    small chunks are grouped, a large chunk is cut between lines."""
    group: list[Chunk] = []
    grouped = 0
    for chunk in batch:
        data = chunk.data
        if len(data) <= size or chunk.partial is not None:
            group.append(chunk)
            grouped += len(data)
            if grouped >= size:
                yield encode_batch(group, attrs)
                group, grouped = [], 0
            continue
        if group:
            yield encode_batch(group, attrs)
            group, grouped = [], 0
        pos, end = 0, len(data)
        while pos < end:
            cut = data.rfind(b"\n", pos, pos + size) + 1 if end - pos > size else end
            if cut <= pos:  # a line longer than a block
                cut = data.find(b"\n", pos + size) + 1 or end
            yield encode_batch([Chunk(chunk.source, chunk.ts, data[pos:cut])], attrs)
            pos = cut
    if group:
        yield encode_batch(group, attrs)


def record_end(data: bytes, i: int) -> int:
    """End of the record that contains offset ``i`` (for rotation between records)."""
    return data.find(b"\n", i) + 1
