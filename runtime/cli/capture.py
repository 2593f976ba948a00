"""``logpipe capture``: run a command and store what it prints with a log driver, as a
container's output is stored, without a daemon. ``capture.json`` in the log directory keeps
what ``logs --log-dir`` needs to read it back.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from logpipe.errors import LogpipeError

from .flags import key_values

CAPTURE_META = "capture.json"


def cmd_capture(args: argparse.Namespace) -> int:
    """``logpipe capture``: run a command and store what it prints, like a container."""
    from logpipe.capture import capture_info, check_log_dir, run_capture
    from logpipe.registry import driver_ref, log_plan, validate_log_config

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
    meta = load_meta(args.log_dir, required=False)
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


def load_meta(log_dir: str, required: bool = True) -> dict:
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
