"""The daemon's configuration: ``daemon.json``, defaults per user, and Docker's log-config merge.

Keys (Docker's names): ``log-driver``, ``log-opts`` (an object of **string** values, as in
Docker: ``"max-file": "3"``), ``data-root``, ``default-runtime``, ``hosts``, and for the
registries ``insecure-registries`` (hosts or CIDRs spoken to over plain HTTP, or HTTPS
without certificate checks) and ``registry-mirrors`` (URLs tried before Docker Hub); logpipe's
own ``docker-plugin`` (``true``: the daemon also serves Docker's logging-plugin protocol,
``logpipe.plugin``) and ``docker-plugin-socket`` (where; the default makes it Docker's
``--log-driver logpipe``). Command-line
flags win over the file. The default log options are key-validated when the daemon starts
(Docker: ``failed to set log opts: <err>``); per-container options are merged with them at
create time by ``merge_log_config`` and the result is persisted with the container, so
changing the defaults later never affects existing containers.

This module reads files and environment only; it starts nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from logpipe.errors import LogpipeError

from .hosts import default_host, socket_path

SYSTEM_CONFIG = "/etc/logpipe/daemon.json"
DEFAULT_LOG_DRIVER = "json-file"
KNOWN_KEYS = ("log-driver", "log-opts", "data-root", "default-runtime", "hosts", "bip",
              "insecure-registries", "registry-mirrors", "docker-plugin", "docker-plugin-socket")
#: Where Docker looks for legacy plugins; the file name (less ``.sock``) is the driver name.
DEFAULT_PLUGIN_SOCKET = "/run/docker/plugins/logpipe.sock"
#: The docker-plugin's logs, under the daemon's data root (``logpipe docker-plugin``'s
#: default data root is the same directory under /var/lib/logpipe).
PLUGIN_DIR = "docker-plugin"

#: Options the pipeline (not the driver) interprets; ``cache-*`` are merged into every
#: container's config whatever its driver (moby dl/loggerutils/cache/validate.go).
ALWAYS_MERGED_PREFIX = "cache-"


class ConfigError(LogpipeError):
    """``daemon.json`` or a daemon flag is unusable; the daemon refuses to start."""


def default_data_root() -> str:
    """``/var/lib/logpipe`` for root, ``~/.local/share/logpipe`` (XDG) otherwise."""
    if os.geteuid() == 0:
        return "/var/lib/logpipe"
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "logpipe")


@dataclass(slots=True, frozen=True)
class DaemonConfig:
    """What the daemon runs with, after ``daemon.json`` and flags are combined."""

    data_root: str
    host: str
    log_driver: str = DEFAULT_LOG_DRIVER
    log_opts: Mapping[str, str] = field(default_factory=dict)
    default_runtime: str = ""  # "" → runtime.executors.default_runtime()
    config_file: str = ""
    bip: str = ""  # the default bridge network's gateway/prefix ("172.26.0.1/16")
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: tuple[str, ...] = ()
    docker_plugin_socket: str = ""  # "" → the daemon does not serve the docker-plugin

    @property
    def socket(self) -> str:
        return socket_path(self.host)

    @property
    def docker_plugin_root(self) -> str:
        return os.path.join(self.data_root, PLUGIN_DIR)


def read_config_file(path: str, required: bool) -> dict[str, Any]:
    """The parsed file; an absent default file is an empty config, an absent named one an error."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"unable to configure the daemon: open {path}: no such file or directory") from None
        return {}
    except ValueError as err:
        raise ConfigError(f"unable to configure the daemon: {path}: invalid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"unable to configure the daemon: {path}: the top level must be an object")
    unknown = sorted(set(data) - set(KNOWN_KEYS))
    if unknown:
        # Docker refuses unknown keys too ("the following directives don't match any
        # configuration option"), rather than running with a typo silently ignored.
        raise ConfigError("unable to configure the daemon: the following directives don't match "
                          f"any configuration option: {', '.join(unknown)}")
    opts = data.get("log-opts", {})
    if not isinstance(opts, dict) or not all(isinstance(v, str) for v in opts.values()):
        raise ConfigError('unable to configure the daemon: "log-opts" must be an object of '
                          'string values (quote numbers: "max-file": "3")')
    return data


def load_config(config_file: str = "", data_root: str = "", host: str = "",
                log_driver: str = "", log_opts: Mapping[str, str] | None = None,
                default_runtime: str = "") -> DaemonConfig:
    """Flags (non-empty arguments) over ``config_file`` (or ``/etc/logpipe/daemon.json``)
    over the per-user defaults."""
    path = config_file or SYSTEM_CONFIG
    data = read_config_file(path, required=bool(config_file))
    hosts = data.get("hosts") or []
    cfg = DaemonConfig(
        data_root=os.path.abspath(data_root or data.get("data-root") or default_data_root()),
        host=host or (hosts[0] if hosts else default_host()),
        log_driver=log_driver or data.get("log-driver") or DEFAULT_LOG_DRIVER,
        log_opts=dict(log_opts if log_opts else data.get("log-opts") or {}),
        default_runtime=default_runtime or data.get("default-runtime") or "",
        config_file=path if data else "", bip=data.get("bip") or "",
        docker_plugin_socket=docker_plugin_socket(data), **registry_settings(data))
    validate_defaults(cfg)
    return cfg


def registry_settings(data: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """``insecure-registries`` and ``registry-mirrors``: lists of strings, mirrors URLs."""
    out = {}
    for key in ("insecure-registries", "registry-mirrors"):
        value = data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f'unable to configure the daemon: "{key}" must be a list of strings')
        out[key.replace("-", "_")] = tuple(value)
    for url in out["registry_mirrors"]:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"invalid mirror: unsupported scheme in {url!r}: "
                              "must use either 'https://' or 'http://'")
    return out


def docker_plugin_socket(data: dict[str, Any]) -> str:
    """``"docker-plugin": true`` → the plugin's socket (``docker-plugin-socket`` or the
    default); "" when off. The socket must be a ``.sock`` file, which is how Docker finds a
    legacy plugin, and protobuf must be installed (checked without importing it: the daemon
    loads it only when a container logs through the plugin)."""
    enabled, path = data.get("docker-plugin", False), data.get("docker-plugin-socket")
    if not isinstance(enabled, bool):
        raise ConfigError('unable to configure the daemon: "docker-plugin" must be true or '
                          f"false, not {enabled!r}")
    if path is not None and not enabled:
        raise ConfigError('unable to configure the daemon: "docker-plugin-socket" is set but '
                          '"docker-plugin" is not true')
    if not enabled:
        return ""
    path = DEFAULT_PLUGIN_SOCKET if path is None else path
    if not isinstance(path, str) or not os.path.isabs(path) or not path.endswith(".sock") \
            or len(os.path.basename(path)) <= len(".sock") or len(path.encode()) > 107:
        raise ConfigError('unable to configure the daemon: "docker-plugin-socket" must be an '
                          "absolute path of a unix socket ending in .sock (at most 107 bytes; "
                          f"Docker's driver name is its file name), not {path!r}")
    import importlib.util

    if importlib.util.find_spec("google.protobuf") is None:
        raise ConfigError('unable to configure the daemon: "docker-plugin" needs the protobuf '
                          "package (pip install protobuf)")
    return path


def validate_defaults(cfg: DaemonConfig) -> None:
    """Docker key-validates the default log options at daemon start (setupDefaultLogConfig)."""
    from logpipe.registry import validate_log_config

    if cfg.log_driver == "none":
        return
    try:
        validate_log_config(cfg.log_driver, cfg.log_opts)
    except LogpipeError as err:
        raise ConfigError(f"failed to set log opts: {err}") from None
    if cfg.default_runtime:
        from runtime.executors import get_executor

        get_executor(cfg.default_runtime)


def merge_log_config(cfg: DaemonConfig, log_type: str,
                     opts: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """Docker's ``mergeAndVerifyLogConfig`` without the verify: an empty type is the daemon's
    driver; the daemon's options fill absent keys only for that same driver; ``cache-*``
    options are merged whatever the driver."""
    log_type = log_type or cfg.log_driver
    merged = dict(opts)
    for key, value in cfg.log_opts.items():
        if log_type == cfg.log_driver or key.startswith(ALWAYS_MERGED_PREFIX):
            merged.setdefault(key, value)
    return log_type, merged
