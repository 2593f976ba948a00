"""``images``, ``import``, ``load``, ``rmi``: the image commands, clients of the Engine API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from logpipe.units import human_size

from .client import APIError, Client, client_of, ref
from .errors import CommandError, daemon_command
from .tables import ago, print_table


@daemon_command()
def cmd_images(args: argparse.Namespace) -> int:
    images = client_of(args).json("GET", "/images/json", {"all": int(args.all)} if args.all else None)
    rows = []
    for im in images:
        short = im["Id"].split(":", 1)[-1][:12]
        for tag in im.get("RepoTags") or ["<none>:<none>"]:
            repo, _, t = tag.rpartition(":")
            rows.append([repo, t, im["Id"] if args.no_trunc else short, ago(im.get("Created", 0)),
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
    out = _upload(client_of(args), args.file, query, "Importing")
    for line in out.splitlines():
        if line.strip():
            msg = json.loads(line)
            print(msg.get("status") or msg.get("stream", "").rstrip())
    return 0


@daemon_command()
def cmd_load(args: argparse.Namespace) -> int:
    if args.input == "-" and sys.stdin.isatty():
        raise CommandError("requested load from stdin, but stdin is empty")
    out = _upload(client_of(args), args.input, None, "Loading layer")
    for line in out.splitlines():
        if line.strip():
            sys.stdout.write(json.loads(line).get("stream", ""))
    return 0


@daemon_command()
def cmd_rmi(args: argparse.Namespace) -> int:
    client = client_of(args)
    failed = False
    for name in args.images:
        try:
            items = client.json("DELETE", f"/images/{ref(name)}", {"force": int(args.force)})
        except APIError as err:
            sys.stderr.write(f"Error response from daemon: {err}\n")
            failed = True
            continue
        for item in items or []:
            for key, value in item.items():
                print(f"{key}: {value}")
    return 1 if failed else 0
