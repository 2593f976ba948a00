"""Strings as Go's ``encoding/json`` writes them: what Docker's JSON (json-file ``attrs``,
GELF messages) looks like byte for byte. Shared by the drivers that reproduce it.
"""

from __future__ import annotations


def ascii_escapes(tab: bytes = b"\\t") -> dict[int, bytes]:
    """How Go's ``encoding/json`` (1.19, as Docker 20.10.24 is built) escapes ASCII bytes:
    ``\\r`` short, other controls ``\\u00XX`` (``\\b`` and ``\\f`` too), ``<>&``
    HTML-escaped, DEL raw. ``tab`` is Go's ``\\t`` unless a caller reproduces an encoder
    that differs there (Docker's json-file writes ``\\u0009``). ``\\n`` is left out: it
    separates the records of a batch while they are escaped."""
    table = {c: b"\\u%04x" % c for c in range(0x20) if c != 0x0A}
    table[0x09] = tab
    table[0x0D] = b"\\r"
    table[ord('"')] = b'\\"'
    table[ord("\\")] = b"\\\\"
    for c in b"<>&":
        table[c] = b"\\u%04x" % c
    return table


_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
               "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_json_string(text: str) -> bytes:
    """``text`` as Go's encoding/json writes a string (HTML-safe, TAB as ``\\t``).

    Lone surrogates (undecodable bytes kept by ``surrogateescape``) become ``\\ufffd`` each,
    as Go does for invalid UTF-8.
    """
    out = []
    for ch in text:
        esc = _GO_ESCAPES.get(ch)
        if esc is None:
            o = ord(ch)
            if o < 0x20:
                esc = "\\u%04x" % o
            elif 0xD800 <= o <= 0xDFFF:
                esc = "\\ufffd"
            else:
                esc = ch
        out.append(esc)
    return ('"' + "".join(out) + '"').encode()
