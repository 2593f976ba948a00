"""The request body of ``create`` and ``run``: the docker CLI's flags as a
``ContainerConfig`` with its ``HostConfig`` and ``NetworkingConfig``, read as the docker CLI
reads them (``-e K`` from our environment, ``--security-opt seccomp=FILE`` sent as the
file's JSON, ``-i``/``-t`` and the attach flags)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from logpipe.errors import LogpipeError
from runtime.network.ports import parse_publish

from . import hostflags
from .errors import CommandError
from .flags import key_values, network_fields
from .terminal import terminal_size
from .volumes import mount_fields


def container_body(args: argparse.Namespace) -> dict[str, Any]:
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
        host["Memory"] = hostflags.ram_size("-m, --memory", args.memory, minus_one=False)
    if args.cpus:
        host["NanoCpus"] = hostflags.nano_cpus(args.cpus)
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
    host.update(hostflags.host_fields(args))
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    body: dict[str, Any] = {
        "Image": args.image, "Cmd": command or None, "Env": env,
        "Labels": key_values(args.label, "--label"), "WorkingDir": args.workdir or "",
        "User": args.user or "", "HostConfig": host, "ExposedPorts": exposed or None}
    body.update(_stdio_fields(args, host))
    if anonymous:
        body["Volumes"] = anonymous
    if args.entrypoint is not None:
        body["Entrypoint"] = [args.entrypoint] if args.entrypoint else []
    network_fields(args, body)
    return body


def _stdio_fields(args: argparse.Namespace, host: dict[str, Any]) -> dict[str, Any]:
    """``-i``/``-t`` as the docker CLI sends them: ``create`` and ``run`` without ``-d``
    attach stdout and stderr (and stdin with ``-i``, which is then closed when the attach
    ends: StdinOnce), and a terminal starts at the size of the user's."""
    attached = not getattr(args, "detach", False)
    if args.tty:
        size = terminal_size()
        if size is not None:
            host["ConsoleSize"] = list(size)
    return {"Tty": args.tty, "OpenStdin": args.interactive,
            "AttachStdin": attached and args.interactive, "AttachStdout": attached,
            "AttachStderr": attached, "StdinOnce": attached and args.interactive}


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
