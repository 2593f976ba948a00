"""The commonest commands, ``ps``, ``logs`` and ``inspect``: their flags, and a reading of
their plainest command lines that does without argparse.

argparse, with ``gettext`` and ``locale`` and the building of its parsers, is a quarter of
what ``logpipe ps`` costs beyond the interpreter. These commands' flags are declared here
once, as data: ``parser.py`` builds their argparse parsers from it, and ``quick_parse``
reads a command line made only of known flags (``-a``, ``--tail 5``, ``--format=X``) and
positionals; ``logpipe --version`` too. Whatever it is unsure of (an abbreviation, ``-aq``,
``-n5``, ``--``, a value that starts with ``-``, a bad number, ``--help``, a missing or extra
positional) it leaves to argparse, so the result, the help and every error are argparse's.
"""

from __future__ import annotations

import types

TYPE_CHECKING = False  # typing costs milliseconds at every start: for the checker only
if TYPE_CHECKING:
    import argparse
    from typing import Any, Sequence

#: A flag: its option strings, its dest, its kind (``switch``: store_true; ``append``; ``int``;
#: ``str``; a tuple: the choices of a string) and its default.
Flag = tuple  # (tuple[str, ...], str, "str | tuple[str, ...]", Any)

#: name → (help, module, function, flags, positional (dest, nargs, help) or None).
COMMANDS: dict[str, tuple[str, str, str, list[Flag], tuple[str, str, str | None] | None]] = {
    "ps": ("List containers", "listing", "cmd_ps", [
        (("-a", "--all"), "all", "switch", False),
        (("-q", "--quiet"), "quiet", "switch", False),
        (("-n", "--last"), "last", "int", 0),
        (("-f", "--filter"), "filter", "append", None),
        (("--format",), "format", "str", ""),
        (("--no-trunc",), "no_trunc", "switch", False)], None),
    "logs": ("Fetch the logs of a container", "logs", "cmd_logs", [
        (("--log-dir",), "log_dir", "str", None),
        (("-f", "--follow"), "follow", "switch", False),
        (("-n", "--tail"), "tail", "str", "all"),
        (("--since",), "since", "str", ""),
        (("--until",), "until", "str", ""),
        (("-t", "--timestamps"), "timestamps", "switch", False),
        (("--details",), "details", "switch", False)],
        ("container", "?", "a container of the daemon (or use --log-dir)")),
    "inspect": ("Return low-level information on containers or images", "listing", "cmd_inspect", [
        (("-f", "--format"), "format", "str", ""),
        (("--type",), "type", ("container", "image"), "")], ("names", "+", None)),
}


class Run:
    """A command's function, ``module.name`` of this package, imported when it runs."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, args: argparse.Namespace) -> int:
        module = __import__(f"{__package__}.{self.module}", fromlist=[self.name])
        return getattr(module, self.name)(args)


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    """The argparse parser of ``COMMANDS[name]``."""
    text, module, func, flags, positional = COMMANDS[name]
    p = sub.add_parser(name, help=text)
    for options, _dest, kind, default in flags:
        if kind == "switch":
            p.add_argument(*options, action="store_true")
        elif kind == "append":
            p.add_argument(*options, action="append", default=[])
        elif kind == "int":
            p.add_argument(*options, type=int, default=default)
        elif isinstance(kind, tuple):
            p.add_argument(*options, choices=list(kind), default=default)
        else:
            p.add_argument(*options, default=default)
    if positional:
        dest, nargs, help_text = positional
        p.add_argument(dest, nargs=nargs, **({"help": help_text} if help_text else {}))
    p.set_defaults(func=Run(module, func))


def version_text() -> str:
    """What ``logpipe -v/--version`` prints (``docker --version``'s one line)."""
    from logpipe import __version__

    return f"logpipe version {__version__}"


def quick_parse(argv: Sequence[str]) -> types.SimpleNamespace | None:
    """What argparse makes of ``argv`` (``[-H HOST] ps|logs|inspect ...``; ``--version``
    alone: a ``func`` printing it), or ``None`` when argparse must read it."""
    if list(argv) in (["-v"], ["--version"]):
        return types.SimpleNamespace(func=_print_version)
    host, i = "", 0
    while i < len(argv) and argv[i].startswith(("-H", "--host")):
        arg = argv[i]
        if arg in ("-H", "--host") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            host, i = argv[i + 1], i + 2
        elif arg.startswith("--host="):
            host, i = arg[len("--host="):], i + 1
        elif arg.startswith("-H") and len(arg) > 2 and "=" not in arg:
            host, i = arg[2:], i + 1
        else:
            return None
    if i == len(argv) or argv[i] not in COMMANDS:
        return None
    name = argv[i]
    _, module, func, flags, positional = COMMANDS[name]
    values = _read(argv[i + 1:], flags)
    if values is None:
        return None
    found, words = values
    if positional is None:
        if words:
            return None
    else:
        dest, nargs, _ = positional
        if (nargs == "?" and len(words) > 1) or (nargs == "+" and not words):
            return None
        found[dest] = words if nargs == "+" else (words[0] if words else None)
    return types.SimpleNamespace(global_host=host, cmd=name, **found, func=Run(module, func))


def _print_version(args: types.SimpleNamespace) -> int:
    print(version_text())  # argparse's ``version`` action: the text, then exit 0
    return 0


def _read(args: Sequence[str], flags: list[Flag]) -> tuple[dict[str, Any], list[str]] | None:
    """The flags' values and the positionals, or ``None`` at anything argparse might read
    otherwise. The positionals must be one run, as argparse takes them."""
    by_option = {option: flag for flag in flags for option in flag[0]}
    found: dict[str, Any] = {dest: [] if kind == "append" else default
                             for _, dest, kind, default in flags}
    words: list[str] = []
    run_ended, i = False, 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-") or arg == "-":
            if run_ended:
                return None
            words.append(arg)
            i += 1
            continue
        run_ended = bool(words)
        option, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        flag = by_option.get(option)
        if flag is None:
            return None
        _, dest, kind, _ = flag
        if kind == "switch":
            if eq:
                return None
            found[dest], i = True, i + 1
            continue
        if not eq:
            if i + 1 == len(args) or args[i + 1].startswith("-"):
                return None
            value, i = args[i + 1], i + 1
        i += 1
        if kind == "int":
            try:
                value = int(value)
            except ValueError:
                return None
        elif isinstance(kind, tuple) and value not in kind:
            return None
        if kind == "append":
            found[dest].append(value)
        else:
            found[dest] = value
    return found, words
