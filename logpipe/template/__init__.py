"""Go's template language, as Docker uses it: the ``tag`` log option and the CLI's
``--format``; a safe port of the part of Go's ``text/template`` those use.

Docker renders ``--log-opt tag=...`` with Go's ``text/template`` executed against
``*logger.Info`` (moby ``daemon/logger/loginfo.go``; functions from
``daemon/logger/templates``). This package ports Go 1.19's lexer, parser and executor
(Docker 20.10.24 is built with Go 1.19), so that output and error texts match Docker's,
checked against Go 1.19.8 itself. The same engine runs the CLI's ``--format`` over the
Engine API's JSON (``cliformat``); a ``dialect`` says which of the two a template is.
Templates are compiled once and checked then: what Go can only find when it executes a
node, but which depends on types alone (a misspelt field, a wrong argument), is reported
at compile time, with Go's text.

What Docker users do not write in a tag is refused with a ``TemplateError``, never
rendered differently from Go: ``{{define}}``/``{{template}}``/``{{block}}``, complex
constants, the ``html``/``js``/``urlquery``/``slice``/``call`` builtins, printf's ``[n]``
indexes and ``*`` widths, float verbs other than ``%v``, and ``time.Time`` methods other
than ``String``, ``Unix`` and ``Month``.

It must never run Python code named by a template: there is no ``eval``, and no attribute
of a Python object is looked up by a name taken from the template (see ``members``). It
knows nothing about drivers.

The modules, in the order a template meets them: ``lexer`` -> ``parser`` (building
``nodes``) -> ``check`` (types, at compile time) -> ``execute`` (values, at render time),
which calls the dialect's ``functions`` and prints with ``gofmt``. Go's values are modelled in
``values`` and ``gotime``; ``literals`` reads and writes Go's string and number syntax.
"""

from __future__ import annotations

import functools
from typing import Mapping, NamedTuple

from ..driver import LogInfo
from .check import check
from .dialect import TAG
from .execute import execute
from .nodes import ListNode
from .parser import parse
from .values import InfoRef

__all__ = ["DEFAULT_TAG", "Template", "compile_template", "render_tag"]

DEFAULT_TAG = "{{.ID}}"
_TEMPLATE_NAME = "log-tag"  # the name Docker's loggerutils.ParseLogTag gives tag templates


class Template(NamedTuple):
    """A compiled ``tag`` template. Immutable: compile once, render per container.

    A NamedTuple rather than a frozen dataclass, as ``LogInfo`` is: ``dataclasses`` alone
    would double the import time of this package.
    """

    name: str
    text: str
    root: ListNode

    def __repr__(self) -> str:
        return f"Template(name={self.name!r}, text={self.text!r})"

    def render(self, info: LogInfo) -> str:
        """Execute against ``info`` as Go executes against ``*logger.Info``.

        Raises ``TemplateError`` for Go's execution errors (e.g. a wrong argument type),
        with Go's text; Docker surfaces these when the driver starts.
        """
        return execute(self.name, self.text, self.root, InfoRef(info), TAG)


@functools.lru_cache(maxsize=256)
def compile_template(text: str, name: str = _TEMPLATE_NAME) -> Template:
    """Parse ``text`` and check its field names; raise ``TemplateError`` in Go's wording."""
    root = parse(name, text, TAG)
    check(name, text, root, TAG)
    return Template(name, text, root)


def render_tag(opts: Mapping[str, str], info: LogInfo, default: str = DEFAULT_TAG) -> str:
    """Docker's ``loggerutils.ParseLogTag``: the ``tag`` option, or ``default`` if empty."""
    return compile_template(opts.get("tag") or default).render(info)
