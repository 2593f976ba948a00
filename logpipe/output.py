"""How ``logs`` renders records: the ``-t`` and ``--details`` prefixes, in Docker's format.

``-t`` prints RFC 3339 with exactly nine fraction digits; ``--details`` prints the attrs as
``k=v`` pairs, query-escaped, sorted, comma-joined, and a lone space when there are none.
Both prefixes repeat on every line of a chunk. ``write_streams`` is the one writer of
``logs`` output, whether the records come from a log directory or from the daemon.
"""

from __future__ import annotations

from .timespec import format_fixed

TYPE_CHECKING = False  # ``logpipe logs`` imports this at every start: typing is for the checker
if TYPE_CHECKING:
    from typing import BinaryIO, Iterable, Mapping

    from .message import Chunk


def details_prefix(attrs: Mapping[str, str] | None) -> bytes:
    """Docker's ``--details`` prefix; ``url.QueryEscape`` matches ``quote_plus`` with no safe chars."""
    if not attrs:
        return b" "
    from urllib.parse import quote_plus  # only --details needs it

    pairs = ",".join(f"{quote_plus(k, safe='')}={quote_plus(v, safe='')}"
                     for k, v in sorted(attrs.items()))
    return pairs.encode() + b" "


def render(chunk: Chunk, timestamps: bool, details: bool) -> bytes:
    """The bytes ``logs`` prints for a chunk: each record with its prefixes."""
    if not timestamps and not details:
        return chunk.data
    prefix = b""
    if timestamps:
        prefix += format_fixed(chunk.ts).encode() + b" "
    if details:
        prefix += details_prefix(chunk.attrs)
    data = chunk.data
    if chunk.partial is not None or data.count(b"\n") <= 1:
        return prefix + data
    return prefix + data[:-1].replace(b"\n", b"\n" + prefix) + b"\n"


#: Output is written in runs of about this much (a pipe's buffer): a reader that goes away
#: early (``logs | head``) is noticed while there is more to write, as the docker CLI notices.
WRITE_SIZE = 1 << 16


def write_streams(records: Iterable[tuple[int, bytes]], stdout: BinaryIO, stderr: BinaryIO,
                  follow: bool) -> None:
    """``(stream, bytes)`` records in order: stream 1 to ``stdout``, the rest (2, and 3 for
    the daemon's in-band errors) to ``stderr``. Few large writes: one per change of stream or
    per ``WRITE_SIZE``; when following, each record as it comes (a follower waits on it)."""
    pending: list[bytes] = []
    size, current = 0, 1
    for stream, data in records:
        if pending and (stream != current or size >= WRITE_SIZE):
            out = stdout if current == 1 else stderr
            out.write(b"".join(pending))
            out.flush()
            pending, size = [], 0
        current = stream
        pending.append(data)
        size += len(data)
        if follow:
            out = stdout if current == 1 else stderr
            out.write(b"".join(pending))
            out.flush()
            pending, size = [], 0
    if pending:
        out = stdout if current == 1 else stderr
        out.write(b"".join(pending))
        out.flush()
