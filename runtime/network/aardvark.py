"""A running container's names in aardvark-dns, changed in place (``docker rename``).

aardvark-dns serves each network from a file of lines ``<id> <ipv4> <ipv6> <name>,<aliases…>``
that netavark writes at setup; it re-reads them on SIGHUP, so a rename needs neither a new
setup nor a restart of the container.
"""

from __future__ import annotations

import os

from runtime.spec import ContainerSpec

from .netavark import data_root_of, locked, uses_netns


def rename(spec: ContainerSpec, old_name: str) -> bool:
    """A running container's new name in aardvark-dns, at once (``docker rename``): its line
    in each of its networks' files (``<id> <ipv4> <ipv6> <name>,<aliases…>``) names it anew
    and aardvark-dns re-reads its files on SIGHUP. False when it has no entry (not on a
    user-defined network, or not running: its next start writes the new name anyway)."""
    if not uses_netns(spec):
        return False
    directory = os.path.join(data_root_of(spec), "run", "netavark", "aardvark-dns")
    old, new = old_name.lstrip("/"), spec.name.lstrip("/")
    found = False
    with locked(data_root_of(spec)):
        for network in (spec.network_mode, *spec.extra_networks):
            found = _rename_entry(os.path.join(directory, network), spec.id, old, new) or found
        if not found:
            return False
        try:
            with open(os.path.join(directory, "aardvark.pid")) as f:
                os.kill(int(f.read().strip()), 1)  # SIGHUP: reload the files
        except (OSError, ValueError):
            pass  # not running: it reads the file when it starts
    return True


def _rename_entry(path: str, cid: str, old: str, new: str) -> bool:
    try:
        with open(path) as f:
            lines = f.read().split("\n")
    except OSError:
        return False
    found = False
    for i, line in enumerate(lines):
        fields = line.split(" ")
        if len(fields) == 4 and fields[0] == cid:
            fields[3] = ",".join(new if n == old else n for n in fields[3].split(","))
            lines[i], found = " ".join(fields), True
    if found:
        tmp = f"{path}.tmp.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write("\n".join(lines))
        os.replace(tmp, path)
    return found