"""The ``local`` storage driver: Docker's options and error texts, logpipe's own file format.

This module owns three things: the ``local`` option set (validated with Docker 20.10's
wording), the block format described in ``docs/local-format.md`` (encoding batches into
blocks on the write path), and ``LocalFormat``, which decodes blocks and finds starting offsets
for the generic reader. It must not rotate files (``drivers.rotation`` does), walk a rotated
set or follow a file (``logpipe.reading`` does), or do per-line Python work on the write path:
a block costs one msgpack call, one lz4 call and two crc32 calls whatever its line count.

Unlike Docker's ``local`` driver, ``compress`` does not gzip rotated files: it compresses each
block with lz4 as it is written, so every file, current or rotated, stays seekable by block.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable, ClassVar, Iterator, Mapping, NamedTuple, Sequence

import lz4.block
import msgpack

from drivers.rotation import RotatingFile
from logpipe import reading
from logpipe.driver import LogInfo
from logpipe.errors import DriverInitError, LogOptError, PartlyStored
from logpipe.message import SOURCES, STDERR, STDOUT, Chunk, PartialMeta
from logpipe.options import parse_bool, parse_int
from logpipe.units import parse_human_size
from logpipe.reading import ReadConfig, Warn

# ---------------------------------------------------------------------------------------------
# Byte layout (docs/local-format.md is the reference; keep the two in step)
# ---------------------------------------------------------------------------------------------

MAGIC = b"LPB1"
#: A distinct trailer magic: a forward scan for headers never stops on a trailer, and a
#: backward scan for trailers never stops on a header.
TRAILER_MAGIC = b"LPE1"
#: Payload flag: the payload is an lz4 block (no size prefix; the header holds ``raw_len``).
FLAG_LZ4 = 0x0001
KNOWN_FLAGS = FLAG_LZ4

#: magic, flags, reserved, payload_len, raw_len, records, ts_first, ts_last, payload_crc —
#: the part of the header that the header crc32 covers.
_HEAD = struct.Struct("<4sHHIIIqqI")
_HEADER = struct.Struct("<4sHHIIIqqII")
_TRAILER = struct.Struct("<I4s")
HEADER_SIZE = _HEADER.size  # 44
TRAILER_SIZE = _TRAILER.size  # 8
OVERHEAD = HEADER_SIZE + TRAILER_SIZE

#: Raw (uncompressed msgpack) size at which a block is cut. lz4's window is 64 KiB, so larger
#: blocks gain little ratio; 1 MiB keeps the decode cost of ``--tail 1`` around a millisecond.
MAX_BLOCK_RAW = 1 << 20
#: Smallest cut the writer makes to fit the room left before rotation: a file exceeds
#: ``max-size`` by at most one such block (about 1 KiB once compressed).
MIN_BLOCK_RAW = 4 << 10
#: More than any block holds (a block is cut at ``MAX_BLOCK_RAW``, or holds one line of at
#: most 16 KiB beyond it): a header announcing more is damage.
_MAX_BLOCK_TOTAL = 4 * MAX_BLOCK_RAW
#: Approximate msgpack framing of one entry (array header, source, ts, bin header).
_ENTRY_OVERHEAD = 16

_SOURCE_CODE = {STDOUT: 0, STDERR: 1}

# Module-level names so tests can count calls (block skipping must not decompress).
_compress = lz4.block.compress
_decompress = lz4.block.decompress

#: What a damaged payload may raise while being decoded, beyond a checksum mismatch.
_DECODE_ERRORS = (ValueError, TypeError, IndexError, KeyError, lz4.block.LZ4BlockError,
                  msgpack.UnpackException)

#: Bytes read per step when scanning a file for a magic after damage.
_SCAN_SIZE = 64 << 10
#: Bytes read per step when hopping from header to header: small blocks (slow loggers write
#: one per batch) are then read many at a time, large ones cost one read each.
_HOP_WINDOW = 8 << 10


class BlockHeader(NamedTuple):
    """A decoded block header whose magic and header checksum were right."""

    flags: int
    payload_len: int
    raw_len: int
    records: int
    ts_first: int
    ts_last: int
    payload_crc: int

    @property
    def total(self) -> int:
        """Bytes of the whole block: header, payload and trailer."""
        return OVERHEAD + self.payload_len


def parse_header(buf: bytes | memoryview, pos: int = 0) -> BlockHeader | None:
    """The header at ``buf[pos:]`` (which must hold ``HEADER_SIZE`` bytes), or None if its
    magic or checksum is wrong."""
    magic, flags, _, plen, rlen, records, ts0, ts1, pcrc, hcrc = _HEADER.unpack_from(buf, pos)
    if magic != MAGIC or zlib.crc32(buf[pos:pos + _HEAD.size]) != hcrc:
        return None
    return BlockHeader(flags, plen, rlen, records, ts0, ts1, pcrc)


def _trailer_ok(buf: bytes | memoryview, end: int, total: int) -> bool:
    return _TRAILER.unpack_from(buf, end - TRAILER_SIZE) == (total, TRAILER_MAGIC)


# ---------------------------------------------------------------------------------------------
# Write side
# ---------------------------------------------------------------------------------------------

def encode_block(entries: list, records: int, ts_first: int, ts_last: int,
                 compress: bool) -> bytes:
    """One block holding ``entries`` (msgpack-ready lists, see ``docs/local-format.md``).

    With ``compress`` the payload is lz4-compressed unless that would not make it smaller
    (tiny or random data): then it is stored raw and the flag says so.
    """
    raw = msgpack.packb(entries, use_bin_type=True)
    payload, flags = raw, 0
    if compress:
        packed = _compress(raw, store_size=False)
        if len(packed) < len(raw):
            payload, flags = packed, FLAG_LZ4
    head = _HEAD.pack(MAGIC, flags, 0, len(payload), len(raw), records, ts_first, ts_last,
                      zlib.crc32(payload))
    return b"".join((head, zlib.crc32(head).to_bytes(4, "little"), payload,
                     _TRAILER.pack(OVERHEAD + len(payload), TRAILER_MAGIC)))


def _entry(chunk: Chunk, data: bytes, ts_delta: int) -> list:
    entry = [_SOURCE_CODE[chunk.source], ts_delta, data]
    if chunk.partial is not None or chunk.attrs is not None:
        p = chunk.partial
        entry.append(None if p is None else [p.id, p.ordinal, p.last])
        if chunk.attrs is not None:
            entry.append(dict(chunk.attrs))
    return entry


def pack_blocks(batch: Sequence[Chunk], compress: bool,
                limit: Callable[[], int] = lambda: MAX_BLOCK_RAW) -> Iterator[bytes]:
    """Encode ``batch`` as consecutive blocks, in order.

    ``limit()`` gives the raw size at which the next block is cut; it is called lazily, after
    the previous block was consumed, so a writer can size each block to the room its file has
    left. Chunks of complete lines are split at line boundaries to fit; a partial piece is
    never split (a block holding only it may exceed the limit, as may a single huge line).
    Entry timestamps are stored as the difference to the previous entry's (the first entry's
    to the header's first timestamp, the smallest in the block): a few bytes instead of nine
    when chunks are small.
    """
    entries: list = []
    size = records = ts_first = ts_last = first = prev = 0
    cap = limit()
    for chunk in batch:
        data = chunk.data
        ts = chunk.ts
        whole_lines = chunk.partial is None
        if whole_lines and chunk.attrs is None and size + len(data) + _ENTRY_OVERHEAD <= cap:
            # The common case, kept lean: complete lines, no attrs, room in the block.
            if not entries:
                ts_first = ts_last = prev = first = ts
            elif ts < ts_first:
                ts_first = ts
            elif ts > ts_last:
                ts_last = ts
            entries.append([_SOURCE_CODE[chunk.source], ts - prev, data])
            prev = ts
            size += len(data) + _ENTRY_OVERHEAD
            records += data.count(b"\n")
            continue
        while True:
            free = cap - size - _ENTRY_OVERHEAD
            if len(data) <= free or not (entries or whole_lines):
                take = len(data)
            elif whole_lines:
                take = data.rfind(b"\n", 0, max(free, 0)) + 1
                if not take and not entries:
                    take = data.find(b"\n") + 1 or len(data)
            else:
                take = 0
            if take or not data:
                piece = data if take == len(data) else data[:take]
                if not entries:
                    ts_first = ts_last = prev = first = ts
                elif ts < ts_first:
                    ts_first = ts
                elif ts > ts_last:
                    ts_last = ts
                entries.append(_entry(chunk, piece, ts - prev))
                prev = ts
                size += len(piece) + _ENTRY_OVERHEAD
                records += piece.count(b"\n") if whole_lines else 1
                if take == len(data):
                    break
                data = data[take:]
            entries[0][1] = first - ts_first  # the block's minimum is known only now
            yield encode_block(entries, records, ts_first, ts_last, compress)
            entries, size, records = [], 0, 0
            cap = limit()
    if entries:
        entries[0][1] = first - ts_first  # the block's minimum is known only now
        yield encode_block(entries, records, ts_first, ts_last, compress)


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------

#: Docker's local defaults: 20 MiB (binary, although user values are decimal), 5 files, on.
DEFAULT_MAX_SIZE = 20 * 1024 * 1024
DEFAULT_MAX_FILE = 5
DEFAULT_COMPRESS = True


@dataclass(slots=True, frozen=True)
class LocalConfig:
    """The parsed ``local`` options."""

    max_size: int = DEFAULT_MAX_SIZE
    max_file: int = DEFAULT_MAX_FILE
    compress: bool = DEFAULT_COMPRESS

    @classmethod
    def from_opts(cls, opts: Mapping[str, str]) -> "LocalConfig":
        """Parse in Docker's order (max-size, max-file, compress, then the cross checks of
        ``validateConfig``), with its texts. Keys other than the three are ignored here."""
        max_size, max_file, compress = DEFAULT_MAX_SIZE, DEFAULT_MAX_FILE, DEFAULT_COMPRESS
        if "max-size" in opts:
            value = opts["max-size"]
            try:
                max_size = parse_human_size(value)
            except LogOptError as err:
                raise LogOptError(f"invalid value for max-size: {value}: {err}") from None
        if "max-file" in opts:
            value = opts["max-file"]
            try:
                max_file = parse_int(value)
            except LogOptError as err:
                raise LogOptError(f"invalid value for max-file: {value}: {err}") from None
        if "compress" in opts:
            try:
                compress = parse_bool(opts["compress"])
            except LogOptError as err:
                raise LogOptError(f"error reading compress log option: {err}") from None
        if max_file < 0:
            raise LogOptError("max file count cannot be less than 0")
        # Docker's wording says "is 1" also for max-file=0. The check is kept although our
        # compression is per block and would work with one file: configs must mean the same.
        if compress and max_file <= 1:
            raise LogOptError("compression cannot be enabled when max file count is 1")
        return cls(max_size, max_file, compress)


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------

class LocalDriver:
    """Writes a container's log as lz4-compressed msgpack blocks under ``local-logs/``.

    Every ``write`` leaves only whole blocks in the file (nothing is buffered here), so a
    reader sees a batch as soon as ``write`` returns and a crash tears at most one block.
    """

    name: ClassVar[str] = "local"
    kind: ClassVar[str] = "storage"
    OPTIONS: ClassVar[frozenset[str]] = frozenset({"max-size", "max-file", "compress"})

    @staticmethod
    def validate(opts: Mapping[str, str], info: LogInfo | None = None) -> None:
        """Docker's ``ValidateLogOpt`` (note its wording differs from json-file's) followed by
        the value checks Docker runs at start; logpipe runs both at create."""
        for key in opts:
            if key not in LocalDriver.OPTIONS:
                raise LogOptError(f"unknown log opt '{key}' for log driver local")
        try:
            LocalConfig.from_opts(opts)
        except LogOptError as err:
            raise DriverInitError(str(err)) from None

    @classmethod
    def log_path(cls, info: LogInfo) -> str:
        """``<container dir>/local-logs/container.log``, Docker's path."""
        return os.path.join(info.log_dir, "local-logs", "container.log")

    def __init__(self, info: LogInfo, config: LocalConfig | None = None) -> None:
        config = config or LocalConfig.from_opts(info.config)
        path = self.log_path(info)
        try:
            os.mkdir(os.path.dirname(path), 0o700)
            os.chmod(os.path.dirname(path), 0o700)  # mkdir's mode is filtered by the umask
        except FileExistsError:
            pass
        self._max_size = config.max_size
        self._compress = config.compress
        self._ratio = 1.0  # raw bytes per stored byte of the last block: sizes the next one
        self._file = RotatingFile(path, config.max_size, config.max_file, compress=False,
                                  fmt=LocalFormat())

    def _block_limit(self) -> int:
        room = self._file.room()
        if room <= 0:  # the file is full: the next write rotates and starts a fresh file
            room = self._max_size
        return max(MIN_BLOCK_RAW, min(MAX_BLOCK_RAW, int(room * self._ratio)))

    def write(self, batch: Sequence[Chunk]) -> None:
        """Encode ``batch`` and append it, one block per ``RotatingFile.write`` call, so that
        rotation only ever happens between blocks. A failed write (disk full) leaves whole
        blocks only and says how many of the batch's records were stored (``PartlyStored``)."""
        records = 0
        try:
            for block in pack_blocks(batch, self._compress, self._block_limit):
                self._append_block(block)
                head = _HEAD.unpack_from(block)
                self._ratio = head[4] / len(block)
                records += head[5]
        except OSError as err:
            if records:
                raise PartlyStored(err, records) from err
            raise

    def _append_block(self, block: bytes) -> None:
        """One whole block to the file (the spool's writer checks its budget here first)."""
        self._file.write(block)

    def flush(self) -> None:
        """Nothing to do: ``write`` hands whole blocks to the file before it returns."""

    def close(self) -> None:
        self._file.close()

    @classmethod
    def read(cls, info: LogInfo, config: ReadConfig) -> Iterator[Chunk]:
        """The container's log as chunks, through the generic reader (rotated set, tail,
        since, until, follow)."""
        return reading.read_logs(cls.log_path(info), LocalFormat(), config)


# ---------------------------------------------------------------------------------------------
# Read side
# ---------------------------------------------------------------------------------------------

def _decode_payload(payload: memoryview, header: BlockHeader) -> list[Chunk]:
    raw = (_decompress(payload, uncompressed_size=header.raw_len)
           if header.flags & FLAG_LZ4 else payload)
    chunks = []
    append = chunks.append
    ts = header.ts_first
    for entry in msgpack.unpackb(raw, use_list=False):
        ts += entry[1]
        if len(entry) == 3:
            append(Chunk(SOURCES[entry[0]], ts, entry[2]))
        else:
            p = entry[3]
            append(Chunk(SOURCES[entry[0]], ts, entry[2],
                         None if p is None else PartialMeta(p[0], p[1], p[2]),
                         entry[4] if len(entry) > 4 else None))
    return chunks


def _next_header(buf: bytes, start: int) -> tuple[int, bool]:
    """Resynchronise: the first offset ≥ ``start`` where a valid header begins.

    Returns ``(offset, True)`` for a header with the right magic and checksum whose block, if
    complete in ``buf``, has a matching trailer or a payload that checks. Otherwise
    ``(offset, False)``: nothing before ``offset`` can start a block, and one may still begin
    at ``offset`` once more bytes are known (a magic cut off by the end of ``buf``), or
    ``offset == len(buf)``.
    """
    n = len(buf)
    q = buf.find(MAGIC, start)
    while q != -1:
        if q + HEADER_SIZE > n:
            return q, False
        header = parse_header(buf, q)
        if header is not None:
            end = q + header.total
            if end > n or _trailer_ok(buf, end, header.total) or \
                    zlib.crc32(buf[q + HEADER_SIZE:end - TRAILER_SIZE]) == header.payload_crc:
                return q, True
        q = buf.find(MAGIC, q + 1)
    for k in (3, 2, 1):
        if n - k >= start and buf.endswith(MAGIC[:k]):
            return n - k, False
    return n, False


def _describe(header: BlockHeader) -> str:
    return f"{header.records} records with timestamps {header.ts_first}..{header.ts_last}"


class _FileBlocks:
    """Block boundaries of one open file, found from headers and trailers only."""

    def __init__(self, f: BinaryIO | int, size: int) -> None:
        self.fd = f if isinstance(f, int) else f.fileno()
        self.size = size
        self._wpos = 0
        self._wbuf = b""

    def read(self, pos: int, length: int) -> bytes:
        """``length`` bytes at ``pos`` (fewer at the end), served from a read-ahead window."""
        off = pos - self._wpos
        if 0 <= off and off + length <= len(self._wbuf):
            return self._wbuf[off:off + length]
        want = min(max(length, _HOP_WINDOW), self.size - pos)
        self._wpos = pos
        self._wbuf = os.pread(self.fd, want, pos) if want > 0 else b""
        return self._wbuf[:length]

    def header(self, pos: int) -> BlockHeader | None:
        data = self.read(pos, HEADER_SIZE)
        return parse_header(data) if len(data) == HEADER_SIZE else None

    def block_at(self, pos: int) -> tuple[BlockHeader, int] | None:
        """A block at ``pos`` that ``decode`` reads whole, and where to look for the
        next one: right header checksum, and a trailer naming the same length (the next block
        follows it) or else a payload that checks (a damaged trailer loses nothing; the next
        block is searched for from the end of the payload, as ``decode`` does)."""
        header = self.header(pos)
        if header is None or pos + header.total > self.size:
            return None
        # Read from the trailer on: the next block's header comes with it in the same window.
        trailer = self.read(pos + header.total - TRAILER_SIZE, TRAILER_SIZE)
        if _trailer_ok(trailer, TRAILER_SIZE, header.total):
            return header, pos + header.total
        if self.payload_ok(pos, header):
            return header, pos + HEADER_SIZE + header.payload_len
        return None

    def block_ending_at(self, end: int) -> tuple[int, BlockHeader] | None:
        if end < OVERHEAD or end > self.size:
            return None
        total, magic = _TRAILER.unpack(os.pread(self.fd, TRAILER_SIZE, end - TRAILER_SIZE))
        if magic != TRAILER_MAGIC or not OVERHEAD <= total <= end:
            return None
        data = os.pread(self.fd, HEADER_SIZE, end - total)
        header = parse_header(data) if len(data) == HEADER_SIZE else None
        if header is None or header.total != total:
            return None
        return end - total, header

    def find_block(self, start: int, stop: int) -> int | None:
        """The first offset in ``[start, stop)`` where a whole block begins (after damage)."""
        pos = start
        while pos < stop and pos + OVERHEAD <= self.size:
            data = os.pread(self.fd, min(_SCAN_SIZE, stop + len(MAGIC) - 1 - pos), pos)
            q = data.find(MAGIC)
            while q != -1 and pos + q < stop:
                if self.block_at(pos + q) is not None:
                    return pos + q
                q = data.find(MAGIC, q + 1)
            if len(data) < _SCAN_SIZE:
                return None
            pos += len(data) - (len(MAGIC) - 1)
        return None

    def forward(self, start: int, stop: int) -> Iterator[tuple[int, BlockHeader]]:
        """Whole blocks starting in ``[start, stop)``, first to last, hopping header to
        header. A block counts as whole by the same rules ``decode`` applies to the bytes up
        to ``size``."""
        pos = start
        while pos < stop:
            block = self.block_at(pos)
            if block is None:
                found = self.find_block(pos + 1, stop)
                if found is None:
                    return
                pos = found
                continue
            yield pos, block[0]
            pos = block[1]

    def backward(self, end: int) -> Iterator[tuple[int, BlockHeader]]:
        """Whole blocks ending at or before ``end`` (a block boundary), last to first, walking
        trailers; where the chain breaks (damage), the part before is scanned forward."""
        while end > 0:
            found = self.block_ending_at(end)
            if found is None:
                yield from reversed(list(self.forward(0, end)))
                return
            yield found
            end = found[0]

    def last_block(self) -> tuple[int, BlockHeader] | None:
        """The last whole block, looking backwards past a torn or damaged tail."""
        last = self.block_ending_at(self.size)
        if last is not None:
            return last
        hi = self.size
        while hi > 0 and last is None:
            lo = max(0, hi - _SCAN_SIZE)
            data = os.pread(self.fd, hi - lo, lo)
            q = data.rfind(TRAILER_MAGIC)
            while q != -1 and last is None:
                last = self.block_ending_at(lo + q + len(TRAILER_MAGIC))
                q = data.rfind(TRAILER_MAGIC, 0, q)
            hi = lo + len(TRAILER_MAGIC) - 1 if lo else 0  # a magic straddling ``lo``: next round
        # Blocks whose own trailer is damaged may still follow (``block_at`` accepts them).
        for last in self.forward(0 if last is None else last[0] + last[1].total, self.size):
            pass
        return last

    def payload_ok(self, pos: int, header: BlockHeader) -> bool:
        payload = os.pread(self.fd, header.payload_len, pos + HEADER_SIZE)
        return zlib.crc32(payload) == header.payload_crc


def whole_blocks(fd: int, start: int, stop: int) -> Iterator[tuple[int, BlockHeader]]:
    """``(offset, header)`` of every whole block starting in ``[start, stop)`` of the file
    ``fd`` (damage skipped as ``decode`` skips it): the spool's shipper and its drop count
    walk blocks without decoding them."""
    return _FileBlocks(fd, stop).forward(start, stop)


def decode_block(fd: int, offset: int, header: BlockHeader, warn: Warn) -> list[Chunk]:
    """The records of the whole block at ``offset`` (as found by ``whole_blocks``)."""
    data = os.pread(fd, header.total, offset)
    return LocalFormat().decode(data, True, warn, offset)[0]


class LocalFormat:
    """``logpipe.reading.RecordFormat`` for the block format.

    Offsets it returns are block boundaries; the generic reader trims the records before the
    ones asked for. Finding an offset reads headers and trailers only, never decompresses.
    """

    def decode(self, buf: bytes, final: bool, warn: Warn,
               base: int = 0) -> tuple[list[Chunk], int]:
        """Decode the whole blocks at the start of ``buf`` (see ``RecordFormat.decode``).

        Damaged blocks and garbage between blocks are skipped and reported through ``warn``
        (offsets in the messages are ``base`` + the position in ``buf``). An incomplete last
        block is left unused, also when ``final``: the caller reports the tear.
        """
        view = memoryview(buf)
        n = len(buf)
        out: list[Chunk] = []
        pos = 0
        while pos < n:
            if n - pos < HEADER_SIZE and MAGIC.startswith(buf[pos:pos + len(MAGIC)]):
                break  # a header cut short: more bytes may come, or the caller reports a tear
            header = parse_header(buf, pos) if n - pos >= HEADER_SIZE else None
            if header is None:
                nxt, found = _next_header(buf, pos + 1)
                if not found:
                    # Nothing readable follows yet. At the end of the file the rest is the
                    # torn tail; otherwise the reader skips a long run (``skip_damage``) and
                    # reports it once, where it starts and how long it is.
                    break
                warn(f"skipped {nxt - pos} unreadable bytes at offset {base + pos}")
                pos = nxt
                continue
            end = pos + header.total
            if end > n:
                if not final:
                    break
                # A torn block that is not the last one: a writer crashed mid-block, and a new
                # writer appended after it. Go on with the first whole block after its start.
                nxt, found = _next_header(buf, pos + 1)
                if not found:
                    break
                warn(f"skipped torn block at offset {base + pos}: {_describe(header)} lost")
                pos = nxt
                continue
            payload = view[pos + HEADER_SIZE:end - TRAILER_SIZE]
            if zlib.crc32(payload) == header.payload_crc:
                problem = None
                if header.flags & ~KNOWN_FLAGS:
                    problem = f"unknown flags {header.flags:#06x}"
                else:
                    try:
                        out.extend(_decode_payload(payload, header))
                    except _DECODE_ERRORS as err:
                        problem = f"undecodable payload ({err})"
                if problem is not None:
                    warn(f"skipped block at offset {base + pos}: {problem}: "
                         f"{_describe(header)} lost")
                elif not _trailer_ok(buf, end, header.total):
                    # The records are sound. The trailer may be damaged, or cut short by a
                    # crash with a later writer's block after it: look for the next block
                    # right after the payload.
                    warn(f"block at offset {base + pos}: damaged trailer (records kept)")
                    pos = end - TRAILER_SIZE
                    continue
                pos = end
                continue
            if _trailer_ok(buf, end, header.total):
                nxt = end
            else:
                # The length in the header may be that of a torn block overwritten by a later
                # writer: resume at the first whole block after its start if that is sooner.
                # (Not after its header: a torn header can pass its crc when the byte cut
                # off equals the first byte of the next block's magic.)
                nxt, found = _next_header(buf, pos + 1)
                if nxt >= end or (not found and final):
                    nxt = end
                elif not found:
                    break  # a header straddles the end of ``buf``: decide with more bytes
            warn(f"skipped damaged block at offset {base + pos} (payload checksum mismatch): "
                 f"{_describe(header)} lost")
            pos = nxt
        return out, pos

    def skip_damage(self, buf: bytes) -> int:
        """Up to the next place a block may start, unless ``buf`` starts with the header of
        a block that is still arriving (no block is longer than ``_MAX_BLOCK_TOTAL``)."""
        header = parse_header(buf, 0) if len(buf) >= HEADER_SIZE else None
        if header is not None and header.total <= _MAX_BLOCK_TOTAL:
            return 0
        return _next_header(buf, 1)[0]

    def tail_offset(self, f: BinaryIO, size: int, n: int) -> tuple[int, int]:
        """Walk trailers back from the end, summing the record counts of headers, until ``n``
        records are covered. Blocks whose payload checksum fails count zero: ``decode`` will
        skip them, and the reader trims by the count returned here."""
        blocks = _FileBlocks(f, size)
        last = blocks.last_block()
        if last is None:
            return 0, 0
        offset, found = last[0] + last[1].total, 0
        if n <= 0:
            return offset, found
        for start, header in blocks.backward(offset):
            if blocks.payload_ok(start, header):
                found += header.records
            offset = start
            if found >= n:
                break
        return offset, found

    def since_offset(self, f: BinaryIO, size: int, since: int) -> int:
        """Hop header to header to the first block whose last timestamp is ≥ ``since``; with
        none, the end of the last whole block (a follower resumes there)."""
        blocks = _FileBlocks(f, size)
        last = blocks.last_block()
        if last is None:
            return 0
        end = last[0] + last[1].total
        if last[1].ts_last < since:
            return end
        offset = 0
        for start, header in blocks.forward(0, end):
            if header.ts_last >= since:
                return start
            offset = start + header.total
        return offset

    def last_ts(self, f: BinaryIO, size: int) -> int | None:
        """The last timestamp in the header of the last whole block."""
        last = _FileBlocks(f, size).last_block()
        return None if last is None else last[1].ts_last
