"""Items to a parse tree: a port of Go 1.19's ``text/template/parse/parse.go``.

``parse`` reports syntax errors as Go does (``template: log-tag:1: unclosed action``),
including the line Go blames, and refuses what Docker's tags do not need with its own
words: ``{{define}}``, ``{{template}}``, ``{{block}}`` and complex constants. A function
name the dialect does not define is an error here, as in Go. It checks no field names:
that is ``check``'s job, once the whole tree exists.
"""

from __future__ import annotations

from ..errors import TemplateError
from .dialect import Dialect
from .lexer import (ASSIGN, BLOCK, BOOL, BREAK, CHAR, CHAR_CONSTANT, COMPLEX, CONTINUE,
                    DECLARE, DEFINE, DOT, ELSE, END, EOF, ERROR, FIELD, IDENTIFIER, IF,
                    KEYWORD, LEFT_DELIM, LEFT_PAREN, NIL, NUMBER, PIPE, RANGE, RAW_STRING,
                    RIGHT_DELIM, RIGHT_PAREN, SPACE, STRING, TEMPLATE, TEXT, VARIABLE, WITH,
                    Item, Lexer)
from .literals import go_quote, parse_float, parse_int, parse_uint, unquote, unquote_char, \
    utf8_len
from .nodes import (ActionNode, BoolNode, BreakNode, ChainNode, CommandNode, ContinueNode,
                    DotNode, ElseNode, EndNode, FieldNode, IdentifierNode, IfNode, ListNode,
                    NilNode, Node, NumberNode, PipeNode, RangeNode, StringNode, TextNode,
                    VariableNode, WithNode)


def parse(name: str, text: str, dialect: Dialect) -> ListNode:
    """The tree of ``text``; raises ``TemplateError`` with Go's text on a syntax error."""
    return _Parser(name, text, dialect).parse()


def _item_str(item: Item) -> str:
    """Go's ``item.String()``, as "unexpected ... in ..." errors quote an item."""
    if item.typ == EOF:
        return "EOF"
    if item.typ == ERROR:
        return item.val
    if item.typ > KEYWORD:
        return f"<{item.val}>"
    if utf8_len(item.val) > 10:
        return go_quote(item.val[:10]) + "..."
    return go_quote(item.val)


_COMMAND_START = frozenset({
    BOOL, CHAR_CONSTANT, COMPLEX, DOT, FIELD, IDENTIFIER, NUMBER, NIL, RAW_STRING,
    STRING, VARIABLE, LEFT_PAREN,
})

#: How deep parentheses and ``if``/``range``/``with`` bodies (``else if`` chains included)
#: may nest. Go caps parentheses only, at 10000, and lets goroutine stacks grow for the
#: rest; the parser, checker and executor here recurse on the interpreter's stack, so one
#: counter caps both, far above what a tag needs, with Go's text for the paren limit.
MAX_DEPTH = 100

_BRANCHES = {IF: ("if", IfNode), RANGE: ("range", RangeNode), WITH: ("with", WithNode)}


class _Parser:
    def __init__(self, name: str, text: str, dialect: Dialect) -> None:
        self.name = name
        self.text = text
        self.dialect = dialect
        self.items = Lexer(text).run()
        self.i = 0
        self.high = 0  # furthest item read: Go reports that item's line (t.token[0])
        self.vars = ["$"]
        self.action_line = 0
        self.range_depth = 0
        self.depth = 0  # open parentheses and control bodies (MAX_DEPTH)

    # -- errors ----------------------------------------------------------------------------

    def line_of(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1

    def errorf(self, msg: str):
        line = self.line_of(self.items[min(self.high, len(self.items) - 1)].pos)
        raise TemplateError(f"template: {self.name}:{line}: {msg}")

    def deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.errorf("max expression depth exceeded")

    def unsupported(self, what: str):
        self.errorf(f"logpipe does not support {what} in a {self.dialect.kind} template")

    def unexpected(self, item: Item, context: str):
        if item.typ == ERROR:
            extra = ""
            line = self.line_of(item.pos)
            if self.action_line != 0 and self.action_line != line:
                extra = f" in action started at {self.name}:{self.action_line}"
                if item.val.endswith(" action"):
                    extra = extra[len(" in action"):]
            self.errorf(item.val + extra)
        self.errorf(f"unexpected {_item_str(item)} in {context}")

    # -- reading items -----------------------------------------------------------------------

    def next(self) -> Item:
        item = self.items[min(self.i, len(self.items) - 1)]
        self.high = max(self.high, self.i)
        self.i += 1
        return item

    def backup(self) -> None:
        self.i -= 1

    def peek(self) -> Item:
        item = self.next()
        self.backup()
        return item

    def next_non_space(self) -> Item:
        while True:
            item = self.next()
            if item.typ != SPACE:
                return item

    def peek_non_space(self) -> Item:
        item = self.next_non_space()
        self.backup()
        return item

    def expect(self, typ: int, context: str) -> Item:
        item = self.next_non_space()
        if item.typ != typ:
            self.unexpected(item, context)
        return item

    # -- lists and actions -------------------------------------------------------------------

    def parse(self) -> ListNode:
        root = ListNode(self.peek().pos)
        while self.peek().typ != EOF:
            if self.peek().typ == LEFT_DELIM:
                start = self.i
                self.next()
                if self.next_non_space().typ == DEFINE:
                    self.unsupported("{{define}}")
                self.i = start
            n = self.text_or_action()
            if n.kind in ("end", "else"):
                self.errorf(f"unexpected {n}")
            root.nodes.append(n)
        return root

    def item_list(self) -> tuple[ListNode, Node]:
        lst = ListNode(self.peek_non_space().pos)
        while self.peek_non_space().typ != EOF:
            n = self.text_or_action()
            if n.kind in ("end", "else"):
                return lst, n
            lst.nodes.append(n)
        self.errorf("unexpected EOF")

    def text_or_action(self) -> Node:
        item = self.next_non_space()
        if item.typ == TEXT:
            return TextNode(item.pos, item.val)
        if item.typ == LEFT_DELIM:
            self.action_line = self.line_of(item.pos)
            try:
                return self.action()
            finally:
                self.action_line = 0
        self.unexpected(item, "input")

    def action(self) -> Node:
        item = self.next_non_space()
        typ = item.typ
        if typ == BLOCK:
            self.unsupported("{{block}}")
        if typ == TEMPLATE:
            self.unsupported("{{template}}")
        if typ in (BREAK, CONTINUE):
            return self.loop_control(item)
        if typ == ELSE:
            return self.else_control()
        if typ == END:
            return EndNode(self.expect(RIGHT_DELIM, "end").pos)
        if typ in _BRANCHES:
            return self.branch_control(typ)
        self.backup()
        return ActionNode(self.peek().pos, self.pipeline("command", RIGHT_DELIM))

    def loop_control(self, item: Item) -> Node:
        name = "{{" + item.val + "}}"
        tok = self.next_non_space()
        if tok.typ != RIGHT_DELIM:
            self.unexpected(tok, name)
        if self.range_depth == 0:
            self.errorf(f"{name} outside {{{{range}}}}")
        return (BreakNode if item.typ == BREAK else ContinueNode)(item.pos)

    def else_control(self) -> Node:
        peek = self.peek_non_space()
        if peek.typ == IF:  # "{{else if ...": the if is left for branch_control
            return ElseNode(peek.pos)
        return ElseNode(self.expect(RIGHT_DELIM, "else").pos)

    def branch_control(self, typ: int) -> Node:
        context, cls = _BRANCHES[typ]
        nvars = len(self.vars)
        self.deeper()
        try:
            pipe = self.pipeline(context, RIGHT_DELIM)
            if typ == RANGE:
                self.range_depth += 1
            lst, nxt = self.item_list()
            if typ == RANGE:
                self.range_depth -= 1
            else_list = None
            if nxt.kind == "else":
                if typ == IF and self.peek().typ == IF:
                    self.next()
                    else_list = ListNode(nxt.pos)
                    else_list.nodes.append(self.branch_control(IF))
                else:
                    else_list, nxt = self.item_list()
                    if nxt.kind != "end":
                        self.errorf(f"expected end; found {nxt}")
        finally:
            del self.vars[nvars:]
            self.depth -= 1
        return cls(pipe, lst, else_list)

    # -- pipelines and commands ----------------------------------------------------------------

    def pipeline(self, context: str, end: int) -> PipeNode:
        pipe = PipeNode(self.peek_non_space().pos)
        self.declarations(pipe, context)
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

    def declarations(self, pipe: PipeNode, context: str) -> None:
        """``$x :=``, ``$x =`` or (in range) ``$i, $e :=`` at the start of a pipeline."""
        while True:  # Go's "decls:" label
            v = self.peek_non_space()
            if v.typ != VARIABLE:
                return
            vi = self.i
            self.next()
            self.peek()  # Go's tokenAfterVariable: read, so it counts for error lines
            nxt = self.peek_non_space()
            if nxt.typ in (ASSIGN, DECLARE):
                pipe.is_assign = nxt.typ == ASSIGN
                self.next_non_space()
                pipe.decl.append(VariableNode(v.pos, v.val))
                self.vars.append(v.val)
            elif nxt.typ == CHAR and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(VariableNode(v.pos, v.val))
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in (VARIABLE, RIGHT_DELIM, RIGHT_PAREN):
                        continue
                    self.errorf("range can only initialize variables")
                self.errorf(f"too many declarations in {context}")
            else:
                self.i = vi  # not a declaration: Go pushes the variable back
            return

    def check_pipeline(self, pipe: PipeNode, context: str) -> None:
        if not pipe.cmds:
            self.errorf(f"missing value for {context}")
        for i, cmd in enumerate(pipe.cmds[1:]):
            if cmd.args[0].kind in ("bool", "dot", "nil", "number", "string"):
                self.errorf(f"non executable command in pipeline stage {i + 2}")

    def command(self) -> CommandNode:
        cmd = CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            item = self.next()
            if item.typ == SPACE:
                continue
            if item.typ in (RIGHT_DELIM, RIGHT_PAREN):
                self.backup()
            elif item.typ != PIPE:
                self.unexpected(item, "operand")
            break
        if not cmd.args:
            self.errorf("empty command")
        return cmd

    def operand(self) -> Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == FIELD:
            chain = ChainNode(self.peek().pos, node)
            while self.peek().typ == FIELD:
                chain.field.append(self.next().val[1:])
            if node.kind == "field":
                return FieldNode(chain.pos, str(chain))
            if node.kind == "variable":
                return VariableNode(chain.pos, str(chain))
            if node.kind in ("bool", "string", "number", "nil", "dot"):
                self.errorf(f"unexpected . after term {go_quote(str(node))}")
            return chain
        return node

    def term(self) -> Node | None:
        item = self.next_non_space()
        typ = item.typ
        if typ == IDENTIFIER:
            if item.val not in self.dialect.funcs:
                self.errorf(f"function {go_quote(item.val)} not defined")
            return IdentifierNode(item.pos, item.val)
        if typ == DOT:
            return DotNode(item.pos)
        if typ == NIL:
            return NilNode(item.pos)
        if typ == VARIABLE:
            v = VariableNode(item.pos, item.val)
            if v.ident[0] not in self.vars:
                self.errorf(f"undefined variable {go_quote(v.ident[0])}")
            return v
        if typ == FIELD:
            return FieldNode(item.pos, item.val)
        if typ == BOOL:
            return BoolNode(item.pos, item.val == "true")
        if typ in (CHAR_CONSTANT, COMPLEX, NUMBER):
            return self.number(item)
        if typ == LEFT_PAREN:
            self.deeper()
            try:
                return self.pipeline("parenthesized pipeline", RIGHT_PAREN)
            finally:
                self.depth -= 1
        if typ in (STRING, RAW_STRING):
            try:
                return StringNode(item.pos, item.val, unquote(item.val))
            except (ValueError, IndexError):
                self.errorf("invalid syntax")
        self.backup()
        return None

    # -- numbers -------------------------------------------------------------------------------

    def number(self, item: Item) -> NumberNode:
        """Go's ``newNumber``: every reading (int, uint, float) the constant allows."""
        text = item.val
        n = NumberNode(item.pos, text)
        if item.typ == CHAR_CONSTANT:
            return self.char_constant(n)
        if item.typ == COMPLEX or (text.endswith("i") and parse_float(text[:-1]) is not None):
            self.errorf(f"logpipe does not support complex constants in a {self.dialect.kind} "
                        f"template: {text}")
        u = parse_uint(text)
        if u is not None:
            n.is_uint, n.uint64 = True, u
        i = parse_int(text)
        if i is not None:
            n.is_int, n.int64 = True, i
            if i == 0:
                n.is_uint, n.uint64 = True, 0
        if n.is_int:
            n.is_float, n.float64 = True, float(n.int64)
        elif n.is_uint:
            n.is_float, n.float64 = True, float(n.uint64)
        else:
            self.float_constant(n)
        if not (n.is_int or n.is_uint or n.is_float):
            self.errorf(f"illegal number syntax: {go_quote(text)}")
        return n

    def char_constant(self, n: NumberNode) -> NumberNode:
        text = n.text
        try:
            r, _, j = unquote_char(text, 1, "'")
        except (ValueError, IndexError):
            self.errorf("invalid syntax")
        if text[j:] != "'":
            self.errorf(f"malformed character constant: {text}")
        n.int64 = n.uint64 = r
        n.float64 = float(r)
        n.is_int = n.is_uint = n.is_float = True
        return n

    def float_constant(self, n: NumberNode) -> None:
        """A constant that is no integer: a float, which is also an int if it is whole."""
        text = n.text
        f = parse_float(text)
        if f is None:
            return
        if not any(c in text for c in ".eEpP"):
            self.errorf(f"integer overflow: {go_quote(text)}")
        n.is_float, n.float64 = True, f
        if f == int(f):
            if -(1 << 63) <= int(f) < 1 << 63:
                n.is_int, n.int64 = True, int(f)
            if 0 <= int(f) < 1 << 64:
                n.is_uint, n.uint64 = True, int(f)
