"""The container commands: ``run``, ``create``, ``start``, ``attach``, ``stop``, ``restart``,
``kill``, ``pause``, ``unpause``, ``rm``, ``wait``, ``port``; thin clients of the Engine API
(the request body of ``create``: ``container_body``; ``rename``, ``update``, ``container
prune``: ``container_ops``; ``ps`` and ``inspect``: ``listing``).

``run`` without ``-d`` attaches before it starts the container, prints stdout to stdout and
stderr to stderr, and exits with the container's code. Flags, columns and error texts follow
the docker CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any, Callable

from logpipe.errors import LogpipeError

from runtime.detach_keys import parse_detach_keys
from runtime.network.ports import port_lines

from .client import APIError, Client, client_of, read_frames, ref
from .errors import EXIT_CANNOT_INVOKE, EXIT_DAEMON, EXIT_NOT_FOUND, CommandError, daemon_command
from .container_body import container_body
from .terminal import InputNotATerminal, check_tty, stream_hijacked


def _create(client: Client, args: argparse.Namespace) -> str:
    query = {"name": args.name} if args.name else None
    body = container_body(args)
    result = _create_pulling(client, args, lambda: client.json(
        "POST", "/containers/create", query, body))
    for warning in result.get("Warnings") or []:
        sys.stderr.write(f"WARNING: {warning}\n")
    return result["Id"]


def _create_pulling(client: Client, args: argparse.Namespace, create: Callable[[], Any]) -> Any:
    """``--pull missing`` (the default) pulls after create's 404 and tries again, as the
    docker CLI does; ``always`` pulls first, ``never`` never. Pull output goes to stderr."""
    from .images import RefError, pull

    policy = getattr(args, "pull", "missing") or "missing"
    if policy not in ("always", "missing", "never"):
        raise CommandError(f'invalid pull option: \'{policy}\': must be one of "always", '
                           '"missing" or "never"')
    if policy == "always":
        pull(client, args.image, out=sys.stderr)
    try:
        return create()
    except APIError as err:
        if err.status != 404 or policy != "missing" or "No such image" not in str(err):
            raise
    from runtime.registry.reference import InvalidReference, parse

    try:
        familiar = parse(args.image).familiar
    except InvalidReference as ref_err:
        raise CommandError(str(ref_err)) from None
    sys.stderr.write(f"Unable to find image '{familiar}' locally\n")
    try:
        pull(client, args.image, out=sys.stderr)
    except RefError as ref_err:
        raise CommandError(str(ref_err)) from None
    return create()


@daemon_command(EXIT_DAEMON)
def cmd_create(args: argparse.Namespace) -> int:
    print(_create(client_of(args), args))
    return 0


def _start_failure_code(message: str) -> int:
    """docker run: 127 when the command is not found, 126 when it cannot be invoked."""
    low = message.lower()
    if "executable file not found" in low or "no such file or directory" in low:
        return EXIT_NOT_FOUND
    if "permission denied" in low or "exec format error" in low:
        return EXIT_CANNOT_INVOKE
    return EXIT_DAEMON


@daemon_command(EXIT_DAEMON)
def cmd_run(args: argparse.Namespace) -> int:
    if not args.detach:
        if _not_a_terminal(args.interactive, args.tty):
            return 1
        _detach_keys(args.detach_keys)  # refused before anything is created
    client = client_of(args)
    cid = _create(client, args)
    if args.detach:
        try:
            client.post(f"/containers/{cid}/start")
        except APIError as err:
            sys.stderr.write(f"Error response from daemon: {err}\n")
            return _start_failure_code(str(err))
        print(cid)
        return 0
    if args.interactive or args.tty:
        return _run_interactive(client, cid, args)
    return _run_attached(client, cid, args.rm)


#: How long ``run --rm`` waits for the removal of a container whose start failed.
AUTO_REMOVE_WAIT = 10.0


def _run_attached(client: Client, cid: str, auto_remove: bool) -> int:
    """Attach, register the wait, start, copy the output, exit with the container's code."""
    attach = client.request("POST", f"/containers/{cid}/attach",
                            {"stream": 1, "stdout": 1, "stderr": 1})
    waiter, result = _wait_registered(client, cid, "removed" if auto_remove else "next-exit")
    try:
        client.post(f"/containers/{cid}/start")
    except APIError as err:
        sys.stderr.write(f"Error response from daemon: {err}\n")
        if auto_remove:  # the daemon removes it before it answers (Docker): the wait ends
            waiter.join(AUTO_REMOVE_WAIT)
        return _start_failure_code(str(err))
    outs = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    while True:
        try:
            for stream, payload in read_frames(attach):
                out = outs.get(stream, sys.stderr.buffer)
                out.write(payload)
                out.flush()
            break
        except KeyboardInterrupt:  # docker's sig-proxy: the container gets the signal
            _sig_proxy(client, cid)()
    waiter.join()
    if "error" in result:
        raise result["error"]
    return int(result.get("StatusCode", 0))


def _not_a_terminal(interactive: bool, tty: bool) -> bool:
    """The docker CLI's refusal of ``-it`` from a pipe: its text, and exit status 1."""
    try:
        check_tty(interactive, tty)
    except InputNotATerminal as err:
        sys.stderr.write(f"{err}\n")
        return True
    return False


def _detach_keys(text: str) -> bytes:
    """``--detach-keys``, checked before anything is created (the daemon's text)."""
    try:
        return parse_detach_keys(text)
    except LogpipeError as err:
        raise CommandError(str(err)) from None


def _wait_registered(client: Client, cid: str, condition: str) -> tuple[threading.Thread, dict]:
    """``POST /wait`` in a thread, returned once the daemon has registered it (its headers
    came back): an exit after this point is seen."""
    result: dict[str, Any] = {}
    registered = threading.Event()

    def wait() -> None:
        try:
            resp = client.request("POST", f"/containers/{cid}/wait", {"condition": condition})
            registered.set()
            result.update(json.loads(resp.read() or b"{}"))
        except LogpipeError as err:
            result["error"] = err
        finally:
            registered.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    registered.wait()
    if "error" in result:
        raise result["error"]
    return waiter, result


def _attach_hijacked(client: Client, cid: str, stdin: bool, detach_keys: str):
    query = {"stream": 1, "stdout": 1, "stderr": 1, "stdin": 1 if stdin else 0}
    if detach_keys:
        query["detachKeys"] = detach_keys
    return client.hijack(f"/containers/{cid}/attach", query)


def _resizer(client: Client, cid: str) -> Callable[[int, int], None]:
    return lambda h, w: client.post(f"/containers/{cid}/resize", {"h": h, "w": w})


def _sig_proxy(client: Client, cid: str) -> Callable[[], None]:
    """docker's sig-proxy: ctrl-C on a terminal that is not raw is SIGINT to the container."""
    def interrupt() -> None:
        try:
            client.post(f"/containers/{cid}/kill", {"signal": "SIGINT"})
        except LogpipeError:
            pass
    return interrupt


def _run_interactive(client: Client, cid: str, args: argparse.Namespace) -> int:
    return _start_interactive(client, cid, args.tty, args.interactive, args.detach_keys,
                              args.rm)


def _start_interactive(client: Client, cid: str, tty: bool, stdin: bool, detach_keys: str,
                       auto_remove: bool) -> int:
    """``run -i``/``-t``, ``start -a`` of a terminal: as the docker CLI, attach (hijacked)
    before the start, start, send the window's size, copy the streams; the exit code is the
    container's, or 0 when the user detached (the container runs on)."""
    keys = _detach_keys(detach_keys)
    conn = _attach_hijacked(client, cid, stdin, detach_keys)
    try:
        waiter, result = _wait_registered(client, cid,
                                          "removed" if auto_remove else "next-exit")
        try:
            client.post(f"/containers/{cid}/start")
        except APIError as err:
            sys.stderr.write(f"Error response from daemon: {err}\n")
            if auto_remove:
                waiter.join(AUTO_REMOVE_WAIT)
            return _start_failure_code(str(err))
        detached = stream_hijacked(conn, tty, stdin, _resizer(client, cid), keys,
                                   _sig_proxy(client, cid))
    finally:
        conn.close()
    if detached:
        return 0
    waiter.join()
    if "error" in result:
        raise result["error"]
    return int(result.get("StatusCode", 0))


@daemon_command()
def cmd_attach(args: argparse.Namespace) -> int:
    """``docker attach``: the container's streams on the local terminal (its stdin too,
    if it was created with ``-i`` and ``--no-stdin`` is not given); exits with the
    container's code once it stops, 0 after the detach keys."""
    client = client_of(args)
    info = client.container(args.container)
    cid, config, state = info["Id"], info.get("Config") or {}, info.get("State") or {}
    if not state.get("Running"):
        raise CommandError("You cannot attach to a stopped container, start it first")
    if state.get("Paused"):
        raise CommandError("You cannot attach to a paused container, unpause it first")
    tty, stdin = bool(config.get("Tty")), bool(config.get("OpenStdin")) and not args.no_stdin
    if _not_a_terminal(stdin, tty):
        return 1
    keys = _detach_keys(args.detach_keys)
    conn = _attach_hijacked(client, cid, stdin, args.detach_keys)
    try:
        if stream_hijacked(conn, tty, stdin, _resizer(client, cid), keys,
                           _sig_proxy(client, cid)):
            return 0
    finally:
        conn.close()
    result = client.json("POST", f"/containers/{cid}/wait")
    return int((result or {}).get("StatusCode", 0))


def each(args: argparse.Namespace, action: Callable[[Client, str], str | None]) -> int:
    """docker's multi-container commands: go on after a failure, exit 1 if any failed."""
    client = client_of(args)
    failed = False
    for name in args.containers:
        try:
            out = action(client, name)
        except APIError as err:
            sys.stderr.write(f"Error response from daemon: {err}\n")
            failed = True
            continue
        if out is not None:
            print(out)
    return 1 if failed else 0


@daemon_command()
def cmd_start(args: argparse.Namespace) -> int:
    if args.attach:
        if len(args.containers) != 1:
            raise CommandError("you cannot start and attach multiple containers at once")
        client = client_of(args)
        info = client.container(args.containers[0])
        if (info.get("Config") or {}).get("Tty"):  # raw output: the terminal's path
            return _start_interactive(client, info["Id"], True, False, "", False)
        return _run_attached(client, info["Id"], False)
    return each(args, lambda c, n: (c.post(f"/containers/{ref(n)}/start"), n)[1])


@daemon_command()
def cmd_stop(args: argparse.Namespace) -> int:
    query = {"t": args.time} if args.time is not None else None
    timeout = None if args.time is None or args.time < 0 else args.time + 30
    return each(args, lambda c, n: (c.post(f"/containers/{ref(n)}/stop", query, timeout), n)[1])


@daemon_command()
def cmd_restart(args: argparse.Namespace) -> int:
    query = {"t": args.time} if args.time is not None else None
    return each(args, lambda c, n: (c.post(f"/containers/{ref(n)}/restart", query), n)[1])


@daemon_command()
def cmd_kill(args: argparse.Namespace) -> int:
    query = {"signal": args.signal} if args.signal else None
    return each(args, lambda c, n: (c.post(f"/containers/{ref(n)}/kill", query), n)[1])


@daemon_command()
def cmd_pause(args: argparse.Namespace) -> int:
    return each(args, lambda c, n: (c.post(f"/containers/{ref(n)}/pause"), n)[1])


@daemon_command()
def cmd_unpause(args: argparse.Namespace) -> int:
    return each(args, lambda c, n: (c.post(f"/containers/{ref(n)}/unpause"), n)[1])


@daemon_command()
def cmd_rm(args: argparse.Namespace) -> int:
    query = {"force": 1 if args.force else 0, "v": 1 if args.volumes else 0}
    return each(args, lambda c, n: (c.request("DELETE", f"/containers/{ref(n)}", query).read(), n)[1])


@daemon_command()
def cmd_wait(args: argparse.Namespace) -> int:
    return each(args, lambda c, n: str(c.json("POST", f"/containers/{ref(n)}/wait")["StatusCode"]))


@daemon_command()
def cmd_port(args: argparse.Namespace) -> int:
    """``docker port``: the published ports, from ``inspect``'s ``NetworkSettings.Ports``."""
    c = client_of(args)
    data = c.json("GET", f"/containers/{ref(args.container)}/json")
    lines = port_lines((data.get("NetworkSettings") or {}).get("Ports"), args.port)
    if args.port and not lines:
        wanted = args.port if "/" in args.port else f"{args.port}/tcp"
        sys.stderr.write(f"Error: No public port '{wanted}' published for {args.container}\n")
        return 1
    for line in lines:
        print(line)
    return 0
