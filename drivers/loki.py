"""The ``loki`` remote driver: Grafana Loki's push API (``POST /loki/api/v1/push``, JSON).

There is no Loki driver in Docker itself; users know Grafana's Docker plugin
(``grafana/loki`` ``clients/cmd/docker-driver``), so its option names, defaults, label set
and error texts are the reference here. This module owns:

* the options: parsing and validation with the plugin's wording (``parse_config``), and a
  clear refusal of the plugin options that have no meaning in logpipe (``REFUSED``);
* the stream labels (``stream_labels``): the plugin's, without its ``filename``;
* encoding a whole batch into one push body (``encode_push``);
* the HTTP(S) connection: one keep-alive connection, reopened after any error.

It must not batch, wait or retry: the shipper cuts batches to ``limits`` and backs off with
``max_retries``/``retry_wait``/``retry_max_wait``. It must never put the credentials of the
URL into an error, a log line or a ``repr``: every text uses ``redact_url``. Only the
standard library and orjson (a core dependency) are used, and orjson lazily.

Size: longer than 500 lines because the plugin's options, labels and push encoding are one
protocol; the TLS files are loaded by ``drivers.netconn``.
"""

from __future__ import annotations

import base64
import http.client
import re
from typing import TYPE_CHECKING, Mapping, NamedTuple, Sequence
from urllib.parse import quote, unquote, urlsplit

from logpipe.driver import BatchLimits, LogInfo
from logpipe.errors import LogOptError, PermanentError, RetryableError
from logpipe.message import Message
from logpipe.options import parse_bool
from logpipe.units import parse_duration

from .netconn import prometheus_context
from .remote import RemoteDriverBase

if TYPE_CHECKING:
    import ssl

__all__ = ["LokiDriver", "encode_push", "parse_config", "redact_url", "stream_labels"]

DRIVER = "loki"
PUSH_PATH = "/loki/api/v1/push"

# The plugin's own keys (config.go), then Docker's extra-attribute keys. ``labels-regex`` is
# missing from the plugin's list (an oversight: Docker has had it since 20.10); logpipe takes it.
OPTIONS = frozenset({
    "loki-url", "loki-tenant-id", "loki-external-labels", "loki-timeout", "loki-batch-wait",
    "loki-batch-size", "loki-min-backoff", "loki-max-backoff", "loki-retries",
    "loki-tls-ca-file", "loki-tls-cert-file", "loki-tls-key-file", "loki-tls-server-name",
    "loki-tls-insecure-skip-verify", "loki-compress",
    "labels", "labels-regex", "env", "env-regex",
})

#: Options Grafana's plugin takes that logpipe refuses, and why: silently ignoring them
#: would leave a user believing they act.
REFUSED = {
    "max-size": "logpipe keeps the local copy in its spool: use cache-max-size",
    "max-file": "logpipe keeps the local copy in its spool: use cache-max-file",
    "no-file": "logpipe always spools before shipping; use cache-disabled=true to refuse "
               "reading it",
    "keep-file": "the spool is kept until the container is removed",
    "loki-pipeline-stages": "promtail pipeline stages are not supported by logpipe",
    "loki-pipeline-stage-file": "promtail pipeline stages are not supported by logpipe",
    "loki-relabel-config": "Prometheus relabelling is not supported by logpipe; choose the "
                           "labels with loki-external-labels, labels and env",
    "loki-proxy-url": "HTTP proxies are not supported by logpipe's loki driver",
}

# clients/pkg/util/config.go: the plugin's defaults.
DEFAULT_BATCH_SIZE = 1024 * 1024
DEFAULT_BATCH_WAIT = 1.0
DEFAULT_TIMEOUT = 10.0
DEFAULT_MIN_BACKOFF = 0.5
DEFAULT_MAX_BACKOFF = 300.0
DEFAULT_RETRIES = 10
DEFAULT_EXTERNAL_LABELS = "container_name={{.Name}}"
#: Loki has no limit on entries per push; this bounds the memory a batch of empty-ish lines
#: may take (10,000 entries are ~300 KB of JSON even when every line is one byte).
MAX_ENTRIES = 10_000

# Labels the plugin derives from container labels (config.go).
_DERIVED_LABELS = (("com.docker.swarm.service.name", "swarm_service"),
                   ("com.docker.stack.namespace", "swarm_stack"),
                   ("com.docker.compose.service", "compose_service"),
                   ("com.docker.compose.project", "compose_project"))

#: Label names Loki's stream selector parser takes unquoted (Prometheus' legacy names):
#: the JSON push API turns the ``stream`` object into ``{name="value"}`` and parses that.
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

#: Go's ``unicode.IsSpace`` outside ASCII: the plugin drops lines made only of these.
_UNICODE_SPACE = ("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                  "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")

_CONTROL = re.compile("[\x00-\x1f\x7f]")
_PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))
#: Loki's rule for tenant IDs (pkg/util/validation ValidateTenantID, also the
#: X-Scope-OrgID header's): at most 150 of these characters, and not "." or "..".
_TENANT_CHARS = re.compile(r"[a-zA-Z0-9!\-_.*'()]*")
_MAX_TENANT = 150

#: Grafana's client shows the first line of at most this much of an error response; logpipe
#: shows all its lines (Loki lists each refused entry on a line, then a total), joined.
_MAX_ERROR_TEXT = 1024


class Config(NamedTuple):
    """The validated options (everything but the labels, which need the container)."""

    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent in the request line
    safe_url: str  # the URL as it may be shown: userinfo replaced by ***
    authorization: str | None
    tenant: str
    timeout: float | None  # None: no timeout (loki-timeout=0, as Go's http.Client)
    batch_size: int
    batch_wait: float
    retries: int
    min_backoff: float
    max_backoff: float
    compress: bool
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    server_name: str | None
    insecure: bool


def redact_url(url: str) -> str:
    """``url`` with any userinfo replaced by ``***``, also for URLs too broken to parse.

    Everything after the scheme up to the last ``@`` is treated as userinfo, so that a
    password with an unescaped ``/``, ``?`` or ``#`` is still hidden (over-redacting a path
    or query with an ``@`` in it is the price).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@")
    if at < 0:
        return url
    return f"{scheme}{sep}***@{rest[at + 1:]}"


def _fail(text: str) -> LogOptError:
    return LogOptError(f"{DRIVER}: {text}")


def _duration(opts: Mapping[str, str], key: str, default: float) -> float:
    """A Go duration in seconds; the plugin's text, then Go's reason."""
    raw = opts.get(key)
    if raw is None:
        return default
    try:
        ns = parse_duration(raw)
    except ValueError as e:
        raise _fail(f"invalid option {key} format: {raw}: {e}") from None
    if ns < 0:
        raise _fail(f"invalid option {key} format: {raw}: a duration must not be negative")
    return ns / 1e9


def _count(opts: Mapping[str, str], key: str, default: int, minimum: int, want: str) -> int:
    raw = opts.get(key)
    if raw is None:
        return default
    if not re.fullmatch(r"[+-]?\d+", raw):  # Go's strconv.Atoi
        raise _fail(f'invalid option {key} format: {raw}: strconv.Atoi: parsing "{raw}": '
                    "invalid syntax")
    value = int(raw)
    if value < minimum:
        raise _fail(f"invalid option {key} format: {raw}: want {want}")
    return value


def _bool(opts: Mapping[str, str], key: str) -> bool:
    """A Go bool, false when absent. (The plugin reports a bad one as "invalid external
    labels", a copy-and-paste slip not worth reproducing.)"""
    try:
        return parse_bool(opts.get(key, "false"))
    except LogOptError as e:
        raise _fail(f"invalid option {key} format: {opts[key]}: {e}") from None


def _parse_url(raw: str) -> tuple[str, str, int, str, str | None]:
    """scheme, host, port, request target and Authorization header of ``loki-url``."""
    safe = redact_url(raw)
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as e:
        raise _fail(f'option loki-url is invalid "{safe}": {e}') from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise _fail(f'option loki-url is invalid "{safe}": want http:// or https:// followed '
                    "by a host, e.g. http://localhost:3100/loki/api/v1/push")
    if _CONTROL.search(raw):
        raise _fail(f'option loki-url is invalid "{safe}": net/url: invalid control '
                    "character in URL")
    # A URL without a path would POST to "/", which no Loki answers: the push path is meant.
    target = parts.path if parts.path not in ("", "/") else PUSH_PATH
    if parts.query:
        target += "?" + parts.query
    target = quote(target, safe=_PRINTABLE)  # as Go escapes a path: spaces, non-ASCII
    auth = None
    if parts.username is not None:
        # Go's http.Client turns URL userinfo into basic auth, percent-decoded.
        user, password = unquote(parts.username), unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        auth = f"Basic {token}"
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), target, auth


def _check_tenant(tenant: str) -> None:
    """Loki refuses a push from a tenant ID it does not accept: refuse it at create."""
    what = "invalid option loki-tenant-id: tenant ID"
    bad = _TENANT_CHARS.fullmatch(tenant) is None
    if bad:
        char = next(c for c in tenant if not _TENANT_CHARS.fullmatch(c))
        raise _fail(f"{what} '{tenant}' contains unsupported character '{char}' (want "
                    "letters, digits and !-_.*'())")
    if len(tenant) > _MAX_TENANT:
        raise _fail(f"{what} is too long: max {_MAX_TENANT} characters")
    if tenant in (".", ".."):
        raise _fail(f"{what} is '.' or '..'")


def parse_config(opts: Mapping[str, str], load_tls: bool = True) -> Config:
    """Validate every option that does not depend on the container; raise ``LogOptError``.

    ``load_tls`` loads the TLS files too (at create); a sending driver loads them when it
    connects instead, so that a certificate renewed on disk is picked up.
    """
    for key in opts:
        if key in REFUSED:
            raise _fail(f"option {key} is not supported: {REFUSED[key]}")
        if key not in OPTIONS:
            raise _fail(f"wrong log-opt: '{key}'")
    if "loki-url" not in opts:
        raise _fail("loki-url is required in the config")
    raw_url = opts["loki-url"]
    scheme, host, port, target, auth = _parse_url(raw_url)
    tenant = opts.get("loki-tenant-id", "")
    _check_tenant(tenant)
    tls = [k for k in opts if k.startswith("loki-tls-")]
    if tls and scheme != "https":
        raise _fail(f"option {tls[0]} needs an https:// loki-url, not "
                    f'"{redact_url(raw_url)}"')
    cfg = Config(
        scheme=scheme, host=host, port=port, target=target, safe_url=redact_url(raw_url),
        authorization=auth, tenant=tenant,
        timeout=_duration(opts, "loki-timeout", DEFAULT_TIMEOUT) or None,
        batch_size=_count(opts, "loki-batch-size", DEFAULT_BATCH_SIZE, 1,
                          "a positive number of bytes"),
        batch_wait=_duration(opts, "loki-batch-wait", DEFAULT_BATCH_WAIT),
        retries=_count(opts, "loki-retries", DEFAULT_RETRIES, 0,
                       "0 (retry forever) or a positive number of retries"),
        min_backoff=_duration(opts, "loki-min-backoff", DEFAULT_MIN_BACKOFF),
        max_backoff=_duration(opts, "loki-max-backoff", DEFAULT_MAX_BACKOFF),
        compress=_bool(opts, "loki-compress"),
        ca_file=opts.get("loki-tls-ca-file"), cert_file=opts.get("loki-tls-cert-file"),
        key_file=opts.get("loki-tls-key-file"),
        server_name=opts.get("loki-tls-server-name") or None,
        insecure=_bool(opts, "loki-tls-insecure-skip-verify"))
    if scheme == "https" and load_tls:
        tls_context(cfg)  # unreadable or mismatched files are refused at create
    return cfg


def tls_context(cfg: Config) -> "ssl.SSLContext":
    """The client TLS context: Prometheus' HTTP client config, with its error texts."""
    if cfg.cert_file and not cfg.key_file:
        raise _fail(f'client cert file "{cfg.cert_file}" specified without client key file '
                    "(set loki-tls-key-file)")
    if cfg.key_file and not cfg.cert_file:
        raise _fail(f'client key file "{cfg.key_file}" specified without client cert file '
                    "(set loki-tls-cert-file)")
    try:
        return prometheus_context(cfg.ca_file, cfg.cert_file, cfg.key_file, cfg.insecure)
    except LogOptError as e:
        raise _fail(str(e)) from None


def _external_labels(opts: Mapping[str, str], info: LogInfo | None) -> dict[str, str]:
    """``loki-external-labels``: ``name=template,...``, each value a Docker tag template."""
    from logpipe.errors import TemplateError
    from logpipe.template import compile_template

    text = opts.get("loki-external-labels", DEFAULT_EXTERNAL_LABELS)
    labels: dict[str, str] = {}
    for pair in text.split(","):
        parts = pair.split("=")
        if len(parts) != 2:
            raise _fail(f"invalid external labels: {text}")
        name, template = parts
        if not _LABEL_NAME.match(name):
            raise _fail(f"invalid external label name: {name}")
        try:
            compiled = compile_template(template, "label_value")
            labels[name] = compiled.render(info) if info is not None else ""
        except TemplateError as e:
            raise _fail(f"could not expand label value: {template} err : {e}") from None
    return labels


def _attr_key(key: str) -> str:
    """The plugin's key mangling for extra attributes: ``com.example-x`` → ``com_example_x``."""
    return key.replace("-", "_").replace(".", "_")


def stream_labels(opts: Mapping[str, str], info: LogInfo) -> dict[str, str]:
    """The labels every stream of this container carries, in the plugin's precedence.

    External labels (default ``container_name``), overridden by the ``labels``/``env``
    extras and the swarm/compose labels, overridden by ``host``. The plugin also adds
    ``filename`` (its own json-file's path): logpipe has no such file, and a label naming
    a path would only multiply streams. ``source`` is added per stream by ``send``.
    Labels with an empty value are left out, as Prometheus treats them as absent.
    """
    from logpipe.extras import extra_attrs

    labels = _external_labels(opts, info)
    attrs = extra_attrs(opts, info, _attr_key)
    for container_label, name in _DERIVED_LABELS:
        if info.labels.get(container_label):
            attrs[name] = info.labels[container_label]
    for key, value in attrs.items():
        if not _LABEL_NAME.match(key):
            raise _fail(f"invalid label name from attribute: {key}")
        labels[key] = value
    labels["host"] = info.host_name()
    return {k: v for k, v in sorted(labels.items()) if v}


def _stream_values(msgs: Sequence[Message], prev: int) -> tuple[list[tuple[str, str]], int]:
    """The ``values`` of one stream, and the last timestamp used.

    Timestamps are the records' own, made strictly increasing by nudging ties by 1 ns:
    logpipe stamps all lines of one read() alike (Docker stamps each line), and Loki keeps
    only one of several entries with equal timestamp and equal line. Increasing timestamps
    also keep a stream in order for a Loki that refuses out-of-order entries (before 2.4).
    Lines of whitespace only are dropped, as the plugin drops them (``bytes.Fields``).
    """
    values: list[tuple[str, str]] = []
    append = values.append
    space = _UNICODE_SPACE
    for m in msgs:
        line = m.line
        stripped = line.strip()
        if not stripped:
            continue
        text = line.decode("utf-8", "replace")
        if stripped[0] > 0x7F and not text.strip(space):
            continue
        ts = m.ts
        if ts <= prev:
            ts = prev + 1
        prev = ts
        append((str(ts), text))
    return values, prev


def encode_push(batch: Sequence[Message], heads: Mapping[str, bytes],
                last: Mapping[str, int]) -> tuple[bytes | None, dict[str, int]]:
    """The push body of a whole batch, one stream per source, and the new last timestamps.

    ``heads[source]`` is the stream's JSON up to its values (``{"stream":{...},"values":``);
    ``last[source]`` is the last timestamp sent in that stream. None when nothing is left
    to send (every line was whitespace).
    """
    import orjson

    sources = {m.source for m in batch}
    new_last = dict(last)
    streams = []
    for source in sorted(sources):
        msgs = batch if len(sources) == 1 else [m for m in batch if m.source == source]
        values, new_last[source] = _stream_values(msgs, last.get(source, -1))
        if values:
            streams.append(heads[source] + orjson.dumps(values) + b"}")
    if not streams:
        return None, new_last
    return b'{"streams":[' + b",".join(streams) + b"]}", new_last


def _reason(body: bytes) -> str:
    """Loki's error text, shortened for one error line (Grafana keeps its first KiB)."""
    text = body[:_MAX_ERROR_TEXT].decode("utf-8", "replace").strip()
    text = " ".join(text.split("\n"))
    return text + (" …" if len(body) > _MAX_ERROR_TEXT else "")


class LokiDriver(RemoteDriverBase):
    """Ships a container's logs to Grafana Loki, one push request per batch.

    Backoff for the shipper, from the plugin's options (dskit's backoff semantics):

    * ``max_retries`` — ``loki-retries``: how many times a batch that failed with
      ``RetryableError`` is sent again before the shipper gives up on it (counted as
      rejected, as the plugin drops it). Only when the option is given: by default (and
      with 0) the shipper retries forever, because in logpipe an outage only delays
      delivery — the spool holds the data, not a retry budget (Grafana's default is 10).
    * ``retry_wait`` — ``loki-min-backoff`` (0.5 s): the first wait, doubled on each retry.
    * ``retry_max_wait`` — ``loki-max-backoff`` (5 min): the cap of the wait.

    ``limits`` cuts batches at ``loki-batch-size`` bytes of lines (1 MiB) and waits up to
    ``loki-batch-wait`` (1 s) for a batch to fill.
    """

    name = DRIVER

    @staticmethod
    def validate(opts: Mapping[str, str], info: LogInfo | None = None) -> None:
        """Everything the plugin checks when it starts, checked at create. Without the
        container's info, templates are only parsed and regexes only compiled."""
        parse_config(opts)
        if info is not None:
            stream_labels(opts, info)
            return
        _external_labels(opts, None)
        from logpipe.extras import check_without_container

        check_without_container(opts, tag=False)

    @staticmethod
    def redacted_opts(opts: Mapping[str, str]) -> dict[str, str]:
        """The options as they may be shown (inspect, daemon logs): ``loki-url`` without
        its credentials. Docker's inspect would show them; logpipe does not."""
        return {k: redact_url(v) if k == "loki-url" else v for k, v in opts.items()}

    def __init__(self, info: LogInfo) -> None:
        super().__init__(info)
        cfg = self._cfg = parse_config(self.opts, load_tls=False)
        self.limits = BatchLimits(max_count=MAX_ENTRIES, max_bytes=cfg.batch_size,
                                  wait=cfg.batch_wait)
        self.max_retries: int | None = cfg.retries or None if "loki-retries" in self.opts \
            else None
        self.retry_wait = cfg.min_backoff
        self.retry_max_wait = cfg.max_backoff
        labels = stream_labels(self.opts, info)
        import orjson

        self._heads = {source: b'{"stream":' + orjson.dumps({**labels, "source": source})
                       + b',"values":' for source in ("stdout", "stderr")}
        self._last: dict[str, int] = {}
        headers = {"Content-Type": "application/json", "User-Agent": "logpipe-loki/0.1"}
        if cfg.tenant:
            headers["X-Scope-OrgID"] = cfg.tenant
        if cfg.authorization:
            headers["Authorization"] = cfg.authorization
        if cfg.compress:
            headers["Content-Encoding"] = "gzip"
        self._headers = headers
        self._conn: http.client.HTTPConnection | None = None

    def __repr__(self) -> str:
        return f"LokiDriver({self._cfg.safe_url})"

    def send(self, batch: Sequence[Message]) -> int | None:
        """Push the batch as one request. Retrying it encodes it identically (timestamps
        included), so a push that Loki stored but whose answer was lost is deduplicated."""
        body, last = encode_push(batch, self._heads, self._last)
        if body is None:
            self._last = last
            return None
        if self._cfg.compress:
            import gzip

            body = gzip.compress(body, compresslevel=1, mtime=0)
        try:
            self._post(body)
        except PermanentError:
            self._last = last  # Loki may have stored part of it: stay after it in time
            raise
        self._last = last
        return None

    def _post(self, body: bytes) -> None:
        for attempt in (1, 2):
            conn = self._conn or self._connect()
            reused = conn.sock is not None
            try:
                conn.request("POST", self._cfg.target, body, self._headers)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError) as e:
                self.close()
                if reused and attempt == 1:
                    continue  # the server closed an idle keep-alive connection: redial once
                raise RetryableError(self._describe(e)) from None
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise RetryableError(self._describe(e)) from None
            break
        if 200 <= resp.status < 300:
            return
        text = (f"{DRIVER}: pushing to {self._cfg.safe_url}: server returned HTTP status "
                f"{resp.status} {resp.reason} ({resp.status}): {_reason(data)}")
        if resp.status == 429 or 500 <= resp.status < 600:
            raise RetryableError(text)
        raise PermanentError(text)

    def _describe(self, e: BaseException) -> str:
        what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if isinstance(e, TimeoutError):
            what += f" (loki-timeout {self._cfg.timeout:g}s)"
        return f"{DRIVER}: pushing to {self._cfg.safe_url}: {what}"

    def _connect(self) -> http.client.HTTPConnection:
        cfg = self._cfg
        if cfg.scheme == "https":
            try:
                ctx = tls_context(cfg)
            except LogOptError as e:  # a file changed since create: it may come back
                raise RetryableError(str(e)) from None
            self._conn = _TLSConnection(cfg.host, cfg.port, cfg.timeout, ctx,
                                        cfg.server_name or cfg.host)
        else:
            self._conn = http.client.HTTPConnection(cfg.host, cfg.port, timeout=cfg.timeout)
        return self._conn

    def close(self) -> None:
        """Drop the connection; nothing is buffered here."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS whose certificate is checked against ``loki-tls-server-name`` (also sent as
    SNI) when it is set, instead of against the URL's host."""

    def __init__(self, host: str, port: int, timeout: float | None,
                 context: "ssl.SSLContext", server_name: str) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls = context
        self._server_name = server_name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # TCP, with TCP_NODELAY
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._server_name)
