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
    query = _image_filters(args) or {}
    if args.all:
        query["all"] = 1
    images = client_of(args).json("GET", "/images/json", query or None)
    rows = []
    for im in images:
        short = im["Id"].split(":", 1)[-1][:12]
        digests = {d.partition("@")[0]: d.partition("@")[2] for d in im.get("RepoDigests") or []}
        for tag in im.get("RepoTags") or ["<none>:<none>"]:
            repo, _, t = tag.rpartition(":")
            row = [repo, t, im["Id"] if args.no_trunc else short, ago(im.get("Created", 0)),
                   human_size(im.get("Size", 0))]
            if getattr(args, "digests", False):
                row.insert(2, digests.get(repo, "<none>"))
            rows.append(row)
    if args.quiet:
        for r in dict.fromkeys(r[-3] for r in rows):
            print(r)
        return 0
    head = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    if getattr(args, "digests", False):
        head.insert(2, "DIGEST")
    print_table(head, rows)
    return 0


def _image_filters(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--filter key=value`` (repeatable) and ``images REPOSITORY[:TAG]`` as the API's
    ``filters`` JSON."""
    filters: dict[str, dict[str, bool]] = {}
    for f in getattr(args, "filter", None) or []:
        key, eq, value = f.partition("=")
        if not eq:
            raise CommandError("bad format of filter (expected name=value)")
        filters.setdefault(key, {})[value] = True
    if getattr(args, "reference", None):
        filters.setdefault("reference", {})[args.reference] = True
    return {"filters": json.dumps(filters)} if filters else None


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


# -- registries ---------------------------------------------------------------------------

#: The last word of a layer in the output: one line per layer, as logs of CI show pulls.
_LAYER_DONE = ("Already exists", "Pull complete", "Pushed", "Layer already exists", "Mounted from")


def _auth_header(reference) -> dict[str, str]:
    """``X-Registry-Auth`` from ``config.json``, as the docker CLI sends it."""
    from runtime.registry.auth import encode_header, stored_credentials

    creds = stored_credentials(reference.auth_key)
    return {"X-Registry-Auth": encode_header(creds, reference.auth_key if creds else "")}


def _parse_ref(text: str):
    from runtime.registry.reference import parse

    try:
        return parse(text)
    except Exception as err:  # InvalidReference: the docker CLI checks before it asks
        raise RefError(str(err)) from None


class RefError(Exception):
    """A reference the CLI refuses before asking the daemon (docker: exit 1, no prefix)."""


def show_progress(resp, out=sys.stdout) -> None:
    """Docker's JSON messages as lines: ``id: status`` once a layer is done, the rest as is;
    an error message ends the command (``APIError``)."""
    for line in resp:
        if not line.strip():
            continue
        msg = json.loads(line)
        if "error" in msg or "errorDetail" in msg:
            raise APIError(500, (msg.get("errorDetail") or {}).get("message") or msg["error"])
        text, id_ = msg.get("status"), msg.get("id")
        if not text:
            continue
        if id_ and text not in _LAYER_DONE and not text.startswith("Pulling from"):
            continue
        out.write(f"{id_}: {text}\n" if id_ else f"{text}\n")
        out.flush()


def pull(client: Client, text: str, platform: str = "", out=sys.stdout) -> None:
    """``docker pull``'s request and output (also run's auto-pull, to stderr)."""
    reference = _parse_ref(text)
    query = {"fromImage": reference.familiar_name,
             "tag": reference.digest or reference.tag}
    if platform:
        query["platform"] = platform
    resp = client.request("POST", "/images/create", query, headers=_auth_header(reference))
    show_progress(resp, out)
    name = reference.name + (f"@{reference.digest}" if reference.digest else f":{reference.tag}")
    out.write(f"{name}\n")


def _ref_errors(func):
    import functools

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except RefError as err:
            sys.stderr.write(f"{err}\n")
            return 1
    return run


@_ref_errors
@daemon_command()
def cmd_pull(args: argparse.Namespace) -> int:
    if args.quiet:  # docker pull -q: only the reference, at the end
        import io

        buf = io.StringIO()
        pull(client_of(args), args.name, args.platform, out=buf)
        print(buf.getvalue().splitlines()[-1])
        return 0
    pull(client_of(args), args.name, args.platform)
    return 0


@_ref_errors
@daemon_command()
def cmd_push(args: argparse.Namespace) -> int:
    reference = _parse_ref(args.name)
    resp = client_of(args).request("POST", f"/images/{ref(reference.familiar_name)}/push",
                                   {"tag": reference.tag}, headers=_auth_header(reference))
    show_progress(resp)
    return 0


@_ref_errors
@daemon_command()
def cmd_tag(args: argparse.Namespace) -> int:
    target = _parse_ref(args.target)
    client_of(args).request("POST", f"/images/{ref(args.source)}/tag",
                            {"repo": target.familiar_name, "tag": target.tag}).read()
    return 0


@daemon_command()
def cmd_save(args: argparse.Namespace) -> int:
    if not args.output and sys.stdout.isatty():
        raise CommandError("cowardly refusing to save to a terminal. Use the -o flag or "
                           "redirect")
    from urllib.parse import urlencode

    resp = client_of(args).request("GET", "/images/get?" + urlencode(
        [("names", name) for name in args.images]))
    if args.output:
        tmp = f"{args.output}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            while chunk := resp.read(1 << 20):
                f.write(chunk)
        os.replace(tmp, args.output)  # a failed save leaves no half archive under its name
    else:
        while chunk := resp.read(1 << 20):
            sys.stdout.buffer.write(chunk)
    return 0


@daemon_command()
def cmd_login(args: argparse.Namespace) -> int:
    from runtime.registry.auth import Credentials, save_credentials, server_key

    password = args.password
    if args.password_stdin:
        if password:
            raise CommandError("--password and --password-stdin are mutually exclusive")
        if not args.username:
            raise CommandError("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    elif password:
        sys.stderr.write("WARNING! Using --password via the CLI is insecure. "
                         "Use --password-stdin.\n")
    username = args.username
    if not username:
        username = input("Username: ").strip()
    if not password:
        import getpass

        password = getpass.getpass("Password: ")
    key = server_key(args.server or "")
    client_of(args).json("POST", "/auth", body={"username": username, "password": password,
                                                "serveraddress": key})
    save_credentials(key, Credentials(username, password))
    print("Login Succeeded")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from runtime.registry.auth import remove_credentials, server_key

    key = server_key(args.server or "")
    if remove_credentials(key):
        print(f"Removing login credentials for {key}")
    else:
        print(f"Not logged in to {key}")
    return 0


@daemon_command()
def cmd_image_prune(args: argparse.Namespace) -> int:
    filters: dict[str, list[str]] = {}
    for f in args.filter:
        key, _, value = f.partition("=")
        filters.setdefault(key, []).append(value)
    if args.all:
        filters["dangling"] = ["false"]
    if not args.force:
        what = "all images without at least one container associated to them" if args.all \
            else "all dangling images"
        sys.stdout.write(f"WARNING! This will remove {what}.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    result = client_of(args).json("POST", "/images/prune",
                                  {"filters": json.dumps(filters)} if filters else None)
    deleted = result.get("ImagesDeleted") or []
    if deleted:
        print("Deleted Images:")
        for item in deleted:
            for key, value in item.items():
                print(f"{key.lower()}: {value}")
        print()
    print(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed', 0))}")
    return 0
