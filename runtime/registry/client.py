"""HTTP to one registry (the distribution API ``/v2/``) with aiohttp: the scheme, the
authentication handshake and the errors, nothing about images.

Scheme, as dockerd chooses it: HTTPS, except for registries in ``insecure-registries`` and
loopback ones (``localhost``, ``127.0.0.0/8``, ``::1``), which are tried over HTTPS without
certificate checks first and then over plain HTTP. Authentication: the first ``GET /v2/``
answers ``401`` with a ``WWW-Authenticate`` challenge; ``Bearer`` means a token from the
realm for each repository scope (with the credentials as basic auth, if any), ``Basic``
means the credentials on every request.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from typing import Any, Iterable, Mapping

import aiohttp

from logpipe.errors import LogpipeError, Unauthorized

from .auth import NONE, Credentials, parse_challenge

log = logging.getLogger("logpipe.registry")
#: Connect and idle-read limits: a registry that vanishes mid-blob ends the pull, not hangs it.
TIMEOUT = aiohttp.ClientTimeout(total=None, connect=15, sock_connect=15, sock_read=60)


class RegistryError(LogpipeError):
    """The registry failed or could not be reached (dockerd answers 500 too)."""


class RegistryUnauthorized(RegistryError):
    """The registry refused the credentials (or wants some)."""


class LoginFailed(Unauthorized):
    """``docker login``: the registry refused the credentials (dockerd's text)."""


class RegistryNotFound(RegistryError):
    """A 404 of the registry: unknown manifest, blob or repository."""


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_insecure(host: str, insecure: Iterable[str]) -> bool:
    """Loopback or listed in ``insecure-registries`` (a host[:port] or a CIDR)."""
    if is_loopback(host):
        return True
    name = host.rsplit(":", 1)[0]
    for entry in insecure:
        if entry == host or entry == name:
            return True
        try:
            if ipaddress.ip_address(name) in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def error_text(status: int, body: bytes) -> tuple[str, str]:
    """The first error of a distribution error body: (code lower-cased, message)."""
    try:
        errors = json.loads(body).get("errors") or []
        first = errors[0]
        return str(first.get("code", "")).lower().replace("_", " "), str(first.get("message", ""))
    except (ValueError, AttributeError, IndexError, TypeError):
        return "", body.decode(errors="replace").strip()[:200] or f"HTTP {status}"


class RegistryClient:
    """Requests to one registry host for one repository, authenticated as needed."""

    def __init__(self, session: aiohttp.ClientSession, host: str, repo: str,
                 creds: Credentials = NONE, insecure: Iterable[str] = (),
                 push: bool = False) -> None:
        self.session, self.host, self.repo, self.creds = session, host, repo, creds
        self.insecure = is_insecure(host, insecure)
        self.actions = "pull,push" if push else "pull"
        self.base = ""
        self.challenge: tuple[str, dict[str, str]] | None = None
        self.token = ""

    async def ping(self) -> None:
        """``GET /v2/``: picks the scheme and learns the challenge (dockerd's first step)."""
        schemes = ["https", "http"] if self.insecure else ["https"]
        last: Exception | None = None
        for scheme in schemes:
            base = f"{scheme}://{self.host}"
            try:
                async with self.session.get(f"{base}/v2/", ssl=False if self.insecure else None,
                                            timeout=TIMEOUT) as resp:
                    await resp.read()
                    self.base = base
                    if resp.status == 401:
                        self.challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                    return
            except aiohttp.ClientError as err:
                last = err
        raise RegistryError(f'Get "https://{self.host}/v2/": {_reason(last)}')

    async def login(self) -> None:
        """``GET /v2/`` with the credentials (a token first, for a bearer registry)."""
        await self.ping()
        if self.challenge is None:
            return
        try:
            headers = await self._authorize()
        except RegistryUnauthorized as err:
            raise LoginFailed(str(err)) from None
        async with self.session.get(f"{self.base}/v2/", headers=headers, timeout=TIMEOUT,
                                    ssl=False if self.insecure else None) as resp:
            await resp.read()
            if resp.status != 200:
                raise LoginFailed(f"login attempt to {self.base}/v2/ failed with status: "
                                  f"{resp.status} {resp.reason}")

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base}{path}" if path.startswith("/") else f"{self.base}/{path}"

    async def _authorize(self) -> dict[str, str]:
        if self.challenge is None:
            return {}
        scheme, params = self.challenge
        if scheme == "basic":
            if not self.creds.username:
                return {}
            return {"Authorization": aiohttp.BasicAuth(self.creds.username,
                                                       self.creds.password).encode()}
        if scheme == "bearer":
            if not self.token:
                self.token = await self._fetch_token(params)
            return {"Authorization": f"Bearer {self.token}"}
        return {}

    async def _fetch_token(self, params: Mapping[str, str]) -> str:
        realm = params.get("realm", "")
        query = {"scope": f"repository:{self.repo}:{self.actions}"} if self.repo else {}
        if params.get("service"):
            query["service"] = params["service"]
        auth = None
        if self.creds.username:
            query["account"] = self.creds.username
            auth = aiohttp.BasicAuth(self.creds.username, self.creds.password)
        try:
            async with self.session.get(realm, params=query, auth=auth, timeout=TIMEOUT,
                                        ssl=False if self.insecure else None) as resp:
                body = await resp.read()
                if resp.status in (401, 403):
                    raise RegistryUnauthorized(f"unauthorized: {error_text(resp.status, body)[1]}")
                if resp.status != 200:
                    raise RegistryError(f"token server {realm}: HTTP {resp.status}")
                doc = json.loads(body)
        except (aiohttp.ClientError, ValueError) as err:
            raise RegistryError(f"token server {realm}: {_reason(err)}") from None
        return doc.get("token") or doc.get("access_token") or ""

    async def request(self, method: str, path: str, *, headers: Mapping[str, str] | None = None,
                      data: Any = None, params: Mapping[str, str] | None = None,
                      ) -> aiohttp.ClientResponse:
        """An authenticated request; the caller reads and releases the response."""
        if not self.base:
            await self.ping()
        hdrs = {**(headers or {}), **await self._authorize()}
        try:
            resp = await self.session.request(method, self.url(path), headers=hdrs, data=data,
                                              params=params, timeout=TIMEOUT,
                                              ssl=False if self.insecure else None,
                                              allow_redirects=True)
        except aiohttp.ClientError as err:
            raise RegistryError(f'{method.title()} "{self.url(path)}": {_reason(err)}') from None
        if resp.status == 401 and self.challenge is None and resp.headers.get("WWW-Authenticate"):
            resp.release()  # a registry that only challenges per repository
            self.challenge = parse_challenge(resp.headers["WWW-Authenticate"])
            return await self.request(method, path, headers=headers, data=data, params=params)
        return resp

    async def check(self, resp: aiohttp.ClientResponse, ok: tuple[int, ...]) -> bytes:
        """The body of an expected answer; the registry's error otherwise."""
        try:
            body = await resp.read()
        except aiohttp.ClientError as err:  # the registry went away mid-answer
            raise RegistryError(f"{resp.method} {resp.url}: {_reason(err)}") from None
        if resp.status in ok:
            return body
        code, message = error_text(resp.status, body)
        if not body and resp.status in (401, 403):  # a HEAD: no error document
            code, message = (("unauthorized", "authentication required") if resp.status == 401
                             else ("denied", "requested access to the resource is denied"))
        text = f"{code}: {message}" if code else message
        if resp.status in (401, 403):
            raise RegistryUnauthorized(text)
        if resp.status == 404:
            raise RegistryNotFound(text)
        raise RegistryError(f"received unexpected HTTP status: {resp.status} {resp.reason}"
                            + (f": {text}" if text else ""))


def _reason(err: BaseException | None) -> str:
    if isinstance(err, aiohttp.ClientConnectorError):
        errno_ = err.os_error.errno
        if isinstance(errno_, int) and errno_ < 0:  # getaddrinfo's: the name did not resolve
            why = (getattr(err.os_error, "strerror", "") or str(err.os_error)).lower()
            return f"dial tcp: lookup {err.host}: {why}"
        why = os.strerror(errno_).lower() if errno_ else str(err.os_error)
        return f"dial tcp {err.host}:{err.port}: connect: {why}"
    return str(err) or type(err).__name__
