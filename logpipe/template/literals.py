"""Go string and number literals, read and written as Go's ``strconv`` does.

Reading (``unquote``, ``parse_int``, ...) turns a template's constants into values; writing
(``go_quote``) gives error texts and ``printf %q`` Go's exact spelling. Go strings are bytes,
Python's are code points: ``utf8_len`` and ``from_go_bytes`` bridge the two. Pure functions
of their arguments; nothing here knows about templates.
"""

from __future__ import annotations

import re

_QUOTE_ESCAPES = {
    "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
    "\v": "\\v", "\\": "\\\\",
}


def go_quote(s: str, quote: str = '"') -> str:
    """``strconv.Quote`` (or ``QuoteRune`` with ``quote="'"``)."""
    out = [quote]
    for c in s:
        if c == quote:
            out.append("\\" + c)
        elif c in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[c])
        elif c.isprintable():  # Python's definition equals Go's strconv.IsPrint
            out.append(c)
        else:
            o = ord(c)
            if o < 0x80:
                out.append(f"\\x{o:02x}")
            elif o < 0x10000:
                out.append(f"\\u{o:04x}")
            else:
                out.append(f"\\U{o:08x}")
    out.append(quote)
    return "".join(out)


def can_backquote(s: str) -> bool:
    """strconv.CanBackquote: any rune but controls (tab allowed), backquote, DEL and BOM."""
    return not any((c < " " and c != "\t") or c in "`\x7f\ufeff" for c in s)


def utf8_len(s: str) -> int:
    """Go's ``len`` of a string: its length in UTF-8 bytes (error columns count bytes)."""
    return len(s.encode("utf-8", "surrogatepass"))


def from_go_bytes(b: bytes) -> str:
    """A Go string that may hold invalid UTF-8 (a cut rune, a \\x escape), as text.

    Go's decoders read each invalid byte as U+FFFD (so does its JSON encoder, which is how
    such a tag reaches json-file), where Python's "replace" would merge a cut sequence.
    """
    return re.sub("[\udc80-\udcff]", "\ufffd", b.decode("utf-8", "surrogateescape"))


# -- strconv.Unquote / UnquoteChar ----------------------------------------------------------

_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}


def unquote_char(s: str, i: int, quote: str) -> tuple[int, bool, int]:
    """One (possibly escaped) character of a Go literal: (value, is_byte, next index).

    Raises ``ValueError`` (or ``IndexError``) where Go's ``UnquoteChar`` fails.
    """
    c = s[i]
    if c == quote and quote in "'\"":
        raise ValueError
    if c != "\\":
        return ord(c), False, i + 1
    if i + 1 >= len(s):
        raise ValueError
    c = s[i + 1]
    i += 2
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], False, i
    if c in "'\"":
        if c != quote:
            raise ValueError
        return ord(c), False, i
    if c in "xuU":
        return _hex_escape(s, i, c)
    if "0" <= c <= "7":
        digits = s[i - 1:i + 2]
        if len(digits) != 3 or any(d not in "01234567" for d in digits):
            raise ValueError
        v = int(digits, 8)
        if v > 255:
            raise ValueError
        return v, True, i + 2
    raise ValueError


def _hex_escape(s: str, i: int, c: str) -> tuple[int, bool, int]:
    """``\\xHH`` (a byte), ``\\uHHHH`` or ``\\UHHHHHHHH`` (a rune) starting at ``s[i]``."""
    n = {"x": 2, "u": 4, "U": 8}[c]
    digits = s[i:i + n]
    if len(digits) != n or any(d not in "0123456789abcdefABCDEF" for d in digits):
        raise ValueError
    v = int(digits, 16)
    if c == "x":
        return v, True, i + n
    if v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
        raise ValueError
    return v, False, i + n


def unquote(q: str) -> str:
    """``strconv.Unquote`` of a lexed string token. Raw strings lose ``\\r`` (Go's rule)."""
    if q[0] == "`":
        return q[1:-1].replace("\r", "")
    body = q[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        v, is_byte, i = unquote_char(body, i, '"')
        out += bytes([v]) if is_byte else chr(v).encode("utf-8")
    return from_go_bytes(bytes(out))


# -- strconv.ParseInt / ParseUint / ParseFloat, base 0 ---------------------------------------

def _underscore_ok(s: str) -> bool:
    """Go's rule for ``_`` in a number: only between digits, or after a base prefix."""
    saw = "^"
    i = 0
    if s[:1] in ("+", "-"):
        s = s[1:]
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        i = 2
        saw = "0"
        hexa = s[1].lower() == "x"
    for c in s[i:]:
        if "0" <= c <= "9" or hexa and "a" <= c.lower() <= "f":
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
    return saw != "_"


def parse_uint(s0: str) -> int | None:
    """``strconv.ParseUint(s, 0, 64)``, or None where Go returns an error."""
    if not s0:
        return None
    s, base = s0, 10
    if s[0] == "0":
        prefix = s[1:2].lower()
        if len(s) >= 3 and prefix in ("b", "o", "x"):
            base, s = {"b": 2, "o": 8, "x": 16}[prefix], s[2:]
        else:
            base, s = 8, s[1:]
    n, underscores = 0, False
    for c in s:
        if c == "_":
            underscores = True
            continue
        d = int(c, 36) if c.isascii() and c.isalnum() else 99
        if d >= base:
            return None
        n = n * base + d
    if underscores and not _underscore_ok(s0):
        return None
    return n if n < 1 << 64 else None


def parse_int(s: str) -> int | None:
    """``strconv.ParseInt(s, 0, 64)``, or None where Go returns an error."""
    neg = s[:1] == "-"
    if s[:1] in ("+", "-"):
        s = s[1:]
    u = parse_uint(s)
    if u is None:
        return None
    v = -u if neg else u
    return v if -(1 << 63) <= v < 1 << 63 else None


def parse_float(s: str) -> float | None:
    """``strconv.ParseFloat(s, 64)``, or None where Go returns an error (overflow included)."""
    body = s.lstrip("+-")
    try:
        if body[:2].lower() == "0x":
            if "p" not in body.lower():
                return None
            if "_" in body and not _underscore_ok(body):
                return None
            f = float.fromhex(body.replace("_", ""))
            f = -f if s.startswith("-") else f
        else:
            f = float(s)
    except ValueError:
        return None
    return None if f in (float("inf"), float("-inf")) else f
