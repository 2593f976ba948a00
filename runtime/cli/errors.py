"""How the CLI reports a failure, as the docker CLI does, and with its exit statuses.

A refused request prints ``Error response from daemon: <message>`` on stderr and exits 1
(``run``/``create``: 125; ``run`` whose command cannot be executed: 126/127, as docker); a bad
flag value is the CLI's own ``CommandError`` (exit 125 with a pointer to ``--help``).
"""

from __future__ import annotations

import functools
import sys

from logpipe.errors import LogpipeError

from .client import APIError, DaemonUnavailable

TYPE_CHECKING = False  # typing costs milliseconds at every start: for the checker only
if TYPE_CHECKING:
    import argparse
    from typing import Callable

EXIT_DAEMON = 125  # docker run/create: the daemon refused
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127


class CommandError(LogpipeError):
    """Refused by the CLI itself (bad flag value): ``docker: <message>``-style, exit 125."""


def daemon_command(exit_code: int = 1) -> Callable:
    """Docker's error reporting around a command that talks to the daemon."""
    def wrap(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(func)
        def run(args: argparse.Namespace) -> int:
            try:
                return func(args)
            except APIError as err:
                sys.stderr.write(f"Error response from daemon: {err}\n")
            except BrokenPipeError:
                raise  # whoever reads our output went away (``logs | head``): quiet exit
            except DaemonUnavailable as err:
                sys.stderr.write(f"{err}\n")
            except CommandError as err:
                sys.stderr.write(f"logpipe: {err}\nSee 'logpipe {args.cmd} --help'.\n")
            except (ConnectionError, _http_errors()) as err:
                # The daemon died or restarted mid-request (a follow, a wait, a run).
                sys.stderr.write("error during connect: the logpipe daemon closed the "
                                 f"connection: unexpected EOF ({type(err).__name__})\n")
            except OSError as err:
                sys.stderr.write(f"logpipe: {err}\n")
            return exit_code
        return run
    return wrap


def _http_errors() -> type:
    """``http.client``'s error base, looked up only once an exception is being handled."""
    import http.client

    return http.client.HTTPException
