"""Extra attributes: the ``labels``, ``labels-regex``, ``env`` and ``env-regex`` log opts.

Size: longer than 500 lines because the RE2 translator that gives Go's error texts and the
matching it guards are one contract with Docker's two regex options; split, each half would
need the other's tables.

Docker's ``logger.Info.ExtraAttributes`` (moby ``daemon/logger/loginfo.go``) picks container
labels and environment variables by name or by regular expression; drivers attach them to
every message, each after mangling keys its own way (``mangle_journald``, ``mangle_gelf``).

The regexes are Go RE2 syntax. ``compile_go_regexp`` translates RE2 into an equivalent
Python pattern, refusing what RE2 refuses (backreferences, lookarounds, ...) with Go's own
error text, so that ``error parsing regexp: missing closing ]: `[``` reads as in Docker.

``labels-regex`` and ``env-regex`` come from whoever creates a container and run in the
daemon (at create, on its event loop) and in the shim, so they are *matched* by RE2 itself
(``google-re2``): linear time, as in Go, where Python's backtracking ``re`` took 10 s for
``^(a+)+$`` against a 30-character label and froze the whole API meanwhile. The translator
still checks the syntax first, for Go's error texts. ``re2`` is imported only when one of the
two options is set, so a shim that does not use them never loads it.

This module is pure: it reads the options and the ``LogInfo`` it is given, nothing else.
"""

from __future__ import annotations

import functools
import re
from typing import Callable, Mapping, Protocol

from .driver import LogInfo
from .errors import LogOptError

__all__ = ["check_without_container", "compile_go_regexp", "compile_selector", "extra_attrs",
           "mangle_gelf", "mangle_journald"]


def extra_attrs(opts: Mapping[str, str], info: LogInfo,
                key_mod: Callable[[str], str] | None = None) -> dict[str, str]:
    """The union of the labels and env vars the four options select, as Docker builds it.

    ``key_mod`` mangles each key as it is inserted (Docker's ``keyMod``), so that keys that
    collide after mangling resolve exactly as they do in Docker. A bad regex raises
    ``LogOptError`` in Go's wording.
    """
    extra: dict[str, str] = {}

    def put(key: str, value: str) -> None:
        extra[key_mod(key) if key_mod is not None else key] = value

    # labels-regex applies on its own: 20.10.2 wrongly required labels to be set too
    # (moby#42039); the 20.10.24 source checks the regex option itself.
    _select(info.labels, opts.get("labels", ""), opts.get("labels-regex", ""), put)
    env: dict[str, str] = {}
    for entry in info.env:
        key, sep, value = entry.partition("=")
        if sep:  # entries without "=" are not variables (strings.SplitN(e, "=", 2))
            env[key] = value
    _select(env, opts.get("env", ""), opts.get("env-regex", ""), put)
    return extra


def check_without_container(opts: Mapping[str, str], tag: bool = True) -> None:
    """What a driver can check of ``labels-regex``/``env-regex`` and ``tag`` when there is no
    container yet (daemon.json defaults at daemon start): the regexes compile, the template
    parses. With a container, drivers render them for real instead."""
    if opts.get("labels-regex") or opts.get("env-regex"):
        extra_attrs(opts, LogInfo("", ""))
    if tag and opts.get("tag"):
        from .template import compile_template  # large: only when a tag is set

        compile_template(opts["tag"])


def _select(values: Mapping[str, str], names: str, pattern: str,
            put: Callable[[str, str], None]) -> None:
    """Docker's selection from one mapping: the named keys that exist, then every key the
    (unanchored) regex matches. Go's strings.Split: no trimming, "a, b" names "a" and " b"."""
    for key in _names(names):
        if key in values:
            put(key, values[key])
    if pattern:
        rx = compile_selector(pattern)
        for key, value in values.items():
            if rx.search(key):
                put(key, value)


def _names(option: str) -> list[str]:
    return option.split(",") if option else []


def mangle_journald(key: str) -> str:
    """journald's field-name rule: ``com.example.team-x`` -> ``COM_EXAMPLE_TEAM_X``.

    a-z are upper-cased, every other character not in [A-Z0-9] becomes ``_``, and leading
    underscores are dropped (journald reserves them). Docker's ``sanitizeKeyMod``.
    """
    out: list[str] = []
    for c in key:
        if "a" <= c <= "z":
            c = c.upper()
        elif not ("A" <= c <= "Z" or "0" <= c <= "9"):
            c = "_"
        if out or c != "_":
            out.append(c)
    return "".join(out)


def mangle_gelf(key: str) -> str:
    """GELF additional fields start with ``_``; Docker adds one unless the key has it."""
    return key if key.startswith("_") else "_" + key


# ---------------------------------------------------------------------------------------
# Go RE2 syntax -> Python ``re``. A port of the parse loop of Go's regexp/syntax (Perl
# flags, as regexp.Compile uses), emitting Python syntax with the same meaning:
#   - ``^``/``$`` match only at the text's ends unless (?m); ``$`` never before a final \n;
#   - ``\d \s \w \b`` and POSIX classes are ASCII; ``.`` excludes \n unless (?s);
#   - (?U) swaps greedy and lazy; flags may change mid-expression and end with their group.

_FOLD, _MULTI_LINE, _DOT_NL, _NON_GREEDY = 1, 2, 4, 8
_FLAG_BITS = {"i": _FOLD, "m": _MULTI_LINE, "s": _DOT_NL, "U": _NON_GREEDY}
_MAX_RUNE = 0x10FFFF

_PERL_GROUPS = {
    "d": (False, [(0x30, 0x39)]),
    "s": (False, [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)]),
    "w": (False, [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]),
}
_PERL_GROUPS.update({k.upper(): (True, v[1]) for k, v in list(_PERL_GROUPS.items())})

_POSIX_GROUPS = {
    "alnum": [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
    "alpha": [(0x41, 0x5A), (0x61, 0x7A)],
    "ascii": [(0x00, 0x7F)],
    "blank": [(0x09, 0x09), (0x20, 0x20)],
    "cntrl": [(0x00, 0x1F), (0x7F, 0x7F)],
    "digit": [(0x30, 0x39)],
    "graph": [(0x21, 0x7E)],
    "lower": [(0x61, 0x7A)],
    "print": [(0x20, 0x7E)],
    "punct": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
    "space": [(0x09, 0x0D), (0x20, 0x20)],
    "upper": [(0x41, 0x5A)],
    "word": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "xdigit": [(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
}


class _SyntaxError(Exception):
    """Go's ``*syntax.Error``: ``error parsing regexp: <code>: `<expr>```."""

    def __init__(self, code: str, expr: str) -> None:
        super().__init__(f"error parsing regexp: {code}: `{expr}`")


class _Unsupported(Exception):
    """Valid RE2 that logpipe cannot express with Python's ``re``."""


def _py_char(cp: int) -> str:
    c = chr(cp)
    if c.isascii() and c.isalnum():
        return c
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def _class_text(ranges: list[tuple[int, int]], negate: bool) -> str:
    if not ranges:
        return "[^\\x00-\\U0010ffff]" if not negate else "[\\x00-\\U0010ffff]"
    body = "".join(_py_char(lo) if lo == hi else f"{_py_char(lo)}-{_py_char(hi)}"
                   for lo, hi in ranges)
    return f"[{'^' if negate else ''}{body}]"


def _negate_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, nxt = [], 0
    for lo, hi in sorted(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= _MAX_RUNE:
        out.append((nxt, _MAX_RUNE))
    return out


class _Group:
    __slots__ = ("saved_flags", "items")

    def __init__(self, saved_flags: int) -> None:
        self.saved_flags = saved_flags
        self.items: list[str | None] = []  # None marks "|"


class _Translator:
    def __init__(self, expr: str) -> None:
        self.s = expr
        self.flags = 0
        self.stack = [_Group(0)]
        self.unsupported = ""  # reported only if RE2 finds no syntax error further on

    def run(self) -> str:
        s, n = self.s, len(self.s)
        t = 0
        last_repeat = -1
        while t < n:
            repeat = -1
            c = s[t]
            if c == "(":
                if t + 1 < n and s[t + 1] == "?":
                    t = self.perl_flags(t)
                else:
                    self.open(self.flags)
                    t += 1
            elif c == "|":
                self.stack[-1].items.append(None)
                t += 1
            elif c == ")":
                if len(self.stack) < 2:
                    raise _SyntaxError("unexpected )", s)
                group = self.stack.pop()
                self.flags = group.saved_flags
                self.atom("(?:" + self.join(group.items) + ")")
                t += 1
            elif c == "^":
                self.atom("(?m:^)" if self.flags & _MULTI_LINE else "\\A")
                t += 1
            elif c == "$":
                self.atom("(?m:$)" if self.flags & _MULTI_LINE else "\\Z")
                t += 1
            elif c == ".":
                self.atom("(?s:.)" if self.flags & _DOT_NL else ".")
                t += 1
            elif c == "[":
                t = self.char_class(t)
            elif c in "*+?":
                repeat = t
                t = self.repeat(c, t, t + 1, last_repeat)
            elif c == "{":
                parsed = _parse_repeat(s, t)
                if parsed is None:  # not a valid repeat: a literal {
                    self.literal(ord("{"))
                    t += 1
                else:
                    lo, hi, after = parsed
                    if lo < 0 or lo > 1000 or hi > 1000 or 0 <= hi < lo:
                        raise _SyntaxError("invalid repeat count", s[t:after])
                    op = f"{{{lo}}}" if hi == lo else f"{{{lo},}}" if hi < 0 else f"{{{lo},{hi}}}"
                    repeat = t
                    t = self.repeat(op, t, after, last_repeat)
            elif c == "\\":
                t = self.backslash(t)
            else:
                self.literal(ord(c))
                t += 1
            last_repeat = repeat
        if len(self.stack) > 1:
            raise _SyntaxError("missing closing )", s)
        if self.unsupported:
            raise _Unsupported(self.unsupported)
        return self.join(self.stack[0].items)

    @staticmethod
    def join(items: list[str | None]) -> str:
        return "".join("|" if i is None else i for i in items)

    def open(self, saved_flags: int) -> None:
        if len(self.stack) > 1000:
            raise _SyntaxError("expression nests too deeply", self.s)
        self.stack.append(_Group(saved_flags))

    def atom(self, text: str) -> None:
        self.stack[-1].items.append(text)

    def literal(self, cp: int) -> None:
        c = chr(cp)
        if self.flags & _FOLD and c.lower() != c.upper():
            self.atom(f"(?i:{_py_char(cp)})")
        else:
            self.atom(_py_char(cp))

    def repeat(self, op: str, before: int, after: int, last_repeat: int) -> int:
        s = self.s
        greedy = not self.flags & _NON_GREEDY
        if after < len(s) and s[after] == "?":
            after += 1
            greedy = not greedy
        if last_repeat >= 0:  # RE2 rejects a** (and Python's a*+ meaning)
            raise _SyntaxError("invalid nested repetition operator", s[last_repeat:after])
        items = self.stack[-1].items
        if not items or items[-1] is None:
            raise _SyntaxError("missing argument to repetition operator", s[before:after])
        items[-1] = f"(?:{items[-1]}){op}{'' if greedy else '?'}"
        return after

    def perl_flags(self, t: int) -> int:
        s = self.s
        rest = s[t:]
        if len(rest) > 4 and rest[2] == "P" and rest[3] == "<":
            end = rest.find(">")
            if end < 0:
                raise _SyntaxError("invalid named capture", rest)
            name = rest[4:end]
            if not name or not all(c == "_" or (c.isascii() and c.isalnum()) for c in name):
                raise _SyntaxError("invalid named capture", rest[:end + 1])
            self.open(self.flags)  # names are irrelevant to matching; Go allows duplicates
            return t + end + 1
        i = t + 2
        flags, sign, saw_flag = self.flags, 1, False
        while i < len(s):
            c = s[i]
            i += 1
            if c in _FLAG_BITS:
                flags = flags | _FLAG_BITS[c] if sign > 0 else flags & ~_FLAG_BITS[c]
                saw_flag = True
            elif c == "-" and sign > 0:
                sign, saw_flag = -1, False
            elif c in ":)" and (sign > 0 or saw_flag):
                if c == ":":
                    self.open(self.flags)
                self.flags = flags
                return i
            else:
                break
        # (?=, (?!, (?<=, (?<name>, (?P=name), (?#...), (?>...) all end here, as in RE2.
        raise _SyntaxError("invalid or unsupported Perl syntax", s[t:i])

    def backslash(self, t: int) -> int:
        s = self.s
        if t + 1 < len(s):
            c = s[t + 1]
            # Python's \B never matches an empty text; RE2's does.
            simple = {"A": "\\A", "z": "\\Z", "b": "(?a:\\b)", "B": "(?:(?a:\\B)|\\A\\Z)"}
            if c in simple:
                self.atom(simple[c])
                return t + 2
            if c == "C":
                raise _SyntaxError("invalid escape sequence", s[t:t + 2])
            if c == "Q":
                end = s.find("\\E", t + 2)
                lit = s[t + 2:end] if end >= 0 else s[t + 2:]
                for ch in lit:
                    self.literal(ord(ch))
                return end + 2 if end >= 0 else len(s)
            if c in "pP":
                return self.unicode_class(t)
            if c in _PERL_GROUPS:
                negate, ranges = _PERL_GROUPS[c]
                self.class_atom(ranges, negate)
                return t + 2
        cp, t = self.escape(t)
        self.literal(cp)
        return t

    def unicode_class(self, t: int) -> int:
        """Skip ``\\pL`` / ``\\p{Name}`` as RE2 parses it; Python cannot match it."""
        s = self.s
        if s[t + 2:t + 3] == "{":
            end = s.find("}", t)
            if end < 0:
                raise _SyntaxError("invalid character class range", s[t:])
            end += 1
        else:
            end = min(t + 3, len(s))
        self.unsupported = self.unsupported or f"Unicode class `{s[t:end]}`"
        self.atom("(?!)")
        return end

    def class_atom(self, ranges: list[tuple[int, int]], negate: bool) -> None:
        text = _class_text(ranges, negate)
        self.atom(f"(?i:{text})" if self.flags & _FOLD else text)

    def escape(self, t: int) -> tuple[int, int]:
        """Go's parseEscape: one escaped character at ``s[t] == '\\'``."""
        s = self.s
        if t + 1 >= len(s):
            raise _SyntaxError("trailing backslash at end of expression", "")
        c = s[t + 1]
        i = t + 2
        if c.isascii() and not c.isalnum():
            return ord(c), i  # escaped punctuation is always itself
        if c in "1234567" and not (i < len(s) and "0" <= s[i] <= "7"):
            raise _SyntaxError("invalid escape sequence", s[t:i])  # a backreference
        if "0" <= c <= "7":
            j = i
            while j < len(s) and j < i + 2 and "0" <= s[j] <= "7":
                j += 1
            return int(s[t + 1:j], 8), j
        if c == "x":
            if i >= len(s):
                raise _SyntaxError("invalid escape sequence", s[t:i])
            if s[i] == "{":
                j = i + 1
                while j < len(s) and s[j] != "}" and s[j] in "0123456789abcdefABCDEF":
                    j += 1
                if j >= len(s):
                    raise _SyntaxError("invalid escape sequence", s[t:j])
                if s[j] != "}" or j == i + 1 or int(s[i + 1:j], 16) > 0x10FFFF:
                    raise _SyntaxError("invalid escape sequence", s[t:j + 1])
                return int(s[i + 1:j], 16), j + 1
            pair = s[i:i + 2]
            if len(pair) < 2 or any(d not in "0123456789abcdefABCDEF" for d in pair):
                raise _SyntaxError("invalid escape sequence", s[t:i + 2])
            return int(pair, 16), i + 2
        simple = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}
        if c in simple:
            return simple[c], i
        raise _SyntaxError("invalid escape sequence", s[t:i])

    def char_class(self, t: int) -> int:
        """Go's parseClass: ``s[t] == '['``."""
        s, n, start = self.s, len(self.s), t
        i = t + 1
        negate = i < n and s[i] == "^"
        if negate:
            i += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while i >= n or s[i] != "]" or first:
            first = False
            if n - i > 2 and s[i] == "[" and s[i + 1] == ":":
                end = s.find(":]", i + 2)
                if end >= 0:
                    name = s[i:end + 2]
                    key = name[2:-2]
                    neg = key.startswith("^")
                    group = _POSIX_GROUPS.get(key[1:] if neg else key)
                    if group is None:
                        raise _SyntaxError("invalid character class range", name)
                    ranges += _negate_ranges(group) if neg else group
                    i = end + 2
                    continue
            if i + 1 < n and s[i] == "\\" and s[i + 1] in "pP":
                i = self.unicode_class(i)
                continue
            if i + 1 < n and s[i] == "\\" and s[i + 1] in _PERL_GROUPS:
                neg, group = _PERL_GROUPS[s[i + 1]]
                ranges += _negate_ranges(group) if neg else group
                i += 2
                continue
            rng_start = i
            lo, i = self.class_char(i, start)
            hi = lo
            if n - i >= 2 and s[i] == "-" and s[i + 1] != "]":
                hi, i = self.class_char(i + 1, start)
                if hi < lo:
                    raise _SyntaxError("invalid character class range", s[rng_start:i])
            ranges.append((lo, hi))
        self.class_atom(ranges, negate)
        return i + 1

    def class_char(self, i: int, class_start: int) -> tuple[int, int]:
        if i >= len(self.s):
            raise _SyntaxError("missing closing ]", self.s[class_start:])
        if self.s[i] == "\\":
            return self.escape(i)
        return ord(self.s[i]), i + 1


def _parse_repeat(s: str, t: int) -> tuple[int, int, int] | None:
    """Go's parseRepeat for ``{n}``, ``{n,}``, ``{n,m}`` at ``s[t]``: (min, max, end)."""
    m = re.compile(r"\{(\d+)(,(\d*))?\}").match(s, t)
    if not m:
        return None
    for g in (m.group(1), m.group(3)):
        if g and len(g) > 1 and g[0] == "0":
            return None  # Go refuses leading zeros: the brace is then a literal
    lo = int(m.group(1)) if len(m.group(1)) <= 8 else -1
    if m.group(2) is None:
        hi = lo
    elif m.group(3) == "":
        hi = -1
    else:
        hi = int(m.group(3)) if len(m.group(3)) <= 8 else 1001
    return lo, hi, m.end()


@functools.lru_cache(maxsize=128)
def compile_go_regexp(expr: str) -> re.Pattern[str]:
    """Compile a Go RE2 expression (``regexp.Compile``) into a Python pattern.

    Use ``.search`` for Go's ``MatchString`` (unanchored). Raises ``LogOptError`` with Go's
    message for what RE2 rejects, and a logpipe message for the rare RE2 constructs that
    Python's ``re`` cannot express (Unicode classes such as ``\\pL``).
    """
    try:
        return re.compile(_Translator(expr).run())
    except _SyntaxError as e:
        raise LogOptError(str(e)) from None
    except _Unsupported as e:
        raise LogOptError(
            f"unsupported regexp `{expr}`: logpipe cannot evaluate the {e}; "
            "spell the characters out as a [...] class instead") from None
    except re.error as e:  # a translation gap: say so rather than guess
        raise LogOptError(f"unsupported regexp `{expr}`: {e}") from None


class Matcher(Protocol):
    """What a compiled selector offers: Go's ``MatchString`` is ``search`` (unanchored)."""

    def search(self, text: str) -> object: ...


@functools.lru_cache(maxsize=128)
def compile_selector(expr: str) -> Matcher:
    """Compile a Go RE2 expression for ``labels-regex``/``env-regex``: RE2 matches it, in
    time linear in the text whatever the expression (Go's guarantee, which Docker has).

    Syntax errors are Go's (``error parsing regexp: ...``), found by the same translator as
    ``compile_go_regexp``; Unicode classes (``\\pL``), which Python's ``re`` lacks, work here.
    """
    try:
        _Translator(expr).run()
    except _SyntaxError as e:
        raise LogOptError(str(e)) from None
    except _Unsupported:
        pass  # RE2 has what Python's re lacks
    try:
        import re2  # google-re2: only containers that use these options load it
    except ImportError:
        raise LogOptError("labels-regex and env-regex need the google-re2 package "
                          "(pip install google-re2)") from None
    options = re2.Options()
    options.log_errors = False  # errors are raised, not also printed on stderr
    try:
        return re2.compile(expr, options)
    except re2.error as e:  # a construct the translator let through: RE2's own words
        text = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) \
            else str(e)
        raise LogOptError(f"error parsing regexp: {text}") from None
