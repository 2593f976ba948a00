"""The container commands: ``run``, ``create``, ``start``, ``stop``, ``restart``, ``kill``,
``pause``, ``unpause``, ``rm``, ``wait``, ``ps``, ``port``, ``inspect``; thin clients of the Engine API.

``run`` without ``-d`` attaches before it starts the container, prints stdout to stdout and
stderr to stderr, and exits with the container's code. Flags, columns and error texts follow
the docker CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any, Callable

from logpipe.errors import LogpipeError

from runtime.network.ports import parse_publish, port_lines, ps_column

from .client import APIError, Client, client_of, read_frames, ref
from .errors import EXIT_CANNOT_INVOKE, EXIT_DAEMON, EXIT_NOT_FOUND, CommandError, daemon_command
from .flags import key_values, network_fields
from .tables import ago, print_documents, print_table, table_format
from .volumes import mount_fields


def _container_body(args: argparse.Namespace) -> dict[str, Any]:
    env = []
    for e in args.env:
        if "=" in e:
            env.append(e)
        elif e in os.environ:
            env.append(f"{e}={os.environ[e]}")
    opts = key_values(args.log_opt, "--log-opt", pair_required=True)
    if args.log_driver == "none" and opts:
        raise CommandError("invalid logging opts for driver none")
    restart_name, _, count = (args.restart or "no").partition(":")
    restart = {"Name": restart_name, "MaximumRetryCount": 0}
    if count:
        try:
            restart["MaximumRetryCount"] = int(count)
        except ValueError:
            raise CommandError(f"invalid restart policy format: maximum retry count must be "
                               f"an integer: {count}") from None
    host: dict[str, Any] = {
        "LogConfig": {"Type": args.log_driver or "", "Config": opts},
        "RestartPolicy": restart, "AutoRemove": bool(args.rm),
        "NetworkMode": args.network or "default"}
    mount_host, anonymous = mount_fields(args)
    host.update(mount_host)
    if args.memory:
        from logpipe.units import parse_ram_size

        try:
            host["Memory"] = parse_ram_size(args.memory)
        except ValueError as err:
            raise CommandError(f'invalid argument "{args.memory}" for "-m, --memory" flag: {err}') from None
    if args.cpus:
        try:
            host["NanoCpus"] = int(round(float(args.cpus) * 1e9))
        except ValueError:
            raise CommandError(f'invalid argument "{args.cpus}" for "--cpus" flag') from None
    if args.pids_limit:
        host["PidsLimit"] = args.pids_limit
    if args.runtime:
        host["Runtime"] = args.runtime
    if args.security_opt:
        host["SecurityOpt"] = [_security_opt(o) for o in args.security_opt]
    exposed: dict[str, Any] = {}
    if args.publish:
        try:
            exposed, host["PortBindings"] = parse_publish(args.publish)
        except LogpipeError as err:
            raise CommandError(str(err)) from None
    for port in args.expose:
        port, _, proto = port.partition("/")
        exposed[f"{port}/{proto or 'tcp'}"] = {}
    host["PublishAllPorts"] = bool(args.publish_all)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    body: dict[str, Any] = {
        "Image": args.image, "Cmd": command or None, "Env": env,
        "Labels": key_values(args.label, "--label"), "WorkingDir": args.workdir or "",
        "User": args.user or "", "HostConfig": host, "ExposedPorts": exposed or None}
    if anonymous:
        body["Volumes"] = anonymous
    if args.entrypoint is not None:
        body["Entrypoint"] = [args.entrypoint] if args.entrypoint else []
    network_fields(args, body)
    return body


def _security_opt(opt: str) -> str:
    """The docker CLI's rule: ``seccomp=FILE`` is sent as ``seccomp=<the file's JSON>``
    (compacted): the daemon never reads the client's files."""
    key, sep, value = opt.partition("=")
    if not sep:
        key, sep, value = opt.partition(":")
    if key != "seccomp" or not sep or value in ("unconfined", "builtin"):
        return opt
    try:
        with open(value, "rb") as f:
            data = f.read()
    except OSError as err:
        raise CommandError(f"opening seccomp profile ({value}) failed: "
                           f"{err.strerror or err}") from None
    try:
        compact = json.dumps(json.loads(data), separators=(",", ":"), ensure_ascii=False)
    except ValueError as err:
        raise CommandError(f"compacting json for seccomp profile ({value}) failed: "
                           f"{err}") from None
    return "seccomp=" + compact


def _create(client: Client, args: argparse.Namespace) -> str:
    query = {"name": args.name} if args.name else None
    result = client.json("POST", "/containers/create", query, _container_body(args))
    for warning in result.get("Warnings") or []:
        sys.stderr.write(f"WARNING: {warning}\n")
    return result["Id"]


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
    return _run_attached(client, cid, args.rm)


#: How long ``run --rm`` waits for the removal of a container whose start failed.
AUTO_REMOVE_WAIT = 10.0


def _run_attached(client: Client, cid: str, auto_remove: bool) -> int:
    """Attach, register the wait, start, copy the output, exit with the container's code."""
    attach = client.request("POST", f"/containers/{cid}/attach",
                            {"stream": 1, "stdout": 1, "stderr": 1})
    result: dict[str, Any] = {}
    registered = threading.Event()

    def wait() -> None:
        try:
            resp = client.request("POST", f"/containers/{cid}/wait",
                                  {"condition": "removed" if auto_remove else "next-exit"})
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
            try:
                client.post(f"/containers/{cid}/kill", {"signal": "SIGINT"})
            except LogpipeError:
                pass
    waiter.join()
    if "error" in result:
        raise result["error"]
    return int(result.get("StatusCode", 0))


def _each(args: argparse.Namespace, action: Callable[[Client, str], str | None]) -> int:
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
        return _run_attached(client, info["Id"], False)
    return _each(args, lambda c, n: (c.post(f"/containers/{ref(n)}/start"), n)[1])


@daemon_command()
def cmd_stop(args: argparse.Namespace) -> int:
    query = {"t": args.time} if args.time is not None else None
    timeout = None if args.time is None or args.time < 0 else args.time + 30
    return _each(args, lambda c, n: (c.post(f"/containers/{ref(n)}/stop", query, timeout), n)[1])


@daemon_command()
def cmd_restart(args: argparse.Namespace) -> int:
    query = {"t": args.time} if args.time is not None else None
    return _each(args, lambda c, n: (c.post(f"/containers/{ref(n)}/restart", query), n)[1])


@daemon_command()
def cmd_kill(args: argparse.Namespace) -> int:
    query = {"signal": args.signal} if args.signal else None
    return _each(args, lambda c, n: (c.post(f"/containers/{ref(n)}/kill", query), n)[1])


@daemon_command()
def cmd_pause(args: argparse.Namespace) -> int:
    return _each(args, lambda c, n: (c.post(f"/containers/{ref(n)}/pause"), n)[1])


@daemon_command()
def cmd_unpause(args: argparse.Namespace) -> int:
    return _each(args, lambda c, n: (c.post(f"/containers/{ref(n)}/unpause"), n)[1])


@daemon_command()
def cmd_rm(args: argparse.Namespace) -> int:
    query = {"force": 1 if args.force else 0, "v": 1 if args.volumes else 0}
    return _each(args, lambda c, n: (c.request("DELETE", f"/containers/{ref(n)}", query).read(), n)[1])


@daemon_command()
def cmd_wait(args: argparse.Namespace) -> int:
    return _each(args, lambda c, n: str(c.json("POST", f"/containers/{ref(n)}/wait")["StatusCode"]))


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


_PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
               "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
               "Status": "STATUS", "State": "STATE", "Names": "NAMES", "Labels": "LABELS",
               "Mounts": "MOUNTS", "Networks": "NETWORKS", "Size": "SIZE"}


def _ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _ps_item(c: dict[str, Any], no_trunc: bool) -> dict[str, Any]:
    command = c.get("Command", "")
    created = c.get("Created", 0)
    return {
        "ID": c["Id"] if no_trunc else c["Id"][:12],
        "Image": c.get("Image", ""),
        "Command": json.dumps(command if no_trunc else _ellipsis(command, 20), ensure_ascii=False),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created)),
        "RunningFor": ago(created), "Ports": ps_column(c.get("Ports") or []),
        "Status": c.get("Status", ""),
        "State": c.get("State", ""),
        "Names": ",".join(n.lstrip("/") for n in c.get("Names") or []),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted((c.get("Labels") or {}).items())),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in c.get("Mounts") or []),
        "Networks": ",".join((c.get("NetworkSettings") or {}).get("Networks") or {}),
        "Size": ""}


@daemon_command()
def cmd_ps(args: argparse.Namespace) -> int:
    filters: dict[str, list[str]] = {}
    for f in args.filter:
        key, _, value = f.partition("=")
        filters.setdefault(key, []).append(value)
    query = {"all": 1 if args.all else 0}
    if filters:
        query["filters"] = json.dumps(filters)
    if args.last:
        query["limit"] = args.last
    items = [_ps_item(c, args.no_trunc) for c in client_of(args).json("GET", "/containers/json", query)]
    if args.quiet:
        for it in items:
            print(it["ID"])
        return 0
    if args.format:
        table_format(args.format, items, _PS_HEADERS)
        return 0
    cols = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]
    print_table([_PS_HEADERS[c] for c in cols], [[it[c] for c in cols] for it in items])
    return 0


@daemon_command()
def cmd_inspect(args: argparse.Namespace) -> int:
    client = client_of(args)
    results, failed = [], False
    for name in args.names:
        obj = None
        for kind in ([args.type] if args.type else ["container", "image"]):
            path = f"/containers/{ref(name)}/json" if kind == "container" else f"/images/{ref(name)}/json"
            try:
                obj = client.json("GET", path)
                break
            except APIError as err:
                if err.status != 404:
                    raise
        if obj is None:
            sys.stderr.write(f"Error: No such object: {name}\n")
            failed = True
            continue
        results.append(obj)
    print_documents(results, args.format)
    return 1 if failed else 0
