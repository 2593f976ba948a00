"""Template text to items: a port of Go 1.19's ``text/template/parse/lex.go``.

The lexer only cuts text into items; it never decides what an item means. Like Go's, it
stops after the first error item, whose text the parser reports verbatim. Positions are
code-point indexes into the template (the error builders convert them to Go's bytes).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from .literals import go_quote

# Item types, in Go's order: everything after KEYWORD is a keyword.
(ERROR, BOOL, CHAR, CHAR_CONSTANT, COMPLEX, ASSIGN, DECLARE, EOF, FIELD, IDENTIFIER,
 LEFT_DELIM, LEFT_PAREN, NUMBER, PIPE, RAW_STRING, RIGHT_DELIM, RIGHT_PAREN, SPACE,
 STRING, TEXT, VARIABLE, KEYWORD, BLOCK, BREAK, CONTINUE, DOT, DEFINE, ELSE, END,
 IF, NIL, RANGE, TEMPLATE, WITH) = range(34)

_KEYWORDS = {
    "block": BLOCK, "break": BREAK, "continue": CONTINUE, "define": DEFINE, "else": ELSE,
    "end": END, "if": IF, "range": RANGE, "nil": NIL, "template": TEMPLATE, "with": WITH,
}

_SPACE_CHARS = " \t\r\n"


class Item(NamedTuple):
    typ: int
    pos: int  # index into the template text (code points; converted to bytes for errors)
    val: str


def go_U(c: str) -> str:
    """fmt's ``%#U``, as Go's lexer errors print a character: ``U+0021 '!'``."""
    s = f"U+{ord(c):04X}"
    return f"{s} '{c}'" if c.isprintable() else s


def _is_space(r: str) -> bool:
    return r != "" and r in _SPACE_CHARS


def is_alnum(r: str) -> bool:
    """Go's ``isAlphaNumeric``: '_' or unicode.IsLetter or unicode.IsDigit (L / Nd)."""
    return r != "" and (r == "_" or r.isalpha() or r.isdecimal())


def _has_left_trim(s: str, i: int) -> bool:
    return len(s) - i >= 2 and s[i] == "-" and s[i + 1] in _SPACE_CHARS


def _has_right_trim(s: str, i: int) -> bool:
    return len(s) - i >= 2 and s[i] in _SPACE_CHARS and s[i + 1] == "-"


def _left_trim_length(s: str, i: int) -> int:
    rest = s[i:]
    return len(rest) - len(rest.lstrip(_SPACE_CHARS))


class Lexer:
    """Turns template text into items. Each state method returns the next state, as Go's
    ``stateFn``s do; ``None`` ends the run."""

    def __init__(self, text: str) -> None:
        self.input = text
        self.pos = 0
        self.start = 0
        self.width = 0
        self.paren_depth = 0
        self.items: list[Item] = []

    def run(self) -> list[Item]:
        state: Callable[[], Any] | None = self._text
        while state is not None:
            state = state()
        return self.items

    # -- reading -------------------------------------------------------------------------

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
        self.items.append(Item(typ, self.start, self.input[self.start:self.pos]))
        self.start = self.pos

    def ignore(self) -> None:
        self.start = self.pos

    def errorf(self, msg: str) -> None:
        self.items.append(Item(ERROR, self.start, msg))
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
        """(at a closing delimiter, with a trim marker)."""
        s, i = self.input, self.pos
        if _has_right_trim(s, i) and s.startswith("}}", i + 2):
            return True, True
        if s.startswith("}}", i):
            return True, False
        return False, False

    def at_terminator(self) -> bool:
        r = self.peek()
        return r == "" or _is_space(r) or r in ".,|:)(}"

    # -- states: text, delimiters and comments -------------------------------------------

    def _text(self):
        self.width = 0
        x = self.input.find("{{", self.pos)
        if x < 0:
            self.pos = len(self.input)
            if self.pos > self.start:
                self.emit(TEXT)
            self.emit(EOF)
            return None
        self.pos = x
        trim = 0
        if _has_left_trim(self.input, x + 2):
            seg = self.input[self.start:x]
            trim = len(seg) - len(seg.rstrip(_SPACE_CHARS))
        self.pos -= trim
        if self.pos > self.start:
            self.emit(TEXT)
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
        self.emit(LEFT_DELIM)
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
        self.emit(RIGHT_DELIM)
        if trim:
            self.pos += _left_trim_length(self.input, self.pos)
            self.ignore()
        return self._text

    # -- states: inside an action ----------------------------------------------------------

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
        if r == '"':
            return self._quote
        if r == "`":
            return self._raw_quote
        if r == "$":
            return self._variable
        if r == "'":
            return self._char
        if r == "." and self.pos < len(self.input) and not "0" <= self.input[self.pos] <= "9":
            return self._field
        if r == "." or r in "+-" or "0" <= r <= "9":
            self.backup()
            return self._number
        if is_alnum(r):
            self.backup()
            return self._identifier
        return self._punctuation(r)

    def _punctuation(self, r: str):
        """The one-character items: operators, parentheses and any other printable ASCII."""
        if r == "=":
            self.emit(ASSIGN)
        elif r == ":":
            if self.next() != "=":
                return self.errorf("expected :=")
            self.emit(DECLARE)
        elif r == "|":
            self.emit(PIPE)
        elif r == "(":
            self.emit(LEFT_PAREN)
            self.paren_depth += 1
        elif r == ")":
            # Go 1.19 emits the paren before reporting, so the parser usually complains first.
            self.emit(RIGHT_PAREN)
            self.paren_depth -= 1
            if self.paren_depth < 0:
                return self.errorf(f"unexpected right paren {go_U(r)}")
        elif r <= "\x7f" and r.isprintable():
            self.emit(CHAR)
        else:
            return self.errorf(f"unrecognized character in action: {go_U(r)}")
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
        self.emit(SPACE)
        return self._inside_action

    def _identifier(self):
        while True:
            r = self.next()
            if is_alnum(r):
                continue
            self.backup()
            word = self.input[self.start:self.pos]
            if not self.at_terminator():
                return self.errorf(f"bad character {go_U(r)}")
            if word in _KEYWORDS:
                self.emit(_KEYWORDS[word])
            elif word in ("true", "false"):
                self.emit(BOOL)
            else:
                self.emit(IDENTIFIER)
            return self._inside_action

    def _field(self):
        return self._field_or_variable(FIELD)

    def _variable(self):
        if self.at_terminator():
            self.emit(VARIABLE)
            return self._inside_action
        return self._field_or_variable(VARIABLE)

    def _field_or_variable(self, typ: int):
        if self.at_terminator():
            self.emit(VARIABLE if typ == VARIABLE else DOT)
            return self._inside_action
        while True:
            r = self.next()
            if not is_alnum(r):
                self.backup()
                break
        if not self.at_terminator():
            return self.errorf(f"bad character {go_U(r)}")
        self.emit(typ)
        return self._inside_action

    # -- states: literals ----------------------------------------------------------------

    def _quoted(self, end: str, typ: int, what: str):
        """A '...' or "..." literal: up to ``end``, skipping escapes, on one line."""
        while True:
            r = self.next()
            if r == "\\":
                r = self.next()
                if r not in ("", "\n"):
                    continue
                return self.errorf(f"unterminated {what}")
            if r in ("", "\n"):
                return self.errorf(f"unterminated {what}")
            if r == end:
                break
        self.emit(typ)
        return self._inside_action

    def _char(self):
        return self._quoted("'", CHAR_CONSTANT, "character constant")

    def _quote(self):
        return self._quoted('"', STRING, "quoted string")

    def _raw_quote(self):
        while True:
            r = self.next()
            if r == "":
                return self.errorf("unterminated raw quoted string")
            if r == "`":
                break
        self.emit(RAW_STRING)
        return self._inside_action

    def _number(self):
        bad = "bad number syntax: {}"
        if not self._scan_number():
            return self.errorf(bad.format(go_quote(self.input[self.start:self.pos])))
        if self.peek() in ("+", "-"):
            if not self._scan_number() or self.input[self.pos - 1] != "i":
                return self.errorf(bad.format(go_quote(self.input[self.start:self.pos])))
            self.emit(COMPLEX)
        else:
            self.emit(NUMBER)
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
        if is_alnum(self.peek()):
            self.next()
            return False
        return True
