"""``logpipe exec``: run a command in a running container, the docker CLI's way.

Create the exec, start it on a hijacked connection (``Upgrade: tcp``), copy stdin to it
(``-i``; our EOF is a half-close, which the daemon turns into the exec's stdin EOF), copy its
output to stdout/stderr (Docker's frames; raw bytes with ``-t``), then exit with the exec's
exit code as the daemon recorded it. ``-d`` only starts it.

With ``-t`` on a real terminal the local terminal is put in raw mode for the session and
its size follows SIGWINCH (``_Terminal``): the I/O itself is the same hijacked stream.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
from typing import Any, BinaryIO

from .client import APIError, Client, client_of, read_frames, ref
from .errors import CommandError, daemon_command


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
    if args.tty and args.interactive and not args.detach and not sys.stdin.isatty():
        sys.stderr.write("the input device is not a TTY\n")
        return 1
    client = client_of(args)
    eid = client.json("POST", f"/containers/{ref(args.container)}/exec", None,
                      exec_body(args))["Id"]
    if args.detach:
        client.request("POST", f"/exec/{eid}/start", None,
                       {"Detach": True, "Tty": args.tty}).read()
        return 0
    sock, stream = hijack(client, f"/exec/{eid}/start", {"Detach": False, "Tty": args.tty})
    terminal = _Terminal(client, eid) if args.tty and sys.stdin.isatty() else None
    try:
        _session(sock, stream, args.interactive, args.tty, terminal)
    finally:
        if terminal is not None:
            terminal.restore()
        sock.close()
    info = client.json("GET", f"/exec/{eid}/json")
    return int(info.get("ExitCode") or 0)


def hijack(client: Client, path: str, body: dict[str, Any]) -> tuple[socket.socket, BinaryIO]:
    """POST ``path`` asking for Docker's hijacked connection: the socket (ours to write)
    and a buffered reader of what follows the ``101`` answer's headers."""
    data = json.dumps(body).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(client.path)
        sock.sendall(f"POST /v1.41{path} HTTP/1.1\r\nHost: localhost\r\n"
                     "Content-Type: application/json\r\nConnection: Upgrade\r\n"
                     f"Upgrade: tcp\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
        stream = sock.makefile("rb")
        status, headers = _read_head(stream)
        if status >= 400:
            raw = stream.read(int(headers.get("content-length", "0") or 0))
            try:
                message = json.loads(raw)["message"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode(errors="replace").strip()
            raise APIError(status, message)
    except BaseException:
        sock.close()
        raise
    return sock, stream


def _read_head(stream: BinaryIO) -> tuple[int, dict[str, str]]:
    line = stream.readline()
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionError(f"unexpected answer to exec start: {line[:80]!r}")
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b"\n", b""):
        key, _, value = line.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _session(sock: socket.socket, stream: BinaryIO, interactive: bool, tty: bool,
             terminal: "_Terminal | None") -> None:
    """stdin to the exec (in a thread) and its output to ours, until the output ends."""
    if interactive:
        threading.Thread(target=_send_stdin, args=(sock,), daemon=True).start()
    else:
        sock.shutdown(socket.SHUT_WR)  # nothing to send: the docker CLI half-closes too
    out, err = sys.stdout.buffer, sys.stderr.buffer
    if tty:
        while chunk := stream.read1(1 << 16):
            out.write(chunk)
            out.flush()
        return
    for number, payload in read_frames(stream):
        target = err if number == 2 else out
        target.write(payload)
        target.flush()


def _send_stdin(sock: socket.socket) -> None:
    fd = sys.stdin.fileno()
    try:
        while data := os.read(fd, 1 << 16):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the exec ended and the daemon closed the connection


class _Terminal:
    """The local terminal for ``-t``: raw mode for the session, and the exec's size kept to
    ours (now, and at every SIGWINCH)."""

    def __init__(self, client: Client, eid: str) -> None:
        import signal
        import termios
        import tty

        self.client, self.eid = client, eid
        self.fd = sys.stdin.fileno()
        self.saved = termios.tcgetattr(self.fd)
        tty.setraw(self.fd)
        self.previous = signal.signal(signal.SIGWINCH, lambda *_: self.resize())
        self.resize()

    def resize(self) -> None:
        try:
            cols, rows = os.get_terminal_size(self.fd)
            self.client.post(f"/exec/{self.eid}/resize", {"h": rows, "w": cols})
        except (OSError, APIError):
            pass

    def restore(self) -> None:
        import signal
        import termios

        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
        signal.signal(signal.SIGWINCH, self.previous)
