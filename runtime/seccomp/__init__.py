"""Seccomp for containers: ``--security-opt`` parsing and the OCI ``linux.seccomp`` filter.

Every runc/crun container gets ``default.json`` (next to this module, shipped as package data)
unless ``--security-opt seccomp=unconfined``; ``seccomp=PROFILE.json`` replaces it (the CLI
sends the file's content, as the docker CLI does). The default has the intent of Docker's
default profile — a container cannot do what Docker's default profile refuses without extra
capabilities: new namespaces (``unshare``, ``setns``, ``clone`` with ``CLONE_NEW*``), mounts,
the kernel keyring, eBPF, perf, modules, kexec, reboot, ``open_by_handle_at``, swap, process
accounting, setting the clock, ``userfaultfd``, io_uring, and ``ptrace`` on kernels before 4.8
— but it is written as a deny list (everything else is allowed), which keeps new syscalls of
new libcs working. ``clone3`` answers ENOSYS so that libc falls back to ``clone``, whose flags
seccomp can see.

Profiles are read in OCI format, and in Docker's own format too (``archMap``, ``includes``/
``excludes`` by capability, architecture and minimum kernel), so Docker's profiles work as is.

This module only computes data; runc applies the filter. The ``process`` runtime cannot apply
any (the daemon says so when such a container is created).
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Sequence

from logpipe.errors import InvalidParameter

DEFAULT_PROFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.json")
UNCONFINED = "unconfined"
BUILTIN = "builtin"  # Docker 25+: explicitly the daemon's default profile

#: The architectures a filter must cover on each machine: the native one and those whose
#: syscalls the kernel also accepts (32-bit ``int 0x80`` on x86_64), or they would bypass it.
_ARCHES = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
}
#: Fields of a syscall rule that runc understands; Docker's extras are resolved here.
_RULE_FIELDS = ("names", "action", "errnoRet", "args")


class SecurityOptError(InvalidParameter):
    """A ``--security-opt`` value the daemon cannot use (HTTP 400)."""


def parse_security_opt(opts: list[str] | None) -> tuple[str, ...]:
    """Validate ``HostConfig.SecurityOpt`` (create time), Docker's rules and texts.

    Accepted: ``seccomp=unconfined|builtin|<profile JSON>``, ``no-new-privileges[=bool]``,
    ``apparmor=…``/``label=…`` (no AppArmor or SELinux here: accepted and ignored, as Docker
    does on a host without them). ``:`` is the old separator Docker still accepts.
    """
    if not opts:  # the request schema checked the type (a list of strings)
        return ()
    for opt in opts:
        if opt in ("no-new-privileges", "disable"):
            continue
        sep = "=" if "=" in opt else ":" if ":" in opt else ""
        if not sep:
            raise SecurityOptError(f'invalid --security-opt 1: "{opt}"')
        key, _, value = opt.partition(sep)
        if key == "seccomp":
            if value not in (UNCONFINED, BUILTIN):
                load_profile(value)
        elif key == "no-new-privileges":
            if value.lower() not in ("1", "t", "true", "0", "f", "false"):
                raise SecurityOptError(f'invalid --security-opt 2: "{opt}"')
        elif key not in ("label", "apparmor"):
            raise SecurityOptError(f'invalid --security-opt 2: "{opt}"')
    return tuple(opts)


def _value(opts: Iterable[str], wanted: str) -> str | None:
    """The last value of option ``wanted`` (``key=value`` or ``key:value``)."""
    found = None
    for opt in opts:
        for sep in ("=", ":"):
            key, s, value = opt.partition(sep)
            if s and key == wanted:
                found = value
                break
    return found


def no_new_privileges(opts: Sequence[str]) -> bool:
    """``--security-opt no-new-privileges[=true]``."""
    if "no-new-privileges" in opts:
        return True
    value = _value(opts, "no-new-privileges")
    return value is not None and value.lower() in ("1", "t", "true")


def has_profile(opts: Sequence[str]) -> bool:
    """Whether ``--security-opt seccomp=PROFILE`` names a profile of its own."""
    return _value(opts, "seccomp") not in (None, UNCONFINED, BUILTIN)


def oci_seccomp(opts: Sequence[str], caps: Sequence[str]) -> dict[str, Any] | None:
    """``linux.seccomp`` of the OCI config for a container with capabilities ``caps``; None
    when unconfined."""
    value = _value(opts, "seccomp")
    if value == UNCONFINED:
        return None
    if value in (None, "", BUILTIN):
        with open(DEFAULT_PROFILE, encoding="utf-8") as f:
            value = f.read()
    return to_oci(load_profile(value), caps)


def load_profile(text: str) -> dict[str, Any]:
    """Parse a profile's JSON, refusing what could never become a filter (Docker's text)."""
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise SecurityOptError(f"decoding seccomp profile failed: {e}") from None
    if not isinstance(profile, dict) or not isinstance(profile.get("defaultAction"), str):
        raise SecurityOptError("decoding seccomp profile failed: the profile must be a JSON "
                               "object with a defaultAction")
    rules = profile.get("syscalls") or []
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise SecurityOptError("decoding seccomp profile failed: syscalls must be a list of "
                               "objects")
    for rule in rules:
        if rule.get("name") and rule.get("names"):
            raise SecurityOptError("'name' and 'names' were specified in the seccomp profile, "
                                   "use either 'name' or 'names'")
    return profile


def _kernel() -> tuple[int, ...]:
    release = os.uname().release.split("-", 1)[0]
    return tuple(int(p) for p in release.split(".")[:2] if p.isdigit())


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in str(text).split(".")[:2] if p.isdigit())


def _applies(rule: dict[str, Any], caps: Sequence[str], arch: str) -> bool:
    """Docker's ``includes``/``excludes``: a rule counts only on the machines it is for."""
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("caps") and not set(inc["caps"]) <= set(caps):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if inc.get("minKernel") and _kernel() < _version(inc["minKernel"]):
        return False
    if exc.get("caps") and set(exc["caps"]) & set(caps):
        return False
    if exc.get("arches") and arch in exc["arches"]:
        return False
    if exc.get("minKernel") and _kernel() >= _version(exc["minKernel"]):
        return False
    return True


def to_oci(profile: dict[str, Any], caps: Sequence[str]) -> dict[str, Any]:
    """A profile (OCI or Docker format) as the plain OCI ``linux.seccomp`` runc reads."""
    machine = os.uname().machine
    native = _ARCHES.get(machine, ())
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)  # Docker's names
    out: dict[str, Any] = {k: v for k, v in profile.items()
                           if k in ("defaultAction", "defaultErrnoRet", "flags",
                                    "listenerPath", "listenerMetadata")}
    if profile.get("archMap"):
        arches: list[str] = []
        for entry in profile["archMap"]:
            if entry.get("architecture") in native:
                arches += [entry["architecture"], *(entry.get("subArchitectures") or [])]
    else:
        # A foreign architecture in the list would only add dead branches: keep this host's.
        listed = profile.get("architectures") or []
        arches = [a for a in listed if a in native] if native else list(listed)
    if arches:
        out["architectures"] = arches
    rules = []
    for rule in profile.get("syscalls") or []:
        if not _applies(rule, caps, arch):
            continue
        oci = {k: rule[k] for k in _RULE_FIELDS if k in rule}
        if rule.get("name"):
            oci["names"] = [rule["name"]]
        rules.append(oci)
    out["syscalls"] = rules
    return out
