"""``logpipe cp``, ``export`` and ``diff``: a container's files, through the daemon's
``/archive``, ``/export`` and ``/changes``.

``cp`` follows the docker CLI's rules (``cli/command/container/cp.go`` and
``pkg/archive/copy.go``): a source directory copied to a path that does not exist becomes
that path, to an existing directory goes inside it; ``SRC/.`` copies a directory's content;
a file copied to a missing ``DIR/`` is ``no such directory``; ``-`` is a tar on stdin or
stdout. Local archives are written with ``runtime.archive`` (the daemon's writer), and
extracted with ``tarfile``'s ``tar`` filter: no entry lands outside the destination.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import TYPE_CHECKING, BinaryIO, Iterator, NamedTuple

from .client import APIError, Client, client_of, ref
from .errors import CommandError, daemon_command

if TYPE_CHECKING:  # loaded by cp when it copies: not on every command's start
    import tarfile

MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27


class CopyInfo(NamedTuple):
    path: str
    exists: bool
    is_dir: bool
    rebase: str = ""


def split_entry(path: str) -> tuple[str, str]:
    """pkg/archive ``SplitPathDirEntry``: the parent and the entry, ``.`` kept."""
    clean = os.path.normpath(path)
    if path.endswith("/.") or path == ".":
        clean = clean.rstrip("/") + "/."
    return os.path.dirname(clean) or ".", os.path.basename(clean)


def prepare_copy(src: CopyInfo, dst: CopyInfo) -> tuple[str, str | None]:
    """pkg/archive ``PrepareArchiveCopy``: the directory to extract into, and the name the
    source's top entry takes there (None: as it is)."""
    dst_dir, dst_base = split_entry(dst.path)
    if dst.exists and dst.is_dir:
        return dst.path, None
    if dst.exists and src.is_dir:
        raise CommandError("cannot copy directory")
    if not dst.exists and not src.is_dir and dst.path.endswith("/"):
        raise CommandError("no such directory")
    return dst_dir, dst_base


def _container_path(arg: str) -> tuple[str, str] | None:
    """``CONTAINER:PATH`` → (container, path); None for a local path (``./a:b`` is local)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None
    name, _, path = arg.partition(":")
    return name, path


def _stat(client: Client, container: str, path: str) -> dict | None:
    import base64
    import json

    try:
        resp = client.request("HEAD", f"/containers/{ref(container)}/archive", {"path": path})
    except APIError as err:
        if err.status == 404:
            return None
        raise
    resp.read()
    return json.loads(base64.b64decode(resp.getheader("X-Docker-Container-Path-Stat")))


def _rebased(tar: tarfile.TarFile, old: str, new: str | None) -> Iterator[tarfile.TarInfo]:
    for ti in tar:
        if new is not None and (ti.name == old or ti.name.startswith(old.rstrip("/") + "/")):
            ti.name = new + ti.name[len(old):]
            if ti.islnk() and ti.linkname.startswith(old):
                ti.linkname = new + ti.linkname[len(old):]
        ti.uid, ti.gid, ti.uname, ti.gname = os.getuid(), os.getgid(), "", ""  # NoLchown
        yield ti


def copy_from(client: Client, container: str, src_path: str, dst_path: str,
              follow: bool) -> None:
    rebase = ""
    if follow:
        st = _stat(client, container, src_path)
        if st is not None and st["mode"] & MODE_SYMLINK and st["linkTarget"]:
            rebase = split_entry(src_path)[1]
            src_path = st["linkTarget"]
    resp = client.request("GET", f"/containers/{ref(container)}/archive", {"path": src_path})
    if dst_path == "-":
        shutil.copyfileobj(resp, sys.stdout.buffer, 1 << 16)
        return
    import base64
    import json

    st = json.loads(base64.b64decode(resp.getheader("X-Docker-Container-Path-Stat")))
    src = CopyInfo(src_path, True, bool(st["mode"] & MODE_DIR), rebase)
    dst_real = os.path.realpath(dst_path) + ("/" if dst_path.endswith("/") else "")
    if not os.path.exists(dst_real) and not os.path.isdir(os.path.dirname(
            dst_real.rstrip("/")) or "."):
        raise CommandError(f"lstat {os.path.dirname(dst_real.rstrip('/'))}: no such file or "
                           "directory")
    dst = CopyInfo(dst_real if os.path.exists(dst_real) else dst_path,
                   os.path.exists(dst_real), os.path.isdir(dst_real))
    into, new = prepare_copy(src, dst)
    old = rebase or split_entry(src_path)[1]
    import tarfile

    with tarfile.open(fileobj=resp, mode="r|") as tar:
        for ti in _rebased(tar, old, new):
            tar.extract(ti, into, filter="tar")


def _local_tar(path: str, name: str, follow: bool) -> Iterator[bytes]:
    from .. import archive

    fs = archive.ContainerFS("/")
    host = os.path.realpath(path) if follow else os.path.abspath(path)
    st = os.stat(host) if follow else os.lstat(host)
    return archive.tar_stream(fs, host, name, st)


def copy_to(client: Client, container: str, src_path: str, dst_path: str, follow: bool,
            copy_owner: bool) -> None:
    dst = CopyInfo(dst_path, False, False)
    st = _stat(client, container, dst_path)
    if st is not None and st["mode"] & MODE_SYMLINK:
        target = st["linkTarget"]
        dst = CopyInfo(target, False, False)
        st = _stat(client, container, target)
    if st is not None:
        dst = dst._replace(exists=True, is_dir=bool(st["mode"] & MODE_DIR))
    if src_path == "-":
        if not dst.is_dir:
            raise CommandError(f'destination "{container}:{dst_path}" must be a directory')
        into, body = dst.path, sys.stdin.buffer
    else:
        if not os.path.lexists(src_path):
            raise CommandError(f"lstat {os.path.abspath(src_path)}: no such file or directory")
        src = CopyInfo(src_path, True, os.path.isdir(src_path))
        into, new = prepare_copy(src, dst)
        body = _local_tar(src_path, new or split_entry(src_path)[1], follow)
    query = {"path": into, "noOverwriteDirNonDir": "true",
             "copyUIDGID": "true" if copy_owner else None}
    client.request("PUT", f"/containers/{ref(container)}/archive", query, body=body,
                   headers={"Content-Type": "application/x-tar"}).read()


@daemon_command()
def cmd_cp(args: argparse.Namespace) -> int:
    src, dst = _container_path(args.src), _container_path(args.dest)
    if src and dst:
        raise CommandError("copying between containers is not supported")
    if not src and not dst:
        raise CommandError("must specify at least one container source")
    client = client_of(args)
    if src:
        copy_from(client, src[0], src[1], args.dest, args.follow_link)
    else:
        copy_to(client, dst[0], args.src, dst[1], args.follow_link, args.archive)
    return 0


def _write_all(resp: BinaryIO, out: BinaryIO) -> None:
    shutil.copyfileobj(resp, out, 1 << 16)
    out.flush()


@daemon_command()
def cmd_export(args: argparse.Namespace) -> int:
    if not args.output and sys.stdout.isatty():
        raise CommandError("cowardly refusing to save to a terminal. Use the -o flag or "
                           "redirect")
    resp = client_of(args).request("GET", f"/containers/{ref(args.container)}/export")
    if args.output:
        with open(args.output, "wb") as f:
            _write_all(resp, f)
    else:
        _write_all(resp, sys.stdout.buffer)
    return 0


@daemon_command()
def cmd_diff(args: argparse.Namespace) -> int:
    changes = client_of(args).json("GET", f"/containers/{ref(args.container)}/changes")
    for change in changes or []:
        print(f"{'CAD'[change['Kind']] if 0 <= change['Kind'] <= 2 else '?'} {change['Path']}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cp", help="Copy files/folders between a container and the local "
                                  "filesystem")
    p.add_argument("-a", "--archive", action="store_true",
                   help="Archive mode (copy all uid/gid information)")
    p.add_argument("-L", "--follow-link", action="store_true",
                   help="Always follow symbol link in SRC_PATH")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dest", metavar="DEST")
    p.set_defaults(func=cmd_cp)

    p = sub.add_parser("export", help="Export a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", default="")
    p.add_argument("container")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("diff", help="Inspect changes to files or directories on a container's "
                                    "filesystem")
    p.add_argument("container")
    p.set_defaults(func=cmd_diff)
