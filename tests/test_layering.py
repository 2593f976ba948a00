"""The layers of ARCHITECTURE.md, read from the source: who may import whom, and how long a
module may grow.

- The core (``logpipe/``) and the drivers (``drivers/``) never import the runtime
  (``runtime``, any module of it).
- Nothing outside the CLI package (``runtime/cli/``) imports it: the daemon, the shim and the
  core work without the CLI, which only talks to the daemon over HTTP.
- A test module imports what tests share from ``conftest.py`` (and the fake receivers as
  ``receivers.…``), never from another test module: a module imported under two names is two
  module objects, and a fixture imported from another module runs that module's code twice.
- No module of ``logpipe/``, ``drivers/`` or ``runtime/`` is longer than ``MAX_LINES`` lines
  unless its docstring (the top of the module) says why, in a paragraph starting with
  ``Size:`` (for example ``Size: one state machine; split, its transitions would be read in
  three files``).

Imports are read statically with ``ast``: every ``import`` and ``from … import`` anywhere in a
module, inside functions too (a lazy import is still a dependency), with relative imports
resolved against the module's package. Nothing is imported to run these checks.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("logpipe", "drivers", "runtime")
CLI = "runtime.cli"
MAX_LINES = 500
SIZE_REASON = "Size:"


class Module(NamedTuple):
    name: str  # dotted: runtime.cli.commands
    path: Path
    tree: ast.Module
    lines: int


def modules() -> Iterator[Module]:
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            text = path.read_text(encoding="utf-8")
            yield Module(".".join(parts), path, ast.parse(text, str(path)),
                         len(text.splitlines()))


def imports(module: Module) -> Iterator[tuple[int, list[str]]]:
    """Each import statement of ``module``: its line and the module names it may import, for
    ``from a.b import c`` both ``a.b`` and ``a.b.c`` (``c`` may be a submodule), relative
    names made absolute."""
    is_package = module.path.name == "__init__.py"
    package = module.name.split(".") if is_package else module.name.split(".")[:-1]
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            yield node.lineno, [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            yield node.lineno, [source] + [f"{source}.{alias.name}" for alias in node.names
                                           if alias.name != "*"]


def imported(module: Module) -> set[str]:
    return {name for _, names in imports(module) for name in names}


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(importers: list[Module], forbidden: str) -> list[str]:
    """``path:line imports name`` for each import statement reaching into ``forbidden``."""
    found = []
    for m in importers:
        for line, names in sorted(imports(m)):
            hits = [name for name in names if within(name, forbidden)]
            if hits:
                found.append(f"{m.path.relative_to(REPO)}:{line} imports {min(hits, key=len)}")
    return found


def test_the_core_and_the_drivers_never_import_the_runtime():
    importers = [m for m in modules() if within(m.name, "logpipe") or within(m.name, "drivers")]
    assert importers, "no module of logpipe/ or drivers/ found"
    found = violations(importers, "runtime")
    assert not found, "the core or a driver imports the runtime:\n" + "\n".join(found)


def test_only_the_cli_package_imports_the_cli():
    importers = [m for m in modules() if not within(m.name, CLI)]
    found = violations(importers, CLI)
    assert not found, "only runtime/cli/ may import the CLI:\n" + "\n".join(found)


def size_reason(module: Module) -> str | None:
    """The docstring's paragraph that starts with ``Size:``, if there is one."""
    paragraphs = (ast.get_docstring(module.tree) or "").split("\n\n")
    return next((p for p in paragraphs if p.strip().startswith(SIZE_REASON)), None)


def test_no_module_exceeds_500_lines_without_saying_why_at_its_top():
    too_long = [f"{m.path.relative_to(REPO)}: {m.lines} lines" for m in modules()
                if m.lines > MAX_LINES and size_reason(m) is None]
    assert not too_long, (f"over {MAX_LINES} lines with no '{SIZE_REASON} …' paragraph in the "
                          f"module's docstring:\n" + "\n".join(too_long))


def test_test_modules_share_through_conftest_and_import_receivers_one_way():
    found = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        if "perf" in path.parts:
            continue
        module = Module(path.stem, path, ast.parse(path.read_text(encoding="utf-8")), 0)
        for line, names in imports(module):
            if any(name.split(".")[0] == "tests" or name.split(".")[0].startswith("test_")
                   for name in names):
                found.append(f"{path.relative_to(REPO)}:{line} imports {names[0]}")
    assert not found, "import these from conftest.py or receivers.…:\n" + "\n".join(found)


# -- the checks themselves, on modules written for the purpose ----------------------------------


def parsed(name: str, source: str, lines: int | None = None, package: bool = False) -> Module:
    parts = name.split(".")
    path = Path(*parts, "__init__.py") if package else Path(*parts).with_suffix(".py")
    return Module(name, REPO / path, ast.parse(source), lines or len(source.splitlines()))


def test_imports_inside_functions_and_relative_imports_are_seen():
    m = parsed("drivers.example", "def f():\n    from ..runtime import daemon\n"
                                  "def g():\n    import runtime.cli.commands as c\n")
    assert {"runtime", "runtime.daemon", "runtime.cli.commands"} <= imported(m)
    assert violations([m], "runtime") != []
    assert violations([m], CLI) == ["drivers/example.py:4 imports runtime.cli.commands"]


def test_from_a_package_import_a_submodule_counts_as_importing_it():
    m = parsed("runtime.config", "from runtime import cli\nfrom . import cli as again\n")
    assert violations([m], CLI) == ["runtime/config.py:1 imports runtime.cli",
                                    "runtime/config.py:2 imports runtime.cli"]
    init = parsed("runtime.cli", "from . import commands\n", package=True)
    assert "runtime.cli.commands" in imported(init)


def test_a_size_paragraph_is_the_reason_and_a_passing_mention_is_not():
    reason = "Size: one parser, cut it and it reads worse."
    own = parsed("logpipe.big", f'"""A big one.\n\n{reason}\n\nMore."""')
    mention = parsed("logpipe.big", f'"""A big one.\n\nIts {reason}\n"""')
    assert size_reason(own) == reason
    assert size_reason(mention) is None
