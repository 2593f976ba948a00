"""The ``logpipe`` command line's parser: every command, its flags and Docker's defaults.

Each command is a function of the parsed flags in the module named for what it works on
(``containers``, ``images``, ``logs``, ``capture``, ``system``); none parses anything itself.

Start-up is most of what ``logpipe ps`` costs, so the parser is built for the command asked
only, and a command's module is imported when the command runs (``fastpath.Run``):
``logpipe ps`` neither builds ``run``'s 59 flags nor imports what ``build`` or ``exec`` need.
Whatever argparse alone must read (``--help``, no command, an unknown one) gets every
command, so its listings and errors are unchanged. ``ps``, ``logs`` and ``inspect`` are
declared in ``fastpath``, which reads their plainest command lines without argparse at all.
"""

from __future__ import annotations

import argparse
import os
import sys

from .fastpath import Run, add_parser, version_text

TYPE_CHECKING = False  # typing costs milliseconds at every start: for the checker only
if TYPE_CHECKING:
    from typing import Callable, Sequence

    Adder = Callable[[argparse._SubParsersAction], None]

#: ``(names, adder)`` in ``logpipe --help``'s order; each adder adds its names' parsers.
_COMMANDS: list[tuple[tuple[str, ...], Adder]] = []


def _adds(*names: str) -> Callable[[Adder], Adder]:
    def register(adder: Adder) -> Adder:
        _COMMANDS.append((names, adder))
        return adder
    return register


class _Parser(argparse.ArgumentParser):
    """argparse's parser (the subcommands' too: they are of their parent's class), whose help
    is as wide as argparse makes it, measured without ``shutil``: argparse imports it, and
    ``bz2``, ``lzma`` and ``fnmatch`` with it, at the first ``add_argument`` otherwise."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=_terminal_columns() - 2)


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``: ``$COLUMNS``, else stdout's terminal, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of the command ``argv`` names, with docker's names and defaults; every
    command's when ``argv`` names none argparse can be left to find (or is not given)."""
    parser = _Parser(prog="logpipe", description="Containers and their logs.")
    parser.add_argument("-H", "--host", dest="global_host", default="",
                        help="Daemon socket to connect to (default: $LOGPIPE_HOST, else the "
                             "per-user socket)")
    parser.add_argument("-v", "--version", action="version",
                        version=version_text(),
                        help="Print version information and quit")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND")
    wanted = None if argv is None else command_of(argv)
    if wanted == "--version":
        return parser
    adders = [adder for names, adder in _COMMANDS if wanted in names]
    for adder in adders or [adder for _, adder in _COMMANDS]:
        adder(sub)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The first word of ``argv`` past the global ``-H/--host``: the command, or
    ``--version`` when that comes first; ``None`` when another flag comes first (``-h``, an
    abbreviation: argparse reads those, with every command) or no word."""
    rest = iter(argv)
    for arg in rest:
        if arg in ("-H", "--host"):
            next(rest, None)
        elif arg.startswith(("-H", "--host=")):
            continue
        elif arg in ("-v", "--version"):
            return "--version"
        elif arg.startswith("-"):
            return None
        else:
            return arg
    return None


@_adds("capture")
def _capture(sub: argparse._SubParsersAction) -> None:
    cap = sub.add_parser("capture", help="Run a command and store its output with a log driver")
    cap.add_argument("--log-driver", default="json-file")
    cap.add_argument("--log-opt", action="append", default=[], metavar="KEY=VALUE")
    cap.add_argument("--log-dir", required=True)
    cap.add_argument("--label", "-l", action="append", default=[])
    cap.add_argument("--env", "-e", action="append", default=[])
    cap.add_argument("--name", default="")
    cap.add_argument("--id", default="", help="64-hex id used in file names (default: random)")
    cap.add_argument("command", nargs=argparse.REMAINDER)
    cap.set_defaults(func=Run("capture", "cmd_capture"))


@_adds("docker-plugin")
def _docker_plugin(sub: argparse._SubParsersAction) -> None:
    from . import plugin

    plugin.add_parser(sub)


@_adds("logs")
def _logs(sub: argparse._SubParsersAction) -> None:
    add_parser(sub, "logs")


def _container_flags(p: argparse.ArgumentParser) -> None:
    from . import hostflags
    from .flags import add_network_flags

    p.add_argument("--name", default="")
    p.add_argument("--rm", action="store_true", help="Remove the container when it exits")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-v", "--volume", action="append", default=[])
    p.add_argument("--mount", action="append", default=[],
                   help="type=volume|bind|tmpfs,source=…,target=…[,readonly]")
    p.add_argument("--tmpfs", action="append", default=[], help="PATH[:OPTIONS]")
    p.add_argument("-w", "--workdir", default="")
    p.add_argument("-u", "--user", default="")
    p.add_argument("-l", "--label", action="append", default=[])
    p.add_argument("--log-driver", default="")
    p.add_argument("--log-opt", action="append", default=[])
    p.add_argument("--restart", default="no")
    p.add_argument("-m", "--memory", default="")
    p.add_argument("--cpus", default="")
    p.add_argument("--pids-limit", type=int, default=0)
    p.add_argument("--runtime", default="")
    p.add_argument("--security-opt", action="append", default=[],
                   help="Security options: seccomp=unconfined|PROFILE.json, no-new-privileges")
    p.add_argument("--network", "--net", default="")
    add_network_flags(p)
    p.add_argument("-p", "--publish", action="append", default=[],
                   help="Publish a container's port to the host ([ip:][hostPort:]port[/proto])")
    p.add_argument("--expose", action="append", default=[],
                   help="Expose a port (port[/proto]) without publishing it")
    p.add_argument("-P", "--publish-all", action="store_true",
                   help="Publish all exposed ports to random ports")
    p.add_argument("--entrypoint", default=None)
    p.add_argument("--pull", default="missing",
                   help='Pull image before running ("always", "missing", "never")')
    hostflags.add_flags(p)
    p.add_argument("-i", "--interactive", action="store_true",
                   help="Keep STDIN open even if not attached")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("--detach-keys", default="",
                   help="Override the key sequence for detaching a container")
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)


@_adds("run", "create", "attach", "start", "stop", "restart", "kill", "pause", "unpause", "rm",
       "wait", "port")
def _container_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="Create and run a new container from an image")
    p.add_argument("-d", "--detach", action="store_true")
    _container_flags(p)
    p.set_defaults(func=Run("containers", "cmd_run"))

    p = sub.add_parser("create", help="Create a new container")
    _container_flags(p)
    p.set_defaults(func=Run("containers", "cmd_create"))

    p = sub.add_parser("attach", help="Attach local standard input, output, and error "
                                      "streams to a running container")
    p.add_argument("--no-stdin", action="store_true", help="Do not attach STDIN")
    p.add_argument("--detach-keys", default="",
                   help="Override the key sequence for detaching a container")
    p.add_argument("container")
    p.set_defaults(func=Run("containers", "cmd_attach"))

    p = sub.add_parser("start", help="Start one or more stopped containers")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=Run("containers", "cmd_start"))

    for name, func, text in (
            ("stop", Run("containers", "cmd_stop"), "Stop one or more running containers"),
            ("restart", Run("containers", "cmd_restart"), "Restart one or more containers")):
        p = sub.add_parser(name, help=text)
        p.add_argument("-t", "--time", type=int, default=None)
        p.add_argument("containers", nargs="+")
        p.set_defaults(func=func)

    p = sub.add_parser("kill", help="Kill one or more running containers")
    p.add_argument("-s", "--signal", default="")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=Run("containers", "cmd_kill"))

    for verb, func, text in (
            ("pause", Run("containers", "cmd_pause"),
             "Pause all processes within one or more containers"),
            ("unpause", Run("containers", "cmd_unpause"),
             "Unpause all processes within one or more containers")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("containers", nargs="+")
        p.set_defaults(func=func)

    p = sub.add_parser("rm", help="Remove one or more containers")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=Run("containers", "cmd_rm"))

    p = sub.add_parser("wait", help="Block until containers stop, then print their exit codes")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=Run("containers", "cmd_wait"))

    p = sub.add_parser("port", help="List port mappings or a specific mapping for the container")
    p.add_argument("container")
    p.add_argument("port", nargs="?", default="")
    p.set_defaults(func=Run("containers", "cmd_port"))


@_adds("ps")
def _ps(sub: argparse._SubParsersAction) -> None:
    add_parser(sub, "ps")


@_adds("inspect")
def _inspect(sub: argparse._SubParsersAction) -> None:
    add_parser(sub, "inspect")


@_adds("exec")
def _exec(sub: argparse._SubParsersAction) -> None:
    from . import exec as exec_command

    exec_command.add_command(sub)


@_adds("network")
def _networks(sub: argparse._SubParsersAction) -> None:
    from . import networks

    networks.add_commands(sub)


@_adds("images", "pull", "push", "tag", "save", "login", "logout", "image", "import", "load",
       "rmi")
def _image_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("images", help="List images")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.set_defaults(func=Run("images", "cmd_images"))
    p.add_argument("--digests", action="store_true", help="Show digests")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="dangling=true|false, label=KEY[=VALUE], before=, since=, reference=")
    p.add_argument("reference", nargs="?", help="REPOSITORY[:TAG]")
    _registry_commands(sub)

    p = sub.add_parser("import", help="Import a rootfs tarball to create an image")
    p.add_argument("file")
    p.add_argument("reference", nargs="?")
    p.set_defaults(func=Run("images", "cmd_import"))

    p = sub.add_parser("load", help="Load an image from a tar archive (docker save)")
    p.add_argument("-i", "--input", default="-")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=Run("images", "cmd_load"))

    p = sub.add_parser("rmi", help="Remove one or more images")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("images", nargs="+")
    p.set_defaults(func=Run("images", "cmd_rmi"))


def _registry_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pull", help="Download an image from a registry")
    p.add_argument("--platform", default="")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    p.set_defaults(func=Run("images", "cmd_pull"))

    p = sub.add_parser("push", help="Upload an image to a registry")
    p.add_argument("name", metavar="NAME[:TAG]")
    p.set_defaults(func=Run("images", "cmd_push"))

    p = sub.add_parser("tag", help="Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    p.set_defaults(func=Run("images", "cmd_tag"))

    p = sub.add_parser("save", help="Save one or more images to a tar archive (streamed to "
                                    "STDOUT by default)")
    p.add_argument("-o", "--output", default="")
    p.add_argument("images", nargs="+")
    p.set_defaults(func=Run("images", "cmd_save"))

    p = sub.add_parser("login", help="Log in to a registry")
    p.add_argument("-u", "--username", default="")
    p.add_argument("-p", "--password", default="")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("server", nargs="?", default="")
    p.set_defaults(func=Run("images", "cmd_login"))

    p = sub.add_parser("logout", help="Log out from a registry")
    p.add_argument("server", nargs="?", default="")
    p.set_defaults(func=Run("images", "cmd_logout"))

    image = sub.add_parser("image", help="Manage images")
    isub = image.add_subparsers(dest="image_cmd", metavar="COMMAND", required=True)
    p = isub.add_parser("prune", help="Remove unused images")
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused images, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[], help="until=, label=")
    p.set_defaults(func=Run("images", "cmd_image_prune"))


@_adds("build", "commit", "history")
def _build(sub: argparse._SubParsersAction) -> None:
    from . import build

    build.add_commands(sub)


@_adds("info")
def _info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="Display system-wide information")
    p.add_argument("-f", "--format", default="")
    p.set_defaults(func=Run("system", "cmd_info"))


@_adds("version")
def _version(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("version", help="Show the logpipe version information")
    p.set_defaults(func=Run("system", "cmd_version"))


@_adds("daemon")
def _daemon(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("daemon", help="Run the logpipe daemon in the foreground")
    p.add_argument("--data-root", default="")
    p.add_argument("-H", "--host", dest="host", default="")
    p.add_argument("--config-file", default="")
    p.add_argument("--log-driver", default="")
    p.add_argument("--log-opt", action="append", default=[])
    p.add_argument("--default-runtime", default="")
    p.set_defaults(func=Run("system", "cmd_daemon"))


@_adds("volume")
def _volumes(sub: argparse._SubParsersAction) -> None:
    from . import volumes

    volumes.add_commands(sub)


@_adds("events")
def _events(sub: argparse._SubParsersAction) -> None:
    from . import events

    events.add_commands(sub)


@_adds("rename", "update", "container", "system")
def _container_ops_commands(sub: argparse._SubParsersAction) -> None:
    """``rename``, ``update``, ``container prune`` and ``system df``."""
    p = sub.add_parser("rename", help="Rename a container")
    p.add_argument("container")
    p.add_argument("new_name")
    p.set_defaults(func=Run("container_ops", "cmd_rename"))

    p = sub.add_parser("update", help="Update configuration of one or more containers")
    p.add_argument("--restart", default="", help="Restart policy to apply when a container exits")
    p.add_argument("-m", "--memory", default="", help="Memory limit")
    p.add_argument("--memory-swap", default="",
                   help="Swap limit equal to memory plus swap: -1 to enable unlimited swap")
    p.add_argument("--cpus", default="", help="Number of CPUs")
    p.add_argument("-c", "--cpu-shares", type=int, default=None,
                   help="CPU shares (relative weight)")
    p.add_argument("--cpu-period", type=int, default=None, help="Limit CPU CFS period")
    p.add_argument("--cpu-quota", type=int, default=None, help="Limit CPU CFS quota")
    p.add_argument("--pids-limit", type=int, default=None,
                   help="Tune container pids limit (set -1 for unlimited)")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=Run("container_ops", "cmd_update"))

    group = sub.add_parser("container", help="Manage containers")
    csub = group.add_subparsers(dest="container_cmd", metavar="COMMAND")
    p = csub.add_parser("prune", help="Remove all stopped containers")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[],
                   help="Provide filter values (e.g. 'until=<timestamp>')")
    p.set_defaults(func=Run("container_ops", "cmd_container_prune"))

    group = sub.add_parser("system", help="Manage logpipe")
    ssub = group.add_subparsers(dest="system_cmd", metavar="COMMAND")
    p = ssub.add_parser("df", help="Show logpipe disk usage")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="Show detailed information on space usage")
    p.add_argument("--format", default="", help="Pretty-print using a Go template")
    p.set_defaults(func=Run("system", "cmd_df"))
    p = ssub.add_parser("events", help="Get real time events from the server")
    p.add_argument("--since", default="")
    p.add_argument("--until", default="")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format", default="")
    p.set_defaults(func=Run("events", "cmd_events"))


@_adds("stats", "top")
def _stats(sub: argparse._SubParsersAction) -> None:
    from . import stats

    stats.add_commands(sub)


@_adds("cp", "export", "diff")
def _files(sub: argparse._SubParsersAction) -> None:
    from . import files

    files.add_commands(sub)
