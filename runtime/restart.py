"""Docker's restart policy, as pure functions: which policies exist, whether an exit restarts
the container, and how long to wait before that restart.

Nothing here knows a container's lock, its shim or the daemon's loop: the store
(``runtime.containers``) asks these functions and acts on the answer.
"""

from __future__ import annotations

from logpipe.errors import InvalidParameter

from . import schema

RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
#: Docker's restart backoff (restartmanager): 100 ms doubling to 1 min, reset after a run of 10 s.
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET_AFTER = 0.1, 60.0, 10.0


def restart_policy(policy: schema.RestartPolicy) -> tuple[str, int]:
    """``HostConfig.RestartPolicy`` of a create request → (name, maximum retry count)."""
    name = policy.Name or "no"
    count = policy.MaximumRetryCount or 0
    if name not in RESTART_POLICIES:
        raise InvalidParameter(f"invalid restart policy '{name}'")
    if count < 0:
        raise InvalidParameter("maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise InvalidParameter(f"maximum retry count cannot be used with restart policy '{name}'")
    return name, count


def should_restart(policy: str, restart_max: int, exit_code: int, restart_count: int,
                   manually_stopped: bool) -> bool:
    """Docker's restartmanager: never after a manual stop; ``on-failure`` on a non-zero
    exit, up to ``MaximumRetryCount`` restarts when that is set."""
    if manually_stopped:
        return False
    if policy in ("always", "unless-stopped"):
        return True
    if policy == "on-failure":
        return exit_code != 0 and (restart_max == 0 or restart_count < restart_max)
    return False


def next_backoff(backoff: float, ran: float) -> float:
    """The wait before the next restart, after the previous wait ``backoff`` (0: none yet)
    and a run of ``ran`` seconds: doubling, reset after a run long enough."""
    return BACKOFF_START if ran >= BACKOFF_RESET_AFTER or not backoff \
        else min(backoff * 2, BACKOFF_MAX)
