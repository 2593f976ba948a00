"""One block of the ``local`` format, in both directions: the byte layout that
``docs/local-format.md`` describes (keep the two in step), ``encode_block`` and
``parse_header``.

Shared by the writer and the reader, as the layout is; it must not know about files,
batches or records beyond one block's entries.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

import lz4.block
import msgpack

MAGIC = b"LPB1"
#: A distinct trailer magic: a forward scan for headers never stops on a trailer, and a
#: backward scan for trailers never stops on a header.
TRAILER_MAGIC = b"LPE1"
#: Payload flag: the payload is an lz4 block (no size prefix; the header holds ``raw_len``).
FLAG_LZ4 = 0x0001
KNOWN_FLAGS = FLAG_LZ4

#: magic, flags, reserved, payload_len, raw_len, records, ts_first, ts_last, payload_crc —
#: the part of the header that the header crc32 covers.
HEAD = struct.Struct("<4sHHIIIqqI")
HEADER = struct.Struct("<4sHHIIIqqII")
TRAILER = struct.Struct("<I4s")
HEADER_SIZE = HEADER.size  # 44
TRAILER_SIZE = TRAILER.size  # 8
OVERHEAD = HEADER_SIZE + TRAILER_SIZE

#: Raw (uncompressed msgpack) size at which a block is cut. lz4's window is 64 KiB, so larger
#: blocks gain little ratio; 1 MiB keeps the decode cost of ``--tail 1`` around a millisecond.
MAX_BLOCK_RAW = 1 << 20

# A module-level name so tests can count calls (the reader has ``_decompress``).
_compress = lz4.block.compress


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
    magic, flags, _, plen, rlen, records, ts0, ts1, pcrc, hcrc = HEADER.unpack_from(buf, pos)
    if magic != MAGIC or zlib.crc32(buf[pos:pos + HEAD.size]) != hcrc:
        return None
    return BlockHeader(flags, plen, rlen, records, ts0, ts1, pcrc)


def trailer_ok(buf: bytes | memoryview, end: int, total: int) -> bool:
    """Whether the block of ``total`` bytes ending at ``buf[end]`` has its trailer."""
    return TRAILER.unpack_from(buf, end - TRAILER_SIZE) == (total, TRAILER_MAGIC)


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
    head = HEAD.pack(MAGIC, flags, 0, len(payload), len(raw), records, ts_first, ts_last,
                     zlib.crc32(payload))
    return b"".join((head, zlib.crc32(head).to_bytes(4, "little"), payload,
                     TRAILER.pack(OVERHEAD + len(payload), TRAILER_MAGIC)))
