"""The ``local`` driver: Docker's options and error texts, and the write path.

Owns the ``local`` option set (validated with Docker 20.10's wording), the container's
``local-logs/container.log``, and cutting batches into blocks (``blocks.py`` lays out each
one) sized to the room left before rotation. It must not rotate files (``drivers.rotation``
does) or do per-line Python work: a block costs one msgpack call, one lz4 call and two crc32
calls whatever its line count. Reading is ``reader.py``'s, imported only when a read or a
rotation needs it: the shim only writes.

Unlike Docker's ``local`` driver, ``compress`` does not gzip rotated files: it compresses each
block with lz4 as it is written, so every file, current or rotated, stays seekable by block.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterator, Mapping, Sequence

from drivers.rotation import RotatingFile
from logpipe import reading
from logpipe.driver import LogInfo
from logpipe.errors import DriverInitError, LogOptError, PartlyStored
from logpipe.message import STDERR, STDOUT, Chunk, count_lines
from logpipe.options import parse_bool, parse_int
from logpipe.units import parse_human_size
from logpipe.reading import ReadConfig, RecordFormat

from .blocks import HEAD, MAX_BLOCK_RAW, encode_block

#: Smallest cut the writer makes to fit the room left before rotation: a file exceeds
#: ``max-size`` by at most one such block (about 1 KiB once compressed).
MIN_BLOCK_RAW = 4 << 10
#: Approximate msgpack framing of one entry (array header, source, ts, bin header).
_ENTRY_OVERHEAD = 16

_SOURCE_CODE = {STDOUT: 0, STDERR: 1}


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
            records += count_lines(data)
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
                records += count_lines(piece) if whole_lines else 1
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
                                  fmt=_reader_format)

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
                head = HEAD.unpack_from(block)
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
        return reading.read_logs(cls.log_path(info), _reader_format(), config)


def _reader_format() -> RecordFormat:
    """The decoder, for reads and for the rotations that need one (a follower to count
    records for): imported on use, never by a shim that only writes."""
    from .reader import LocalFormat

    return LocalFormat()
