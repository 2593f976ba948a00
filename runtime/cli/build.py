"""``build``, ``commit``, ``history``: clients of ``/build``, ``/commit`` and
``/images/{name}/history``, printing what the docker CLI prints (classic builder)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from logpipe.units import human_size

from .client import client_of, ref
from .errors import CommandError, daemon_command
from .tables import ago, print_table, table_format

_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
            "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="Build an image from a Dockerfile")
    p.add_argument("-t", "--tag", action="append", default=[])
    p.add_argument("-f", "--file", default="")
    p.add_argument("--build-arg", action="append", default=[])
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--target", default="")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--rm", default="true")
    p.add_argument("--force-rm", action="store_true")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--network", default="")
    p.add_argument("path")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("commit", help="Create a new image from a container's changes")
    p.add_argument("-m", "--message", default="")
    p.add_argument("-a", "--author", default="")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-p", "--pause", default="true", nargs="?", const="true")
    p.add_argument("container")
    p.add_argument("reference", nargs="?", default="")
    p.set_defaults(func=cmd_commit)

    p = sub.add_parser("history", help="Show the history of an image")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-H", "--human", default="true")
    p.add_argument("--format", default="")
    p.add_argument("image")
    p.set_defaults(func=cmd_history)


def _kv(items: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in items:
        k, eq, v = item.partition("=")
        out[k] = v if eq else os.environ.get(k)
    return out


@daemon_command()
def cmd_build(args: argparse.Namespace) -> int:
    from runtime.build.context import context_tar

    if not os.path.isdir(args.path):
        raise CommandError(f'unable to prepare context: path "{args.path}" not found')
    dockerfile = os.path.relpath(args.file, args.path) if args.file else "Dockerfile"
    outside = None
    if dockerfile.startswith(".."):  # the docker CLI sends it in the context, renamed
        outside, dockerfile = args.file, f".dockerfile.{os.urandom(10).hex()}"
    query: dict = {"t": args.tag, "dockerfile": dockerfile, "rm": int(args.rm != "false"),
                   "forcerm": int(args.force_rm), "nocache": int(args.no_cache),
                   "q": int(args.quiet), "target": args.target,
                   "buildargs": json.dumps(_kv(args.build_arg)),
                   "labels": json.dumps({k: v or "" for k, v in _kv(args.label).items()})}
    if args.network:
        query["networkmode"] = args.network
    with tempfile.TemporaryFile() as body:
        context_tar(args.path, body, dockerfile, outside)
        size = body.tell()
        body.seek(0)
        if not args.quiet:
            print(f"Sending build context to Docker daemon  {human_size(size)}")
        resp = client_of(args).request("POST", "/build", query, body=body,
                                       headers={"Content-Type": "application/x-tar",
                                                "Content-Length": str(size)})
        return _print_stream(resp, args.quiet)


def _print_stream(resp, quiet: bool) -> int:
    buf = b""
    while True:
        data = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
        if not data:
            break
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            msg = json.loads(line)
            if "error" in msg:
                sys.stderr.write(msg["error"] + "\n")
                return (msg.get("errorDetail") or {}).get("code") or 1
            if "stream" in msg and (not quiet or msg["stream"].startswith("sha256:")):
                sys.stdout.write(msg["stream"])
                sys.stdout.flush()
            elif "status" in msg and not quiet and not msg.get("progressDetail"):
                # A base image being pulled: one line per step, as ``pull`` prints them.
                prefix = f"{msg['id']}: " if msg.get("id") else ""
                sys.stdout.write(f"{prefix}{msg['status']}\n")
                sys.stdout.flush()
    return 0


@daemon_command()
def cmd_commit(args: argparse.Namespace) -> int:
    repo, tag = args.reference, ""
    if args.reference and ":" in args.reference.rsplit("/", 1)[-1]:
        repo, _, tag = args.reference.rpartition(":")
    query = {"container": args.container, "repo": repo, "tag": tag, "comment": args.message,
             "author": args.author, "changes": args.change,
             "pause": int(args.pause.lstrip("=").lower() not in ("false", "0"))}
    out = client_of(args).json("POST", "/commit", query, {})
    print(out["Id"])
    return 0


@daemon_command()
def cmd_history(args: argparse.Namespace) -> int:
    rows = client_of(args).json("GET", f"/images/{ref(args.image)}/history")
    if args.quiet:
        for r in rows:
            print(r["Id"] if args.no_trunc else _short(r["Id"]))
        return 0
    if args.format:
        table_format(args.format, [_history_fields(r, args) for r in rows], _HEADERS)
        return 0
    table = []
    for r in rows:
        f = _history_fields(r, args)
        table.append([f["ID"], f["CreatedSince"], f["CreatedBy"], f["Size"], f["Comment"]])
    print_table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], table)
    return 0


def _short(image_id: str) -> str:
    return image_id if image_id == "<missing>" else image_id.split(":", 1)[-1][:12]


def _history_fields(r: dict, args: argparse.Namespace) -> dict[str, str]:
    created_by = r.get("CreatedBy", "").replace("\t", " ")
    if not args.no_trunc and len(created_by) > 45:
        created_by = created_by[:44] + "…"
    return {"ID": r["Id"] if args.no_trunc else _short(r["Id"]),
            "CreatedSince": ago(r.get("Created", 0)),
            "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.get("Created", 0))),
            "CreatedBy": created_by, "Size": human_size(r.get("Size", 0)),
            "Comment": r.get("Comment", "")}
