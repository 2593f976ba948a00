"""The ``local`` format, read: ``LocalFormat``, the ``RecordFormat`` plug-in that the generic
reader (``logpipe/reading.py``) and rotation use, and walking whole blocks without decoding
them (the spool's shipper and its drop count).

Owns decoding blocks, skipping and reporting damaged or torn ones, and finding starting
offsets from headers and trailers alone, never decompressing to seek. It must not walk a
rotated set or follow a file (``logpipe.reading`` does). The writer never imports it.
"""

from __future__ import annotations

import os
import zlib
from typing import BinaryIO, Iterator

import lz4.block
import msgpack

from logpipe.message import SOURCES, Chunk, PartialMeta
from logpipe.reading import Warn

from .blocks import (FLAG_LZ4, HEADER_SIZE, KNOWN_FLAGS, MAGIC, MAX_BLOCK_RAW, OVERHEAD,
                     TRAILER, TRAILER_MAGIC, TRAILER_SIZE, BlockHeader, parse_header, trailer_ok)

#: More than any block holds (a block is cut at ``MAX_BLOCK_RAW``, or holds one line of at
#: most 16 KiB beyond it): a header announcing more is damage.
_MAX_BLOCK_TOTAL = 4 * MAX_BLOCK_RAW

# A module-level name so tests can count calls (block skipping must not decompress).
_decompress = lz4.block.decompress

#: What a damaged payload may raise while being decoded, beyond a checksum mismatch.
_DECODE_ERRORS = (ValueError, TypeError, IndexError, KeyError, lz4.block.LZ4BlockError,
                  msgpack.UnpackException)

#: Bytes read per step when scanning a file for a magic after damage.
_SCAN_SIZE = 64 << 10
#: Bytes read per step when hopping from header to header: small blocks (slow loggers write
#: one per batch) are then read many at a time, large ones cost one read each.
_HOP_WINDOW = 8 << 10


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
            if end > n or trailer_ok(buf, end, header.total) or \
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
        if trailer_ok(trailer, TRAILER_SIZE, header.total):
            return header, pos + header.total
        if self.payload_ok(pos, header):
            return header, pos + HEADER_SIZE + header.payload_len
        return None

    def block_ending_at(self, end: int) -> tuple[int, BlockHeader] | None:
        if end < OVERHEAD or end > self.size:
            return None
        total, magic = TRAILER.unpack(os.pread(self.fd, TRAILER_SIZE, end - TRAILER_SIZE))
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
                elif not trailer_ok(buf, end, header.total):
                    # The records are sound. The trailer may be damaged, or cut short by a
                    # crash with a later writer's block after it: look for the next block
                    # right after the payload.
                    warn(f"block at offset {base + pos}: damaged trailer (records kept)")
                    pos = end - TRAILER_SIZE
                    continue
                pos = end
                continue
            if trailer_ok(buf, end, header.total):
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
