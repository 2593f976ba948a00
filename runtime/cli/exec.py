"""``logpipe exec``: run a command in a running container, the docker CLI's way.

Create the exec, start it on a hijacked connection (``Upgrade: tcp``), copy stdin to it
(``-i``; our EOF is a half-close, which the daemon turns into the exec's stdin EOF), copy its
output to stdout/stderr (Docker's frames; raw bytes with ``-t``), then exit with the exec's
exit code as the daemon recorded it. ``-d`` only starts it.

With ``-t`` on a real terminal the local terminal is put in raw mode for the session and
its size follows SIGWINCH: ``terminal.stream_hijacked``, as for ``run -it`` and ``attach``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

from .client import APIError, Client, client_of, ref
from .errors import CommandError, daemon_command
from .terminal import InputNotATerminal, check_tty, stream_hijacked


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("exec", help="Execute a command in a running container")
    p.add_argument("-i", "--interactive", action="store_true",
                   help="Keep STDIN open even if not attached")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("-d", "--detach", action="store_true",
                   help="Detached mode: run command in the background")
    p.add_argument("-e", "--env", action="append", default=[],
                   help="Set environment variables")
    p.add_argument("--env-file", action="append", default=[],
                   help="Read in a file of environment variables")
    p.add_argument("-w", "--workdir", default="", help="Working directory inside the container")
    p.add_argument("-u", "--user", default="",
                   help="Username or UID (format: <name|uid>[:<group|gid>])")
    p.add_argument("--privileged", action="store_true",
                   help="Give extended privileges to the command")
    p.add_argument("--detach-keys", default="", help="Override the key sequence for detaching")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec)


def env_file_lines(path: str) -> list[str]:
    """The docker CLI's ``--env-file``: ``K=V`` lines, ``#`` comments and blank lines
    skipped, a bare ``K`` takes its value from our own environment (or is left out)."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise CommandError(f"open {path}: {os.strerror(err.errno or 0).lower()}") from None
    for line in lines:
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        if "=" in line:
            out.append(line)
        elif line in os.environ:
            out.append(f"{line}={os.environ[line]}")
    return out


def exec_body(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ExecConfig`` the docker CLI sends for these flags."""
    env = [e for path in args.env_file for e in env_file_lines(path)]
    for item in args.env:  # ``-e K`` takes K from our environment, as docker's does
        env.append(item if "=" in item or item not in os.environ
                   else f"{item}={os.environ[item]}")
    return {"User": args.user, "Privileged": args.privileged, "Tty": args.tty,
            "AttachStdin": args.interactive and not args.detach,
            "AttachStdout": not args.detach, "AttachStderr": not args.detach,
            "Detach": args.detach, "DetachKeys": args.detach_keys, "Env": env,
            "WorkingDir": args.workdir, "Cmd": args.command}


@daemon_command()
def cmd_exec(args: argparse.Namespace) -> int:
    if not args.command:
        raise CommandError('"exec" requires at least 2 arguments.')
    if not args.detach:
        try:
            check_tty(args.interactive, args.tty)
        except InputNotATerminal as err:
            sys.stderr.write(f"{err}\n")
            return 1
    client = client_of(args)
    eid = client.json("POST", f"/containers/{ref(args.container)}/exec", None,
                      exec_body(args))["Id"]
    if args.detach:
        client.request("POST", f"/exec/{eid}/start", None,
                       {"Detach": True, "Tty": args.tty}).read()
        return 0
    conn = client.hijack(f"/exec/{eid}/start", body={"Detach": False, "Tty": args.tty})
    try:
        if not args.interactive:
            conn.close_write()  # nothing to send: the docker CLI half-closes too
        stream_hijacked(conn, args.tty, args.interactive, _resizer(client, eid))
    finally:
        conn.close()
    info = client.json("GET", f"/exec/{eid}/json")
    return int(info.get("ExitCode") or 0)


def _resizer(client: Client, eid: str) -> Callable[[int, int], None]:
    def resize(height: int, width: int) -> None:
        try:
            client.post(f"/exec/{eid}/resize", {"h": height, "w": width})
        except APIError:
            pass  # the exec ended meanwhile
    return resize
