"""Running short helper commands (runc, mount, umount) from the shim without ``subprocess``.

``subprocess`` and what it imports (threading, selectors, ...) cost every shim about 2 MiB;
the shim only ever needs "run this, wait, tell me the status and what it printed", which
``os.posix_spawn`` and ``waitpid`` give. Unlike ``Popen`` this never reaps a child it did
not start, so the shim's own reaping of the container stays exact.
"""

from __future__ import annotations

import os


class CommandResult:
    __slots__ = ("returncode", "stderr")

    def __init__(self, returncode: int, stderr: bytes) -> None:
        self.returncode, self.stderr = returncode, stderr


def run_command(argv: list[str], stdout: int | None = None,
                stderr: int | None = None, stdin: int | None = None) -> CommandResult:
    """Run ``argv`` (searched in ``PATH``); ``stdin``/``stdout``/``stderr`` are descriptors
    to give it (default: /dev/null, /dev/null, and a pipe whose text is returned)."""
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    err_r = err_w = -1
    if stderr is None:
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
    actions = [(os.POSIX_SPAWN_DUP2, null if stdin is None else stdin, 0),
               (os.POSIX_SPAWN_DUP2, null if stdout is None else stdout, 1),
               (os.POSIX_SPAWN_DUP2, err_w if stderr is None else stderr, 2)]
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
    finally:
        os.close(null)
        if err_w >= 0:
            os.close(err_w)
    text = b""
    if err_r >= 0:
        with os.fdopen(err_r, "rb") as f:
            text = f.read()
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    return CommandResult(os.waitstatus_to_exitcode(status), text)
