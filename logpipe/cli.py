"""The ``logpipe`` command line. Flags, output and error texts follow the docker CLI.

This module holds the parser and the commands that work without a daemon (``capture``,
``logs --log-dir``); the daemon-backed ones live in ``commands.py``. Each command is a small
function that parses nothing itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Iterable, Sequence

from .driver import LogInfo
from .errors import LogpipeError
from .message import STDERR, Chunk
from .output import render
from .reading import ReadConfig
from .timespec import parse_time_arg

#: Docker's exit status when the daemon (here: logpipe itself) refuses a request.
EXIT_REFUSED = 125
CAPTURE_META = "capture.json"


def cmd_capture(args: argparse.Namespace) -> int:
    """``logpipe capture``: run a command and store what it prints, like a container."""
    from .capture import capture_info, check_log_dir, run_capture
    from .commands import key_values
    from .registry import driver_ref, log_plan, validate_log_config

    argv = args.command
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise LogpipeError("capture requires a command to run: logpipe capture [OPTIONS] -- CMD [ARG...]")
    opts = key_values(args.log_opt, "--log-opt")
    labels = key_values(args.label, "--label")
    env_list = [e if "=" in e else f"{e}={os.environ.get(e, '')}" for e in args.env]
    os.makedirs(args.log_dir, mode=0o710, exist_ok=True)
    check_log_dir(args.log_dir)
    meta = _load_meta(args.log_dir, required=False)
    container_id = args.id or meta.get("id") or os.urandom(32).hex()
    info = capture_info(args.log_dir, container_id, args.name or "", opts, labels, env_list, argv)
    driver_cls = validate_log_config(args.log_driver, opts, info)
    if log_plan(args.log_driver).ships:
        raise LogpipeError(f"capture stores output on local disk (json-file, local); the "
                           f"{args.log_driver} driver ships from a container's spool through "
                           f"the daemon: use logpipe run --log-driver {args.log_driver}")
    try:
        driver = driver_cls(info)
    except OSError as err:  # e.g. ELOOP: a symlink where the log file should be
        raise LogpipeError(f"cannot open the log in {args.log_dir}: {err}") from None
    _save_meta(args.log_dir, {"id": container_id, "name": args.name or "", "driver": args.log_driver,
                              "driver_ref": driver_ref(args.log_driver), "opts": opts,
                              "labels": labels, "env": env_list, "cmd": list(argv)})
    env = dict(os.environ)
    env.update(key_values(env_list, "--env"))
    code, stats = run_capture(argv, driver, opts, env)
    if stats.dropped_lines:
        sys.stderr.write(f"logpipe: mode=non-blocking dropped {stats.dropped_lines} lines "
                         f"({stats.dropped_bytes} bytes) because the log buffer was full\n")
    return code


def _load_meta(log_dir: str, required: bool = True) -> dict:
    try:
        with open(os.path.join(log_dir, CAPTURE_META)) as f:
            return json.load(f)
    except FileNotFoundError:
        if required:
            raise LogpipeError(f"no captured log in {log_dir} (no {CAPTURE_META})") from None
        return {}


def _save_meta(log_dir: str, meta: dict) -> None:
    """Write-then-rename under a fresh name: ``O_EXCL`` never follows or reuses anything
    already there (a planted symlink included)."""
    path = os.path.join(log_dir, CAPTURE_META)
    tmp = f"{path}.tmp.{os.getpid()}.{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    try:
        with open(fd, "w") as f:
            json.dump(meta, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_config(args: argparse.Namespace) -> ReadConfig:
    """Docker's ``logs`` flags as a ``ReadConfig``; ``--tail all`` or any non-integer is all."""
    try:
        tail = int(args.tail)
    except ValueError:
        tail = -1
    since = parse_time_arg(args.since, name="since") if args.since else 0
    until = parse_time_arg(args.until, name="until") if args.until else 0
    return ReadConfig(tail=tail if tail >= 0 else -1, since=since, until=until,
                      follow=args.follow, timestamps=args.timestamps, details=args.details)


def write_chunks(chunks: Iterable[Chunk], cfg: ReadConfig) -> None:
    """stdout records to stdout, stderr records to stderr, in order, in few large writes."""
    outs = {False: sys.stdout.buffer, True: sys.stderr.buffer}
    pending: list[bytes] = []
    size, current = 0, False
    for chunk in chunks:
        is_err = chunk.source == STDERR
        if is_err != current or size >= 1 << 20:
            outs[current].write(b"".join(pending))
            outs[current].flush()
            pending, size, current = [], 0, is_err
        data = render(chunk, cfg.timestamps, cfg.details)
        pending.append(data)
        size += len(data)
        if cfg.follow:
            outs[current].write(b"".join(pending))
            outs[current].flush()
            pending, size = [], 0
    outs[current].write(b"".join(pending))
    outs[current].flush()


def cmd_logs(args: argparse.Namespace) -> int:
    """``logpipe logs --log-dir DIR``: read a captured log with docker's ``logs`` flags."""
    from .registry import load_driver

    if args.container:
        from .commands import cmd_logs as cmd_daemon_logs

        return cmd_daemon_logs(args)
    if not args.log_dir:
        raise LogpipeError("logs needs a container name, or --log-dir DIR for a captured log")
    meta = _load_meta(args.log_dir)
    info = LogInfo(container_id=meta["id"], log_dir=args.log_dir, config=meta.get("opts", {}))
    cfg = read_config(args)
    write_chunks(load_driver(meta["driver"], meta.get("driver_ref")).read(info, cfg), cfg)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logpipe", description="Containers and their logs.")
    parser.add_argument("-H", "--host", dest="global_host", default="",
                        help="Daemon socket to connect to (default: $LOGPIPE_HOST, else the "
                             "per-user socket)")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND")

    cap = sub.add_parser("capture", help="Run a command and store its output with a log driver")
    cap.add_argument("--log-driver", default="json-file")
    cap.add_argument("--log-opt", action="append", default=[], metavar="KEY=VALUE")
    cap.add_argument("--log-dir", required=True)
    cap.add_argument("--label", "-l", action="append", default=[])
    cap.add_argument("--env", "-e", action="append", default=[])
    cap.add_argument("--name", default="")
    cap.add_argument("--id", default="", help="64-hex id used in file names (default: random)")
    cap.add_argument("command", nargs=argparse.REMAINDER)
    cap.set_defaults(func=cmd_capture)

    logs = sub.add_parser("logs", help="Fetch the logs of a container")
    logs.add_argument("--log-dir")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--tail", default="all")
    logs.add_argument("--since", default="")
    logs.add_argument("--until", default="")
    logs.add_argument("-t", "--timestamps", action="store_true")
    logs.add_argument("--details", action="store_true")
    logs.add_argument("container", nargs="?", help="a container of the daemon (or use --log-dir)")
    logs.set_defaults(func=cmd_logs)

    from .commands import register

    register(sub)
    return parser


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
    parser = build_parser()
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


if __name__ == "__main__":
    sys.exit(main())
