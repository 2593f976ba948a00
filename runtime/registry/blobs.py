"""Receiving one layer blob: its digest checked while it streams, decompressed (gzip, zstd
or none, told by its first bytes as dockerd does) into the uncompressed tar whose sha256 is
the layer's diff id. CPU-light per chunk, so it runs on the daemon's event loop."""

from __future__ import annotations

import hashlib
import zlib
from typing import IO, Any

from .client import RegistryError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class LayerSink:
    """Feed compressed bytes; ``out`` gets the tar; ``digest``/``diff_id`` at the end."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.blob = hashlib.sha256()
        self.tar = hashlib.sha256()
        self.inflate: Any = None
        self.kind = ""  # decided on the first bytes
        self.head = b""
        self.damage = ""  # why the bytes stopped inflating; the digest check speaks first

    def feed(self, chunk: bytes) -> None:
        self.blob.update(chunk)
        if not self.kind:
            self.head += chunk
            if len(self.head) < 4:
                return
            chunk, self.head = self.head, b""
            self._start(chunk)
        self._write(chunk)

    def _start(self, first: bytes) -> None:
        if first.startswith(GZIP_MAGIC):
            self.kind, self.inflate = "gzip", zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif first.startswith(ZSTD_MAGIC):
            import zstandard  # only zstd layers need it

            self.kind = "zstd"
            self.inflate = zstandard.ZstdDecompressor().decompressobj()
        else:
            self.kind = "tar"

    def _write(self, chunk: bytes) -> None:
        if self.damage:
            return
        try:
            if self.kind == "gzip":
                data = self.inflate.decompress(chunk)
                while self.inflate.unused_data:  # concatenated gzip members (pigz)
                    rest = self.inflate.unused_data
                    self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    data += self.inflate.decompress(rest)
            elif self.kind == "zstd":
                data = self.inflate.decompress(chunk)
            else:
                data = chunk
        except Exception as err:  # zlib.error, zstd.ZstdError: the blob is damaged
            self.damage = f"damaged compressed layer: {err}"
            return
        self.tar.update(data)
        self.out.write(data)

    def close(self) -> None:
        if not self.kind and self.head:
            chunk, self.head = self.head, b""
            self._start(chunk)
            self._write(chunk)
        if self.damage:
            return
        if self.kind == "gzip":
            data = self.inflate.flush()
            self.tar.update(data)
            self.out.write(data)
        if self.kind in ("gzip", "zstd") and not self.inflate.eof:
            self.damage = "damaged compressed layer: unexpected EOF"

    def check(self) -> None:
        """After the digest matched: a blob that is what the registry promised but does not
        inflate is refused too."""
        if self.damage:
            raise RegistryError(self.damage)

    @property
    def digest(self) -> str:
        return "sha256:" + self.blob.hexdigest()

    @property
    def diff_id(self) -> str:
        return "sha256:" + self.tar.hexdigest()
