"""The ``logpipe`` command line: Docker's CLI, a client of the daemon over HTTP.

The top layer: it may import everything (``daemon`` starts the runtime, ``capture`` runs the
core directly) and nothing imports it; the runtime never does. It starts fast: ``aiohttp``
and the daemon are imported only by ``logpipe daemon``; ``ps``, ``logs`` and ``inspect``
import only what they use (``tests/test_cli_package.py`` holds the list of what they must
not). Flags, output and error texts follow the docker CLI; ``parser.py`` maps each command
to its module, ``fastpath.py`` reads the commonest command lines.
"""

from __future__ import annotations

import os
import sys

from logpipe.errors import LogpipeError

TYPE_CHECKING = False  # typing costs milliseconds at every start: for the checker only
if TYPE_CHECKING:
    from typing import Sequence

#: Docker's exit status when the daemon (here: logpipe itself) refuses a request.
EXIT_REFUSED = 125


def exit_on_broken_pipe() -> None:
    """Whoever read our output went away (``logpipe logs ... | head``): end as the docker CLI
    does, killed by SIGPIPE without a word. Python ignores SIGPIPE and raises instead; stdout
    is pointed at /dev/null first so that the interpreter's last flush cannot complain."""
    import signal

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.dup2(devnull, sys.stderr.fileno())
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    os._exit(128 + signal.SIGPIPE)  # not reached: the signal ends the process


def main(argv: Sequence[str] | None = None) -> int:
    """The ``logpipe`` entry point: the command's exit status."""
    from .fastpath import quick_parse

    if argv is None:
        argv = sys.argv[1:]
    args = quick_parse(argv)  # ps, logs, inspect: without argparse when they can be
    if args is None:
        from .parser import build_parser

        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
    try:
        return args.func(args)
    except LogpipeError as err:
        sys.stderr.write(f"logpipe: {err}\n")
        return EXIT_REFUSED
    except ValueError as err:
        sys.stderr.write(f"logpipe: {err}\n")
        return EXIT_REFUSED
    except BrokenPipeError:
        exit_on_broken_pipe()
    except KeyboardInterrupt:
        return 130
