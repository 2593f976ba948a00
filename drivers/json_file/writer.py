"""The json-file driver: options, the container's log file, and writing batches to it.

Owns Docker's option checks and texts for json-file (``max-size``, ``max-file``,
``compress``, ``tag`` and the extras), ``<id>-json.log`` in a 0710 directory, and the write
path: encode (``encode.py``), append through ``drivers/rotation.py``, and say how much of a
batch a full disk let through. Reading is ``reader.py``'s, imported only when a read or a
rotation needs it: the shim's memory is the per-container cost, and the shim only writes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

from logpipe.driver import LogInfo
from logpipe.errors import DriverInitError, LogOptError, PartlyStored
from logpipe.message import Chunk
from logpipe.options import check_known_keys, parse_bool, parse_int
from logpipe.units import parse_human_size
from logpipe.reading import ReadConfig, RecordFormat, read_logs

from .encode import encode_attrs, encode_blocks, record_end

if TYPE_CHECKING:
    from logpipe.template import Template


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
                                  fmt=_reader_format, boundary=record_end)

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
        return read_logs(cls.log_path(info), _reader_format(), config)


def _reader_format() -> RecordFormat:
    """The decoder, for reads and for the rotations that need one (a follower to count
    records for, ``compress``'s last time): imported here, on use, never by the shim that only
    writes."""
    from .reader import JSONFileFormat

    return JSONFileFormat()
