"""``GET /containers/{id}/top``: the host's ``ps`` filtered to a container's processes, as
Docker's ``ContainerTop`` does it (moby ``daemon/top_unix.go``): ``ps ARGS -q PIDS`` (or
without ``-q`` when the arguments do not allow it), the ``PID`` column found in the header,
and each line whose pid is the container's kept, its overhanging fields joined into the last
column. Thread lines (a ``-`` pid, ``ps -m``) follow the process before them.

It runs ``ps`` and reads nothing else; the pids are the caller's (``runtime.stats``).
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

from logpipe.errors import InvalidParameter, LogpipeError

_ASSIGNED = re.compile(r"\s+([^\s]*)=\s*(PID[^\s]*)")
PS_TIMEOUT = 30.0


class TopError(LogpipeError):
    """``ps`` failed or printed what cannot be read (Docker's 500)."""


def check_ps_args(ps_args: str) -> None:
    """Docker's ``validatePSArgs``: a column may not be renamed to ``PID…`` but ``pid``'s."""
    for key, value in _ASSIGNED.findall(ps_args):
        if key != "pid":
            raise InvalidParameter(f'specifying "{key}={value}" is not allowed')


def _ps(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["ps", *args], capture_output=True, timeout=PS_TIMEOUT)


def run_ps(ps_args: str, pids: list[int]) -> dict[str, Any]:
    """``{"Titles": [...], "Processes": [[...], ...]}`` for the processes ``pids``."""
    args = ps_args.split(" ")
    res = _ps(args + ["-q" + ",".join(map(str, pids))])
    if res.returncode != 0:  # some options (f) do not go with -q: Docker retries without
        res = _ps(args)
        if res.returncode != 0:
            first = res.stderr.split(b"\n", 1)[0].decode(errors="replace")
            raise TopError(f"ps: {first or f'exit status {res.returncode}'}")
    return parse_ps(res.stdout.decode(errors="replace"), set(pids))


def parse_ps(output: str, pids: set[int]) -> dict[str, Any]:
    lines = output.split("\n")
    titles = lines[0].split()
    if "PID" not in titles:
        raise TopError("Couldn't find PID field in ps output")
    at = titles.index("PID")
    processes: list[list[str]] = []
    kept = False
    for line in lines[1:]:
        fields = line.split()
        if not fields:
            continue
        if len(fields) <= at:
            raise TopError(f"Unexpected line in ps output: {line!r}")
        if fields[at] == "-":
            if kept:
                processes.append(_fit(fields, len(titles)))
            continue
        try:
            pid = int(fields[at])
        except ValueError:
            raise TopError(f"Unexpected pid '{fields[at]}': strconv.Atoi: parsing "
                           f"\"{fields[at]}\": invalid syntax") from None
        kept = pid in pids
        if kept:
            processes.append(_fit(fields, len(titles)))
    return {"Titles": titles, "Processes": processes}


def _fit(fields: list[str], width: int) -> list[str]:
    """As many fields as titles: the overhanging ones (a command's arguments) joined."""
    return fields[:width - 1] + [" ".join(fields[width - 1:])]
