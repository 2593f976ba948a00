"""Running a parse tree: a port of Go 1.19's ``text/template/exec.go``.

``execute`` walks the tree with a dot (``*logger.Info`` for a tag, a JSON document for a
``--format``) and returns the text. Its errors are Go's, positioned as Go positions them
(``exec_error``), because Docker shows them to the user unchanged. Fields and methods are
reached only through ``members`` and map keys, functions only through the dialect's table.
"""

from __future__ import annotations

from typing import Any

from ..errors import TemplateError
from .dialect import Dialect
from .gofmt import sprint_v
from .gotime import GoTime
from .literals import go_quote, utf8_len
from .members import INFO_FIELDS, method_of, refused_time_method
from .nodes import (ChainNode, CommandNode, FieldNode, IdentifierNode, ListNode, Node,
                    NumberNode, PipeNode, RangeNode, VariableNode)
from .values import (ANY, INT, MISSING, NILABLE, NO_VALUE, STRING, VALUE, CallError, Func,
                     InfoRef, indirect, is_true, nil_of, type_name)


#: Nodes one rendering may walk. Nested ``range``s multiply (100 of them over two
#: arguments are 2**100 steps): Go would run until killed, and the daemon validates a tag
#: by rendering it, so a rendering that goes on is stopped and refused instead.
MAX_STEPS = 100_000


def execute(name: str, text: str, root: ListNode, dot: Any, dialect: Dialect) -> str:
    """The output of the tree ``root`` of template ``text`` run against ``dot``."""
    state = _State(name, text, dot, dialect)
    state.walk(dot, root)
    return "".join(state.out)


def exec_error(name: str, text: str, node: Node | None, msg: str) -> str:
    """Go's execution error: ``template: NAME:LINE:COL: executing "NAME" at <NODE>: MSG``."""
    if node is None:
        return f"template: {name}: {msg}"
    before = text[:node.pos]
    line = before.count("\n") + 1
    col = utf8_len(before[before.rfind("\n") + 1:])  # bytes from the line start (0-based)
    context = str(node)  # Go 1.19 does not shorten it (later Go versions cut it at 20 bytes)
    return f"template: {name}:{line}:{col}: executing {go_quote(name)} at <{context}>: {msg}"


class _BreakLoop(Exception):
    """{{break}}: unwinds to the enclosing range."""


class _ContinueLoop(Exception):
    """{{continue}}: unwinds to the next iteration of the enclosing range."""


class _State:
    """One execution of a template (Go's exec.go ``state``): the node being evaluated, for
    error positions, the variable stack and the output."""

    __slots__ = ("name", "text", "funcs", "missing_key_error", "node", "vars", "out", "steps")

    def __init__(self, name: str, text: str, dot: Any, dialect: Dialect) -> None:
        self.name = name
        self.text = text
        self.funcs = dialect.funcs
        self.missing_key_error = dialect.missing_key_error
        self.node: Node | None = None
        self.vars: list[list[Any]] = [["$", dot]]
        self.out: list[str] = []
        self.steps = 0

    def errorf(self, msg: str):
        raise TemplateError(exec_error(self.name, self.text, self.node, msg))

    # -- walking the tree ----------------------------------------------------------------

    def walk(self, dot: Any, node: Node) -> None:
        self.node = node
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise TemplateError(f"template: {self.name}: execution stopped after {MAX_STEPS} "
                                "steps: a tag must render in bounded time")
        kind = node.kind
        if kind == "text":
            self.out.append(node.text)
        elif kind == "action":
            val = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.node = node
                self.out.append("<no value>" if val is NO_VALUE else sprint_v(indirect(val)))
        elif kind == "list":
            for n in node.nodes:
                self.walk(dot, n)
        elif kind in ("if", "with"):
            mark = len(self.vars)
            try:
                val = self.eval_pipeline(dot, node.pipe)
                if is_true(val):
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

    def walk_range(self, dot: Any, r: RangeNode) -> None:
        mark = len(self.vars)
        try:
            val = self.eval_pipeline(dot, r.pipe)
            if isinstance(val, (tuple, dict)) and val:
                inner = len(self.vars)
                pairs = enumerate(val) if isinstance(val, tuple) else \
                    ((k, val[k]) for k in sorted(val))
                for index, elem in pairs:
                    self.range_once(r, inner, index, elem)
                return
            if not isinstance(val, (tuple, dict)) and val is not NO_VALUE:
                self.errorf(f"range can't iterate over {sprint_v(indirect(val))}")
            if r.else_list is not None:
                self.walk(dot, r.else_list)
        except _BreakLoop:
            pass
        finally:
            del self.vars[mark:]

    def range_once(self, r: RangeNode, inner: int, index: Any, elem: Any) -> None:
        """One iteration: set ``$i, $e`` and walk the body with the element as dot."""
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

    # -- pipelines and commands ------------------------------------------------------------

    def eval_pipeline(self, dot: Any, pipe: PipeNode) -> Any:
        self.node = pipe
        value: Any = MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
            if value is None:  # Go digs into an interface{}: a nil one is no value
                value = NO_VALUE
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

    def not_a_function(self, args: list[Node] | None, final: Any) -> None:
        if (args is not None and len(args) > 1) or final is not MISSING:
            self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: Any, cmd: CommandNode, final: Any) -> Any:
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
        self.errorf(f"can't evaluate command {go_quote(str(first))}")

    def ideal_constant(self, n: NumberNode) -> Any:
        """An untyped constant as Go types it: float if written as one, else int."""
        self.node = n
        t = n.text
        hex_int = len(t) > 2 and t[0] == "0" and t[1] in "xX" and not any(c in t for c in "pP")
        if n.is_float and not hex_int and t[0] != "'" and any(c in t for c in ".eEpP"):
            return n.float64
        if n.is_int:
            return n.int64
        if n.is_uint:
            self.errorf(f"{t} overflows int")
        return NO_VALUE

    # -- fields, variables, chains ---------------------------------------------------------

    def eval_field_node(self, dot: Any, f: FieldNode, args: list[Node] | None,
                        final: Any) -> Any:
        self.node = f
        return self.eval_field_chain(dot, dot, f, f.ident, args, final)

    def eval_chain_node(self, dot: Any, chain: ChainNode, args: list[Node] | None,
                        final: Any) -> Any:
        self.node = chain
        if chain.node.kind == "nil":
            self.errorf(f"indirection through explicit nil in {chain}")
        pipe = self.eval_arg(dot, None, chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.field, args, final)

    def eval_variable_node(self, dot: Any, v: VariableNode, args: list[Node] | None,
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

    def eval_field_chain(self, dot: Any, receiver: Any, node: Node, ident: list[str],
                         args: list[Node] | None, final: Any) -> Any:
        for name in ident[:-1]:
            receiver = self.eval_field(dot, name, node, None, MISSING, receiver)
        return self.eval_field(dot, ident[-1], node, args, final, receiver)

    def eval_field(self, dot: Any, name: str, node: Node, args: list[Node] | None,
                   final: Any, receiver: Any) -> Any:
        if receiver is NO_VALUE or receiver is None:
            # Go would fail on a JSON null ("nil pointer evaluating interface {}.X");
            # docker's typed structs mostly have a zero value there: print <no value>.
            return NO_VALUE
        method = method_of(receiver, name)
        if method is not None:
            return self.eval_call(dot, method, node, name, args, final)
        has_args = (args is not None and len(args) > 1) or final is not MISSING
        if isinstance(receiver, InfoRef) and name in INFO_FIELDS:
            if has_args:
                self.errorf(f"{name} has arguments but cannot be invoked as function")
            return INFO_FIELDS[name][1](receiver.info)
        if isinstance(receiver, dict):
            if has_args:
                self.errorf(f"{name} is not a method but has arguments")
            if name not in receiver and self.missing_key_error:
                self.errorf(f"map has no entry for key {go_quote(name)}")
            return receiver.get(name, NO_VALUE)
        if isinstance(receiver, GoTime) and refused_time_method(name):
            self.errorf(refused_time_method(name))
        self.errorf(f"can't evaluate field {name} in type {type_name(receiver)}")

    # -- calls and arguments ---------------------------------------------------------------

    def eval_function(self, dot: Any, node: IdentifierNode, cmd: Node,
                      args: list[Node] | None, final: Any) -> Any:
        self.node = node
        return self.eval_call(dot, self.funcs[node.ident], cmd, node.ident, args, final)

    def eval_call(self, dot: Any, fun: Func, node: Node, name: str,
                  args: list[Node] | None, final: Any) -> Any:
        args = args[1:] if args is not None else []
        err = fun.arity_error(name, len(args), final is not MISSING)
        if err:
            self.errorf(err)
        if fun.builtin:
            return self.and_or(dot, name, args, final)
        argv = self.call_args(dot, fun, args, final)
        try:
            return fun.fn(*argv)
        except CallError as e:
            self.node = node
            self.errorf(f"error calling {name}: {e}")

    def and_or(self, dot: Any, name: str, args: list[Node], final: Any) -> Any:
        """``and``/``or``: the first decisive argument, evaluated left to right and
        short-circuiting, as Go 1.18+ does."""
        v: Any = NO_VALUE
        for arg in args:
            v = self.eval_arg(dot, VALUE, arg)
            if is_true(v) == (name == "or"):
                return v
        if final is not MISSING:
            v = self.validate_type(final, VALUE)
        return v

    def call_args(self, dot: Any, fun: Func, args: list[Node], final: Any) -> list[Any]:
        """The argument values, each converted to its parameter's type; the piped value
        comes last."""
        params = fun.params
        num_fixed = len(params) - 1 if fun.variadic else len(args)
        argv = [self.eval_arg(dot, params[i] if i < num_fixed else params[-1], arg)
                for i, arg in enumerate(args)]
        if final is not MISSING:
            t = params[-1]
            num_in = len(args) + 1
            if fun.variadic and num_in - 1 < num_fixed:
                t = params[num_in - 1]
            argv.append(self.validate_type(final, t))
        return argv

    def validate_type(self, value: Any, typ: str | None) -> Any:
        if value is NO_VALUE:
            if typ is None or typ == VALUE:
                return NO_VALUE
            if typ in NILABLE:
                return nil_of(typ)
            self.errorf(f"invalid value; expected {typ}")
        if typ is None or typ in (ANY, VALUE) or type_name(value) == typ:
            return value
        self.errorf(f"wrong type for value; expected {typ}; got {type_name(value)}")

    def eval_arg(self, dot: Any, typ: str | None, n: Node) -> Any:
        self.node = n
        kind = n.kind
        if kind == "dot":
            return self.validate_type(dot, typ)
        if kind == "nil":
            if typ in NILABLE:
                return nil_of(typ)
            self.errorf(f"cannot assign nil to {typ}")
        if kind == "field":
            return self.validate_type(self.eval_field_node(dot, n, [n], MISSING), typ)
        if kind == "variable":
            return self.validate_type(self.eval_variable_node(dot, n, None, MISSING), typ)
        if kind == "pipe":
            return self.validate_type(self.eval_pipeline(dot, n), typ)
        if kind == "identifier":
            return self.validate_type(self.eval_function(dot, n, n, None, MISSING), typ)
        if kind == "chain":
            return self.validate_type(self.eval_chain_node(dot, n, None, MISSING), typ)
        return self.literal_arg(typ, n)

    def literal_arg(self, typ: str | None, n: Node) -> Any:
        """A constant argument (bool, number, string) for a parameter of type ``typ``."""
        kind = n.kind
        if typ == "bool":
            if kind == "bool":
                return n.true
            self.errorf(f"expected bool; found {n}")
        if typ == INT:
            if kind == "number" and n.is_int:
                return n.int64
            self.errorf(f"expected integer; found {n}")
        if typ in (ANY, VALUE):
            if kind == "bool":
                return n.true
            if kind == "number":
                return self.ideal_constant(n)
            if kind == "string":
                return n.text
        if typ == STRING:
            if kind == "string":
                return n.text
            self.errorf(f"expected string; found {n}")
        self.errorf(f"can't handle {n} for arg of type {typ}")
