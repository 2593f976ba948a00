"""Compile-time checks: the errors Go would raise on executing a node, found before any
container runs.

Every field's type is static, so a misspelt field, a method or function given the wrong
number or type of arguments is found at compile time, and reported with the text and
position Go gives when it executes the node (``exec_error``). What depends on values (a
missing map key, an index out of range, ...) is left to ``execute``, which does exactly
what Go does. Types here are Go type names; ``None`` means "not known before run time".
"""

from __future__ import annotations

from ..errors import TemplateError
from .dialect import Dialect
from .execute import exec_error
from .members import static_member
from .nodes import ListNode, Node, PipeNode
from .values import ANY, INT, NILABLE, STRING, VALUE, Func


def check(name: str, text: str, root: ListNode, dialect: Dialect) -> None:
    """Raise ``TemplateError`` for the first error Go would report on executing ``root``."""
    _Checker(name, text, dialect).node(root, dialect.dot_type)


class _Checker:
    """Walks the tree on types, as Go's exec.go walks it on values.

    It follows Go's evaluation order (arity before arguments, left to right) so that the
    first error it reports is the one Go reports. It is more eager than Go in two places:
    ``if`` branches Go would skip and ``and``/``or`` arguments Go would not reach are
    checked too.
    """

    def __init__(self, name: str, text: str, dialect: Dialect) -> None:
        self.name = name
        self.text = text
        self.funcs = dialect.funcs
        self.root_type = dialect.dot_type  # the type of ``$``

    def fail(self, node: Node, msg: str):
        raise TemplateError(exec_error(self.name, self.text, node, msg))

    def node(self, n: Node, dot: str | None) -> None:
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

    def pipe(self, p: PipeNode, dot: str | None) -> str | None:
        t = None
        for i, cmd in enumerate(p.cmds):
            t = self.command(cmd.args[0], cmd.args[1:], i > 0, t, dot)
        return t

    def command(self, first: Node, args: list[Node], final: bool, final_t: str | None,
                dot: str | None) -> str | None:
        """Go's evalCommand."""
        kind = first.kind
        if kind == "identifier":
            return self.call(first, first.ident, self.funcs[first.ident], args, final, final_t,
                             dot)
        if kind == "field":
            return self.chain(first, dot, first.ident, args, final, final_t, dot)
        base = self.root_type if kind == "variable" and first.ident[0] == "$" else None
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
    def literal_type(n: Node) -> str | None:
        if n.kind == "number":
            return "int" if n.is_int and not any(c in n.text for c in ".eEpP") else None
        return {"string": "string", "bool": "bool"}.get(n.kind)

    def arity(self, node: Node, name: str, fun: Func, nargs: int, final: bool) -> None:
        err = fun.arity_error(name, nargs, final)
        if err:
            self.fail(node, err)

    def call(self, node: Node, name: str, fun: Func, args: list[Node], final: bool,
             final_t: str | None, dot: str | None) -> str | None:
        """Go's evalCall, on types."""
        self.arity(node, name, fun, len(args), final)
        if fun.builtin:  # and/or take anything
            for arg in args:
                self.arg(arg, VALUE, dot)
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

    def validate(self, node: Node, t: str | None, typ: str | None) -> str | None:
        """Go's validateType, on types (``None`` = not known before run time)."""
        if t is not None and typ not in (None, ANY, VALUE) and t != typ:
            self.fail(node, f"wrong type for value; expected {typ}; got {t}")
        return t

    def arg(self, n: Node, typ: str | None, dot: str | None) -> str | None:
        """Go's evalArg, on types."""
        kind = n.kind
        if kind == "dot":
            return self.validate(n, dot, typ)
        if kind == "nil":
            if typ is not None and typ not in NILABLE:
                self.fail(n, f"cannot assign nil to {typ}")
            return None
        if kind == "field":
            return self.validate(n, self.chain(n, dot, n.ident, [], False, None, dot), typ)
        if kind == "variable":
            base = self.root_type if n.ident[0] == "$" else None
            if len(n.ident) > 1:
                base = self.chain(n, base, n.ident[1:], [], False, None, dot)
            return self.validate(n, base, typ)
        if kind == "pipe":
            self.pipe(n, dot)
            return None
        if kind == "identifier":
            t = self.call(n, n.ident, self.funcs[n.ident], [], False, None, dot)
            return self.validate(n, t, typ)
        if kind == "chain":
            self.arg(n.node, None, dot)
            return None
        if typ == "bool" and kind != "bool":
            self.fail(n, f"expected bool; found {n}")
        if typ == INT and not (kind == "number" and n.is_int):
            self.fail(n, f"expected integer; found {n}")
        if typ == STRING and kind != "string":
            self.fail(n, f"expected string; found {n}")
        if typ not in (None, ANY, VALUE, STRING, INT, "bool"):
            self.fail(n, f"can't handle {n} for arg of type {typ}")
        return self.literal_type(n)

    def chain(self, node: Node, typ: str | None, names: list[str], args: list[Node],
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
            typ, method, err = static_member(typ, name)
            if err:
                self.fail(node, err)
            if method is not None:
                if last:
                    return self.call(node, name, method, args, final, final_t, dot)
                self.arity(node, name, method, 0, False)
            elif last and (args or final):
                self.fail(node, f"{name} has arguments but cannot be invoked as function")
        return typ
