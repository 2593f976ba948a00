"""Docker's image references: ``busybox`` is ``docker.io/library/busybox:latest``.

The grammar is distribution's ``reference`` package (name components, an optional registry
host first, ``:tag`` and ``@digest``); a string outside it is Docker's ``invalid reference
format``. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from logpipe.errors import InvalidParameter

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
#: Where ``docker.io`` images really are.
DOCKER_HUB_HOST = "registry-1.docker.io"
#: The key Docker writes Docker Hub's credentials under in ``config.json``.
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
_ANY_CASE = re.compile(
    rf"(?:{_DOMAIN}/)?[a-zA-Z0-9._-]+(?:/[a-zA-Z0-9._-]+)*(?::{_TAG})?(?:@{_DIGEST})?")


class InvalidReference(InvalidParameter):
    """Docker's ``invalid reference format`` (HTTP 400)."""


class Reference(NamedTuple):
    """A parsed, normalised reference; ``tag`` is "" when a digest alone names the image."""

    domain: str  # "docker.io", "localhost:5000"
    path: str  # "library/busybox": the repository's name on the registry
    tag: str
    digest: str

    @property
    def name(self) -> str:
        """The fully qualified repository: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """How Docker shows the repository: ``busybox``, ``user/app``, ``localhost:5000/x``."""
        if self.domain == DEFAULT_DOMAIN:
            return self.path.removeprefix("library/")
        return self.name

    @property
    def familiar(self) -> str:
        """``busybox:latest`` or ``busybox@sha256:...``: the local store's key."""
        return f"{self.familiar_name}@{self.digest}" if self.digest and not self.tag \
            else f"{self.familiar_name}:{self.tag}"

    @property
    def registry_host(self) -> str:
        """The host that serves the repository (Docker Hub's API is not at docker.io)."""
        return DOCKER_HUB_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def auth_key(self) -> str:
        """The ``config.json`` key of the registry's credentials."""
        return DOCKER_HUB_AUTH_KEY if self.domain == DEFAULT_DOMAIN else self.domain

    def with_tag(self, tag: str) -> "Reference":
        return self._replace(tag=tag, digest="")


def parse(text: str, default_tag: str = "latest") -> Reference:
    """``name[:tag][@digest]`` → ``Reference``; ``InvalidReference`` with Docker's text."""
    m = _REFERENCE.fullmatch(text) if len(text) <= 512 else None
    if m is None:
        if _ANY_CASE.fullmatch(text) and text != text.lower():
            raise InvalidReference("invalid reference format: repository name must be lowercase")
        raise InvalidReference("invalid reference format")
    name, tag, digest = m.group("name"), m.group("tag") or "", m.group("digest") or ""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if len(f"{domain}/{path}") > 255:
        raise InvalidReference("invalid reference format: repository name must not be more "
                               "than 255 characters")
    if not tag and not digest:
        tag = default_tag
    return Reference(domain, path, tag, digest)


def from_query(image: str, tag: str) -> Reference:
    """``fromImage=`` and ``tag=`` of ``POST /images/create`` (``tag`` may be a digest)."""
    if tag:
        image = f"{image}@{tag}" if ":" in tag and tag.split(":", 1)[0].startswith("sha") \
            else f"{image}:{tag}"
    return parse(image)
