"""Registry credentials: Docker's ``config.json``, the ``X-Registry-Auth`` header, and the
``WWW-Authenticate`` challenges of registries (bearer token servers, basic auth).

``config.json`` is the docker CLI's file (``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json``): ``{"auths": {"localhost:5000": {"auth": base64("user:pass")}}}``,
Docker Hub under ``https://index.docker.io/v1/``. ``logpipe login`` writes it as Docker does
(keys it does not know are kept), so either CLI reads what the other wrote. The daemon never
reads it: like dockerd, it gets credentials from the client in ``X-Registry-Auth``.
"""

from __future__ import annotations

import base64
import json
import os
import re
from typing import Any, NamedTuple

from logpipe.errors import InvalidParameter

from .reference import DOCKER_HUB_AUTH_KEY, DEFAULT_DOMAIN


class Credentials(NamedTuple):
    username: str = ""
    password: str = ""
    identity_token: str = ""  # a refresh token (OAuth) instead of a password

    def __bool__(self) -> bool:
        return bool(self.username or self.identity_token)


NONE = Credentials()


def config_path() -> str:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def _read_config() -> dict[str, Any]:
    try:
        with open(config_path()) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as err:
        raise InvalidParameter(f"loading config file {config_path()}: {err}") from None
    return data if isinstance(data, dict) else {}


def _write_config(data: dict[str, Any]) -> None:
    """Atomically, mode 0600 (it holds passwords), as the docker CLI writes it."""
    path = config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent="\t")
    os.replace(tmp, path)


def server_key(server: str) -> str:
    """The ``auths`` key of a server as ``docker login SERVER`` writes it."""
    host = re.sub(r"^https?://", "", server).rstrip("/")
    if not server or host in (DEFAULT_DOMAIN, "index.docker.io", "registry-1.docker.io",
                              "index.docker.io/v1"):
        return DOCKER_HUB_AUTH_KEY
    return host.split("/", 1)[0]


def stored_credentials(key: str) -> Credentials:
    """What ``config.json`` holds for ``key`` (a host, or Docker Hub's URL)."""
    auths = _read_config().get("auths") or {}
    for name, entry in auths.items():
        if server_key(name) != key or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
            return Credentials(user, password, entry.get("identitytoken") or "")
        if entry.get("identitytoken"):
            return Credentials(identity_token=entry["identitytoken"])
    return NONE


def save_credentials(key: str, creds: Credentials) -> None:
    data = _read_config()
    auths = data.setdefault("auths", {})
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    auths[key] = {"auth": token}
    _write_config(data)


def remove_credentials(key: str) -> bool:
    """Forget ``key``; False when nothing was stored for it."""
    data = _read_config()
    auths = data.get("auths") or {}
    found = [name for name in auths if server_key(name) == key]
    for name in found:
        del auths[name]
    if found:
        _write_config(data)
    return bool(found)


def encode_header(creds: Credentials, server: str = "") -> str:
    """``X-Registry-Auth`` as the docker CLI sends it: base64url of the auth config JSON."""
    doc: dict[str, str] = {}
    if creds.username:
        doc.update(username=creds.username, password=creds.password)
    if creds.identity_token:
        doc["identitytoken"] = creds.identity_token
    if server:
        doc["serveraddress"] = server
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def decode_header(value: str | None) -> Credentials:
    """``X-Registry-Auth`` → credentials; junk is no credentials (dockerd ignores it too)."""
    if not value:
        return NONE
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        doc = json.loads(raw)
    except ValueError:
        return NONE
    if not isinstance(doc, dict):
        return NONE
    return Credentials(str(doc.get("username") or ""), str(doc.get("password") or ""),
                       str(doc.get("identitytoken") or ""))


def decode_config_header(value: str | None) -> dict[str, Credentials]:
    """``X-Registry-Config`` (what ``docker build`` sends: base64url JSON of
    ``{server: {username, password, identitytoken}}``) → credentials by ``server_key``."""
    if not value:
        return {}
    try:
        doc = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {server_key(server): Credentials(str(e.get("username") or ""),
                                            str(e.get("password") or ""),
                                            str(e.get("identitytoken") or ""))
            for server, e in doc.items() if isinstance(e, dict)}


_PARAM = re.compile(r'(\w+)="([^"]*)"|(\w+)=([^\s,]+)')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://auth",service="registry",scope="..."`` → ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for m in _PARAM.finditer(rest):
        if m.group(1):
            params[m.group(1).lower()] = m.group(2)
        else:
            params[m.group(3).lower()] = m.group(4)
    return scheme.lower(), params
