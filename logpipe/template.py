"""The ``tag`` option's template language: a safe port of Go's ``text/template``.

Docker renders ``--log-opt tag=...`` with Go's ``text/template`` executed against
``*logger.Info`` (moby ``daemon/logger/loginfo.go``; functions from
``daemon/logger/templates``). This module owns a port of the Go 1.19 lexer, parser and
executor (Docker 20.10.24 is built with Go 1.19), so that output and error texts match
Docker's, checked against Go 1.19.8 itself. Templates are compiled once and checked then:
what Go can only find when it executes a node, but which depends on types alone (a
misspelt field, a wrong argument), is reported at compile time, with Go's text.

It must never run Python code named by a template: there is no ``eval``, and no attribute
of a Python object is looked up by a name taken from the template. Every field and method a
template can reach is listed in ``_INFO_FIELDS``, ``_INFO_METHODS`` and ``_TIME_METHODS``
and read explicitly. It knows nothing about drivers.

Compile once per container (``compile_template``); ``Template.render`` then runs once, at
driver start, never per line.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from .driver import LogInfo
from .errors import LogOptError, TemplateError
from .extras import extra_attrs

__all__ = ["DEFAULT_TAG", "Template", "compile_template", "render_tag"]

DEFAULT_TAG = "{{.ID}}"
_TEMPLATE_NAME = "log-tag"  # the name Docker's loggerutils.ParseLogTag gives tag templates


# ---------------------------------------------------------------------------------------
# Go's quoting helpers (strconv.Quote and fmt's %#U), used in error texts and by printf.

_QUOTE_ESCAPES = {
    "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
    "\v": "\\v", "\\": "\\\\",
}


def _go_quote(s: str, quote: str = '"') -> str:
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


def _go_U(c: str) -> str:
    """fmt's ``%#U``: ``U+0021 '!'``."""
    s = f"U+{ord(c):04X}"
    return f"{s} '{c}'" if c.isprintable() else s


def _utf8_len(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def _from_go_bytes(b: bytes) -> str:
    """A Go string that may hold invalid UTF-8 (a cut rune, a \\x escape), as text.

    Go's decoders read each invalid byte as U+FFFD (so does its JSON encoder, which is how
    such a tag reaches json-file), where Python's "replace" would merge a cut sequence.
    """
    return re.sub("[\udc80-\udcff]", "\ufffd", b.decode("utf-8", "surrogateescape"))


# ---------------------------------------------------------------------------------------
# Lexer: text/template/parse/lex.go.

(_ERROR, _BOOL, _CHAR, _CHAR_CONSTANT, _COMPLEX, _ASSIGN, _DECLARE, _EOF, _FIELD, _IDENTIFIER,
 _LEFT_DELIM, _LEFT_PAREN, _NUMBER, _PIPE, _RAW_STRING, _RIGHT_DELIM, _RIGHT_PAREN, _SPACE,
 _STRING, _TEXT, _VARIABLE, _KEYWORD, _BLOCK, _BREAK, _CONTINUE, _DOT, _DEFINE, _ELSE, _END,
 _IF, _NIL, _RANGE, _TEMPLATE, _WITH) = range(34)

_KEYWORDS = {
    "block": _BLOCK, "break": _BREAK, "continue": _CONTINUE, "define": _DEFINE, "else": _ELSE,
    "end": _END, "if": _IF, "range": _RANGE, "nil": _NIL, "template": _TEMPLATE, "with": _WITH,
}

_SPACE_CHARS = " \t\r\n"


def _is_space(r: str) -> bool:
    return r != "" and r in _SPACE_CHARS


def _is_alnum(r: str) -> bool:
    # Go: '_' || unicode.IsLetter || unicode.IsDigit (category L / Nd).
    return r != "" and (r == "_" or r.isalpha() or r.isdecimal())


def _has_left_trim(s: str, i: int) -> bool:
    return len(s) - i >= 2 and s[i] == "-" and s[i + 1] in _SPACE_CHARS


def _has_right_trim(s: str, i: int) -> bool:
    return len(s) - i >= 2 and s[i] in _SPACE_CHARS and s[i + 1] == "-"


def _left_trim_length(s: str, i: int) -> int:
    rest = s[i:]
    return len(rest) - len(rest.lstrip(_SPACE_CHARS))


@dataclass(frozen=True, slots=True)
class _Item:
    typ: int
    pos: int  # index into the template text (code points; converted to bytes for errors)
    val: str


class _Lexer:
    """Turns template text into items; stops after the first error item, as Go's does."""

    def __init__(self, text: str) -> None:
        self.input = text
        self.pos = 0
        self.start = 0
        self.width = 0
        self.paren_depth = 0
        self.items: list[_Item] = []

    def run(self) -> list[_Item]:
        state: Callable[[], Any] | None = self._text
        while state is not None:
            state = state()
        return self.items

    def next(self) -> str:
        if self.pos >= len(self.input):
            self.width = 0
            return ""
        self.width = 1
        self.pos += 1
        return self.input[self.pos - 1]

    def peek(self) -> str:
        r = self.next()
        self.backup()
        return r

    def backup(self) -> None:
        self.pos -= self.width

    def emit(self, typ: int) -> None:
        self.items.append(_Item(typ, self.start, self.input[self.start:self.pos]))
        self.start = self.pos

    def ignore(self) -> None:
        self.start = self.pos

    def errorf(self, msg: str) -> None:
        self.items.append(_Item(_ERROR, self.start, msg))
        return None

    def accept(self, valid: str) -> bool:
        r = self.next()
        if r != "" and r in valid:
            return True
        self.backup()
        return False

    def accept_run(self, valid: str) -> None:
        while True:
            r = self.next()
            if r == "" or r not in valid:
                break
        self.backup()

    def at_right_delim(self) -> tuple[bool, bool]:
        s, i = self.input, self.pos
        if _has_right_trim(s, i) and s.startswith("}}", i + 2):
            return True, True
        if s.startswith("}}", i):
            return True, False
        return False, False

    def at_terminator(self) -> bool:
        r = self.peek()
        return r == "" or _is_space(r) or r in ".,|:)(}"

    # States.

    def _text(self):
        self.width = 0
        x = self.input.find("{{", self.pos)
        if x < 0:
            self.pos = len(self.input)
            if self.pos > self.start:
                self.emit(_TEXT)
            self.emit(_EOF)
            return None
        self.pos = x
        trim = 0
        if _has_left_trim(self.input, x + 2):
            seg = self.input[self.start:x]
            trim = len(seg) - len(seg.rstrip(_SPACE_CHARS))
        self.pos -= trim
        if self.pos > self.start:
            self.emit(_TEXT)
        self.pos += trim
        self.ignore()
        return self._left_delim

    def _left_delim(self):
        self.pos += 2
        after = 2 if _has_left_trim(self.input, self.pos) else 0
        if self.input.startswith("/*", self.pos + after):
            self.pos += after
            self.ignore()
            return self._comment
        self.emit(_LEFT_DELIM)
        self.pos += after
        self.ignore()
        self.paren_depth = 0
        return self._inside_action

    def _comment(self):
        self.pos += 2
        x = self.input.find("*/", self.pos)
        if x < 0:
            return self.errorf("unclosed comment")
        self.pos = x + 2
        delim, trim = self.at_right_delim()
        if not delim:
            return self.errorf("comment ends before closing delimiter")
        self.pos += 4 if trim else 2
        if trim:
            self.pos += _left_trim_length(self.input, self.pos)
        self.ignore()
        return self._text

    def _right_delim(self):
        _, trim = self.at_right_delim()
        if trim:
            self.pos += 2
            self.ignore()
        self.pos += 2
        self.emit(_RIGHT_DELIM)
        if trim:
            self.pos += _left_trim_length(self.input, self.pos)
            self.ignore()
        return self._text

    def _inside_action(self):
        delim, _ = self.at_right_delim()
        if delim:
            if self.paren_depth == 0:
                return self._right_delim
            return self.errorf("unclosed left paren")
        r = self.next()
        if r == "":
            return self.errorf("unclosed action")
        if _is_space(r):
            self.backup()
            return self._space
        if r == "=":
            self.emit(_ASSIGN)
        elif r == ":":
            if self.next() != "=":
                return self.errorf("expected :=")
            self.emit(_DECLARE)
        elif r == "|":
            self.emit(_PIPE)
        elif r == '"':
            return self._quote
        elif r == "`":
            return self._raw_quote
        elif r == "$":
            return self._variable
        elif r == "'":
            return self._char
        elif r == "." and self.pos < len(self.input) and not "0" <= self.input[self.pos] <= "9":
            return self._field
        elif r == "." or r in "+-" or "0" <= r <= "9":
            self.backup()
            return self._number
        elif _is_alnum(r):
            self.backup()
            return self._identifier
        elif r == "(":
            self.emit(_LEFT_PAREN)
            self.paren_depth += 1
        elif r == ")":
            # Go 1.19 emits the paren before reporting, so the parser usually complains first.
            self.emit(_RIGHT_PAREN)
            self.paren_depth -= 1
            if self.paren_depth < 0:
                return self.errorf(f"unexpected right paren {_go_U(r)}")
        elif r <= "\x7f" and r.isprintable():
            self.emit(_CHAR)
        else:
            return self.errorf(f"unrecognized character in action: {_go_U(r)}")
        return self._inside_action

    def _space(self):
        spaces = 0
        while _is_space(self.peek()):
            self.next()
            spaces += 1
        # A trim-marked close " -}}" starts with a space: leave that space to the delimiter.
        if _has_right_trim(self.input, self.pos - 1) and self.input.startswith("}}", self.pos + 1):
            self.pos -= 1
            if spaces == 1:
                return self._right_delim
        self.emit(_SPACE)
        return self._inside_action

    def _identifier(self):
        while True:
            r = self.next()
            if _is_alnum(r):
                continue
            self.backup()
            word = self.input[self.start:self.pos]
            if not self.at_terminator():
                return self.errorf(f"bad character {_go_U(r)}")
            if word in _KEYWORDS:
                self.emit(_KEYWORDS[word])
            elif word in ("true", "false"):
                self.emit(_BOOL)
            else:
                self.emit(_IDENTIFIER)
            return self._inside_action

    def _field(self):
        return self._field_or_variable(_FIELD)

    def _variable(self):
        if self.at_terminator():
            self.emit(_VARIABLE)
            return self._inside_action
        return self._field_or_variable(_VARIABLE)

    def _field_or_variable(self, typ: int):
        if self.at_terminator():
            self.emit(_VARIABLE if typ == _VARIABLE else _DOT)
            return self._inside_action
        while True:
            r = self.next()
            if not _is_alnum(r):
                self.backup()
                break
        if not self.at_terminator():
            return self.errorf(f"bad character {_go_U(r)}")
        self.emit(typ)
        return self._inside_action

    def _char(self):
        while True:
            r = self.next()
            if r == "\\":
                r = self.next()
                if r not in ("", "\n"):
                    continue
                return self.errorf("unterminated character constant")
            if r in ("", "\n"):
                return self.errorf("unterminated character constant")
            if r == "'":
                break
        self.emit(_CHAR_CONSTANT)
        return self._inside_action

    def _number(self):
        bad = "bad number syntax: {}"
        if not self._scan_number():
            return self.errorf(bad.format(_go_quote(self.input[self.start:self.pos])))
        if self.peek() in ("+", "-"):
            if not self._scan_number() or self.input[self.pos - 1] != "i":
                return self.errorf(bad.format(_go_quote(self.input[self.start:self.pos])))
            self.emit(_COMPLEX)
        else:
            self.emit(_NUMBER)
        return self._inside_action

    def _scan_number(self) -> bool:
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 11 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 23 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")
        if _is_alnum(self.peek()):
            self.next()
            return False
        return True

    def _quote(self):
        while True:
            r = self.next()
            if r == "\\":
                r = self.next()
                if r not in ("", "\n"):
                    continue
                return self.errorf("unterminated quoted string")
            if r in ("", "\n"):
                return self.errorf("unterminated quoted string")
            if r == '"':
                break
        self.emit(_STRING)
        return self._inside_action

    def _raw_quote(self):
        while True:
            r = self.next()
            if r == "":
                return self.errorf("unterminated raw quoted string")
            if r == "`":
                break
        self.emit(_RAW_STRING)
        return self._inside_action


# ---------------------------------------------------------------------------------------
# Go literals: strconv.Unquote/UnquoteChar and ParseInt/ParseUint/ParseFloat (base 0).

_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}


def _unquote_char(s: str, i: int, quote: str) -> tuple[int, bool, int]:
    """One (possibly escaped) character of a Go literal: (value, is_byte, next index)."""
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
    if "0" <= c <= "7":
        digits = s[i - 1:i + 2]
        if len(digits) != 3 or any(d not in "01234567" for d in digits):
            raise ValueError
        v = int(digits, 8)
        if v > 255:
            raise ValueError
        return v, True, i + 2
    raise ValueError


def _unquote(q: str) -> str:
    """``strconv.Unquote`` of a lexed string token. Raw strings lose ``\\r`` (Go's rule)."""
    if q[0] == "`":
        return q[1:-1].replace("\r", "")
    body = q[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        v, is_byte, i = _unquote_char(body, i, '"')
        out += bytes([v]) if is_byte else chr(v).encode("utf-8")
    return _from_go_bytes(bytes(out))


def _underscore_ok(s: str) -> bool:
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


def _parse_uint(s0: str) -> int | None:
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


def _parse_int(s: str) -> int | None:
    neg = s[:1] == "-"
    if s[:1] in ("+", "-"):
        s = s[1:]
    u = _parse_uint(s)
    if u is None:
        return None
    v = -u if neg else u
    return v if -(1 << 63) <= v < 1 << 63 else None


def _parse_float(s: str) -> float | None:
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


# ---------------------------------------------------------------------------------------
# Parse tree: text/template/parse/node.go. ``str()`` of a node is Go's ``String()``, which
# appears verbatim in Docker's error messages.

class _Node:
    __slots__ = ("pos",)
    kind = ""

    def __init__(self, pos: int) -> None:
        self.pos = pos


class _ListNode(_Node):
    __slots__ = ("nodes",)
    kind = "list"

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.nodes: list[_Node] = []

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


class _TextNode(_Node):
    __slots__ = ("text",)
    kind = "text"

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(pos)
        self.text = text

    def __str__(self) -> str:
        return self.text


class _PipeNode(_Node):
    __slots__ = ("decl", "is_assign", "cmds")
    kind = "pipe"

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.decl: list[_VariableNode] = []
        self.is_assign = False
        self.cmds: list[_CommandNode] = []

    def __str__(self) -> str:
        s = ""
        if self.decl:
            s = ", ".join(str(v) for v in self.decl) + " := "
        return s + " | ".join(str(c) for c in self.cmds)


class _ActionNode(_Node):
    __slots__ = ("pipe",)
    kind = "action"

    def __init__(self, pos: int, pipe: _PipeNode) -> None:
        super().__init__(pos)
        self.pipe = pipe

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


class _CommandNode(_Node):
    __slots__ = ("args",)
    kind = "command"

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.args: list[_Node] = []

    def __str__(self) -> str:
        return " ".join(f"({a})" if a.kind == "pipe" else str(a) for a in self.args)


class _IdentifierNode(_Node):
    __slots__ = ("ident",)
    kind = "identifier"

    def __init__(self, pos: int, ident: str) -> None:
        super().__init__(pos)
        self.ident = ident

    def __str__(self) -> str:
        return self.ident


class _VariableNode(_Node):
    __slots__ = ("ident",)
    kind = "variable"

    def __init__(self, pos: int, ident: str) -> None:
        super().__init__(pos)
        self.ident = ident.split(".")

    def __str__(self) -> str:
        return ".".join(self.ident)


class _DotNode(_Node):
    __slots__ = ()
    kind = "dot"

    def __str__(self) -> str:
        return "."


class _NilNode(_Node):
    __slots__ = ()
    kind = "nil"

    def __str__(self) -> str:
        return "nil"


class _FieldNode(_Node):
    __slots__ = ("ident",)
    kind = "field"

    def __init__(self, pos: int, ident: str) -> None:
        super().__init__(pos)
        self.ident = ident[1:].split(".")

    def __str__(self) -> str:
        return "".join("." + i for i in self.ident)


class _ChainNode(_Node):
    __slots__ = ("node", "field")
    kind = "chain"

    def __init__(self, pos: int, node: _Node) -> None:
        super().__init__(pos)
        self.node = node
        self.field: list[str] = []

    def __str__(self) -> str:
        s = str(self.node)
        if self.node.kind == "pipe":
            s = "(" + s + ")"
        return s + "".join("." + f for f in self.field)


class _BoolNode(_Node):
    __slots__ = ("true",)
    kind = "bool"

    def __init__(self, pos: int, true: bool) -> None:
        super().__init__(pos)
        self.true = true

    def __str__(self) -> str:
        return "true" if self.true else "false"


class _NumberNode(_Node):
    __slots__ = ("text", "is_int", "is_uint", "is_float", "int64", "uint64", "float64")
    kind = "number"

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(pos)
        self.text = text
        self.is_int = self.is_uint = self.is_float = False
        self.int64 = self.uint64 = 0
        self.float64 = 0.0

    def __str__(self) -> str:
        return self.text


class _StringNode(_Node):
    __slots__ = ("quoted", "text")
    kind = "string"

    def __init__(self, pos: int, quoted: str, text: str) -> None:
        super().__init__(pos)
        self.quoted = quoted
        self.text = text

    def __str__(self) -> str:
        return self.quoted


class _BranchNode(_Node):
    __slots__ = ("pipe", "list", "else_list")

    def __init__(self, pipe: _PipeNode, lst: _ListNode, else_list: _ListNode | None) -> None:
        super().__init__(pipe.pos)
        self.pipe = pipe
        self.list = lst
        self.else_list = else_list

    def __str__(self) -> str:
        s = "{{" + self.kind + " " + str(self.pipe) + "}}" + str(self.list)
        if self.else_list is not None:
            s += "{{else}}" + str(self.else_list)
        return s + "{{end}}"


class _IfNode(_BranchNode):
    __slots__ = ()
    kind = "if"


class _RangeNode(_BranchNode):
    __slots__ = ()
    kind = "range"


class _WithNode(_BranchNode):
    __slots__ = ()
    kind = "with"


class _MarkerNode(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "{{" + self.kind + "}}"


class _EndNode(_MarkerNode):
    __slots__ = ()
    kind = "end"


class _ElseNode(_MarkerNode):
    __slots__ = ()
    kind = "else"


class _BreakNode(_MarkerNode):
    __slots__ = ()
    kind = "break"


class _ContinueNode(_MarkerNode):
    __slots__ = ()
    kind = "continue"


# ---------------------------------------------------------------------------------------
# Parser: text/template/parse/parse.go (Go 1.19).

def _item_str(item: _Item) -> str:
    if item.typ == _EOF:
        return "EOF"
    if item.typ == _ERROR:
        return item.val
    if item.typ > _KEYWORD:
        return f"<{item.val}>"
    if _utf8_len(item.val) > 10:
        return _go_quote(item.val[:10]) + "..."
    return _go_quote(item.val)


_COMMAND_START = frozenset({
    _BOOL, _CHAR_CONSTANT, _COMPLEX, _DOT, _FIELD, _IDENTIFIER, _NUMBER, _NIL, _RAW_STRING,
    _STRING, _VARIABLE, _LEFT_PAREN,
})


class _Parser:
    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.items = _Lexer(text).run()
        self.i = 0
        self.high = 0  # furthest item read: Go reports that item's line (t.token[0])
        self.vars = ["$"]
        self.action_line = 0
        self.range_depth = 0

    def line_of(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1

    def errorf(self, msg: str):
        line = self.line_of(self.items[min(self.high, len(self.items) - 1)].pos)
        raise TemplateError(f"template: {self.name}:{line}: {msg}")

    def unsupported(self, what: str):
        self.errorf(f"logpipe does not support {what} in a tag template")

    def next(self) -> _Item:
        item = self.items[min(self.i, len(self.items) - 1)]
        self.high = max(self.high, self.i)
        self.i += 1
        return item

    def backup(self) -> None:
        self.i -= 1

    def peek(self) -> _Item:
        item = self.next()
        self.backup()
        return item

    def next_non_space(self) -> _Item:
        while True:
            item = self.next()
            if item.typ != _SPACE:
                return item

    def peek_non_space(self) -> _Item:
        item = self.next_non_space()
        self.backup()
        return item

    def expect(self, typ: int, context: str) -> _Item:
        item = self.next_non_space()
        if item.typ != typ:
            self.unexpected(item, context)
        return item

    def unexpected(self, item: _Item, context: str):
        if item.typ == _ERROR:
            extra = ""
            line = self.line_of(item.pos)
            if self.action_line != 0 and self.action_line != line:
                extra = f" in action started at {self.name}:{self.action_line}"
                if item.val.endswith(" action"):
                    extra = extra[len(" in action"):]
            self.errorf(item.val + extra)
        self.errorf(f"unexpected {_item_str(item)} in {context}")

    def parse(self) -> _ListNode:
        root = _ListNode(self.peek().pos)
        while self.peek().typ != _EOF:
            if self.peek().typ == _LEFT_DELIM:
                start = self.i
                self.next()
                if self.next_non_space().typ == _DEFINE:
                    self.unsupported("{{define}}")
                self.i = start
            n = self.text_or_action()
            if n.kind in ("end", "else"):
                self.errorf(f"unexpected {n}")
            root.nodes.append(n)
        return root

    def item_list(self) -> tuple[_ListNode, _Node]:
        lst = _ListNode(self.peek_non_space().pos)
        while self.peek_non_space().typ != _EOF:
            n = self.text_or_action()
            if n.kind in ("end", "else"):
                return lst, n
            lst.nodes.append(n)
        self.errorf("unexpected EOF")

    def text_or_action(self) -> _Node:
        item = self.next_non_space()
        if item.typ == _TEXT:
            return _TextNode(item.pos, item.val)
        if item.typ == _LEFT_DELIM:
            self.action_line = self.line_of(item.pos)
            try:
                return self.action()
            finally:
                self.action_line = 0
        self.unexpected(item, "input")

    def action(self) -> _Node:
        item = self.next_non_space()
        typ = item.typ
        if typ == _BLOCK:
            self.unsupported("{{block}}")
        if typ == _TEMPLATE:
            self.unsupported("{{template}}")
        if typ in (_BREAK, _CONTINUE):
            return self.loop_control(item)
        if typ == _ELSE:
            return self.else_control()
        if typ == _END:
            return _EndNode(self.expect(_RIGHT_DELIM, "end").pos)
        if typ in (_IF, _RANGE, _WITH):
            return self.branch_control(typ)
        self.backup()
        return _ActionNode(self.peek().pos, self.pipeline("command", _RIGHT_DELIM))

    def loop_control(self, item: _Item) -> _Node:
        name = "{{" + item.val + "}}"
        tok = self.next_non_space()
        if tok.typ != _RIGHT_DELIM:
            self.unexpected(tok, name)
        if self.range_depth == 0:
            self.errorf(f"{name} outside {{{{range}}}}")
        return (_BreakNode if item.typ == _BREAK else _ContinueNode)(item.pos)

    def else_control(self) -> _Node:
        peek = self.peek_non_space()
        if peek.typ == _IF:  # "{{else if ...": the if is left for parse_control
            return _ElseNode(peek.pos)
        return _ElseNode(self.expect(_RIGHT_DELIM, "else").pos)

    def branch_control(self, typ: int) -> _Node:
        context = {_IF: "if", _RANGE: "range", _WITH: "with"}[typ]
        nvars = len(self.vars)
        try:
            pipe = self.pipeline(context, _RIGHT_DELIM)
            if typ == _RANGE:
                self.range_depth += 1
            lst, nxt = self.item_list()
            if typ == _RANGE:
                self.range_depth -= 1
            else_list = None
            if nxt.kind == "else":
                if typ == _IF and self.peek().typ == _IF:
                    self.next()
                    else_list = _ListNode(nxt.pos)
                    else_list.nodes.append(self.branch_control(_IF))
                else:
                    else_list, nxt = self.item_list()
                    if nxt.kind != "end":
                        self.errorf(f"expected end; found {nxt}")
        finally:
            del self.vars[nvars:]
        cls = {_IF: _IfNode, _RANGE: _RangeNode, _WITH: _WithNode}[typ]
        return cls(pipe, lst, else_list)

    def pipeline(self, context: str, end: int) -> _PipeNode:
        pipe = _PipeNode(self.peek_non_space().pos)
        while True:  # Go's "decls:" label
            v = self.peek_non_space()
            if v.typ != _VARIABLE:
                break
            vi = self.i
            self.next()
            self.peek()  # Go's tokenAfterVariable: read, so it counts for error lines
            nxt = self.peek_non_space()
            if nxt.typ in (_ASSIGN, _DECLARE):
                pipe.is_assign = nxt.typ == _ASSIGN
                self.next_non_space()
                pipe.decl.append(_VariableNode(v.pos, v.val))
                self.vars.append(v.val)
            elif nxt.typ == _CHAR and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(_VariableNode(v.pos, v.val))
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in (_VARIABLE, _RIGHT_DELIM, _RIGHT_PAREN):
                        continue
                    self.errorf("range can only initialize variables")
                self.errorf(f"too many declarations in {context}")
            else:
                self.i = vi  # not a declaration: Go pushes the variable back
            break
        while True:
            item = self.next_non_space()
            if item.typ == end:
                self.check_pipeline(pipe, context)
                return pipe
            if item.typ in _COMMAND_START:
                self.backup()
                pipe.cmds.append(self.command())
            else:
                self.unexpected(item, context)

    def check_pipeline(self, pipe: _PipeNode, context: str) -> None:
        if not pipe.cmds:
            self.errorf(f"missing value for {context}")
        for i, cmd in enumerate(pipe.cmds[1:]):
            if cmd.args[0].kind in ("bool", "dot", "nil", "number", "string"):
                self.errorf(f"non executable command in pipeline stage {i + 2}")

    def command(self) -> _CommandNode:
        cmd = _CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            item = self.next()
            if item.typ == _SPACE:
                continue
            if item.typ in (_RIGHT_DELIM, _RIGHT_PAREN):
                self.backup()
            elif item.typ != _PIPE:
                self.unexpected(item, "operand")
            break
        if not cmd.args:
            self.errorf("empty command")
        return cmd

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == _FIELD:
            chain = _ChainNode(self.peek().pos, node)
            while self.peek().typ == _FIELD:
                chain.field.append(self.next().val[1:])
            if node.kind == "field":
                return _FieldNode(chain.pos, str(chain))
            if node.kind == "variable":
                return _VariableNode(chain.pos, str(chain))
            if node.kind in ("bool", "string", "number", "nil", "dot"):
                self.errorf(f"unexpected . after term {_go_quote(str(node))}")
            return chain
        return node

    def term(self) -> _Node | None:
        item = self.next_non_space()
        typ = item.typ
        if typ == _IDENTIFIER:
            if item.val not in _FUNCS:
                self.errorf(f"function {_go_quote(item.val)} not defined")
            return _IdentifierNode(item.pos, item.val)
        if typ == _DOT:
            return _DotNode(item.pos)
        if typ == _NIL:
            return _NilNode(item.pos)
        if typ == _VARIABLE:
            v = _VariableNode(item.pos, item.val)
            if v.ident[0] not in self.vars:
                self.errorf(f"undefined variable {_go_quote(v.ident[0])}")
            return v
        if typ == _FIELD:
            return _FieldNode(item.pos, item.val)
        if typ == _BOOL:
            return _BoolNode(item.pos, item.val == "true")
        if typ in (_CHAR_CONSTANT, _COMPLEX, _NUMBER):
            return self.number(item)
        if typ == _LEFT_PAREN:
            return self.pipeline("parenthesized pipeline", _RIGHT_PAREN)
        if typ in (_STRING, _RAW_STRING):
            try:
                return _StringNode(item.pos, item.val, _unquote(item.val))
            except (ValueError, IndexError):
                self.errorf("invalid syntax")
        self.backup()
        return None

    def number(self, item: _Item) -> _NumberNode:
        text = item.val
        n = _NumberNode(item.pos, text)
        if item.typ == _CHAR_CONSTANT:
            try:
                r, _, j = _unquote_char(text, 1, "'")
            except (ValueError, IndexError):
                self.errorf("invalid syntax")
            if text[j:] != "'":
                self.errorf(f"malformed character constant: {text}")
            n.int64 = n.uint64 = r
            n.float64 = float(r)
            n.is_int = n.is_uint = n.is_float = True
            return n
        if item.typ == _COMPLEX or (text.endswith("i") and _parse_float(text[:-1]) is not None):
            self.errorf(f"logpipe does not support complex constants in a tag template: {text}")
        u = _parse_uint(text)
        if u is not None:
            n.is_uint, n.uint64 = True, u
        i = _parse_int(text)
        if i is not None:
            n.is_int, n.int64 = True, i
            if i == 0:
                n.is_uint, n.uint64 = True, 0
        if n.is_int:
            n.is_float, n.float64 = True, float(n.int64)
        elif n.is_uint:
            n.is_float, n.float64 = True, float(n.uint64)
        else:
            f = _parse_float(text)
            if f is not None:
                if not any(c in text for c in ".eEpP"):
                    self.errorf(f"integer overflow: {_go_quote(text)}")
                n.is_float, n.float64 = True, f
                if f == int(f):
                    if -(1 << 63) <= int(f) < 1 << 63:
                        n.is_int, n.int64 = True, int(f)
                    if 0 <= int(f) < 1 << 64:
                        n.is_uint, n.uint64 = True, int(f)
        if not (n.is_int or n.is_uint or n.is_float):
            self.errorf(f"illegal number syntax: {_go_quote(text)}")
        return n


# ---------------------------------------------------------------------------------------
# Values. Go values are modelled by Python ones: string -> str, int -> int, bool -> bool,
# float64 -> float, []string -> tuple, map[string]string -> dict, *logger.Info -> _InfoRef,
# time.Time -> _GoTime. An invalid reflect.Value ("<no value>") is _NO_VALUE; a nil interface
# handed to a function is None.

class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_NO_VALUE = _Sentinel("<no value>")
_MISSING = _Sentinel("<missing>")  # Go's missingVal: "no final value from a pipeline"


class _TypedInt(int):
    gotype = "int"


class _Uint8(_TypedInt):
    gotype = "uint8"


class _Int64(_TypedInt):
    gotype = "int64"


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


class _GoMonth(_TypedInt):
    gotype = "time.Month"

    def string(self) -> str:
        return _MONTHS[self - 1] if 1 <= self <= 12 else f"%!Month({int(self)})"


class _GoWeekday(_TypedInt):
    gotype = "time.Weekday"

    def string(self) -> str:
        return _WEEKDAYS[self] if 0 <= self <= 6 else f"%!Weekday({int(self)})"


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})")


class _GoTime:
    """A ``time.Time`` parsed from ``LogInfo.created`` (RFC 3339, as Docker stores it)."""

    __slots__ = ("dt", "nsec", "offset", "zone", "raw")

    def __init__(self, dt: datetime, nsec: int, offset: int, zone: str, raw: str = "") -> None:
        self.dt, self.nsec, self.offset, self.zone, self.raw = dt, nsec, offset, zone, raw

    @classmethod
    def parse(cls, text: str) -> "_GoTime":
        zero = cls(datetime(1, 1, 1), 0, 0, "UTC")
        if not text:
            return zero
        m = _RFC3339.fullmatch(text)
        try:
            dt = datetime(*(int(g) for g in m.groups()[:6])) if m else None
        except ValueError:
            dt = None
        if dt is None:
            zero.raw = text  # not RFC 3339: printed as given
            return zero
        nsec = int((m.group(7) or "0")[:9].ljust(9, "0"))
        z = m.group(8)
        if z == "Z":
            return cls(dt, nsec, 0, "UTC")
        offset = (int(z[1:3]) * 60 + int(z[4:6])) * 60 * (-1 if z[0] == "-" else 1)
        return cls(dt, nsec, offset, "")  # Go: a fabricated zone without a name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _GoTime) and (self.dt, self.nsec, self.offset, self.raw) == (
            other.dt, other.nsec, other.offset, other.raw)

    def __hash__(self) -> int:
        return hash((self.dt, self.nsec, self.offset))

    def _clock(self, sep: str) -> str:
        d = self.dt  # not strftime: it drops the zeros of years before 1000
        return (f"{d.year:04d}-{d.month:02d}-{d.day:02d}{sep}"
                f"{d.hour:02d}:{d.minute:02d}:{d.second:02d}")

    def _frac(self) -> str:
        return ("." + f"{self.nsec:09d}".rstrip("0")) if self.nsec else ""

    def _numeric_zone(self, colon: bool) -> str:
        off = abs(self.offset) // 60
        sign = "-" if self.offset < 0 else "+"
        return f"{sign}{off // 60:02d}{':' if colon else ''}{off % 60:02d}"

    def string(self) -> str:
        """``Time.String()``: ``2006-01-02 15:04:05.999999999 -0700 MST``."""
        if self.raw:
            return self.raw
        zone = self._numeric_zone(False)
        return f"{self._clock(' ')}{self._frac()} {zone} {self.zone or zone}"

    def rfc3339nano(self) -> str:
        if self.raw:
            return self.raw
        zone = "Z" if self.offset == 0 else self._numeric_zone(True)
        return f"{self._clock('T')}{self._frac()}{zone}"

    def go_string(self) -> str:
        loc = "time.UTC" if self.zone == "UTC" else 'time.Location("")'
        d = self.dt
        return (f"time.Date({d.year}, time.{_MONTHS[d.month - 1]}, {d.day}, {d.hour}, "
                f"{d.minute}, {d.second}, {self.nsec}, {loc})")

    def unix(self) -> int:
        d = self.dt - _UNIX_EPOCH
        return d.days * 86400 + d.seconds - self.offset

    def utc(self) -> "_GoTime":
        if self.raw or (self.offset == 0 and self.zone == "UTC"):
            return self
        return _GoTime(self.dt - timedelta(seconds=self.offset), self.nsec, 0, "UTC")


_UNIX_EPOCH = datetime(1970, 1, 1)


class _InfoRef:
    """``*logger.Info``: the template's dot."""

    __slots__ = ("info",)

    def __init__(self, info: LogInfo) -> None:
        self.info = info


class _InfoValue:
    """``logger.Info`` (the struct a pointer points at), for printing and error texts."""

    __slots__ = ("info",)

    def __init__(self, info: LogInfo) -> None:
        self.info = info


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, _TypedInt):
        return v.gotype
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, tuple):
        return "[]string"
    if isinstance(v, dict):
        return "map[string]string"
    if isinstance(v, _GoTime):
        return "time.Time"
    if isinstance(v, _InfoRef):
        return "*logger.Info"
    if isinstance(v, _InfoValue):
        return "logger.Info"
    return "<nil>"


def _indirect(v: Any) -> Any:
    return _InfoValue(v.info) if isinstance(v, _InfoRef) else v


def _is_true(v: Any) -> bool:
    """Go's ``isTrue``: the truth of a value for if/with/and/or/not."""
    if v is _NO_VALUE or v is None:
        return False
    if isinstance(v, (bool, int, float, str, tuple, dict)):
        return bool(v)
    return True  # structs and non-nil pointers


# --- The fields and methods of *logger.Info (moby daemon/logger/loginfo.go). -------------

def _raw_name(info: LogInfo) -> str:
    # Docker's ContainerName keeps the leading "/" that LogInfo may have dropped.
    n = info.container_name
    return n if not n or n.startswith("/") else "/" + n


_INFO_FIELDS: dict[str, tuple[str, Callable[[LogInfo], Any]]] = {
    "Config": ("map[string]string", lambda i: dict(i.config)),
    "ContainerID": ("string", lambda i: i.container_id),
    "ContainerName": ("string", _raw_name),
    "ContainerEntrypoint": ("string", lambda i: i.entrypoint),
    "ContainerArgs": ("[]string", lambda i: tuple(i.args)),
    "ContainerImageID": ("string", lambda i: i.image_id),
    "ContainerImageName": ("string", lambda i: i.image_name),
    "ContainerCreated": ("time.Time", lambda i: _GoTime.parse(i.created)),
    "ContainerEnv": ("[]string", lambda i: tuple(i.env)),
    "ContainerLabels": ("map[string]string", lambda i: dict(i.labels)),
    "LogPath": ("string", lambda i: ""),
    "DaemonName": ("string", lambda i: i.daemon_name),
}


class _CallError(Exception):
    """An error returned (or a panic raised) by a called Go function."""


@dataclass(frozen=True, slots=True)
class _Func:
    """A callable with Go's parameter types, so that argument errors read like Go's."""

    params: tuple[str, ...]
    variadic: bool
    fn: Callable[..., Any]
    result: str | None = None  # static result type, for compile-time field checks
    builtin: bool = False


def _extra_attributes(info: LogInfo, key_mod: Any) -> dict:
    try:
        return extra_attrs(info.config, info)
    except LogOptError as e:
        raise _CallError(str(e)) from None


_INFO_METHODS: dict[str, _Func] = {
    # ID and ImageID slice [:12] in Go; Docker's IDs are always long enough.
    "ID": _Func((), False, lambda i: i.container_id[:12], "string"),
    "FullID": _Func((), False, lambda i: i.container_id, "string"),
    "Name": _Func((), False, lambda i: _raw_name(i).removeprefix("/"), "string"),
    "ImageID": _Func((), False, lambda i: i.image_id[:12], "string"),
    "ImageFullID": _Func((), False, lambda i: i.image_id, "string"),
    "ImageName": _Func((), False, lambda i: i.image_name, "string"),
    "Command": _Func((), False, lambda i: i.command, "string"),
    "Hostname": _Func((), False, lambda i: i.hostname, "string"),
    "ExtraAttributes": _Func(("func(string) string",), False, _extra_attributes,
                             "map[string]string"),
}

_TIME_METHODS: dict[str, _Func] = {
    "String": _Func((), False, lambda t: t.string(), "string"),
    "Unix": _Func((), False, lambda t: _Int64(t.unix()), "int64"),
    "UnixMilli": _Func((), False, lambda t: _Int64(t.unix() * 1000 + t.nsec // 10**6), "int64"),
    "UnixMicro": _Func((), False, lambda t: _Int64(t.unix() * 10**6 + t.nsec // 1000), "int64"),
    # UnixNano wraps around int64 outside 1678..2262, as Go's does.
    "UnixNano": _Func((), False, lambda t: _Int64(
        (t.unix() * 10**9 + t.nsec + 2**63) % 2**64 - 2**63), "int64"),
    "Year": _Func((), False, lambda t: t.dt.year, "int"),
    "YearDay": _Func((), False, lambda t: t.dt.timetuple().tm_yday, "int"),
    "Month": _Func((), False, lambda t: _GoMonth(t.dt.month), "time.Month"),
    "Day": _Func((), False, lambda t: t.dt.day, "int"),
    "Weekday": _Func((), False, lambda t: _GoWeekday((t.dt.weekday() + 1) % 7), "time.Weekday"),
    "Hour": _Func((), False, lambda t: t.dt.hour, "int"),
    "Minute": _Func((), False, lambda t: t.dt.minute, "int"),
    "Second": _Func((), False, lambda t: t.dt.second, "int"),
    "Nanosecond": _Func((), False, lambda t: t.nsec, "int"),
    "IsZero": _Func((), False, lambda t: t.unix() == -62135596800 and t.nsec == 0, "bool"),
    "UTC": _Func((), False, lambda t: t.utc(), "time.Time"),
}
# Methods Go's time.Time has but logpipe does not implement: refused with our own error,
# never with Go's "can't evaluate field", which would be false.
_TIME_UNSUPPORTED = frozenset({
    "Add", "AddDate", "After", "AppendFormat", "Before", "Clock", "Date", "Equal", "Format",
    "GoString", "GobDecode", "GobEncode", "ISOWeek", "In", "IsDST", "Local", "Location",
    "MarshalBinary", "MarshalJSON", "MarshalText", "Round", "Sub", "Truncate",
    "UnmarshalBinary", "UnmarshalJSON", "UnmarshalText", "Zone", "ZoneBounds",
})
_STRING_METHOD = _Func((), False, lambda v: v.string(), "string")


def _method_of(receiver: Any, name: str) -> _Func | None:
    if isinstance(receiver, _InfoRef):
        m = _INFO_METHODS.get(name)
        recv: Any = receiver.info
    elif isinstance(receiver, _GoTime):
        m, recv = _TIME_METHODS.get(name), receiver
    elif isinstance(receiver, (_GoMonth, _GoWeekday)) and name == "String":
        m, recv = _STRING_METHOD, receiver
    else:
        return None
    return None if m is None else _Func(m.params, m.variadic, functools.partial(m.fn, recv))


# ---------------------------------------------------------------------------------------
# Go's fmt (the subset print/printf/println and action output need).

def _float_digits(v: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of |v| and the decimal point position."""
    from decimal import Decimal  # floats are rare in tags: keep the import off the common path

    sign, digits, exp = Decimal(repr(abs(v))).normalize().as_tuple()
    d = "".join(map(str, digits))
    if d == "0":
        return "0", 1
    return d, len(d) + exp


def _format_float(v: float, verb: str, prec: int) -> str:
    """``strconv.FormatFloat`` for e/E/f/F/g/G (``prec`` -1 = shortest)."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    neg = "-" if v < 0 or (v == 0 and str(v).startswith("-")) else ""
    lower = verb.lower()
    if prec >= 0:
        spec = {"f": "f", "e": "e", "g": "g"}[lower]
        if lower == "g" and prec == 0:
            prec = 1
        s = format(abs(v), f".{prec}{spec}")  # C rules; Go's agree once precision is given
        return neg + (s.upper() if verb in "EG" else s)
    d, dp = _float_digits(v)
    nd = len(d)

    def fmt_e(digs: str) -> str:
        mant = digs[0] + ("." + digs[1:] if len(digs) > 1 else "")
        exp = dp - 1 if digs != "0" else 0
        return f"{mant}{'E' if verb in 'EG' else 'e'}{'-' if exp < 0 else '+'}{abs(exp):02d}"

    def fmt_f(decimals: int) -> str:
        if dp <= 0:
            whole, frac = "0", "0" * (-dp) + d
        else:
            whole, frac = (d + "0" * dp)[:dp] if dp > nd else d[:dp], d[dp:]
        frac = frac.ljust(decimals, "0")[:decimals]
        return whole + ("." + frac if decimals else "")

    if lower == "e":
        return neg + fmt_e(d)
    if lower == "f":
        return neg + fmt_f(max(nd - dp, 0))
    exp = dp - 1
    if exp < -4 or exp >= 6:  # shortest %g: strconv uses precision 6 for this decision
        return neg + fmt_e(d)
    return neg + fmt_f(max(nd - dp, 0))


class _Printer:
    """A port of fmt's ``pp``: printArg, printValue, doPrintf and friends."""

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.arg: Any = None
        self.erroring = False
        self.clear_flags()

    def clear_flags(self) -> None:
        self.plus = self.minus = self.sharp = self.space = self.zero = False
        self.plus_v = self.sharp_v = False
        self.wid = self.prec = 0
        self.wid_present = self.prec_present = False

    def out(self) -> str:
        return "".join(self.buf)

    # fmt.go: padding.

    def write_padding(self, n: int) -> None:
        if n > 0:
            self.buf.append(("0" if self.zero else " ") * n)

    def pad(self, s: str) -> None:
        if not self.wid_present or self.wid == 0:
            self.buf.append(s)
            return
        width = self.wid - len(s)
        if not self.minus:
            self.write_padding(width)
            self.buf.append(s)
        else:
            self.buf.append(s)
            self.write_padding(width)

    def fmt_s(self, s: str) -> None:
        if self.prec_present:
            s = s[:self.prec]
        self.pad(s)

    # print.go.

    def bad_verb(self, verb: str) -> None:
        self.erroring = True
        self.buf.append("%!" + verb + "(")
        if self.arg is not None and self.arg is not _NO_VALUE:
            self.buf.append(_type_name(self.arg) + "=")
            self.print_arg(self.arg, "v")
        else:
            self.buf.append("<nil>")
        self.buf.append(")")
        self.erroring = False

    def fmt_bool(self, v: bool, verb: str) -> None:
        if verb in "tv":
            self.pad("true" if v else "false")
        else:
            self.bad_verb(verb)

    def fmt_integer(self, v: int, signed: bool, verb: str) -> None:
        if verb in "vd":
            self.fmt_int(v, 10, verb, "0123456789abcdef")
        elif verb == "b":
            self.fmt_int(v, 2, verb, "01")
        elif verb in "oO":
            self.fmt_int(v, 8, verb, "01234567")
        elif verb == "x":
            self.fmt_int(v, 16, verb, "0123456789abcdef")
        elif verb == "X":
            self.fmt_int(v, 16, verb, "0123456789ABCDEF")
        elif verb == "c":
            self.pad(self._rune(v))
        elif verb == "q":
            r = self._rune(v)
            if self.sharp and _can_backquote(r):
                self.pad("'" + r + "'")
            else:
                self.pad(_go_quote(r, "'"))
        elif verb == "U":
            s = f"U+{v:04X}" if v >= 0 else f"U+{v & (2**64 - 1):04X}"
            if self.sharp and 0 <= v <= 0x10FFFF and chr(v).isprintable():
                s += " '" + chr(v) + "'"
            zero, self.zero = self.zero, False
            self.pad(s)
            self.zero = zero
        else:
            self.bad_verb(verb)

    @staticmethod
    def _rune(v: int) -> str:
        return chr(v) if 0 <= v <= 0x10FFFF and not 0xD800 <= v <= 0xDFFF else "\ufffd"

    def fmt_int(self, v: int, base: int, verb: str, digits: str) -> None:
        negative = v < 0
        u = -v if negative else v
        prec = 0
        if self.prec_present:
            prec = self.prec
            if prec == 0 and u == 0:
                zero, self.zero = self.zero, False
                self.write_padding(self.wid)
                self.zero = zero
                return
        elif self.zero and self.wid_present:
            prec = self.wid
            if negative or self.plus or self.space:
                prec -= 1
        s = ""
        while True:
            s = digits[u % base] + s
            u //= base
            if u == 0:
                break
        s = s.rjust(prec, "0")
        if self.sharp:
            if base == 2:
                s = "0b" + s
            elif base == 8 and not s.startswith("0"):
                s = "0" + s
            elif base == 16:
                s = ("0x" if digits[10] == "a" else "0X") + s
        if verb == "O":
            s = "0o" + s
        if negative:
            s = "-" + s
        elif self.plus:
            s = "+" + s
        elif self.space:
            s = " " + s
        zero, self.zero = self.zero, False
        self.pad(s)
        self.zero = zero

    def fmt_float(self, v: float, verb: str) -> None:
        if verb == "v":
            verb, prec = "g", -1
        elif verb in "gG":
            prec = -1
        elif verb in "eEfF":
            prec = 6
        else:
            self.bad_verb(verb)
            return
        if self.prec_present:
            prec = self.prec
        num = _format_float(v, verb, prec)
        if num[0] not in "+-":
            num = "+" + num
        if self.space and num[0] == "+" and not self.plus:
            num = " " + num[1:]
        if num[1:] in ("Inf", "NaN"):  # never zero-padded
            zero, self.zero = self.zero, False
            self.pad(num[1:] if num == "+NaN" and not self.plus else num)
            self.zero = zero
            return
        if self.plus or num[0] != "+":
            if self.zero and self.wid_present and self.wid > len(num):
                self.buf.append(num[0])
                self.write_padding(self.wid - len(num))
                self.buf.append(num[1:])
                return
            self.pad(num)
            return
        self.pad(num[1:])

    def fmt_string(self, s: str, verb: str) -> None:
        if verb == "v":
            if self.sharp_v:
                self.fmt_q(s)
            else:
                self.fmt_s(s)
        elif verb == "s":
            self.fmt_s(s)
        elif verb in "xX":
            self.fmt_sx(s, "0123456789abcdef" if verb == "x" else "0123456789ABCDEF", verb)
        elif verb == "q":
            self.fmt_q(s)
        else:
            self.bad_verb(verb)

    def fmt_q(self, s: str) -> None:
        if self.prec_present:
            s = s[:self.prec]
        if self.sharp and _can_backquote(s):
            self.pad("`" + s + "`")
        elif self.plus:  # strconv.QuoteToASCII
            self.pad("".join(c if c.isascii() else _go_quote(c)[1:-1] if not c.isprintable()
                             else f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"
                             for c in _go_quote(s)))
        else:
            self.pad(_go_quote(s))

    def fmt_sx(self, s: str, digits: str, verb: str) -> None:
        data = s.encode("utf-8")
        if self.prec_present:
            data = data[:self.prec]
        x = "0" + verb
        parts = [digits[b >> 4] + digits[b & 15] for b in data]
        if not parts:
            if self.wid_present:
                self.write_padding(self.wid)
            return
        if self.space:
            body = " ".join((x + p) if self.sharp else p for p in parts)
        else:
            body = (x if self.sharp else "") + "".join(parts)
        if self.wid_present and self.wid > len(body) and not self.minus:
            self.write_padding(self.wid - len(body))
        self.buf.append(body)
        if self.wid_present and self.wid > len(body) and self.minus:
            self.write_padding(self.wid - len(body))

    def handle_methods(self, v: Any, verb: str) -> bool:
        if self.erroring:
            return False
        if self.sharp_v:
            if isinstance(v, _GoTime):
                self.fmt_s(v.go_string())
                return True
            return False
        if verb in "vsxXq" and isinstance(v, (_GoTime, _GoMonth, _GoWeekday)):
            self.fmt_string(v.string(), verb)
            return True
        return False

    def print_arg(self, arg: Any, verb: str) -> None:
        self.arg = arg
        if arg is None or arg is _NO_VALUE:
            if verb in "Tv":
                self.pad("<nil>")
            else:
                self.bad_verb(verb)
            return
        if verb == "T":
            self.fmt_s(_type_name(arg))
            return
        if isinstance(arg, bool):
            self.fmt_bool(arg, verb)
        elif isinstance(arg, float):
            self.fmt_float(arg, verb)
        elif isinstance(arg, (_GoMonth, _GoWeekday)):
            if not self.handle_methods(arg, verb):
                self.print_value(arg, verb, 0)
        elif isinstance(arg, int):
            self.fmt_integer(arg, not isinstance(arg, _Uint8), verb)
        elif isinstance(arg, str):
            self.fmt_string(arg, verb)
        elif not self.handle_methods(arg, verb):
            self.print_value(arg, verb, 0)

    def print_value(self, v: Any, verb: str, depth: int) -> None:
        if depth > 0 and v is not _NO_VALUE:
            self.arg = v
            if self.handle_methods(v, verb):
                return
        if isinstance(v, bool):
            self.fmt_bool(v, verb)
        elif isinstance(v, int):
            self.fmt_integer(v, not isinstance(v, _Uint8), verb)
        elif isinstance(v, float):
            self.fmt_float(v, verb)
        elif isinstance(v, str):
            self.fmt_string(v, verb)
        elif isinstance(v, tuple):
            if self.sharp_v:
                self.buf.append("[]string{")
                sep = ", "
            else:
                self.buf.append("[")
                sep = " "
            for i, e in enumerate(v):
                if i:
                    self.buf.append(sep)
                self.print_value(e, verb, depth + 1)
            self.buf.append("}" if self.sharp_v else "]")
        elif isinstance(v, dict):
            self.buf.append("map[string]string{" if self.sharp_v else "map[")
            for i, k in enumerate(sorted(v)):
                if i:
                    self.buf.append(", " if self.sharp_v else " ")
                self.print_value(k, verb, depth + 1)
                self.buf.append(":")
                self.print_value(v[k], verb, depth + 1)
            self.buf.append("}" if self.sharp_v else "]")
        elif isinstance(v, _InfoRef):
            self.buf.append("&")
            self.print_value(_InfoValue(v.info), verb, depth + 1)
        elif isinstance(v, _InfoValue):
            if self.sharp_v:
                self.buf.append("logger.Info")
            self.buf.append("{")
            for i, (name, (_, get)) in enumerate(_INFO_FIELDS.items()):
                if i:
                    self.buf.append(", " if self.sharp_v else " ")
                if self.plus_v or self.sharp_v:
                    self.buf.append(name + ":")
                self.print_value(get(v.info), verb, depth + 1)
            self.buf.append("}")
        elif isinstance(v, _GoTime):
            self.fmt_s(v.string())  # Go would print the struct's private fields here
        else:
            self.bad_verb(verb)

    def do_print(self, args: list[Any]) -> str:
        prev_string = False
        for i, a in enumerate(args):
            is_string = isinstance(a, str)
            if i > 0 and not is_string and not prev_string:
                self.buf.append(" ")
            self.print_arg(a, "v")
            prev_string = is_string
        return self.out()

    def do_println(self, args: list[Any]) -> str:
        for i, a in enumerate(args):
            if i:
                self.buf.append(" ")
            self.print_arg(a, "v")
        self.buf.append("\n")
        return self.out()

    def do_printf(self, fmt: str, a: list[Any]) -> str:
        end = len(fmt)
        arg_num = 0
        after_index = False
        reordered = False
        i = 0

        def parsenum(start: int) -> tuple[int, bool, int]:
            if start >= end:
                return 0, False, end
            n, isnum, j = 0, False, start
            while j < end and "0" <= fmt[j] <= "9":
                if n > 10**6:
                    return 0, False, end
                n = n * 10 + ord(fmt[j]) - 48
                isnum = True
                j += 1
            return n, isnum, j

        def arg_number(arg_num: int, j: int) -> tuple[int, int, bool, bool]:
            # -> (arg_num, j, found, good)
            nonlocal reordered
            if j >= end or fmt[j] != "[":
                return arg_num, j, False, True
            reordered = True
            s = fmt[j:]
            idx, wid, ok = 0, 1, False
            if len(s) >= 3:
                for k in range(1, len(s)):
                    if s[k] == "]":
                        n, isnum, newk = 0, False, 1
                        while newk < k and "0" <= s[newk] <= "9":
                            n = n * 10 + ord(s[newk]) - 48
                            isnum = True
                            newk += 1
                        if not isnum or newk != k:
                            idx, wid, ok = 0, k + 1, False
                        else:
                            idx, wid, ok = n - 1, k + 1, True
                        break
            if ok and 0 <= idx < len(a):
                return idx, j + wid, True, True
            return arg_num, j + wid, ok, False

        def int_from_arg(arg_num: int) -> tuple[int, bool, int]:
            if arg_num < len(a):
                v = a[arg_num]
                ok = isinstance(v, int) and not isinstance(v, bool)
                n = int(v) if ok else 0
                if n > 10**6 or n < -(10**6):
                    n, ok = 0, False
                return n, ok, arg_num + 1
            return 0, False, arg_num

        while i < end:
            good = True
            last = i
            while i < end and fmt[i] != "%":
                i += 1
            if i > last:
                self.buf.append(fmt[last:i])
            if i >= end:
                break
            i += 1
            self.clear_flags()
            simple = False
            while i < end:
                c = fmt[i]
                if c == "#":
                    self.sharp = True
                elif c == "0":
                    self.zero = not self.minus
                elif c == "+":
                    self.plus = True
                elif c == "-":
                    self.minus, self.zero = True, False
                elif c == " ":
                    self.space = True
                else:
                    if "a" <= c <= "z" and arg_num < len(a):
                        if c == "v":
                            self.sharp_v, self.sharp = self.sharp, False
                            self.plus_v, self.plus = self.plus, False
                        self.print_arg(a[arg_num], c)
                        arg_num += 1
                        i += 1
                        simple = True
                    break
                i += 1
            if simple:
                continue
            arg_num, i, after_index, ok = arg_number(arg_num, i)
            good = good and ok
            if i < end and fmt[i] == "*":
                i += 1
                self.wid, self.wid_present, arg_num = int_from_arg(arg_num)
                if not self.wid_present:
                    self.buf.append("%!(BADWIDTH)")
                if self.wid < 0:
                    self.wid, self.minus, self.zero = -self.wid, True, False
                after_index = False
            else:
                self.wid, self.wid_present, i = parsenum(i)
                if after_index and self.wid_present:
                    good = False
            if i + 1 < end and fmt[i] == ".":
                i += 1
                if after_index:
                    good = False
                arg_num, i, after_index, ok = arg_number(arg_num, i)
                good = good and ok
                if i < end and fmt[i] == "*":
                    i += 1
                    self.prec, self.prec_present, arg_num = int_from_arg(arg_num)
                    if self.prec < 0:
                        self.prec, self.prec_present = 0, False
                    if not self.prec_present:
                        self.buf.append("%!(BADPREC)")
                    after_index = False
                else:
                    self.prec, self.prec_present, i = parsenum(i)
                    if not self.prec_present:
                        self.prec, self.prec_present = 0, True
            if not after_index:
                arg_num, i, after_index, ok = arg_number(arg_num, i)
                good = good and ok
            if i >= end:
                self.buf.append("%!(NOVERB)")
                break
            verb = fmt[i]
            i += 1
            if verb == "%":
                self.buf.append("%")
            elif not good:
                self.buf.append("%!" + verb + "(BADINDEX)")
            elif arg_num >= len(a):
                self.buf.append("%!" + verb + "(MISSING)")
            else:
                if verb == "v":
                    self.sharp_v, self.sharp = self.sharp, False
                    self.plus_v, self.plus = self.plus, False
                self.print_arg(a[arg_num], verb)
                arg_num += 1
        if not reordered and arg_num < len(a):
            self.clear_flags()
            self.buf.append("%!(EXTRA ")
            for k, arg in enumerate(a[arg_num:]):
                if k:
                    self.buf.append(", ")
                if arg is None or arg is _NO_VALUE:
                    self.buf.append("<nil>")
                else:
                    self.buf.append(_type_name(arg) + "=")
                    self.print_arg(arg, "v")
            self.buf.append(")")
        return self.out()


def _can_backquote(s: str) -> bool:
    """strconv.CanBackquote: any rune but controls (tab allowed), backquote, DEL and BOM."""
    return not any((c < " " and c != "\t") or c in "`\x7f\ufeff" for c in s)


def _sprint_v(v: Any) -> str:
    p = _Printer()
    p.print_arg(v, "v")
    return p.out()


# ---------------------------------------------------------------------------------------
# Go's encoding/json (Docker's "json" function: SetEscapeHTML(false), newline trimmed).

def _json_string(s: str) -> str:
    out = ['"']
    for c in s:
        o = ord(c)
        if c == '"' or c == "\\":
            out.append("\\" + c)
        elif o < 0x20:
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c) or f"\\u{o:04x}")
        elif c in "\u2028\u2029":
            out.append(f"\\u{o:04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _json_float(f: float) -> str:
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        s = _format_float(f, "e", -1)
        if s[-4:-1] == "e-0":  # Go cleans e-07 up to e-7
            s = s[:-2] + s[-1]
        return s
    return _format_float(f, "f", -1)


def _go_json(v: Any) -> str:
    if v is None or v is _NO_VALUE:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return _json_float(v)
    if isinstance(v, str):
        return _json_string(v)
    if isinstance(v, tuple):
        return "[" + ",".join(_json_string(e) for e in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{_json_string(k)}:{_json_string(v[k])}" for k in sorted(v)) + "}"
    if isinstance(v, _GoTime):
        return _json_string(v.rfc3339nano())
    if isinstance(v, (_InfoRef, _InfoValue)):
        return "{" + ",".join(f'"{name}":{_go_json(get(v.info))}'
                              for name, (_, get) in _INFO_FIELDS.items()) + "}"
    return "null"


# ---------------------------------------------------------------------------------------
# Template functions: Docker's (daemon/logger/templates) and Go's builtins (funcs.go).

def _simple_upper(c: str) -> str:
    # Go maps rune by rune with the simple (one-to-one) case mappings; Python's full
    # mappings can grow a rune ("ß".upper() == "SS"), which Go never does.
    u = c.upper()
    if len(u) == 1:
        return u
    t = c.title()
    return t if len(t) == 1 else c


def _simple_lower(c: str) -> str:
    if c == "\u0130":
        return "i"
    low = c.lower()
    return low if len(low) == 1 else c


def _go_upper(s: str) -> str:
    return s.upper() if s.isascii() else "".join(map(_simple_upper, s))


def _go_lower(s: str) -> str:
    return s.lower() if s.isascii() else "".join(map(_simple_lower, s))


def _is_separator(r: str) -> bool:
    if r <= "\x7f":
        return not (r.isalnum() or r == "_")
    if r.isalpha() or r.isdecimal():
        return False
    return r.isspace()


def _go_title(s: str) -> str:
    """``strings.Title``: upper-cases word starts only; the rest is left as is."""
    out, prev = [], " "
    for r in s:
        if _is_separator(prev):
            t = r.title()
            out.append(t if len(t) == 1 else _simple_upper(r))
        else:
            out.append(r)
        prev = r
    return "".join(out)


def _f_split(s: str, sep: str) -> tuple:
    return tuple(s) if sep == "" else tuple(s.split(sep))


def _f_pad(s: str, prefix: int, suffix: int) -> str:
    if s == "":
        return s
    if prefix < 0 or suffix < 0:
        raise _CallError("strings: negative Repeat count")
    return " " * prefix + s + " " * suffix


def _f_truncate(s: str, length: int) -> str:
    b = s.encode("utf-8")
    if len(b) < length:
        return s
    if length < 0:
        raise _CallError(f"runtime error: slice bounds out of range [:{length}]")
    return _from_go_bytes(b[:length])  # Go slices bytes, and may cut a rune in two


def _basic_kind(v: Any) -> str:
    if v is _NO_VALUE or v is None:
        return "invalid"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, _Uint8):
        return "uint"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "other"


def _reflect_kind(v: Any) -> str:
    if v is _NO_VALUE or v is None:
        return "invalid"
    if isinstance(v, tuple):
        return "slice"
    if isinstance(v, dict):
        return "map"
    return "ptr" if isinstance(v, _InfoRef) else "struct"


def _f_eq(arg1: Any, *arg2: Any) -> bool:
    """Go 1.19's ``eq``; its basicKind calls every non-basic value "invalid"."""
    if not arg2:
        raise _CallError("missing argument for comparison")
    k1 = _basic_kind(arg1).replace("other", "invalid")
    for arg in arg2:
        k2 = _basic_kind(arg).replace("other", "invalid")
        if k1 != k2:
            if {k1, k2} == {"int", "uint"}:
                truth = int(arg1) == int(arg)
            elif arg1 is not _NO_VALUE and arg is not _NO_VALUE:
                raise _CallError("incompatible types for comparison")
            else:
                truth = False
        elif k1 != "invalid":
            truth = arg1 == arg
        else:
            r1, r2 = _reflect_kind(arg1), _reflect_kind(arg)
            if r1 != r2 and "invalid" not in (r1, r2):
                raise _CallError(f"non-comparable types {_sprint_v(arg1)}: {_type_name(arg1)}, "
                                 f"{_type_name(arg)}: {_sprint_v(arg)}")
            if "invalid" in (r1, r2):  # isNil: only the zero Value is nil here
                truth = r1 == r2
            elif r2 in ("slice", "map"):
                raise _CallError(f"non-comparable type {_sprint_v(arg)}: {_type_name(arg)}")
            elif r1 == "ptr":
                truth = arg.info is arg1.info
            else:
                truth = arg1 == arg
        if truth:
            return True
    return False


def _f_lt(arg1: Any, arg2: Any) -> bool:
    k1, k2 = _basic_kind(arg1), _basic_kind(arg2)
    if "other" in (k1, k2) or "invalid" in (k1, k2):
        raise _CallError("invalid type for comparison")
    if k1 != k2:
        if {k1, k2} == {"int", "uint"}:
            return int(arg1) < int(arg2)
        raise _CallError("incompatible types for comparison")
    if k1 == "bool":
        raise _CallError("invalid type for comparison")
    return arg1 < arg2


def _f_le(arg1: Any, arg2: Any) -> bool:
    return _f_lt(arg1, arg2) or _f_eq(arg1, arg2)


def _index_arg(index: Any, cap: int) -> int:
    if index is _NO_VALUE or index is None:
        raise _CallError("cannot index slice/array with nil")
    if isinstance(index, bool) or not isinstance(index, int):
        raise _CallError(f"cannot index slice/array with type {_type_name(index)}")
    if index < 0 or index > cap:
        raise _CallError(f"index out of range: {int(index)}")
    return int(index)


def _f_index(item: Any, *indexes: Any) -> Any:
    if item is _NO_VALUE or item is None:
        raise _CallError("index of untyped nil")
    for index in indexes:
        item = _indirect(item)
        if isinstance(item, (tuple, str)):
            data = item.encode("utf-8") if isinstance(item, str) else item
            x = _index_arg(index, len(data))
            if x == len(data):
                kind = "string" if isinstance(item, str) else "slice"
                raise _CallError(f"reflect: {kind} index out of range")
            item = _Uint8(data[x]) if isinstance(item, str) else data[x]
        elif isinstance(item, dict):
            if index is _NO_VALUE or index is None:
                raise _CallError("value is nil; should be of type string")
            if not isinstance(index, str):
                raise _CallError(f"value has type {_type_name(index)}; should be string")
            item = item.get(index, "")
        else:
            raise _CallError(f"can't index item of type {_type_name(item)}")
    return item


def _f_slice(item: Any, *indexes: Any) -> Any:
    if item is _NO_VALUE or item is None:
        raise _CallError("slice of untyped nil")
    if len(indexes) > 3:
        raise _CallError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise _CallError("cannot 3-index slice a string")
        data: Any = item.encode("utf-8")
    elif isinstance(item, tuple):
        data = item
    else:
        raise _CallError(f"can't slice item of type {_type_name(item)}")
    idx = [0, len(data), len(data)]
    for i, index in enumerate(indexes):
        idx[i] = _index_arg(index, len(data))
    if idx[0] > idx[1]:
        raise _CallError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if len(indexes) == 3 and idx[1] > idx[2]:
        raise _CallError(f"invalid slice index: {idx[1]} > {idx[2]}")
    out = data[idx[0]:idx[1]]
    return _from_go_bytes(out) if isinstance(item, str) else out


def _f_len(item: Any) -> int:
    if item is _NO_VALUE or item is None:
        raise _CallError("reflect: call of reflect.Value.Type on zero Value")
    if isinstance(item, str):
        return len(item.encode("utf-8"))  # Go's len counts bytes
    if isinstance(item, (tuple, dict)):
        return len(item)
    raise _CallError(f"len of type {_type_name(_indirect(item))}")


def _f_call(fn: Any, *args: Any) -> Any:
    if fn is _NO_VALUE or fn is None:
        raise _CallError("call of nil")
    raise _CallError(f"non-function of type {_type_name(fn)}")  # templates reach no funcs


def _eval_args(args: tuple) -> str:
    """Go's evalArgs for html/js/urlquery: each arg as the template would print it."""
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return _Printer().do_print(
        ["<no value>" if a is None or a is _NO_VALUE else _indirect(a) for a in args])


def _urlquery(s: str) -> str:
    from urllib.parse import quote_plus  # url.QueryEscape; rare, so imported on use

    return quote_plus(s, safe="")


_HTML_ESCAPES = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;",
                 "\x00": "\ufffd"}
_JS_ESCAPES = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E",
               "&": "\\u0026", "=": "\\u003D"}


def _f_html(*args: Any) -> str:
    return "".join(_HTML_ESCAPES.get(c, c) for c in _eval_args(args))


def _f_js(*args: Any) -> str:
    out = []
    for c in _eval_args(args):
        if c in _JS_ESCAPES:
            out.append(_JS_ESCAPES[c])
        elif c < " ":
            out.append(f"\\u00{ord(c):02X}")
        elif c >= "\x80" and not c.isprintable():
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


_S, _I, _V, _A = "string", "int", "value", "any"

_FUNCS: dict[str, _Func] = {
    # Docker's daemon/logger/templates.basicFunctions.
    "json": _Func((_A,), False, _go_json, _S),
    "split": _Func((_S, _S), False, _f_split, "[]string"),
    "join": _Func(("[]string", _S), False, lambda elems, sep: sep.join(elems), _S),
    "title": _Func((_S,), False, _go_title, _S),
    "lower": _Func((_S,), False, _go_lower, _S),
    "upper": _Func((_S,), False, _go_upper, _S),
    "pad": _Func((_S, _I, _I), False, _f_pad, _S),
    "truncate": _Func((_S, _I), False, _f_truncate, _S),
    # Go's text/template builtins.
    "and": _Func((_V, _V), True, lambda *a: None, None, builtin=True),
    "or": _Func((_V, _V), True, lambda *a: None, None, builtin=True),
    "not": _Func((_V,), False, lambda v: not _is_true(v), "bool"),
    "call": _Func((_V, _V), True, _f_call),
    "html": _Func((_A,), True, _f_html, _S),
    "index": _Func((_V, _V), True, _f_index),
    "slice": _Func((_V, _V), True, _f_slice),
    "js": _Func((_A,), True, _f_js, _S),
    "len": _Func((_V,), False, _f_len, "int"),
    "print": _Func((_A,), True, lambda *a: _Printer().do_print(list(a)), _S),
    "printf": _Func((_S, _A), True, lambda f, *a: _Printer().do_printf(f, list(a)), _S),
    "println": _Func((_A,), True, lambda *a: _Printer().do_println(list(a)), _S),
    "urlquery": _Func((_A,), True, lambda *a: _urlquery(_eval_args(a)), _S),
    "eq": _Func((_V, _V), True, _f_eq, "bool"),
    "ne": _Func((_V, _V), False, lambda a, b: not _f_eq(a, b), "bool"),
    "lt": _Func((_V, _V), False, _f_lt, "bool"),
    "le": _Func((_V, _V), False, _f_le, "bool"),
    "gt": _Func((_V, _V), False, lambda a, b: not _f_le(a, b), "bool"),
    "ge": _Func((_V, _V), False, lambda a, b: not _f_lt(a, b), "bool"),
}

_NILABLE = frozenset({"[]string", "map[string]string", "func(string) string", _A, _V})


def _nil_of(typ: str) -> Any:
    """The zero value Go passes for nil (or a missing value) to a parameter of ``typ``."""
    return {"[]string": (), "map[string]string": {}, _V: _NO_VALUE}.get(typ)


# ---------------------------------------------------------------------------------------
# Executor: text/template/exec.go.

def _exec_error(name: str, text: str, node: _Node | None, msg: str) -> str:
    if node is None:
        return f"template: {name}: {msg}"
    before = text[:node.pos]
    line = before.count("\n") + 1
    col = _utf8_len(before[before.rfind("\n") + 1:])  # bytes from the line start (0-based)
    context = str(node)  # Go 1.19 does not shorten it (later Go versions cut it at 20 bytes)
    return f"template: {name}:{line}:{col}: executing {_go_quote(name)} at <{context}>: {msg}"


class _BreakLoop(Exception):
    """{{break}}: unwinds to the enclosing range."""


class _ContinueLoop(Exception):
    """{{continue}}: unwinds to the next iteration of the enclosing range."""


class _State:
    """One execution of a template (Go's exec.go ``state``): the node being evaluated, for
    error positions, the variable stack and the output."""

    __slots__ = ("tmpl", "node", "vars", "out")

    def __init__(self, tmpl: "Template", dot: Any) -> None:
        self.tmpl = tmpl
        self.node: _Node | None = None
        self.vars: list[list[Any]] = [["$", dot]]
        self.out: list[str] = []

    def errorf(self, msg: str):
        raise TemplateError(_exec_error(self.tmpl.name, self.tmpl.text, self.node, msg))

    def walk(self, dot: Any, node: _Node) -> None:
        self.node = node
        kind = node.kind
        if kind == "text":
            self.out.append(node.text)
        elif kind == "action":
            val = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.node = node
                self.out.append("<no value>" if val is _NO_VALUE else _sprint_v(_indirect(val)))
        elif kind == "list":
            for n in node.nodes:
                self.walk(dot, n)
        elif kind in ("if", "with"):
            mark = len(self.vars)
            try:
                val = self.eval_pipeline(dot, node.pipe)
                if _is_true(val):
                    self.walk(val if kind == "with" else dot, node.list)
                elif node.else_list is not None:
                    self.walk(dot, node.else_list)
            finally:
                del self.vars[mark:]
        elif kind == "range":
            self.walk_range(dot, node)
        elif kind == "break":
            raise _BreakLoop
        elif kind == "continue":
            raise _ContinueLoop

    def walk_range(self, dot: Any, r: _RangeNode) -> None:
        mark = len(self.vars)
        try:
            val = self.eval_pipeline(dot, r.pipe)
            inner = len(self.vars)

            def one(index: Any, elem: Any) -> None:
                if r.pipe.decl:
                    self.vars[-1][1] = elem
                if len(r.pipe.decl) > 1:
                    self.vars[-2][1] = index
                try:
                    self.walk(elem, r.list)
                except _ContinueLoop:
                    pass
                finally:
                    del self.vars[inner:]

            if isinstance(val, tuple) and val:
                for i, e in enumerate(val):
                    one(i, e)
                return
            if isinstance(val, dict) and val:
                for k in sorted(val):
                    one(k, val[k])
                return
            if not isinstance(val, (tuple, dict)) and val is not _NO_VALUE:
                self.errorf(f"range can't iterate over {_sprint_v(_indirect(val))}")
            if r.else_list is not None:
                self.walk(dot, r.else_list)
        except _BreakLoop:
            pass
        finally:
            del self.vars[mark:]

    def eval_pipeline(self, dot: Any, pipe: _PipeNode) -> Any:
        self.node = pipe
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for var in pipe.decl:
            name = var.ident[0]
            if pipe.is_assign:
                for slot in reversed(self.vars):
                    if slot[0] == name:
                        slot[1] = value
                        break
                else:
                    self.errorf(f"undefined variable: {name}")
            else:
                self.vars.append([name, value])
        return value

    def not_a_function(self, args: list[_Node] | None, final: Any) -> None:
        if (args is not None and len(args) > 1) or final is not _MISSING:
            self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: Any, cmd: _CommandNode, final: Any) -> Any:
        first = cmd.args[0]
        kind = first.kind
        if kind == "field":
            return self.eval_field_node(dot, first, cmd.args, final)
        if kind == "chain":
            return self.eval_chain_node(dot, first, cmd.args, final)
        if kind == "identifier":
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if kind == "pipe":
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if kind == "variable":
            return self.eval_variable_node(dot, first, cmd.args, final)
        self.node = first
        self.not_a_function(cmd.args, final)
        if kind == "bool":
            return first.true
        if kind == "dot":
            return dot
        if kind == "nil":
            self.errorf("nil is not a command")
        if kind == "number":
            return self.ideal_constant(first)
        if kind == "string":
            return first.text
        self.errorf(f"can't evaluate command {_go_quote(str(first))}")

    def ideal_constant(self, n: _NumberNode) -> Any:
        self.node = n
        t = n.text
        hex_int = len(t) > 2 and t[0] == "0" and t[1] in "xX" and not any(c in t for c in "pP")
        if n.is_float and not hex_int and t[0] != "'" and any(c in t for c in ".eEpP"):
            return n.float64
        if n.is_int:
            return n.int64
        if n.is_uint:
            self.errorf(f"{t} overflows int")
        return _NO_VALUE

    def eval_field_node(self, dot: Any, f: _FieldNode, args: list[_Node] | None,
                        final: Any) -> Any:
        self.node = f
        return self.eval_field_chain(dot, dot, f, f.ident, args, final)

    def eval_chain_node(self, dot: Any, chain: _ChainNode, args: list[_Node] | None,
                        final: Any) -> Any:
        self.node = chain
        if chain.node.kind == "nil":
            self.errorf(f"indirection through explicit nil in {chain}")
        pipe = self.eval_arg(dot, None, chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.field, args, final)

    def eval_variable_node(self, dot: Any, v: _VariableNode, args: list[_Node] | None,
                           final: Any) -> Any:
        self.node = v
        for name, value in reversed(self.vars):
            if name == v.ident[0]:
                break
        else:
            self.errorf(f"undefined variable: {v.ident[0]}")
        if len(v.ident) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, v, v.ident[1:], args, final)

    def eval_field_chain(self, dot: Any, receiver: Any, node: _Node, ident: list[str],
                         args: list[_Node] | None, final: Any) -> Any:
        for name in ident[:-1]:
            receiver = self.eval_field(dot, name, node, None, _MISSING, receiver)
        return self.eval_field(dot, ident[-1], node, args, final, receiver)

    def eval_field(self, dot: Any, name: str, node: _Node, args: list[_Node] | None,
                   final: Any, receiver: Any) -> Any:
        if receiver is _NO_VALUE:
            return _NO_VALUE
        method = _method_of(receiver, name)
        if method is not None:
            return self.eval_call(dot, method, False, node, name, args, final)
        has_args = (args is not None and len(args) > 1) or final is not _MISSING
        if isinstance(receiver, _InfoRef) and name in _INFO_FIELDS:
            if has_args:
                self.errorf(f"{name} has arguments but cannot be invoked as function")
            return _INFO_FIELDS[name][1](receiver.info)
        if isinstance(receiver, dict):
            if has_args:
                self.errorf(f"{name} is not a method but has arguments")
            return receiver.get(name, _NO_VALUE)
        if isinstance(receiver, _GoTime) and name in _TIME_UNSUPPORTED:
            self.errorf(f"logpipe does not support the time.Time method {name}")
        self.errorf(f"can't evaluate field {name} in type {_type_name(receiver)}")

    def eval_function(self, dot: Any, node: _IdentifierNode, cmd: _Node,
                      args: list[_Node] | None, final: Any) -> Any:
        self.node = node
        f = _FUNCS[node.ident]
        return self.eval_call(dot, f, f.builtin, cmd, node.ident, args, final)

    def eval_call(self, dot: Any, fun: _Func, is_builtin: bool, node: _Node, name: str,
                  args: list[_Node] | None, final: Any) -> Any:
        args = args[1:] if args is not None else []
        num_in = len(args) + (final is not _MISSING)
        params = fun.params
        if fun.variadic:
            num_fixed = len(params) - 1
            if num_in < num_fixed:
                self.errorf(f"wrong number of args for {name}: "
                            f"want at least {len(params) - 1} got {len(args)}")
        else:
            num_fixed = len(args)
            if num_in != len(params):
                self.errorf(f"wrong number of args for {name}: want {len(params)} got {num_in}")
        if is_builtin and name in ("and", "or"):
            v: Any = _NO_VALUE
            for arg in args:  # short-circuit, as Go 1.18+
                v = self.eval_arg(dot, _V, arg)
                if _is_true(v) == (name == "or"):
                    return v
            if final is not _MISSING:
                v = self.validate_type(final, _V)
            return v
        argv: list[Any] = []
        i = 0
        while i < num_fixed and i < len(args):
            argv.append(self.eval_arg(dot, params[i], args[i]))
            i += 1
        if fun.variadic:
            while i < len(args):
                argv.append(self.eval_arg(dot, params[-1], args[i]))
                i += 1
        if final is not _MISSING:
            t = params[-1]
            if fun.variadic and num_in - 1 < num_fixed:
                t = params[num_in - 1]
            argv.append(self.validate_type(final, t))
        try:
            return fun.fn(*argv)
        except _CallError as e:
            self.node = node
            self.errorf(f"error calling {name}: {e}")

    def validate_type(self, value: Any, typ: str | None) -> Any:
        if value is _NO_VALUE:
            if typ is None or typ == _V:
                return _NO_VALUE
            if typ in _NILABLE:
                return _nil_of(typ)
            self.errorf(f"invalid value; expected {typ}")
        if typ is None or typ in (_A, _V) or _type_name(value) == typ:
            return value
        self.errorf(f"wrong type for value; expected {typ}; got {_type_name(value)}")

    def eval_arg(self, dot: Any, typ: str | None, n: _Node) -> Any:
        self.node = n
        kind = n.kind
        if kind == "dot":
            return self.validate_type(dot, typ)
        if kind == "nil":
            if typ in _NILABLE:
                return _nil_of(typ)
            self.errorf(f"cannot assign nil to {typ}")
        if kind == "field":
            return self.validate_type(self.eval_field_node(dot, n, [n], _MISSING), typ)
        if kind == "variable":
            return self.validate_type(self.eval_variable_node(dot, n, None, _MISSING), typ)
        if kind == "pipe":
            return self.validate_type(self.eval_pipeline(dot, n), typ)
        if kind == "identifier":
            return self.validate_type(self.eval_function(dot, n, n, None, _MISSING), typ)
        if kind == "chain":
            return self.validate_type(self.eval_chain_node(dot, n, None, _MISSING), typ)
        if typ == "bool":
            if kind == "bool":
                return n.true
            self.errorf(f"expected bool; found {n}")
        if typ == _I:
            if kind == "number" and n.is_int:
                return n.int64
            self.errorf(f"expected integer; found {n}")
        if typ in (_A, _V):
            if kind == "bool":
                return n.true
            if kind == "number":
                return self.ideal_constant(n)
            if kind == "string":
                return n.text
        if typ == _S:
            if kind == "string":
                return n.text
            self.errorf(f"expected string; found {n}")
        self.errorf(f"can't handle {n} for arg of type {typ}")


# ---------------------------------------------------------------------------------------
# Compile-time checks, reported with the errors Go gives when it executes the node.

_T_INFO = "*logger.Info"


def _static_member(typ: str, name: str) -> tuple[str | None, _Func | None, str | None]:
    """Field or method ``name`` of a value of Go type ``typ``: (type, method, error)."""
    if typ == _T_INFO:
        if name in _INFO_METHODS:
            return _INFO_METHODS[name].result, _INFO_METHODS[name], None
        if name in _INFO_FIELDS:
            return _INFO_FIELDS[name][0], None, None
    elif typ == "time.Time":
        if name in _TIME_METHODS:
            return _TIME_METHODS[name].result, _TIME_METHODS[name], None
        if name in _TIME_UNSUPPORTED:
            return None, None, f"logpipe does not support the time.Time method {name}"
    elif typ in ("time.Month", "time.Weekday") and name == "String":
        return "string", _STRING_METHOD, None
    return None, None, f"can't evaluate field {name} in type {typ}"


class _Checker:
    """Finds, at compile time, the errors Go would raise on executing a node.

    Every field's type is static, so a misspelt field, a method or function given the wrong
    number or type of arguments is found before any container runs. It follows Go's
    evaluation order (arity before arguments, left to right) and reports with Go's node and
    text, so that the first error it reports is the one Go reports. It is more eager than Go
    in two places: ``if`` branches Go would skip and ``and``/``or`` arguments Go would not
    reach are checked too. What depends on values (a missing map key, an index out of
    range, ...) is left to ``render``, which does exactly what Go does.
    """

    def __init__(self, tmpl: "Template") -> None:
        self.tmpl = tmpl

    def fail(self, node: _Node, msg: str):
        raise TemplateError(_exec_error(self.tmpl.name, self.tmpl.text, node, msg))

    def node(self, n: _Node, dot: str | None) -> None:
        kind = n.kind
        if kind == "list":
            for child in n.nodes:
                self.node(child, dot)
        elif kind == "action":
            self.pipe(n.pipe, dot)
        elif kind in ("if", "with", "range"):
            t = self.pipe(n.pipe, dot)
            inner = dot
            if kind == "with":
                inner = t
            elif kind == "range":
                inner = "string" if t in ("[]string", "map[string]string") else None
            self.node(n.list, inner)
            if n.else_list is not None:
                self.node(n.else_list, dot)

    def pipe(self, p: _PipeNode, dot: str | None) -> str | None:
        t = None
        for i, cmd in enumerate(p.cmds):
            t = self.command(cmd.args[0], cmd.args[1:], i > 0, t, dot)
        return t

    def command(self, first: _Node, args: list[_Node], final: bool, final_t: str | None,
                dot: str | None) -> str | None:
        """Go's evalCommand."""
        kind = first.kind
        if kind == "identifier":
            return self.call(first, first.ident, _FUNCS[first.ident], args, final, final_t, dot)
        if kind == "field":
            return self.chain(first, dot, first.ident, args, final, final_t, dot)
        base = _T_INFO if kind == "variable" and first.ident[0] == "$" else None
        if kind == "variable" and len(first.ident) > 1:
            return self.chain(first, base, first.ident[1:], args, final, final_t, dot)
        if kind == "chain":
            # "(pipeline).Field": Go reports a bad field at whichever node ran last inside
            # the pipeline; the executor reproduces that, so the fields are left to render.
            self.arg(first.node, None, dot)
            return None
        if kind == "pipe":
            return None if args or final else self.pipe(first, dot)
        if args or final:
            self.fail(first, f"can't give argument to non-function {first}")
        if kind == "nil":
            self.fail(first, "nil is not a command")
        return {"variable": base, "dot": dot}.get(kind) if kind in ("variable", "dot") \
            else self.literal_type(first)

    @staticmethod
    def literal_type(n: _Node) -> str | None:
        if n.kind == "number":
            return "int" if n.is_int and not any(c in n.text for c in ".eEpP") else None
        return {"string": "string", "bool": "bool"}.get(n.kind)

    def arity(self, node: _Node, name: str, fun: _Func, nargs: int, final: bool) -> None:
        num_in = nargs + final
        want = len(fun.params)
        if fun.variadic and num_in < want - 1:
            self.fail(node, f"wrong number of args for {name}: "
                            f"want at least {want - 1} got {nargs}")
        if not fun.variadic and num_in != want:
            self.fail(node, f"wrong number of args for {name}: want {want} got {num_in}")

    def call(self, node: _Node, name: str, fun: _Func, args: list[_Node], final: bool,
             final_t: str | None, dot: str | None) -> str | None:
        """Go's evalCall, on types."""
        self.arity(node, name, fun, len(args), final)
        if fun.builtin:  # and/or take anything
            for arg in args:
                self.arg(arg, _V, dot)
            return None
        params = fun.params
        num_fixed = len(params) - 1 if fun.variadic else len(args)
        last, known = node, True
        for i, arg in enumerate(args):
            known = self.arg(arg, params[i] if i < num_fixed else params[-1], dot) is not None \
                and known
            last = arg
        if final and known and last.kind not in ("pipe", "chain"):
            # Go validates the piped value after the arguments; if one of those is only
            # known at run time (a map value, say), Go may fail on it first: leave it.
            t = params[-1]
            if fun.variadic and len(args) < num_fixed:
                t = params[len(args)]
            self.validate(last, final_t, t)
        return fun.result

    def validate(self, node: _Node, t: str | None, typ: str | None) -> str | None:
        """Go's validateType, on types (``None`` = not known before run time)."""
        if t is not None and typ not in (None, _A, _V) and t != typ:
            self.fail(node, f"wrong type for value; expected {typ}; got {t}")
        return t

    def arg(self, n: _Node, typ: str | None, dot: str | None) -> str | None:
        """Go's evalArg, on types."""
        kind = n.kind
        if kind == "dot":
            return self.validate(n, dot, typ)
        if kind == "nil":
            if typ is not None and typ not in _NILABLE:
                self.fail(n, f"cannot assign nil to {typ}")
            return None
        if kind == "field":
            return self.validate(n, self.chain(n, dot, n.ident, [], False, None, dot), typ)
        if kind == "variable":
            base = _T_INFO if n.ident[0] == "$" else None
            if len(n.ident) > 1:
                base = self.chain(n, base, n.ident[1:], [], False, None, dot)
            return self.validate(n, base, typ)
        if kind == "pipe":
            self.pipe(n, dot)
            return None
        if kind == "identifier":
            t = self.call(n, n.ident, _FUNCS[n.ident], [], False, None, dot)
            return self.validate(n, t, typ)
        if kind == "chain":
            self.arg(n.node, None, dot)
            return None
        if typ == "bool" and kind != "bool":
            self.fail(n, f"expected bool; found {n}")
        if typ == _I and not (kind == "number" and n.is_int):
            self.fail(n, f"expected integer; found {n}")
        if typ == _S and kind != "string":
            self.fail(n, f"expected string; found {n}")
        if typ not in (None, _A, _V, _S, _I, "bool"):
            self.fail(n, f"can't handle {n} for arg of type {typ}")
        return self.literal_type(n)

    def chain(self, node: _Node, typ: str | None, names: list[str], args: list[_Node],
              final: bool, final_t: str | None, dot: str | None) -> str | None:
        """Go's evalFieldChain, on types."""
        for i, name in enumerate(names):
            last = i == len(names) - 1
            if typ is None:
                return None  # e.g. a map value, which may be missing: Go decides at run time
            if typ == "map[string]string":
                if last and (args or final):
                    self.fail(node, f"{name} is not a method but has arguments")
                typ = None
                continue
            typ, method, err = _static_member(typ, name)
            if err:
                self.fail(node, err)
            if method is not None:
                if last:
                    return self.call(node, name, method, args, final, final_t, dot)
                self.arity(node, name, method, 0, False)
            elif last and (args or final):
                self.fail(node, f"{name} has arguments but cannot be invoked as function")
        return typ


# ---------------------------------------------------------------------------------------
# Public API.

@dataclass(frozen=True, slots=True)
class Template:
    """A compiled ``tag`` template. Immutable: compile once, render per container."""

    name: str
    text: str
    _root: _ListNode = field(repr=False, compare=False)

    def render(self, info: LogInfo) -> str:
        """Execute against ``info`` as Go executes against ``*logger.Info``.

        Raises ``TemplateError`` for Go's execution errors (e.g. a wrong argument type),
        with Go's text; Docker surfaces these when the driver starts.
        """
        state = _State(self, _InfoRef(info))
        state.walk(_InfoRef(info), self._root)
        return "".join(state.out)


@functools.lru_cache(maxsize=256)
def compile_template(text: str, name: str = _TEMPLATE_NAME) -> Template:
    """Parse ``text`` and check its field names; raise ``TemplateError`` in Go's wording."""
    root = _Parser(name, text).parse()
    tmpl = Template(name, text, root)
    _Checker(tmpl).node(root, _T_INFO)
    return tmpl


def render_tag(opts: Mapping[str, str], info: LogInfo, default: str = DEFAULT_TAG) -> str:
    """Docker's ``loggerutils.ParseLogTag``: the ``tag`` option, or ``default`` if empty."""
    return compile_template(opts.get("tag") or default).render(info)
