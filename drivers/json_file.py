"""The json-file storage driver: Docker's ``<id>-json.log``, byte for byte.

Owns Docker's line format in both directions: encoding chunks into JSON lines (the hottest
path of the product: every byte a container writes goes through ``encode_batch``), decoding
lines back into chunks, and the seeks readers need (``tail_offset``, ``since_offset``,
``last_ts``). Rotation and compression (``drivers/rotation.py``) and walking a rotated set,
``--tail``/``--since``/``--until`` and following (``logpipe/reading.py``) are shared with the
other storage formats and are not done here.

Both directions work on whole buffers with C-level ``bytes`` operations: Python loops per
chunk when encoding and per run of lines sharing stream, time and attrs when decoding, never
per line on the common path.
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, BinaryIO, Iterable, Iterator, Mapping, Sequence


class _LazyOrjson:
    """orjson costs ~18 ms and a few MB to import: only readers pay for it, never the
    capture path (the shim encodes, it never decodes)."""

    def __getattr__(self, name: str):
        import orjson as real

        globals()["orjson"] = real
        return getattr(real, name)


orjson = _LazyOrjson()

#: Until this much JSON has been parsed, the standard library parses: orjson's import costs
#: 15 ms, which the standard parser's slower speed only makes up for after about a megabyte.
#: So ``--tail 100`` never pays it, and a full read switches to orjson after its first piece.
_ORJSON_AFTER = 1 << 20
_parsed = 0


def _loads(data: bytes):
    """Parse JSON, refusing exactly what orjson refuses, whichever parser runs.

    The standard parser accepts lone surrogate escapes (``"\\ud800"``) that orjson rejects;
    they are refused here too, so that both parsers take the same paths.
    """
    global _parsed
    if _parsed > _ORJSON_AFTER:
        return orjson.loads(data)
    _parsed += len(data)
    obj = json.loads(data)
    for text in (obj,) if isinstance(obj, str) else _strings(obj):
        text.encode()  # UnicodeEncodeError (a ValueError) on a lone surrogate
    return obj


def _strings(obj) -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


from logpipe.driver import LogInfo
from logpipe.errors import DriverInitError, LogOptError, PartlyStored
from logpipe.gojson import ascii_escapes, go_json_string
from logpipe.message import STDERR, STDOUT, Chunk, PartialMeta
from logpipe.options import check_known_keys, parse_bool, parse_int
from logpipe.units import parse_human_size
from logpipe.reading import ReadConfig, Warn, read_logs
from logpipe.timespec import NS, format_rfc3339nano

if TYPE_CHECKING:
    from logpipe.template import Template

# -- encoding ------------------------------------------------------------------------------

_HEAD = b'{"log":"'
_NL = b"\\n"


# Docker's own encoder for ``log`` (jsonlog.ffjsonWriteJSONBytesAsString) writes TAB as
# ``\u0009``, unlike Go's encoding/json; the rest is Go's table.
_LOG_ESCAPES = ascii_escapes(tab=b"\\u0009")
_LOG_CODES = sorted(_LOG_ESCAPES)
_LOG_NEEDLES = {c: bytes([c]) for c in _LOG_ESCAPES}
# Deleting every byte that needs no escape leaves exactly the ones that do (ASCII only).
_NOT_SPECIAL = bytes(c for c in range(256) if c not in _LOG_ESCAPES)
_LINE_SEPS = (("\u2028", b"\\u2028"), ("\u2029", b"\\u2029"))
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


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
        return _LONE_SURROGATE.sub(r"\\ufffd", text).replace(
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
                esc = esc[:-1] + _NL
            append(_generic_record(esc, stream, attrs, text(chunk.ts)))
            continue
        end = b'","stream":"%s",%s"time":"%s"}\n' % (stream, attrs_field, text(chunk.ts))
        esc = escape_log(data)
        append(_HEAD)
        if esc[-1] == 0x0A:
            # every line, the last included, ends in "\n" + end; drop the last line's
            # "start of the next record" without copying
            lines = esc.replace(b"\n", _NL + end + _HEAD)
            append(memoryview(lines)[:-len(_HEAD)] if len(lines) > 4096 else lines[:-len(_HEAD)])
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


# -- decoding ------------------------------------------------------------------------------

_STREAM_KEY = b'","stream":"'
_TIME_KEY = b'"time":"'
_END_HEAD_RE = re.compile(rb'","stream":"(stdout|stderr)",(?:"attrs":(\{.*\}),)?')
_TIME_RE = re.compile(rb"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
                      rb"([Zz]|([+-])(\d\d):(\d\d))")
#: Nanoseconds per unit of a fraction of 1 … 9 digits.
_SCALE = tuple(10 ** (8 - i) for i in range(9))
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_JSON_SPACE = b" \t\r\n"
#: json-file keeps no partial metadata: a piece without its newline is all a reader sees.
_PIECE = PartialMeta("", 0, False)
_MISSING = object()
_CACHE_LIMIT = 1 << 14
#: Bytes read per step when counting lines backwards (--tail), and when looking for one line
#: (a probe of the --since bisection, the last line).
_SCAN = 1 << 20
_PROBE = 1 << 16
#: A run of lines smaller than this that fails as a whole is decoded line by line.
_MIN_SPAN = 1 << 14
_MAX_WINDOW = 1 << 17
#: Longer than any line Docker or logpipe writes (16 KiB of log, 6 bytes per escaped byte,
#: attrs): a longer run without a newline is damage, skipped but for this much of its end,
#: where a record glued behind the damage may begin.
_MAX_LINE = 8 << 20
#: Bytes that never occur in a json-file line: raw control characters are invalid inside
#: JSON strings, and outside them only TAB, LF, CR and space may appear.
_NEVER_IN_LINE = bytes(c for c in range(32) if c not in b"\t\n\r")
_KEEP_NEVER = bytes(c for c in range(256) if c not in _NEVER_IN_LINE)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _fraction(digits: bytes | None) -> int:
    """Nanoseconds of a fraction's digits; beyond nine digits is below a nanosecond."""
    return int(digits[:9].ljust(9, b"0")) if digits else 0


def parse_time(text: bytes, minutes: dict[bytes, int] | None = None) -> int | None:
    """An RFC 3339 time as json-file stores it (any fraction length, ``Z`` or an offset) in
    ns since the epoch; None if it is not one (Go's parser rejects out-of-range fields).

    ``minutes`` caches the epoch second of ``YYYY-MM-DDTHH:MM:`` prefixes of UTC times: the
    times of one file share them, and the rest is then two ``int()`` calls.
    """
    if minutes is not None:
        base = minutes.get(text[:17])
        if base is not None:
            n = len(text)
            if n == 20 and text[19] == 0x5A:  # "…:SSZ"
                digits = text[17:19]
                frac = 0
            elif 22 <= n <= 30 and text[19] == 0x2E and text[-1] == 0x5A:  # "…:SS.fffZ"
                digits = text[17:19] + text[20:-1]
                frac = -1
            else:
                digits = b""
            if digits.isdigit() and text[17] <= 0x35:
                if frac:
                    return (base + int(digits[:2])) * NS + int(digits[2:]) * _SCALE[n - 22]
                return (base + int(digits)) * NS
    m = _TIME_RE.fullmatch(text)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, zone, sign, oh, om = m.groups()
    y, mo, d, h, mi, s = int(y), int(mo), int(d), int(h), int(mi), int(s)
    if not 1 <= mo <= 12 or h > 23 or mi > 59 or s > 59 or d < 1:
        return None
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if d > (29 if mo == 2 and leap else _MONTH_DAYS[mo - 1]):
        return None
    minute = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60
    if sign:
        off = int(oh) * 3600 + int(om) * 60
        minute -= off if sign == b"+" else -off
    elif minutes is not None and zone == b"Z":
        if len(minutes) >= _CACHE_LIMIT:
            minutes.clear()
        minutes[text[:17]] = minute
    return (minute + s) * NS + _fraction(frac)


def _clean_text(value: str) -> str:
    """Lone surrogates (from ``\\udXXX`` escapes Python accepts) become U+FFFD, as in Go."""
    return _LONE_SURROGATE.sub("\ufffd", value)


def _loads_like_go(line: bytes) -> object:
    """Go's lenient reading of a line orjson refused: invalid UTF-8 and lone surrogate
    escapes become U+FFFD instead of failing. None if it is not JSON at all."""
    text = _clean_text(line.decode("utf-8", "surrogateescape"))
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if isinstance(obj, dict):
        obj = {_clean_text(k): _clean_text(v) if isinstance(v, str) else v
               for k, v in obj.items()}
        if isinstance(obj.get("attrs"), dict):
            obj["attrs"] = {_clean_text(k): _clean_text(v) if isinstance(v, str) else v
                            for k, v in obj["attrs"].items()}
    return obj


def _read_at(f: BinaryIO, offset: int, size: int) -> bytes:
    try:
        fd = f.fileno()
    except (OSError, AttributeError, ValueError):
        f.seek(offset)
        return f.read(size)
    return os.pread(fd, size, offset)


def _nth_newline_from_end(block: bytes, n: int) -> int:
    """Index of the ``n``-th ``\\n`` counted from the end of ``block`` (it has ≥ n)."""
    if n <= 64:
        i = len(block)
        for _ in range(n):
            i = block.rfind(b"\n", 0, i)
        return i
    lo, hi = 0, len(block) - 1  # the largest i with n newlines in block[i:]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if block.count(b"\n", mid) >= n:
            lo = mid
        else:
            hi = mid - 1
    return lo


class _Collector:
    """Gathers decoded records into chunks, merging consecutive complete lines that share
    stream, time and attrs, and coalescing reports of consecutive damaged lines."""

    __slots__ = ("chunks", "key", "parts", "bad", "warn", "buf")

    def __init__(self, buf: bytes, warn: Warn) -> None:
        self.chunks: list[Chunk] = []
        self.key: tuple = ()
        self.parts: list[bytes] = []
        self.bad: list[int] | None = None
        self.warn, self.buf = warn, buf

    def lines(self, key: tuple, data: bytes) -> None:
        """Complete lines; ``key`` is (source, ts, attrs)."""
        if self.bad:
            self.report()
        if key == self.key:
            self.parts.append(data)
            return
        self.flush()
        self.key = key
        self.parts.append(data)

    def piece(self, key: tuple, data: bytes) -> None:
        """A piece of a line (no newline at its end): always a chunk of its own."""
        if self.bad:
            self.report()
        self.flush()
        source, ts, attrs = key
        self.chunks.append(Chunk(source, ts, data, _PIECE, attrs))

    def flush(self) -> None:
        parts = self.parts
        if parts:
            source, ts, attrs = self.key
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            self.chunks.append(Chunk(source, ts, data, None, attrs))
            self.parts = []
            self.key = ()

    def damaged(self, start: int, end: int) -> None:
        if self.bad and self.bad[1] == start:
            self.bad[1] = end
            self.bad[2] += 1
        else:
            if self.bad:
                self.report()
            self.bad = [start, end, 1]

    def report(self) -> None:
        start, end, lines = self.bad
        self.bad = None
        what = "1 line" if lines == 1 else f"{lines} lines"
        # Never the content itself: the report may end up in a log of its own.
        self.warn(f"json-file: skipped {what} of damaged data ({end - start} bytes) at byte "
                  f"{start} of the block being read")

    def finish(self) -> list[Chunk]:
        self.flush()
        if self.bad:
            self.report()
        return self.chunks


class JSONFileFormat:
    """Docker's json-file lines as a ``RecordFormat``.

    Lines this driver wrote have one shape, ``{"log":…,"stream":…,["attrs":…,]"time":…}``,
    and the lines of one chunk differ only in ``log``. The decoder finds such a run with one
    ``rfind`` of the shared line end, turns the whole run into a single JSON string and lets
    orjson unescape and validate it at once. Anything else (another key order, damage, a
    ``log`` ending in an escaped backslash) is decoded line by line.
    """

    def __init__(self) -> None:
        self._ends: dict[bytes, tuple | None] = {}
        self._heads: dict[bytes, tuple | None] = {}
        self._times: dict[bytes, int | None] = {}
        self._minutes: dict[bytes, int] = {}
        self._run = 0  # length of the previous run of lines: the guess for the next one

    # decoding ------------------------------------------------------------------------------

    def decode(self, buf: bytes, final: bool, warn: Warn) -> tuple[list[Chunk], int]:
        out = _Collector(buf, warn)
        end = buf.rfind(b"\n") + 1
        pos = 0
        while pos < end:
            pos = self._decode_run(buf, pos, end, out)
        used = end
        if final and end < len(buf):
            rest = buf[end:]
            if not rest.strip(_JSON_SPACE):
                used = len(buf)
            else:
                rec = self._parse_line(rest)
                if rec is not None:
                    self._emit(out, rec)
                    used = len(buf)
        return out.finish(), used

    def skip_damage(self, buf: bytes) -> int:
        """Everything up to the last byte that no JSON line may hold (a run of NULs: the
        record glued behind it is still read), and beyond ``_MAX_LINE`` bytes without a
        newline all but the last ``_MAX_LINE``."""
        cut = 0
        found = buf.translate(None, _KEEP_NEVER)  # only the forbidden bytes, in one C pass
        if found:
            cut = max(buf.rfind(c) for c in _NEVER_IN_LINE if c in found) + 1
        return max(cut, len(buf) - _MAX_LINE)

    def _decode_run(self, buf: bytes, pos: int, end: int, out: _Collector) -> int:
        """Decode the line at ``pos`` and the lines after it that end the same way; returns
        where the next line starts."""
        nl = buf.find(b"\n", pos)
        if buf.startswith(_HEAD, pos):
            s = buf.find(_STREAM_KEY, pos + 8, nl)
            # "\n" must end the log, and not as the tail of an escaped backslash + "n"
            if s > 0 and buf[s - 2:s] == _NL and buf[s - 3] != 0x5C:
                key = self._end(buf[s:nl + 1])
                if key is not None:
                    try:  # the log with its quotes: `"…\\n"`
                        text = _loads(buf[pos + 7:s + 1])
                    except ValueError:  # orjson's and json's decode errors, and UnicodeError
                        text = None
                    if text is not None:
                        out.lines(key, text.encode())
                        pos = nl + 1
                        if pos < end and buf.startswith(_HEAD, pos):
                            tail = buf[s - 2:pos]
                            if buf.endswith(tail, pos, buf.find(b"\n", pos) + 1):
                                pos = self._decode_rest(buf, pos, end, tail, key, out)
                        return pos
        self._decode_line(buf, pos, nl, out)
        return nl + 1

    def _decode_rest(self, buf: bytes, pos: int, end: int, tail: bytes, key: tuple,
                     out: _Collector) -> int:
        """The rest of a run: lines from ``pos`` on that end in ``tail`` (the first does)."""
        start = pos
        window = min(max(self._run, 1 << 12), _MAX_WINDOW)
        while True:
            hi = buf.rfind(tail, pos, min(end, pos + window))
            if hi < 0:  # the next line is longer than the window: take just that one
                hi = buf.find(b"\n", pos) + 1 - len(tail)
            hi += len(tail)
            self._decode_span(buf, pos, hi, tail, key, out)
            pos = hi
            if pos >= end or not buf.startswith(_HEAD, pos):
                break
            if not buf.endswith(tail, pos, buf.find(b"\n", pos) + 1):
                break
            window = min(2 * window, _MAX_WINDOW)
        self._run = 2 * (pos - start)
        return pos

    def _decode_span(self, buf: bytes, start: int, stop: int, tail: bytes, key: tuple,
                     out: _Collector) -> None:
        """Lines ``buf[start:stop]``, the last of which ends in ``tail``: one run if all of
        them have our exact shape; otherwise halves, so that one odd line (a log ending in a
        backslash, damage) costs a few retries rather than decoding everything line by line."""
        data = self._run_data(buf, start, stop, tail)
        if data is not None:
            out.lines(key, data)
            return
        mid = buf.rfind(tail, start, (start + stop) // 2)
        if mid < 0 or stop - start <= _MIN_SPAN:
            self._decode_lines(buf, start, stop, out)
            return
        mid += len(tail)
        self._decode_span(buf, start, mid, tail, key, out)
        self._decode_span(buf, mid, stop, tail, key, out)

    @staticmethod
    def _run_data(buf: bytes, start: int, stop: int, tail: bytes) -> bytes | None:
        """The log bytes of the lines in ``buf[start:stop]``, which all end in ``tail``;
        None unless they all have our exact shape and valid content."""
        if buf.find(b"\\" + tail, start, stop) >= 0:
            return None  # "\\" before the newline escape: is it "\\\n" or a piece's "\\n"?
        # from the opening quote of the first log to the closing one of the last: one string
        joined = buf[start + 7:stop - len(tail) + 3].replace(tail + _HEAD, _NL)
        try:
            text = _loads(joined)
        except ValueError:  # orjson's and json's decode errors, and UnicodeError
            return None  # a line of another shape in between, or damage: line by line
        return text.encode()

    def _decode_lines(self, buf: bytes, start: int, stop: int, out: _Collector) -> None:
        while start < stop:
            nl = buf.find(b"\n", start, stop)
            self._decode_line(buf, start, nl, out)
            start = nl + 1

    def _decode_line(self, buf: bytes, start: int, nl: int, out: _Collector) -> None:
        """One line, any shape; damaged lines are reported, and a record glued behind
        garbage on the same line (NUL padding, a torn write before a restart) is kept."""
        line = buf[start:nl]
        rec = self._parse_line(line)
        if rec is not None:
            self._emit(out, rec)
            return
        if not line.strip(_JSON_SPACE):
            return  # blank lines are whitespace between values for Go's decoder too
        for cut in (line.rfind(_HEAD), len(line) - len(line.lstrip(b"\x00"))):
            if cut > 0:
                rec = self._parse_line(line[cut:])
                if rec is not None:
                    out.damaged(start, start + cut)
                    self._emit(out, rec)
                    return
        out.damaged(start, nl + 1)

    @staticmethod
    def _emit(out: _Collector, rec: tuple) -> None:
        key, data = rec
        if data.endswith(b"\n"):
            out.lines(key, data)
        else:
            out.piece(key, data)

    def _parse_line(self, line: bytes) -> tuple | None:
        """((source, ts, attrs), data) of one line without its newline, or None if it is
        not a json-file record."""
        if line.startswith(_HEAD):
            s = line.find(_STREAM_KEY, 8)
            if s > 0:
                key = self._end(line[s:] + b"\n")
                if key is not None:
                    try:
                        text = _loads(line[7:s + 1])
                    except ValueError:  # orjson's and json's decode errors, and UnicodeError
                        pass
                    else:
                        return key, text.encode()
        try:
            obj = _loads(line)
        except ValueError:  # orjson's and json's decode errors, and UnicodeError
            obj = _loads_like_go(line)
        if not isinstance(obj, dict):
            return None
        log, stream, time = obj.get("log", ""), obj.get("stream", ""), obj.get("time")
        if not (isinstance(log, str) and isinstance(stream, str) and isinstance(time, str)):
            return None
        ts = self._time(time.encode())
        attrs = obj.get("attrs")
        if ts is None or (attrs is not None and not (
                isinstance(attrs, dict) and all(isinstance(v, str) for v in attrs.values()))):
            return None
        source = STDOUT if stream == "stdout" else STDERR if stream == "stderr" else stream
        return (source, ts, attrs or None), log.encode()

    def _end(self, end: bytes) -> tuple | None:
        """(source, ts, attrs) of a line end of our shape (``","stream":…}\\n``), or None.
        Cached, as every line of a chunk has the same end; its stream-and-attrs part is
        cached on its own, as it rarely changes at all."""
        key = self._ends.get(end, _MISSING)
        if key is not _MISSING:
            return key
        key = None
        j = end.rfind(_TIME_KEY)
        if j > 0 and end.endswith(b'"}\n'):
            head = self._heads.get(end[:j], _MISSING)
            if head is _MISSING:
                head = self._head(end[:j])
            if head is not None:
                ts = parse_time(end[j + 8:-3], self._minutes)
                if ts is not None:
                    key = (head[0], ts, head[1])
        if len(self._ends) >= _CACHE_LIMIT:
            self._ends.clear()
        self._ends[end] = key
        return key

    def _head(self, head: bytes) -> tuple | None:
        """(source, attrs) of ``","stream":"…",["attrs":{…},]``, or None."""
        m = _END_HEAD_RE.fullmatch(head)
        value = None
        if m is not None:
            attrs = None
            if m.group(2):
                try:
                    attrs = _loads(m.group(2))
                except ValueError:  # orjson's and json's decode errors, and UnicodeError
                    attrs = _loads_like_go(m.group(2))
                if not isinstance(attrs, dict) or not all(
                        isinstance(v, str) for v in attrs.values()):
                    attrs = _MISSING
            if attrs is not _MISSING:
                value = (STDOUT if m.group(1) == b"stdout" else STDERR, attrs or None)
        if len(self._heads) >= _CACHE_LIMIT:
            self._heads.clear()
        self._heads[head] = value
        return value

    def _time(self, text: bytes) -> int | None:
        ts = self._times.get(text, _MISSING)
        if ts is _MISSING:
            ts = parse_time(text, self._minutes)
            if len(self._times) >= _CACHE_LIMIT:
                self._times.clear()
            self._times[text] = ts
        return ts

    def _line_ts(self, line: bytes) -> int | None:
        """Time of one line, or None if it is not a record."""
        j = line.rfind(b',"time":"')
        if j >= 0 and line.endswith(b'"}'):
            ts = self._time(line[j + 9:-2])
            if ts is not None:
                return ts
        rec = self._parse_line(line)
        return None if rec is None else rec[0][1]

    # seeking -------------------------------------------------------------------------------

    def tail_offset(self, f: BinaryIO, size: int, n: int) -> tuple[int, int]:
        """Scans backwards in 1 MiB blocks counting newlines (Docker reads 1 KiB at a time).
        Bytes after the last newline count as a record only if they decode as one."""
        if n <= 0 or size <= 0:
            return size, 0
        last = _last_newline(f, size)
        found = 0
        if 0 < size - last - 1 <= _SCAN:
            frag = _read_at(f, last + 1, size - last - 1)
            if self._parse_line(frag) is not None:
                found = 1
                if n == 1:
                    return last + 1, 1
        need = n - found + 1  # newlines to pass, the one ending the last line included
        hi = last + 1
        while hi > 0:
            lo = max(0, hi - _SCAN)
            block = _read_at(f, lo, hi - lo)
            c = block.count(b"\n")
            if c >= need:
                return lo + _nth_newline_from_end(block, need) + 1, n
            need -= c
            hi = lo
        return 0, n + 1 - need

    def since_offset(self, f: BinaryIO, size: int, since: int) -> int:
        """Bisects over byte offsets, probing the first readable line after the middle;
        the answer is a line start less than a probe window before the first match."""
        lo, hi = 0, size
        while hi - lo > _PROBE:
            mid = (lo + hi) // 2
            probe = self._probe(f, mid, hi, size)
            if probe is None or probe[1] >= since:
                hi = mid
            else:
                lo = probe[0]
        return lo

    def _probe(self, f: BinaryIO, pos: int, limit: int, size: int) -> tuple[int, int] | None:
        """(start, ts) of the first line starting in ``[pos, limit)`` whose time can be
        read; None if there is none."""
        start = _next_line_start(f, pos, size)
        for offset, line in _lines_from(f, start, size):
            if offset >= limit:
                return None
            ts = self._line_ts(line)
            if ts is not None:
                return offset, ts
        return None

    def last_ts(self, f: BinaryIO, size: int) -> int | None:
        """Time of the last complete line that is a record (damaged lines are passed)."""
        for line in _lines_backwards(f, _last_newline(f, size) + 1):
            ts = self._line_ts(line)
            if ts is not None:
                return ts
        return None


def _last_newline(f: BinaryIO, size: int) -> int:
    """Offset of the last ``\\n`` in ``f[:size]``, -1 if there is none."""
    hi = size
    while hi > 0:
        lo = max(0, hi - _PROBE)
        i = _read_at(f, lo, hi - lo).rfind(b"\n")
        if i >= 0:
            return lo + i
        hi = lo
    return -1


def _next_line_start(f: BinaryIO, pos: int, size: int) -> int:
    """The first line start at or after ``pos`` (``size`` if there is none)."""
    if pos <= 0:
        return 0
    off = pos - 1
    while off < size:
        block = _read_at(f, off, min(_PROBE, size - off))
        i = block.find(b"\n")
        if i >= 0:
            return off + i + 1
        off += len(block)
    return size


def _lines_from(f: BinaryIO, start: int, size: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line without newline) of the complete lines of ``f[start:size]``; a line
    longer than ``_MAX_LINE`` is damage, passed over without being held in memory."""
    buf, base, pos = b"", start, start
    overlong = False
    while pos < size:
        data = _read_at(f, pos, min(_PROBE, size - pos))
        if not data:
            return
        pos += len(data)
        buf += data
        i = 0
        while (j := buf.find(b"\n", i)) >= 0:
            if not overlong:
                yield base + i, buf[i:j]
            overlong = False
            i = j + 1
        buf, base = buf[i:], base + i
        if overlong or len(buf) > _MAX_LINE:
            buf, base, overlong = b"", base + len(buf), True


def _lines_backwards(f: BinaryIO, end: int) -> Iterator[bytes]:
    """The complete lines of ``f[:end]`` (``end`` just after a newline), last first; a line
    longer than ``_MAX_LINE`` is damage, passed over without being held in memory."""
    hi, pending = end, b""
    overlong = False
    while hi > 0:
        lo = max(0, hi - _PROBE)
        block = _read_at(f, lo, hi - lo) + pending
        stop = len(block) - 1  # the newline ending the current line
        while (i := block.rfind(b"\n", 0, stop)) >= 0:
            if not overlong:
                yield block[i + 1:stop]
            overlong = False
            stop = i
        if lo == 0:
            if not overlong:
                yield block[:stop]
            return
        pending = block[:stop + 1]  # a line that began in an earlier block
        if overlong or len(pending) > _MAX_LINE:
            pending, overlong = b"\n", True  # only where the line ends: its start is ahead
        hi = lo


# -- the driver ----------------------------------------------------------------------------


def _limits(opts: Mapping[str, str]) -> tuple[int, int, bool]:
    """``max-size``, ``max-file`` and ``compress`` with Docker's checks, in Docker's order."""
    max_size = -1
    if "max-size" in opts:
        max_size = parse_human_size(opts["max-size"])
        if max_size <= 0:
            raise LogOptError("max-size must be a positive number")
    max_file = 1
    if "max-file" in opts:
        max_file = parse_int(opts["max-file"])
        if max_file < 1:
            raise LogOptError("max-file cannot be less than 1")
    compress = False
    if "compress" in opts:
        compress = parse_bool(opts["compress"])
        if compress and (max_file < 2 or max_size == -1):
            raise LogOptError(
                "compress cannot be true when max-file is less than 2 or max-size is not set")
    return max_size, max_file, compress


_EXTRA_KEYS = ("labels", "labels-regex", "env", "env-regex")


def _compile_tag(text: str) -> "Template":
    """The ``tag`` template. Imported on use: the template engine is large, and the shim
    of a container without ``tag`` should not pay for loading it."""
    from logpipe.template import compile_template
    return compile_template(text)


def _attrs(opts: Mapping[str, str], info: LogInfo) -> dict[str, str]:
    """Extras from labels/env, then ``tag`` (json-file has no default tag; it wins over an
    extra attribute named ``tag``, as in Docker). Raises ``LogOptError`` on a bad regex or
    template."""
    attrs: dict[str, str] = {}
    if any(k in opts for k in _EXTRA_KEYS):
        from logpipe.extras import extra_attrs  # only containers that ask for extras

        attrs.update(extra_attrs(opts, info))
    if "tag" in opts:
        tag = _compile_tag(opts["tag"]).render(info)
        if tag:
            attrs["tag"] = tag
    return attrs


class JSONFileDriver:
    """Docker's default driver: one JSON object per line in ``<log_dir>/<id>-json.log``."""

    name = "json-file"
    kind = "storage"
    OPTIONS = frozenset({"max-size", "max-file", "compress", "labels", "labels-regex", "env",
                         "env-regex", "tag"})

    @staticmethod
    def validate(opts: Mapping[str, str], info: LogInfo | None = None) -> None:
        """Docker's key check, then what its constructor checks, with its wording. Without
        the container's info, a tag is only parsed (Docker executes it at start)."""
        check_known_keys(opts, JSONFileDriver.OPTIONS, "json-file")
        try:
            _limits(opts)
            if info is not None:
                _attrs(opts, info)
                return
            from logpipe.extras import check_without_container

            check_without_container(opts)
        except DriverInitError:
            raise
        except LogOptError as err:
            raise DriverInitError(str(err)) from None

    def __init__(self, info: LogInfo) -> None:
        opts = info.config
        max_size, max_file, compress = _limits(opts)
        if not os.path.isdir(info.log_dir):
            os.makedirs(info.log_dir, exist_ok=True)
            os.chmod(info.log_dir, 0o710)
        self._attrs = encode_attrs(_attrs(opts, info))
        from drivers.rotation import RotatingFile  # writers only: readers never need it

        self._file = RotatingFile(self.log_path(info), max_size, max_file, compress,
                                  fmt=JSONFileFormat(), boundary=record_end)

    @classmethod
    def log_path(cls, info: LogInfo) -> str:
        """Docker's ``LogPath``: ``<container dir>/<id>-json.log``."""
        return os.path.join(info.log_dir, f"{info.container_id}-json.log")

    def write(self, batch: Sequence[Chunk]) -> None:
        """Append the batch. A failed write (disk full) leaves whole records only, and says
        how many of the batch's records were stored (``PartlyStored``), found by encoding the
        batch again, off the hot path: the encoding is deterministic and one record is one
        line of the file."""
        start = self._file.appended
        try:
            for block in encode_blocks(batch, self._attrs):
                self._file.write(block)
        except OSError as err:
            stored = self._file.appended - start
            if not stored:
                raise
            records = 0
            for block in encode_blocks(batch, self._attrs):
                records += block.count(b"\n", 0, stored)
                stored -= len(block)
                if stored <= 0:
                    break
            raise PartlyStored(err, records) from err

    def flush(self) -> None:
        """Nothing is buffered: every block goes to the file as it is encoded."""

    def close(self) -> None:
        self._file.close()

    @classmethod
    def read(cls, info: LogInfo, config: ReadConfig) -> Iterator[Chunk]:
        return read_logs(cls.log_path(info), JSONFileFormat(), config)
