"""``KEY=VALUE`` flags (``--log-opt``, ``--label``, ``--env``): the one reading of them."""

from __future__ import annotations

from typing import Iterable

from logpipe.errors import LogpipeError

from .errors import CommandError


def key_values(items: Iterable[str], flag: str, *, pair_required: bool = False) -> dict[str, str]:
    """The flags as a dict; a later key wins. An empty key is refused with Docker's wording
    (``invalid argument "=x" for "--label" flag``). ``run``/``create``'s ``--log-opt`` also
    needs the ``=``, and says so as the docker CLI does (``invalid key value pair format``);
    elsewhere ``KEY`` alone is ``KEY=``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if pair_required and (not sep or not key):
            raise CommandError(f'invalid argument "{item}" for "{flag}" flag: '
                               "invalid key value pair format")
        if not key:
            raise LogpipeError(f'invalid argument "{item}" for "{flag}" flag')
        out[key] = value
    return out
