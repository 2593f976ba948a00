"""The daemon-backed ``logpipe`` commands: thin clients of the Engine API, docker CLI style.

Flags, output columns and error texts follow the docker CLI: a refused request prints
``Error response from daemon: <message>`` on stderr and exits 1 (``run``/``create``: 125;
``run`` whose command cannot be executed: 126/127, as docker). ``run`` without ``-d``
attaches before it starts the container, prints stdout to stdout and stderr to stderr, and
exits with the container's code. ``register`` adds the commands to the CLI's parser.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import threading
import time
from typing import Any, Callable, Iterable, Sequence

from .client import APIError, Client, DaemonUnavailable, read_frames
from .errors import LogpipeError
from .timespec import NS, parse_rfc3339, parse_time_arg


def go_render(fmt: str, data: Any) -> str:
    """``--format``: Go's template engine, loaded only when a command is given one."""
    from .template.cliformat import render_format

    return render_format(fmt, data)


EXIT_DAEMON = 125  # docker run/create: the daemon refused
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127


class CommandError(LogpipeError):
    """Refused by the CLI itself (bad flag value): ``docker: <message>``-style, exit 125."""


def _client(args: argparse.Namespace) -> Client:
    return Client(getattr(args, "global_host", None) or None)


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


def _ref(name: str) -> str:
    from urllib.parse import quote  # 5 ms of imports: not on every start-up

    return quote(name, safe="")


def key_values(items: Iterable[str], flag: str) -> dict[str, str]:
    """``KEY=VALUE`` flags (``--label``, ``--log-opt``) as a dict; an empty key is refused
    with Docker's wording (``invalid argument "=x" for "--label" flag``)."""
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise LogpipeError(f'invalid argument "{item}" for "{flag}" flag')
        out[key] = value
    return out


# -- tables and times -------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """go-units ``HumanDuration``, used by ``ps`` (the daemon's Status column too)."""
    if seconds < 1:
        return "Less than a second"
    if int(seconds) == 1:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def _ago(rfc3339_or_unix: Any) -> str:
    if isinstance(rfc3339_or_unix, (int, float)):
        ts = float(rfc3339_or_unix)
    else:
        try:
            ts = parse_rfc3339(rfc3339_or_unix) / NS
        except (ValueError, TypeError):
            return ""
    return human_duration(max(0.0, time.time() - ts)) + " ago"


def human_size(size: float) -> str:
    """go-units ``HumanSizeWithPrecision(size, 3)``: decimal units, 3 significant digits."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.3g}{units[i]}"


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """The docker CLI's tabwriter (minwidth 10, padding 3)."""
    rows = [list(map(str, r)) for r in rows]
    table = [list(headers)] + rows
    widths = [max(10, max(len(r[i]) for r in table) + 3) for i in range(len(headers))]
    for r in table:
        line = "".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:-1])) + r[-1]
        print(line.rstrip() if not r[-1] else line)


def _table_format(fmt: str, items: list[dict[str, Any]], headers: dict[str, str]) -> None:
    """``--format 'table {{.A}}\\t{{.B}}'`` or a plain template per line."""
    if fmt.startswith("table"):
        body = fmt[len("table"):].strip() or "{{.ID}}"
        head = go_render(body, {k: v for k, v in headers.items()})
        lines = [head] + [go_render(body, it) for it in items]
        cells = [line.split("\t") for line in lines]
        ncol = max(len(c) for c in cells)
        cells = [c + [""] * (ncol - len(c)) for c in cells]
        print_table(cells[0], cells[1:])
    else:
        for it in items:
            print(go_render(fmt.encode().decode("unicode_escape") if "\\t" in fmt else fmt, it))


# -- run / create -----------------------------------------------------------------------------


def _container_body(args: argparse.Namespace) -> dict[str, Any]:
    env = []
    for e in args.env:
        if "=" in e:
            env.append(e)
        elif e in os.environ:
            env.append(f"{e}={os.environ[e]}")
    opts = {}
    for item in args.log_opt:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f'invalid argument "{item}" for "--log-opt" flag: '
                               "invalid key value pair format")
        opts[key] = value
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
        "RestartPolicy": restart, "AutoRemove": bool(args.rm), "Binds": args.volume or None,
        "NetworkMode": args.network or "default"}
    if args.memory:
        from .options import parse_ram_size
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
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    body: dict[str, Any] = {
        "Image": args.image, "Cmd": command or None, "Env": env,
        "Labels": key_values(args.label, "--label"), "WorkingDir": args.workdir or "",
        "User": args.user or "", "HostConfig": host}
    if args.entrypoint is not None:
        body["Entrypoint"] = [args.entrypoint] if args.entrypoint else []
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
    print(_create(_client(args), args))
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
    client = _client(args)
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


# -- start / stop / kill / restart / rm / wait --------------------------------------------------


def _each(args: argparse.Namespace, action: Callable[[Client, str], str | None]) -> int:
    """docker's multi-container commands: go on after a failure, exit 1 if any failed."""
    client = _client(args)
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
        client = _client(args)
        info = client.container(args.containers[0])
        return _run_attached(client, info["Id"], False)
    return _each(args, lambda c, n: (c.post(f"/containers/{_ref(n)}/start"), n)[1])


@daemon_command()
def cmd_stop(args: argparse.Namespace) -> int:
    query = {"t": args.time} if args.time is not None else None
    timeout = None if args.time is None or args.time < 0 else args.time + 30
    return _each(args, lambda c, n: (c.post(f"/containers/{_ref(n)}/stop", query, timeout), n)[1])


@daemon_command()
def cmd_restart(args: argparse.Namespace) -> int:
    query = {"t": args.time} if args.time is not None else None
    return _each(args, lambda c, n: (c.post(f"/containers/{_ref(n)}/restart", query), n)[1])


@daemon_command()
def cmd_kill(args: argparse.Namespace) -> int:
    query = {"signal": args.signal} if args.signal else None
    return _each(args, lambda c, n: (c.post(f"/containers/{_ref(n)}/kill", query), n)[1])


@daemon_command()
def cmd_pause(args: argparse.Namespace) -> int:
    return _each(args, lambda c, n: (c.post(f"/containers/{_ref(n)}/pause"), n)[1])


@daemon_command()
def cmd_unpause(args: argparse.Namespace) -> int:
    return _each(args, lambda c, n: (c.post(f"/containers/{_ref(n)}/unpause"), n)[1])


@daemon_command()
def cmd_rm(args: argparse.Namespace) -> int:
    query = {"force": 1 if args.force else 0, "v": 1 if args.volumes else 0}
    return _each(args, lambda c, n: (c.request("DELETE", f"/containers/{_ref(n)}", query).read(), n)[1])


@daemon_command()
def cmd_wait(args: argparse.Namespace) -> int:
    return _each(args, lambda c, n: str(c.json("POST", f"/containers/{_ref(n)}/wait")["StatusCode"]))


# -- ps / inspect / logs --------------------------------------------------------------------------


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
        "RunningFor": _ago(created), "Ports": "", "Status": c.get("Status", ""),
        "State": c.get("State", ""),
        "Names": ",".join(n.lstrip("/") for n in c.get("Names") or []),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted((c.get("Labels") or {}).items())),
        "Mounts": ",".join(m.get("Source", "") for m in c.get("Mounts") or []),
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
    items = [_ps_item(c, args.no_trunc) for c in _client(args).json("GET", "/containers/json", query)]
    if args.quiet:
        for it in items:
            print(it["ID"])
        return 0
    if args.format:
        _table_format(args.format, items, _PS_HEADERS)
        return 0
    cols = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]
    print_table([_PS_HEADERS[c] for c in cols], [[it[c] for c in cols] for it in items])
    return 0


@daemon_command()
def cmd_inspect(args: argparse.Namespace) -> int:
    client = _client(args)
    results, failed = [], False
    for name in args.names:
        obj = None
        for kind in ([args.type] if args.type else ["container", "image"]):
            path = f"/containers/{_ref(name)}/json" if kind == "container" else f"/images/{_ref(name)}/json"
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
    if args.format:
        for obj in results:
            print(go_render(args.format, obj))
    else:
        print(json.dumps(results, indent=4, ensure_ascii=False))
    return 1 if failed else 0


def _api_time(ns: int) -> str:
    return f"{ns // NS}.{ns % NS:09d}"


@daemon_command()
def cmd_logs(args: argparse.Namespace) -> int:
    """``logpipe logs CONTAINER``: Docker's ``logs`` through the daemon."""
    try:
        since = parse_time_arg(args.since, name="since") if args.since else 0
        until = parse_time_arg(args.until, name="until") if args.until else 0
    except ValueError as err:
        raise CommandError(str(err)) from None
    query: dict[str, Any] = {"stdout": 1, "stderr": 1, "follow": int(args.follow),
                             "timestamps": int(args.timestamps), "details": int(args.details),
                             "tail": args.tail}
    if since:
        query["since"] = _api_time(since)
    if until:
        query["until"] = _api_time(until)
    resp = _client(args).request("GET", f"/containers/{_ref(args.container)}/logs", query)
    outs = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    pending: list[bytes] = []
    current = 1
    for stream, payload in read_frames(resp):
        if stream != current and pending:
            outs.get(current, sys.stderr.buffer).write(b"".join(pending))
            outs.get(current, sys.stderr.buffer).flush()
            pending = []
        current = stream
        pending.append(payload)
        if args.follow or len(pending) > 4096:
            outs.get(current, sys.stderr.buffer).write(b"".join(pending))
            outs.get(current, sys.stderr.buffer).flush()
            pending = []
    if pending:
        outs.get(current, sys.stderr.buffer).write(b"".join(pending))
        outs.get(current, sys.stderr.buffer).flush()
    return 0


# -- images ---------------------------------------------------------------------------------------


@daemon_command()
def cmd_images(args: argparse.Namespace) -> int:
    images = _client(args).json("GET", "/images/json")
    rows = []
    for im in images:
        short = im["Id"].split(":", 1)[-1][:12]
        for tag in im.get("RepoTags") or ["<none>:<none>"]:
            repo, _, t = tag.rpartition(":")
            rows.append([repo, t, im["Id"] if args.no_trunc else short, _ago(im.get("Created", 0)),
                         human_size(im.get("Size", 0))])
    if args.quiet:
        for r in dict.fromkeys(r[2] for r in rows):
            print(r)
        return 0
    print_table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows)
    return 0


class _Progress:
    """A file wrapper that draws docker's upload progress bar on a terminal."""

    def __init__(self, f, size: int, label: str) -> None:
        self.f, self.size, self.label, self.done = f, size, label, 0
        self.show = sys.stderr.isatty()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n if n and n > 0 else 1 << 20)
        self.done += len(data)
        if self.show:
            if self.size:
                width = 50
                filled = min(width, width * self.done // self.size)
                bar = "=" * max(0, filled - 1) + (">" if filled < width else "=")
                sys.stderr.write(f"\r{self.label} [{bar.ljust(width)}]  "
                                 f"{human_size(self.done)}/{human_size(self.size)}")
            else:
                sys.stderr.write(f"\r{self.label} {human_size(self.done)}")
            if not data:
                sys.stderr.write("\n")
            sys.stderr.flush()
        return data


def _upload(client: Client, path: str, query: dict[str, Any] | None, label: str) -> Any:
    if path == "-":
        f, size = sys.stdin.buffer, 0
    else:
        try:
            f = open(path, "rb")
        except OSError as err:
            raise CommandError(f"open {path}: {err.strerror.lower()}") from None
        size = os.fstat(f.fileno()).st_size
    with f:
        headers = {"Content-Type": "application/x-tar"}
        if size:
            headers["Content-Length"] = str(size)
        resp = client.request("POST", path_of(query), query, body=_Progress(f, size, label),
                              headers=headers)
        return resp.read()


def path_of(query: dict[str, Any] | None) -> str:
    return "/images/create" if query and "fromSrc" in query else "/images/load"


@daemon_command()
def cmd_import(args: argparse.Namespace) -> int:
    query = {"fromSrc": "-"}
    if args.reference:
        repo, _, tag = args.reference.rpartition(":") if ":" in args.reference.rsplit("/", 1)[-1] \
            else (args.reference, "", "")
        query["repo"] = repo
        if tag:
            query["tag"] = tag
    out = _upload(_client(args), args.file, query, "Importing")
    for line in out.splitlines():
        if line.strip():
            msg = json.loads(line)
            print(msg.get("status") or msg.get("stream", "").rstrip())
    return 0


@daemon_command()
def cmd_load(args: argparse.Namespace) -> int:
    if args.input == "-" and sys.stdin.isatty():
        raise CommandError("requested load from stdin, but stdin is empty")
    out = _upload(_client(args), args.input, None, "Loading layer")
    for line in out.splitlines():
        if line.strip():
            sys.stdout.write(json.loads(line).get("stream", ""))
    return 0


@daemon_command()
def cmd_rmi(args: argparse.Namespace) -> int:
    client = _client(args)
    failed = False
    for name in args.images:
        try:
            items = client.json("DELETE", f"/images/{_ref(name)}", {"force": int(args.force)})
        except APIError as err:
            sys.stderr.write(f"Error response from daemon: {err}\n")
            failed = True
            continue
        for item in items or []:
            for key, value in item.items():
                print(f"{key}: {value}")
    return 1 if failed else 0


# -- system -----------------------------------------------------------------------------------------


def cmd_version(args: argparse.Namespace) -> int:
    from . import __version__

    print(f"Client:\n Version:           logpipe-{__version__}\n API version:       1.41\n"
          f" Python version:    {sys.version.split()[0]}\n OS/Arch:           linux/{os.uname().machine}")
    try:
        v = Client(getattr(args, "global_host", None) or None, autostart=False).json("GET", "/version")
    except LogpipeError as err:
        sys.stderr.write(f"{err}\n")
        return 1
    print(f"\nServer:\n Engine:\n  Version:          {v['Version']}\n"
          f"  API version:      {v['ApiVersion']} (minimum version {v['MinAPIVersion']})\n"
          f"  OS/Arch:          {v['Os']}/{v['Arch']}")
    return 0


@daemon_command()
def cmd_info(args: argparse.Namespace) -> int:
    i = _client(args).json("GET", "/info")
    if args.format:
        print(go_render(args.format, i))
        return 0
    print(f"Server:\n Containers: {i['Containers']}\n  Running: {i['ContainersRunning']}\n"
          f"  Paused: {i['ContainersPaused']}\n  Stopped: {i['ContainersStopped']}\n"
          f" Images: {i['Images']}\n Server Version: {i['ServerVersion']}\n"
          f" Logging Driver: {i['LoggingDriver']}\n Plugins:\n  Log: {' '.join(i['Plugins']['Log'])}\n"
          f" Runtimes: {' '.join(i['Runtimes'])}\n Default Runtime: {i['DefaultRuntime']}\n"
          f" Kernel Version: {i['KernelVersion']}\n Operating System: {i['OperatingSystem']}\n"
          f" Architecture: {i['Architecture']}\n CPUs: {i['NCPU']}\n"
          f" Total Memory: {human_size(i['MemTotal'])}\n Name: {i['Name']}\n"
          f" Logpipe Root Dir: {i['DockerRootDir']}\n Live Restore Enabled: true")
    return 0


def cmd_daemon(args: argparse.Namespace) -> int:
    from runtime.daemon import main as daemon_main

    try:
        return daemon_main(config_file=args.config_file, data_root=args.data_root,
                           host=args.host or args.global_host or "", log_driver=args.log_driver,
                           log_opts=key_values(args.log_opt, "--log-opt") or None,
                           default_runtime=args.default_runtime)
    except LogpipeError as err:
        sys.stderr.write(f"logpipe daemon: {err}\n")
        return 1


# -- the parser ---------------------------------------------------------------------------------------


def _container_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default="")
    p.add_argument("--rm", action="store_true", help="Remove the container when it exits")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-v", "--volume", action="append", default=[])
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
    p.add_argument("--entrypoint", default=None)
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the daemon-backed commands to the CLI's subcommand parser."""
    p = sub.add_parser("run", help="Create and run a new container from an image")
    p.add_argument("-d", "--detach", action="store_true")
    _container_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("create", help="Create a new container")
    _container_flags(p)
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("start", help="Start one or more stopped containers")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_start)

    for name, func, text in (("stop", cmd_stop, "Stop one or more running containers"),
                             ("restart", cmd_restart, "Restart one or more containers")):
        p = sub.add_parser(name, help=text)
        p.add_argument("-t", "--time", type=int, default=None)
        p.add_argument("containers", nargs="+")
        p.set_defaults(func=func)

    p = sub.add_parser("kill", help="Kill one or more running containers")
    p.add_argument("-s", "--signal", default="")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_kill)

    for verb, func, text in (("pause", cmd_pause, "Pause all processes within one or more "
                              "containers"),
                             ("unpause", cmd_unpause, "Unpause all processes within one or "
                              "more containers")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("containers", nargs="+")
        p.set_defaults(func=func)

    p = sub.add_parser("rm", help="Remove one or more containers")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("wait", help="Block until containers stop, then print their exit codes")
    p.add_argument("containers", nargs="+")
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("ps", help="List containers")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-n", "--last", type=int, default=0)
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format", default="")
    p.add_argument("--no-trunc", action="store_true")
    p.set_defaults(func=cmd_ps)

    p = sub.add_parser("inspect", help="Return low-level information on containers or images")
    p.add_argument("-f", "--format", default="")
    p.add_argument("--type", choices=["container", "image"], default="")
    p.add_argument("names", nargs="+")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("images", help="List images")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("import", help="Import a rootfs tarball to create an image")
    p.add_argument("file")
    p.add_argument("reference", nargs="?")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("load", help="Load an image from a tar archive (docker save)")
    p.add_argument("-i", "--input", default="-")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("rmi", help="Remove one or more images")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("images", nargs="+")
    p.set_defaults(func=cmd_rmi)

    p = sub.add_parser("info", help="Display system-wide information")
    p.add_argument("-f", "--format", default="")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("version", help="Show the logpipe version information")
    p.set_defaults(func=cmd_version)

    p = sub.add_parser("daemon", help="Run the logpipe daemon in the foreground")
    p.add_argument("--data-root", default="")
    p.add_argument("-H", "--host", dest="host", default="")
    p.add_argument("--config-file", default="")
    p.add_argument("--log-driver", default="")
    p.add_argument("--log-opt", action="append", default=[])
    p.add_argument("--default-runtime", default="")
    p.set_defaults(func=cmd_daemon)
