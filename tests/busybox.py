"""A small image without the internet: a busybox rootfs tarball from Debian's busybox-static.

Used by the tests and the README demo (``python3 tests/busybox.py OUT.tar`` writes it and
prints its path). The tree is ``bin/busybox`` plus one symlink per applet (``busybox --list``), an
``etc/passwd`` and ``etc/group`` with root and nobody, and the empty directories a
container expects (``tmp`` is 1777, like every distribution's).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import time

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def find_busybox() -> str | None:
    """The static busybox binary, or None (dynamic ones would need their libraries)."""
    for path in BUSYBOX_CANDIDATES:
        if os.path.exists(path):
            out = subprocess.run(["file", "-L", path], capture_output=True, text=True) \
                if shutil.which("file") else None
            if out is None or "dynamically linked" not in out.stdout:
                return path
    return None


def build_tarball(out: str) -> str:
    """Write the rootfs tarball to ``out`` and return ``out``."""
    busybox = find_busybox()
    if busybox is None:
        raise RuntimeError("busybox-static is not installed (apt-get install busybox-static)")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    now = int(time.time())

    def entry(name: str, kind: bytes = tarfile.DIRTYPE, mode: int = 0o755, **kw) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime, ti.uid, ti.gid = kind, mode, now, 0, 0
        for k, v in kw.items():
            setattr(ti, k, v)
        return ti

    def text(tar: tarfile.TarFile, name: str, body: str) -> None:
        data = body.encode()
        tar.addfile(entry(name, tarfile.REGTYPE, 0o644, size=len(data)), io.BytesIO(data))

    with tarfile.open(out, "w") as tar:
        for d in ("bin", "etc", "dev", "proc", "sys", "root", "home", "var", "usr", "usr/bin"):
            tar.addfile(entry(d, mode=0o700 if d == "root" else 0o755))
        tar.addfile(entry("tmp", mode=0o1777))
        with open(busybox, "rb") as f:
            tar.addfile(entry("bin/busybox", tarfile.REGTYPE, 0o755,
                              size=os.fstat(f.fileno()).st_size), f)
        for name in applets:
            if name != "busybox":
                tar.addfile(entry(f"bin/{name}", tarfile.SYMTYPE, 0o777, linkname="busybox"))
        text(tar, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        text(tar, "etc/group", "root:x:0:\nnogroup:x:65534:\n")
    return out


if __name__ == "__main__":
    print(build_tarball(sys.argv[1] if len(sys.argv) > 1 else "busybox.tar"))
