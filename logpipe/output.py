"""How ``logs`` renders records: the ``-t`` and ``--details`` prefixes, in Docker's format.

``-t`` prints RFC 3339 with exactly nine fraction digits; ``--details`` prints the attrs as
``k=v`` pairs, query-escaped, sorted, comma-joined, and a lone space when there are none.
Both prefixes repeat on every line of a chunk.
"""

from __future__ import annotations

from typing import Mapping

from .message import Chunk
from .timespec import format_fixed


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
