"""The parse tree: a port of Go 1.19's ``text/template/parse/node.go``.

Nodes are plain data built by the parser and read by the checker and the executor; none of
them evaluates anything. ``str()`` of a node is Go's ``String()``, which Docker's error
messages quote verbatim (``executing "log-tag" at <.Foo>``), so it must spell the node as
Go does. ``kind`` stands in for Go's ``NodeType``.
"""

from __future__ import annotations


class Node:
    __slots__ = ("pos",)
    kind = ""

    def __init__(self, pos: int) -> None:
        self.pos = pos


class ListNode(Node):
    __slots__ = ("nodes",)
    kind = "list"

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.nodes: list[Node] = []

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


class TextNode(Node):
    __slots__ = ("text",)
    kind = "text"

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(pos)
        self.text = text

    def __str__(self) -> str:
        return self.text


class PipeNode(Node):
    __slots__ = ("decl", "is_assign", "cmds")
    kind = "pipe"

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.decl: list[VariableNode] = []
        self.is_assign = False
        self.cmds: list[CommandNode] = []

    def __str__(self) -> str:
        s = ""
        if self.decl:
            s = ", ".join(str(v) for v in self.decl) + " := "
        return s + " | ".join(str(c) for c in self.cmds)


class ActionNode(Node):
    __slots__ = ("pipe",)
    kind = "action"

    def __init__(self, pos: int, pipe: PipeNode) -> None:
        super().__init__(pos)
        self.pipe = pipe

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


class CommandNode(Node):
    __slots__ = ("args",)
    kind = "command"

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.args: list[Node] = []

    def __str__(self) -> str:
        return " ".join(f"({a})" if a.kind == "pipe" else str(a) for a in self.args)


class IdentifierNode(Node):
    __slots__ = ("ident",)
    kind = "identifier"

    def __init__(self, pos: int, ident: str) -> None:
        super().__init__(pos)
        self.ident = ident

    def __str__(self) -> str:
        return self.ident


class VariableNode(Node):
    __slots__ = ("ident",)
    kind = "variable"

    def __init__(self, pos: int, ident: str) -> None:
        super().__init__(pos)
        self.ident = ident.split(".")

    def __str__(self) -> str:
        return ".".join(self.ident)


class DotNode(Node):
    __slots__ = ()
    kind = "dot"

    def __str__(self) -> str:
        return "."


class NilNode(Node):
    __slots__ = ()
    kind = "nil"

    def __str__(self) -> str:
        return "nil"


class FieldNode(Node):
    __slots__ = ("ident",)
    kind = "field"

    def __init__(self, pos: int, ident: str) -> None:
        super().__init__(pos)
        self.ident = ident[1:].split(".")

    def __str__(self) -> str:
        return "".join("." + i for i in self.ident)


class ChainNode(Node):
    """``(pipeline).Field.Field``: fields read from a term that is no field or variable."""

    __slots__ = ("node", "field")
    kind = "chain"

    def __init__(self, pos: int, node: Node) -> None:
        super().__init__(pos)
        self.node = node
        self.field: list[str] = []

    def __str__(self) -> str:
        s = str(self.node)
        if self.node.kind == "pipe":
            s = "(" + s + ")"
        return s + "".join("." + f for f in self.field)


class BoolNode(Node):
    __slots__ = ("true",)
    kind = "bool"

    def __init__(self, pos: int, true: bool) -> None:
        super().__init__(pos)
        self.true = true

    def __str__(self) -> str:
        return "true" if self.true else "false"


class NumberNode(Node):
    """A numeric constant with every reading Go allows it (int, uint, float) at once;
    how it is finally typed depends on where it is used."""

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


class StringNode(Node):
    __slots__ = ("quoted", "text")
    kind = "string"

    def __init__(self, pos: int, quoted: str, text: str) -> None:
        super().__init__(pos)
        self.quoted = quoted
        self.text = text

    def __str__(self) -> str:
        return self.quoted


class BranchNode(Node):
    """``{{if}}``, ``{{range}}`` and ``{{with}}``: a pipeline, a body and an else body."""

    __slots__ = ("pipe", "list", "else_list")

    def __init__(self, pipe: PipeNode, lst: ListNode, else_list: ListNode | None) -> None:
        super().__init__(pipe.pos)
        self.pipe = pipe
        self.list = lst
        self.else_list = else_list

    def __str__(self) -> str:
        s = "{{" + self.kind + " " + str(self.pipe) + "}}" + str(self.list)
        if self.else_list is not None:
            s += "{{else}}" + str(self.else_list)
        return s + "{{end}}"


class IfNode(BranchNode):
    __slots__ = ()
    kind = "if"


class RangeNode(BranchNode):
    __slots__ = ()
    kind = "range"


class WithNode(BranchNode):
    __slots__ = ()
    kind = "with"


class MarkerNode(Node):
    """``{{end}}`` and ``{{else}}``, which the parser consumes, and ``{{break}}`` and
    ``{{continue}}``, which stay in the tree."""

    __slots__ = ()

    def __str__(self) -> str:
        return "{{" + self.kind + "}}"


class EndNode(MarkerNode):
    __slots__ = ()
    kind = "end"


class ElseNode(MarkerNode):
    __slots__ = ()
    kind = "else"


class BreakNode(MarkerNode):
    __slots__ = ()
    kind = "break"


class ContinueNode(MarkerNode):
    __slots__ = ()
    kind = "continue"
