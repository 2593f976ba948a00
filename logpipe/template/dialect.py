"""The two kinds of template the engine runs, and what sets them apart.

A ``tag`` runs against ``*logger.Info`` in the daemon (moby's ``loggerutils.ParseLogTag``);
a ``--format`` runs against the Engine API's JSON in the CLI (docker/cli's
``templates.Parse`` over a decoded document). Lexer, parser, checker and executor are the
same for both; a ``Dialect`` tells them the three things that differ: which functions
exist, what dot's type is before anything runs, and what reading a missing map key does.
Nothing here evaluates anything.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

from .functions import FUNCS
from .members import INFO_TYPE
from .values import Func


class Dialect(NamedTuple):
    """What a kind of template may call and read."""

    #: Names the kind in logpipe's own refusals ("... in a tag template").
    kind: str
    #: The functions the parser accepts and the executor calls.
    funcs: Mapping[str, Func]
    #: Dot's Go type for the compile-time checks; None when only run time knows it (JSON).
    dot_type: str | None
    #: Go's ``Option("missingkey=error")``: a field naming a key the map lacks is an error
    #: (docker's CLI executes the raw JSON that way) instead of ``<no value>``.
    missing_key_error: bool


TAG = Dialect("tag", FUNCS, INFO_TYPE, False)
