"""Go's ``fmt``, the part a template needs: ``%v`` for action output, and
``print``/``printf``/``println``.

A port of Go 1.19's ``fmt/print.go`` and ``fmt/format.go`` (``pp`` and its ``fmt``),
including Go's in-band errors (``%!d(string=web1)``, ``%!s(MISSING)``, ``%!(EXTRA ...)``),
which are output, not exceptions.

Docker's tags do not need all of fmt, so some of it is refused with a ``CallError`` (the
executor reports it as ``error calling printf: ...``) instead of being rendered wrongly:
argument indexes (``%[2]s``), ``*`` widths and precisions, and float formatting other than
plain ``%v``. Floats only come from template constants, so they are always finite.
"""

from __future__ import annotations

from typing import Any

from .gotime import GoMonth, GoTime
from .literals import can_backquote, go_quote
from .members import INFO_FIELDS
from .values import NO_VALUE, CallError, InfoRef, InfoValue, type_name


def _shortest_digits(a: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of ``a >= 0``, and the position of the decimal
    point: ``a == 0.<digits> * 10**dp``. ``repr`` already gives the shortest digits."""
    mantissa, _, exp = repr(a).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    leading_zeros = len(whole) + len(frac) - len(digits)
    digits = digits.rstrip("0")
    if not digits:
        return "0", 1
    return digits, len(whole) + int(exp or 0) - leading_zeros


def format_float(v: float, verb: str) -> str:
    """``strconv.FormatFloat(v, verb, -1, 64)`` for e, f and g: the shortest digits."""
    neg = "-" if v < 0 or (v == 0 and str(v).startswith("-")) else ""
    d, dp = _shortest_digits(abs(v))
    if verb == "g":
        # Shortest %g: strconv uses precision 6 to choose between %e and %f.
        verb = "e" if not -4 <= dp - 1 < 6 else "f"
    if verb == "e":
        mant = d[0] + ("." + d[1:] if len(d) > 1 else "")
        exp = dp - 1 if d != "0" else 0
        return f"{neg}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        whole, frac = "0", "0" * (-dp) + d
    else:
        whole, frac = (d + "0" * dp)[:dp] if dp > len(d) else d[:dp], d[dp:]
    return neg + whole + ("." + frac if frac else "")


class Printer:
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

    # -- format.go: padding and the formatting of one value -------------------------------

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

    def pad_unzeroed(self, s: str) -> None:
        """Pad with spaces even under the 0 flag, as Go does for numbers it signs itself."""
        zero, self.zero = self.zero, False
        self.pad(s)
        self.zero = zero

    def fmt_s(self, s: str) -> None:
        if self.prec_present:
            s = s[:self.prec]
        self.pad(s)

    def bad_verb(self, verb: str) -> None:
        self.erroring = True
        self.buf.append("%!" + verb + "(")
        if self.arg is not None and self.arg is not NO_VALUE:
            self.buf.append(type_name(self.arg) + "=")
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

    def fmt_integer(self, v: int, verb: str) -> None:
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
            if self.sharp and can_backquote(r):
                self.pad("'" + r + "'")
            else:
                self.pad(go_quote(r, "'"))
        elif verb == "U":
            s = f"U+{v:04X}" if v >= 0 else f"U+{v & (2**64 - 1):04X}"
            if self.sharp and 0 <= v <= 0x10FFFF and chr(v).isprintable():
                s += " '" + chr(v) + "'"
            self.pad_unzeroed(s)
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
        sign = "-" if negative else "+" if self.plus else " " if self.space else ""
        self.pad_unzeroed(sign + s)

    def fmt_float(self, v: float, verb: str) -> None:
        if verb in "bgGxXfFeE":
            raise CallError(f"logpipe does not support %{verb} for floats in printf, only %v")
        if verb != "v":
            self.bad_verb(verb)
            return
        if self.prec_present:
            raise CallError("logpipe does not support a precision for floats in printf")
        num = format_float(v, "g")
        if num[0] not in "+-":
            num = "+" + num
        if self.space and num[0] == "+" and not self.plus:
            num = " " + num[1:]
        if self.plus or num[0] != "+":
            if self.zero and self.wid_present and self.wid > len(num):
                self.buf.append(num[0])  # the sign goes before Go's zero padding
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
        if self.sharp and can_backquote(s):
            self.pad("`" + s + "`")
        elif self.plus:  # strconv.QuoteToASCII
            self.pad("".join(c if c.isascii() else go_quote(c)[1:-1] if not c.isprintable()
                             else f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"
                             for c in go_quote(s)))
        else:
            self.pad(go_quote(s))

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

    # -- print.go: dispatch on the value ---------------------------------------------------

    def handle_methods(self, v: Any, verb: str) -> bool:
        """Go's Stringer/GoStringer calls: time.Time and time.Month print themselves."""
        if self.erroring:
            return False
        if self.sharp_v:
            if isinstance(v, GoTime):
                self.fmt_s(v.go_string())
                return True
            return False
        if verb in "vsxXq" and isinstance(v, (GoTime, GoMonth)):
            self.fmt_string(v.string(), verb)
            return True
        return False

    def print_arg(self, arg: Any, verb: str) -> None:
        self.arg = arg
        if arg is None or arg is NO_VALUE:
            if verb in "Tv":
                self.pad("<nil>")
            else:
                self.bad_verb(verb)
            return
        if verb == "T":
            self.fmt_s(type_name(arg))
            return
        if not self.handle_methods(arg, verb):  # only time.Time and time.Month have any
            self.print_value(arg, verb, 0)

    def print_value(self, v: Any, verb: str, depth: int) -> None:
        if depth > 0 and v is not NO_VALUE:
            self.arg = v
            if self.handle_methods(v, verb):
                return
        if v is None:  # a nil interface{} inside a JSON array or object
            self.pad("<nil>")
        elif isinstance(v, bool):
            self.fmt_bool(v, verb)
        elif isinstance(v, int):
            self.fmt_integer(v, verb)
        elif isinstance(v, float):
            self.fmt_float(v, verb)
        elif isinstance(v, str):
            self.fmt_string(v, verb)
        elif isinstance(v, tuple):
            self._print_slice(v, verb, depth)
        elif isinstance(v, dict):
            self._print_map(v, verb, depth)
        elif isinstance(v, InfoRef):
            self.buf.append("&")
            self.print_value(InfoValue(v.info), verb, depth + 1)
        elif isinstance(v, InfoValue):
            self._print_info(v, verb, depth)
        elif isinstance(v, GoTime):
            self.fmt_s(v.string())  # Go would print the struct's private fields here
        else:
            self.bad_verb(verb)

    def _print_slice(self, v: tuple, verb: str, depth: int) -> None:
        self.buf.append(type_name(v) + "{" if self.sharp_v else "[")
        for i, e in enumerate(v):
            if i:
                self.buf.append(", " if self.sharp_v else " ")
            self.print_value(e, verb, depth + 1)
        self.buf.append("}" if self.sharp_v else "]")

    def _print_map(self, v: dict, verb: str, depth: int) -> None:
        self.buf.append(type_name(v) + "{" if self.sharp_v else "map[")
        for i, k in enumerate(sorted(v)):  # Go's fmt sorts map keys
            if i:
                self.buf.append(", " if self.sharp_v else " ")
            self.print_value(k, verb, depth + 1)
            self.buf.append(":")
            self.print_value(v[k], verb, depth + 1)
        self.buf.append("}" if self.sharp_v else "]")

    def _print_info(self, v: InfoValue, verb: str, depth: int) -> None:
        if self.sharp_v:
            self.buf.append("logger.Info")
        self.buf.append("{")
        for i, (name, (_, get)) in enumerate(INFO_FIELDS.items()):
            if i:
                self.buf.append(", " if self.sharp_v else " ")
            if self.plus_v or self.sharp_v:
                self.buf.append(name + ":")
            self.print_value(get(v.info), verb, depth + 1)
        self.buf.append("}")

    # -- print.go: Print, Println, Printf ------------------------------------------------

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
        i = 0
        while i < end:
            last = i
            while i < end and fmt[i] != "%":
                i += 1
            if i > last:
                self.buf.append(fmt[last:i])
            if i >= end:
                break
            i, simple = self._flags(fmt, i + 1, a, arg_num)
            if simple:
                arg_num += 1
                continue
            i = self._width_and_precision(fmt, i)
            if i >= end:
                self.buf.append("%!(NOVERB)")
                break
            verb = fmt[i]
            i += 1
            if verb == "%":  # absorbs no operand and ignores width and precision
                self.buf.append("%")
            elif arg_num >= len(a):
                self.buf.append("%!" + verb + "(MISSING)")
            else:
                self._print_verb(a[arg_num], verb)
                arg_num += 1
        if arg_num < len(a):
            self._extra(a[arg_num:])
        return self.out()

    def _flags(self, fmt: str, i: int, a: list[Any], arg_num: int) -> tuple[int, bool]:
        """Read the flags after a ``%``; print at once a plain verb that follows them (Go's
        fast path). Returns the next index and whether an operand was printed."""
        self.clear_flags()
        while i < len(fmt):
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
                    self._print_verb(a[arg_num], c)
                    return i + 1, True
                break
            i += 1
        return i, False

    def _width_and_precision(self, fmt: str, i: int) -> int:
        """Read ``[width][.precision]``; refuse Go's ``[n]`` indexes and ``*`` operands."""
        _refuse_operand_syntax(fmt, i)
        self.wid, self.wid_present, i = _parse_num(fmt, i)
        if i + 1 < len(fmt) and fmt[i] == ".":
            i += 1
            _refuse_operand_syntax(fmt, i)
            self.prec, self.prec_present, i = _parse_num(fmt, i)
            if not self.prec_present:
                self.prec, self.prec_present = 0, True
        _refuse_operand_syntax(fmt, i, star=False)  # here Go reads a "*" as the verb
        return i

    def _print_verb(self, arg: Any, verb: str) -> None:
        if verb == "v":  # %#v is Go syntax, %+v names struct fields
            self.sharp_v, self.sharp = self.sharp, False
            self.plus_v, self.plus = self.plus, False
        self.print_arg(arg, verb)

    def _extra(self, args: list[Any]) -> None:
        """Go's ``%!(EXTRA type=value, ...)`` for operands no verb used."""
        self.clear_flags()
        self.buf.append("%!(EXTRA ")
        for k, arg in enumerate(args):
            if k:
                self.buf.append(", ")
            if arg is None or arg is NO_VALUE:
                self.buf.append("<nil>")
            else:
                self.buf.append(type_name(arg) + "=")
                self.print_arg(arg, "v")
        self.buf.append(")")


def _parse_num(fmt: str, start: int) -> tuple[int, bool, int]:
    """fmt's ``parsenum``: (number, present, next index); absurd widths count as absent."""
    end = len(fmt)
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


def _refuse_operand_syntax(fmt: str, i: int, star: bool = True) -> None:
    if fmt[i:i + 1] == "[":
        raise CallError("logpipe does not support argument indexes ([n]) in printf formats")
    if star and fmt[i:i + 1] == "*":
        raise CallError("logpipe does not support * widths or precisions in printf formats")


def sprint_v(v: Any) -> str:
    """``fmt.Sprint(v)`` of one value: how an action prints its result."""
    p = Printer()
    p.print_arg(v, "v")
    return p.out()
