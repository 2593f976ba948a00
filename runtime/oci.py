"""OCI runtime bundles: a ``ContainerSpec`` becomes ``<container-dir>/bundle/config.json``.

The config is what ``runc spec`` produces, adapted the way Docker adapts it: Docker's default
capabilities, environment (``PATH``, ``HOSTNAME``), ``/etc/hostname`` and ``/etc/hosts``
(and the host's ``/etc/resolv.conf`` with ``--network host``), bind mounts, cgroup limits,
and the seccomp filter of ``runtime.seccomp``.
It writes files in the container directory only; it starts nothing.
"""

from __future__ import annotations

import os
import socket
import stat
from typing import Any

from logpipe.errors import LogpipeError

from runtime import hostopts, seccomp
from runtime.mounts import oci_mounts
from runtime.network import etcfiles
from runtime.network.netavark import (data_root_of, host_gateway, joined_netns, netns_path,
                                      records, uses_netns)
from runtime.rootfs import bind_mountpoint, resolve_in_root
from runtime.spec import ContainerSpec, write_json_atomic

OCI_VERSION = "1.0.2-dev"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD = 100_000  # Docker's --cpus: quota = cpus * period, period 100 ms

DEFAULT_CAPS = hostopts.DEFAULT_CAPS  # Docker's default capability set

MASKED_PATHS = [  # runc spec's defaults, plus Docker's additions
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
#: At most this much of ``/etc/passwd`` or ``/etc/group`` is read: an image's could be huge.
MAX_DB_SIZE = 16 << 20


class OCIConfigError(LogpipeError):
    """The container's config cannot be expressed for the OCI runtime (bad user, no command)."""


def read_image_file(root: str, path: str, limit: int = MAX_DB_SIZE) -> bytes | None:
    """The bytes of the *regular* file ``path`` inside ``root`` (at most ``limit``), or None.

    The image and the container's own writable layer are not ours: ``/etc/passwd`` may be a
    FIFO (``open`` would wait forever for a writer), a device (an endless read), or a symlink
    swapped in after it was resolved. So: resolved inside the root, opened without following
    a last symlink and without blocking, and read only if ``fstat`` says it is a regular file.
    """
    host = resolve_in_root(root, path, follow_last=True)
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, size = [], 0
        while size < limit and (chunk := os.read(fd, min(1 << 16, limit - size))):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_db(root: str, name: str) -> list[list[str]]:
    """Lines of the container's ``/etc/passwd`` or ``/etc/group``, split at ':'; none when
    the file is missing or not a regular file (then named users are not found, as in
    Docker with an image without the entry)."""
    data = read_image_file(root, f"/etc/{name}")
    if data is None:
        return []
    return [line.split(":") for line in data.decode(errors="replace").splitlines()
            if line.strip() and not line.startswith("#")]


def resolve_user(root: str, user: str) -> dict[str, Any]:
    """``-u`` → OCI ``process.user``: ``uid[:gid]`` numeric or names from the container's
    ``/etc/passwd`` and ``/etc/group``; supplementary groups from ``/etc/group``, as Docker."""
    if not user:
        user = "0"
    name, _, group = user.partition(":")
    passwd = [e for e in _read_db(root, "passwd") if len(e) >= 4]
    entry = None
    if name.isdigit():
        uid = int(name)
        entry = next((e for e in passwd if e[2] == name), None)
    else:
        entry = next((e for e in passwd if e[0] == name), None)
        if entry is None:
            raise OCIConfigError(f"unable to find user {name}: no matching entries in passwd file")
        uid = int(entry[2])
    groups = [e for e in _read_db(root, "group") if len(e) >= 3]
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = next((e for e in groups if e[0] == group), None)
            if g is None:
                raise OCIConfigError(
                    f"unable to find group {group}: no matching entries in group file")
            gid = int(g[2])
    else:
        gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    out: dict[str, Any] = {"uid": uid, "gid": gid}
    if entry:
        extra = sorted({int(g[2]) for g in groups if len(g) >= 4 and g[2].isdigit()
                        and entry[0] in g[3].split(",") and int(g[2]) != gid})
        if extra:
            out["additionalGids"] = extra
    return out


def _user_db_guards(spec: ContainerSpec, root: str) -> list[dict[str, Any]]:
    """Bind an empty file over the image's ``/etc/passwd`` or ``/etc/group`` when it is a FIFO,
    a device or a socket.

    runc reads both files itself, inside the container and before the process starts (for
    ``HOME`` and the supplementary groups, even for a numeric user), with a blocking
    ``open``: a FIFO there wedged every start of the image, ``--user`` or not. An empty file
    reads as "no entries", which is what such an image means anyway.
    """
    mounts = []
    for name in ("passwd", "group"):
        try:
            mode = os.stat(resolve_in_root(root, f"/etc/{name}", follow_last=True)).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
            continue
        empty = os.path.join(spec.dir, f"empty-{name}")
        with open(empty, "w"):
            pass
        mounts.append({"destination": f"/etc/{name}", "type": "bind", "source": empty,
                       "options": ["rbind", "rprivate", "ro"]})
    return mounts


def hostname_of(spec: ContainerSpec) -> str:
    """Docker: ``--hostname``, else the host's name with host networking, else the short id."""
    if spec.hostname:
        return spec.hostname
    return socket.gethostname() if spec.network_mode == "host" else spec.id[:12]


def environment(spec: ContainerSpec, hostname: str) -> list[str]:
    """The container's env: Docker adds ``PATH``, ``HOSTNAME`` (and ``TERM=xterm`` with a
    terminal) unless already set."""
    keys = {e.split("=", 1)[0] for e in spec.env}
    env = []
    if "PATH" not in keys:
        env.append(DEFAULT_PATH)
    if "HOSTNAME" not in keys:
        env.append(f"HOSTNAME={hostname}")
    if spec.tty and "TERM" not in keys:  # Docker's CreateDaemonEnvironment, for -t
        env.append("TERM=xterm")
    return env + list(spec.env)


def _etc_files(spec: ContainerSpec, hostname: str) -> list[dict[str, Any]]:
    """``/etc/hostname``, ``/etc/hosts`` and ``resolv.conf`` as Docker writes them
    (``runtime.network.etcfiles``), in the container directory, bind-mounted."""
    data_root = data_root_of(spec)
    found = records(data_root, spec.id) if uses_netns(spec) else {}
    files = {"hostname": f"{hostname}\n",
             "hosts": etcfiles.hosts(spec, hostname, found, host_gateway(data_root)),
             "resolv.conf": etcfiles.resolv_conf(spec, found)}
    mounts = []
    for name, body in files.items():
        if body is None:
            continue
        path = os.path.join(spec.dir, name)
        with open(path, "w") as f:
            f.write(body)
        mounts.append({"destination": f"/etc/{name}", "type": "bind", "source": path,
                       "options": ["rbind", "rprivate", "rw"]})
    return mounts


def config(spec: ContainerSpec, root: str) -> dict[str, Any]:
    """The OCI runtime config (a dict) for ``spec`` with its root filesystem at ``root``."""
    if not spec.argv:
        raise OCIConfigError("No command specified")
    hostname = hostname_of(spec)
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if uses_netns(spec):  # the namespace netavark set up (runtime.network)
        namespaces.append({"type": "network", "path": netns_path(spec)})
    elif spec.network_mode.startswith("container:"):
        namespaces.append({"type": "network", "path": joined_netns(spec)})
    elif spec.network_mode != "host":
        namespaces.append({"type": "network"})
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]
    mounts += _etc_files(spec, hostname)
    mounts += _user_db_guards(spec, root)
    for b in spec.binds:
        bind_mountpoint(root, b.source, b.target)
        mounts.append({"destination": b.target, "type": "bind", "source": b.source,
                       "options": ["rbind", "rprivate", "ro" if b.readonly else "rw"]})
    mounts += oci_mounts(spec)
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if spec.memory:
        resources["memory"] = {"limit": spec.memory}
        if spec.memory_swap and hostopts.swap_accounting():
            resources["memory"]["swap"] = spec.memory_swap
    cpu: dict[str, int] = {}
    if spec.nano_cpus:
        cpu = {"quota": spec.nano_cpus * CPU_PERIOD // 1_000_000_000, "period": CPU_PERIOD}
    elif spec.cpu_quota or spec.cpu_period:
        cpu = {"quota": spec.cpu_quota or -1, "period": spec.cpu_period or CPU_PERIOD}
    if spec.cpu_shares:
        cpu["shares"] = spec.cpu_shares
    if cpu:
        resources["cpu"] = cpu
    if spec.pids_limit:
        resources["pids"] = {"limit": spec.pids_limit}
    caps = hostopts.capabilities(spec.host_options)  # --cap-add, --cap-drop
    linux: dict[str, Any] = {
        "cgroupsPath": f"/logpipe/{spec.id}",
        "resources": resources,
        "namespaces": namespaces,
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
    }
    filter_ = seccomp.oci_seccomp(spec.security_opt, caps)
    if filter_ is not None:
        linux["seccomp"] = filter_
    process: dict[str, Any] = {
        # Pass-through stdio: the runtime hands its own fds (the shim's pipes) over; with
        # -t a pty made inside the container, whose master runc sends to the shim.
        # No rlimits: asking above the caller's hard limit makes runc fail with EPERM.
        "terminal": spec.tty,
        "user": resolve_user(root, spec.user),
        "args": spec.argv,
        "env": environment(spec, hostname),
        "cwd": spec.working_dir or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        # Docker's default is False; --security-opt no-new-privileges sets it.
        "noNewPrivileges": seccomp.no_new_privileges(spec.security_opt),
    }
    if spec.tty and all(spec.console_size):  # HostConfig.ConsoleSize: the first size
        process["consoleSize"] = {"height": spec.console_size[0],
                                  "width": spec.console_size[1]}
    cfg = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": os.path.abspath(root), "readonly": False},
        "hostname": hostname,
        **({"domainname": spec.domainname} if spec.domainname else {}),
        "mounts": mounts,
        "linux": linux,
    }
    hostopts.apply(cfg, spec.dir, data_root_of(spec), root, spec.host_options)
    return cfg


def bundle(spec: ContainerSpec, root: str) -> str:
    """Write ``<spec.dir>/bundle/config.json`` and return the bundle directory."""
    path = os.path.join(spec.dir, "bundle")
    os.makedirs(path, exist_ok=True)
    write_json_atomic(os.path.join(path, "config.json"), config(spec, root))
    return path
