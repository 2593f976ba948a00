"""Docker's json-file lines, read: ``JSONFileFormat``, the ``RecordFormat`` plug-in that the
generic reader (``logpipe/reading.py``: rotated sets, ``--tail``/``--since``/``--until``,
following) and rotation use.

Owns decoding lines back into chunks, Go's lenient reading of what orjson refuses, skipping
and reporting damage, and the seeks readers need (``tail_offset``, ``since_offset``,
``last_ts``, done over lines by ``seek.py``). Decoding works on whole buffers: a Python loop
per run of lines sharing stream, time and attrs, never per line on the common path. The
writer never imports this module; rotation loads it only when it needs a count or a time.
"""

from __future__ import annotations

import json
import re
from typing import BinaryIO, Iterator

from logpipe.message import STDERR, STDOUT, Chunk, PartialMeta
from logpipe.reading import Warn

from . import seek
from .encode import ESCAPED_NL, LONE_SURROGATE, RECORD_HEAD
from .seek import MAX_LINE
from .timestamps import CACHE_LIMIT, parse_time


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


_STREAM_KEY = b'","stream":"'
_TIME_KEY = b'"time":"'
_END_HEAD_RE = re.compile(rb'","stream":"(stdout|stderr)",(?:"attrs":(\{.*\}),)?')
_JSON_SPACE = b" \t\r\n"
#: json-file keeps no partial metadata: a piece without its newline is all a reader sees.
_PIECE = PartialMeta("", 0, False)
_MISSING = object()
#: A run of lines smaller than this that fails as a whole is decoded line by line.
_MIN_SPAN = 1 << 14
_MAX_WINDOW = 1 << 17
#: Bytes that never occur in a json-file line: raw control characters are invalid inside
#: JSON strings, and outside them only TAB, LF, CR and space may appear.
_NEVER_IN_LINE = bytes(c for c in range(32) if c not in b"\t\n\r")
_KEEP_NEVER = bytes(c for c in range(256) if c not in _NEVER_IN_LINE)


def _clean_text(value: str) -> str:
    """Lone surrogates (from ``\\udXXX`` escapes Python accepts) become U+FFFD, as in Go."""
    return LONE_SURROGATE.sub("\ufffd", value)


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
        record glued behind it is still read), and beyond ``MAX_LINE`` bytes without a
        newline all but the last ``MAX_LINE``."""
        cut = 0
        found = buf.translate(None, _KEEP_NEVER)  # only the forbidden bytes, in one C pass
        if found:
            cut = max(buf.rfind(c) for c in _NEVER_IN_LINE if c in found) + 1
        return max(cut, len(buf) - MAX_LINE)

    def _decode_run(self, buf: bytes, pos: int, end: int, out: _Collector) -> int:
        """Decode the line at ``pos`` and the lines after it that end the same way; returns
        where the next line starts."""
        nl = buf.find(b"\n", pos)
        if buf.startswith(RECORD_HEAD, pos):
            s = buf.find(_STREAM_KEY, pos + 8, nl)
            # "\n" must end the log, and not as the tail of an escaped backslash + "n"
            if s > 0 and buf[s - 2:s] == ESCAPED_NL and buf[s - 3] != 0x5C:
                key = self._end(buf[s:nl + 1])
                if key is not None:
                    try:  # the log with its quotes: `"…\\n"`
                        text = _loads(buf[pos + 7:s + 1])
                    except ValueError:  # orjson's and json's decode errors, and UnicodeError
                        text = None
                    if text is not None:
                        out.lines(key, text.encode())
                        pos = nl + 1
                        if pos < end and buf.startswith(RECORD_HEAD, pos):
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
            if pos >= end or not buf.startswith(RECORD_HEAD, pos):
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
        joined = buf[start + 7:stop - len(tail) + 3].replace(tail + RECORD_HEAD, ESCAPED_NL)
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
        for cut in (line.rfind(RECORD_HEAD), len(line) - len(line.lstrip(b"\x00"))):
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
        if line.startswith(RECORD_HEAD):
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
        if len(self._ends) >= CACHE_LIMIT:
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
        if len(self._heads) >= CACHE_LIMIT:
            self._heads.clear()
        self._heads[head] = value
        return value

    def _time(self, text: bytes) -> int | None:
        ts = self._times.get(text, _MISSING)
        if ts is _MISSING:
            ts = parse_time(text, self._minutes)
            if len(self._times) >= CACHE_LIMIT:
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

    # seeking: over lines, by ``seek.py``; a line is read with the caches above -------------

    def tail_offset(self, f: BinaryIO, size: int, n: int) -> tuple[int, int]:
        """Newlines counted backwards; a last line without its newline counts if it decodes."""
        return seek.tail_offset(f, size, n, self._is_record)

    def since_offset(self, f: BinaryIO, size: int, since: int) -> int:
        """A bisection over byte offsets, probing the times of lines."""
        return seek.since_offset(f, size, since, self._line_ts)

    def last_ts(self, f: BinaryIO, size: int) -> int | None:
        """The time of the last complete line that is a record."""
        return seek.last_ts(f, size, self._line_ts)

    def _is_record(self, fragment: bytes) -> bool:
        """Whether a line without its newline is a whole record (``tail_offset``)."""
        return self._parse_line(fragment) is not None
