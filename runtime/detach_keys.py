"""Docker's detach keys: the key sequence that ends an attach without stopping the container.

``ctrl-p,ctrl-q`` by default (``--detach-keys``, the ``detachKeys`` query of attach and
exec): a comma-separated list of single characters or ``ctrl-<x>`` (x in ``a``-``z``, ``@``,
``[``, ``\\``, ``]``, ``^``, ``_``) — the docker CLI's and moby's ``term.ToBytes``, with its
error text. ``EscapeWatch`` is moby's ``EscapeProxy`` over chunks rather than a reader: the
bytes of a partial match are held back until the next byte decides, and a full match is
never passed on. Pure: used by the daemon on an attach's input, and by anything else that
reads one.
"""

from __future__ import annotations

from logpipe.errors import InvalidParameter

DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q
#: moby's ``term.ASCII``: the names of the codes 0 to 31, in order.
_CTRL = ["ctrl-@", *(f"ctrl-{chr(c)}" for c in range(ord("a"), ord("z") + 1)),
         "ctrl-[", "ctrl-\\", "ctrl-]", "ctrl-^", "ctrl-_"]


class InvalidDetachKeys(InvalidParameter):
    """``detachKeys`` that ``term.ToBytes`` refuses."""


def parse_detach_keys(text: str) -> bytes:
    """``ctrl-p,ctrl-q`` → ``b"\\x10\\x11"``; "" → the default. Docker's 400 otherwise."""
    if not text:
        return DEFAULT_DETACH_KEYS
    codes = bytearray()
    for key in text.split(","):
        if len(key) == 1:
            codes += key.encode()[:1]
        elif key in _CTRL:
            codes.append(_CTRL.index(key))
        elif key == "DEL":
            codes.append(127)
        else:
            raise InvalidDetachKeys(f"Invalid detach keys ({text}) provided")
    return bytes(codes)


class EscapeWatch:
    """Watches a stream of input for ``keys``: ``feed`` returns what may be passed on and
    whether the sequence was completed (then nothing after it is passed on)."""

    __slots__ = ("keys", "held")

    def __init__(self, keys: bytes = DEFAULT_DETACH_KEYS) -> None:
        self.keys = keys
        self.held = 0  # how many bytes of ``keys`` the input has matched so far

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        keys = self.keys
        if not keys or (not self.held and keys[0] not in data):
            return data, False  # the usual case: no byte of interest, no copy
        out = bytearray()
        for byte in data:
            if byte == keys[self.held]:
                self.held += 1
                if self.held == len(keys):
                    self.held = 0
                    return bytes(out), True
                continue
            if self.held:  # not the sequence after all: what was held goes on
                out += keys[:self.held]
                self.held = 0
                if byte == keys[0]:
                    self.held = 1
                    continue
            out.append(byte)
        return bytes(out), False
