"""The ``awslogs`` remote driver: container logs to Amazon CloudWatch Logs (PutLogEvents).

Size: longer than 500 lines because the options, event shaping and CloudWatch's call limits
are one contract with PutLogEvents, read together; botocore does the network.

Owns Docker's ``awslogs`` options and error texts, turning a shipper batch into CloudWatch
log events (partial pieces re-joined, empty lines dropped, multi-line grouping, valid UTF-8,
events over 262,118 bytes split at character boundaries, stable sort by millisecond
timestamp), cutting them into PutLogEvents calls within the service limits, stream/group
creation in Docker's order, and mapping CloudWatch's answers onto the shipper's contract
(``RetryableError`` / ``PermanentError`` / rejected count). It must not keep records across
``send`` calls (everything handed to ``send`` is sent or raised), must not do network I/O in
its constructor, and must never put credentials into an error text or a log line.

botocore is imported lazily: the daemon pays for it only when a container uses awslogs.
Options, defaults and what differs from Docker are documented in ``docs/drivers/awslogs.md``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from itertools import islice
from operator import attrgetter, le
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, Sequence
from urllib.parse import urlsplit

from logpipe.driver import BatchLimits, Library, LogInfo
from logpipe.errors import LogOptError, LogpipeError, PermanentError, RetryableError
from logpipe.message import Message
from logpipe.options import check_known_keys, driver_opts, parse_bool, parse_int

from .multiline import Events, group_lines, start_pattern
from .remote import RemoteDriverBase

if TYPE_CHECKING:
    from logpipe.template import Template

log = logging.getLogger(__name__)

GROUP = "awslogs-group"
STREAM = "awslogs-stream"
REGION = "awslogs-region"
ENDPOINT = "awslogs-endpoint"
CREATE_GROUP = "awslogs-create-group"
CREATE_STREAM = "awslogs-create-stream"
DATETIME_FORMAT = "awslogs-datetime-format"
MULTILINE_PATTERN = "awslogs-multiline-pattern"
FLUSH_INTERVAL = "awslogs-force-flush-interval-seconds"
MAX_BUFFERED = "awslogs-max-buffered-events"
CREDENTIALS_ENDPOINT = "awslogs-credentials-endpoint"
FORMAT = "awslogs-format"

OPTIONS = frozenset({GROUP, STREAM, REGION, ENDPOINT, CREATE_GROUP, CREATE_STREAM,
                     DATETIME_FORMAT, MULTILINE_PATTERN, FLUSH_INTERVAL, MAX_BUFFERED,
                     CREDENTIALS_ENDPOINT, FORMAT, "tag"})

DEFAULT_STREAM_TAG = "{{.FullID}}"
DEFAULT_FLUSH_INTERVAL = 5
JSON_EMF = "json/emf"  # Docker's only accepted awslogs-format, sent as x-amzn-logs-format

#: Docker's ``credentialsEndpoint``: ``awslogs-credentials-endpoint`` is appended to it (the
#: ECS task-role endpoint). A module variable so tests can point it at loopback, as Docker's
#: own tests swap ``newSDKEndpoint``.
CREDENTIALS_HOST = "http://169.254.170.2"

# PutLogEvents limits (CloudWatch Logs API reference).
PER_EVENT_BYTES = 26
MAX_PUT_BYTES = 1_048_576
MAX_PUT_EVENTS = 10_000
MAX_EVENT_BYTES = 262_144 - PER_EVENT_BYTES  # Docker's maximumBytesPerEvent: 262,118
MAX_SPAN_MS = 24 * 3600 * 1000  # a request spanning more fails as a whole

_MS = 1_000_000
# The shipper measures spans in ns; ms truncation can add up to 1 ms, hence the margin.
_LIMITS_SPAN_NS = (MAX_SPAN_MS - 1000) * _MS

_GROUP_NAME = re.compile(r"[.\-_/#A-Za-z0-9]{1,512}")
# One lone surrogate per invalid byte after ``surrogateescape``: one U+FFFD each, as Go does.
_INVALID_BYTE = re.compile("[\udc80-\udcff]")

#: Answers worth trying again later: throttling, the service being unwell, credentials that
#: expire and are refreshed. Every other 4xx refuses the batch for good.
RETRYABLE_CODES = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException", "SlowDown",
    "ServiceUnavailableException", "ServiceUnavailable", "InternalFailure",
    "InternalServerError", "RequestTimeout", "RequestTimeoutException",
    "PriorRequestNotComplete", "OperationAbortedException", "ExpiredToken",
    "ExpiredTokenException", "RequestExpired",
})

_line, _ts, _partial = attrgetter("line"), attrgetter("ts"), attrgetter("partial")


# -- options -------------------------------------------------------------------------------

class Settings(NamedTuple):
    """The options a driver instance works with, parsed once."""

    group: str
    stream: str
    region: str
    endpoint: str | None
    create_group: bool
    create_stream: bool
    pattern: re.Pattern[str] | None
    flush_interval: int
    credentials_url: str | None
    emf: bool


def region(opts: Mapping[str, str]) -> str:
    """``awslogs-region``, else the daemon's ``AWS_REGION`` / ``AWS_DEFAULT_REGION``.

    Docker would then ask the EC2 instance metadata service; that is network I/O, which
    create-time validation must not do, so the region must be given (documented)."""
    value = opts.get(REGION) or os.environ.get("AWS_REGION") or os.environ.get(
        "AWS_DEFAULT_REGION")
    if not value:
        raise LogOptError("Cannot determine region for awslogs driver")
    return value


def endpoint_url(value: str) -> str:
    """``awslogs-endpoint`` as a URL. aws-sdk-go prepends ``https://`` to a bare host name,
    so Docker accepts ``logs.eu-west-1.amazonaws.com``; so do we."""
    url = value if "://" in value else "https://" + value
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LogOptError(f"invalid value for log opt '{ENDPOINT}': {value!r}: "
                          "expected an http:// or https:// URL")
    return url


def _check_names(group: str, stream: str | None) -> None:
    """CloudWatch's naming rules, checked at create: Docker lets a bad name through and then
    fails every start (or drops every batch), which is worse than saying so here."""
    if not _GROUP_NAME.fullmatch(group):
        raise LogOptError(
            f"invalid value for log opt '{GROUP}': {group!r}: a CloudWatch Logs group name is "
            "1 to 512 characters from a-z, A-Z, 0-9, '_', '-', '/', '.' and '#'")
    if stream is not None and (not 0 < len(stream) <= 512 or ":" in stream or "*" in stream):
        raise LogOptError(
            f"invalid log stream name {stream!r}: a CloudWatch Logs stream name is "
            "1 to 512 characters and cannot contain ':' or '*'")


def _check_docker_opts(opts: Mapping[str, str]) -> None:
    """Docker's ``ValidateLogOpt``, in its order and with its texts."""
    check_known_keys(opts, OPTIONS, "awslogs")
    if not opts.get(GROUP):
        raise LogOptError(f"must specify a value for log opt '{GROUP}'")
    for key in (CREATE_GROUP, CREATE_STREAM):
        if opts.get(key):
            try:
                parse_bool(opts[key])
            except LogOptError as err:
                raise LogOptError(f"must specify valid value for log opt '{key}': {err}") from None
    for key in (FLUSH_INTERVAL, MAX_BUFFERED):
        if opts.get(key):
            try:
                positive = parse_int(opts[key]) > 0
            except LogOptError:
                positive = False
            if not positive:
                raise LogOptError(
                    f"must specify a positive integer for log opt '{key}': {opts[key]}")
    has_datetime, has_pattern = DATETIME_FORMAT in opts, MULTILINE_PATTERN in opts
    if has_datetime and has_pattern:
        raise LogOptError(f"you cannot configure log opt '{DATETIME_FORMAT}' and "
                          f"'{MULTILINE_PATTERN}' at the same time")
    if opts.get(FORMAT):
        if opts[FORMAT] != JSON_EMF:
            raise LogOptError(f"unsupported log format '{opts[FORMAT]}'")
        if has_datetime or has_pattern:
            raise LogOptError(f"you cannot configure log opt '{DATETIME_FORMAT}' or "
                              f"'{MULTILINE_PATTERN}' when log opt '{FORMAT}' is set to "
                              f"'{JSON_EMF}'")


def _tag_template(opts: Mapping[str, str]) -> "Template":
    from logpipe.template import compile_template

    return compile_template(opts.get("tag") or DEFAULT_STREAM_TAG)


def credentials_url(opts: Mapping[str, str]) -> str | None:
    """The ECS-style credential endpoint: Docker appends ``awslogs-credentials-endpoint`` to
    ``http://169.254.170.2``, so anything but a path would change the host."""
    if CREDENTIALS_ENDPOINT not in opts:
        return None
    uri = opts[CREDENTIALS_ENDPOINT]
    if not uri.startswith("/"):
        raise LogOptError(
            f"invalid value for log opt '{CREDENTIALS_ENDPOINT}': {uri!r}: expected a path "
            f"such as /v2/credentials/<id> (it is appended to {CREDENTIALS_HOST})")
    return CREDENTIALS_HOST + uri


def settings(opts: Mapping[str, str], info: LogInfo) -> Settings:
    """Parse options in Docker's constructor order (tag, multi-line pattern, region), raising
    what ``validate`` raises if they were not validated."""
    stream = _tag_template(opts).render(info)  # Docker renders the tag even if unused
    stream = opts.get(STREAM) or stream
    pattern = start_pattern(opts.get(DATETIME_FORMAT), opts.get(MULTILINE_PATTERN))
    return Settings(
        group=opts[GROUP],
        stream=stream,
        region=region(opts),
        endpoint=endpoint_url(opts[ENDPOINT]) if opts.get(ENDPOINT) else None,
        create_group=bool(opts.get(CREATE_GROUP)) and parse_bool(opts[CREATE_GROUP]),
        create_stream=not opts.get(CREATE_STREAM) or parse_bool(opts[CREATE_STREAM]),
        pattern=pattern,
        flush_interval=parse_int(opts[FLUSH_INTERVAL]) if opts.get(FLUSH_INTERVAL)
        else DEFAULT_FLUSH_INTERVAL,
        credentials_url=credentials_url(opts),
        emf=opts.get(FORMAT) == JSON_EMF,
    )


# -- events --------------------------------------------------------------------------------

def _join_partials(batch: Sequence[Message]) -> tuple[list[bytes], list[int], list[int]]:
    """Lines with the 16 KiB pieces of a long line re-joined (as Docker's awslogs receives a
    long line whole): ``(lines, ts_ns, records)``, ``records`` counting pieces per line.

    A run of pieces is joined at the place of its first piece, even with lines of the other
    stream in between. Pieces of a line that this batch does not end (the rest comes in the
    next batch, or never: a line cut off at EOF) still form one event here.
    """
    lines, stamps = list(map(_line, batch)), list(map(_ts, batch))
    parts = list(map(_partial, batch))
    if parts.count(None) == len(parts):
        return lines, stamps, [1] * len(lines)
    out_lines: list[Any] = []
    out_ts: list[int] = []
    records: list[int] = []
    runs: dict[str, int] = {}
    for line, ts, part in zip(lines, stamps, parts):
        if part is None:
            out_lines.append(line)
        else:
            at = runs.get(part.id)
            if at is not None:
                out_lines[at].append(line)
                records[at] += 1
                if part.last:
                    del runs[part.id]
                continue
            if not part.last:
                runs[part.id] = len(out_lines)
            out_lines.append([line])
        out_ts.append(ts)
        records.append(1)
    return [b"".join(x) if isinstance(x, list) else x for x in out_lines], out_ts, records


def _decode(lines: list[bytes]) -> tuple[list[str], list[int]]:
    """Lines as text with one U+FFFD per invalid byte (Go's rule, and what CloudWatch
    would do if the JSON body could carry raw bytes), and their UTF-8 sizes. Decoded as one
    blob: one C-level decode, check and split for the whole batch."""
    blob = b"\n".join(lines)
    if blob.isascii():
        texts = blob.decode("ascii").split("\n")
        return (texts, list(map(len, lines))) if len(texts) == len(lines) else _decode_each(lines)
    text = blob.decode("utf-8", "surrogateescape")
    invalid = _INVALID_BYTE.search(text) is not None
    if invalid:
        text = _INVALID_BYTE.sub("\ufffd", text)
    texts = text.split("\n")
    if len(texts) != len(lines):  # a line with a "\n" in it: never from the shipper
        return _decode_each(lines)
    if invalid:
        return texts, [len(t.encode()) for t in texts]
    return texts, list(map(len, lines))


def _decode_each(lines: list[bytes]) -> tuple[list[str], list[int]]:
    texts = [_INVALID_BYTE.sub("\ufffd", x.decode("utf-8", "surrogateescape")) for x in lines]
    return texts, [len(t.encode()) for t in texts]


def _split_long(ev: Events) -> Events:
    """Events over ``MAX_EVENT_BYTES`` cut into several, at character boundaries (each piece
    keeps the timestamp; the records are counted on the first)."""
    out = Events([], [], [], [])
    for message, ts, size, n in zip(*ev):
        if size <= MAX_EVENT_BYTES:
            out.messages.append(message)
            out.ts.append(ts)
            out.sizes.append(size)
            out.records.append(n)
            continue
        data = message.encode()
        while data:
            cut = min(len(data), MAX_EVENT_BYTES)
            while cut < len(data) and data[cut] & 0xC0 == 0x80:  # inside a character
                cut -= 1
            out.messages.append(data[:cut].decode())
            out.ts.append(ts)
            out.sizes.append(cut)
            out.records.append(n)
            data, n = data[cut:], 0
    return out


def encode_events(batch: Sequence[Message], pattern: re.Pattern[str] | None) -> Events:
    """A shipper batch as CloudWatch events, ready to cut: Docker's rules (see the module
    docstring), stable-sorted by millisecond timestamp as PutLogEvents requires."""
    lines, stamps, records = _join_partials(batch)
    if pattern is None and b"" in lines:  # Docker drops empty lines (multi-line keeps them)
        keep = [i for i, line in enumerate(lines) if line]
        lines = [lines[i] for i in keep]
        stamps = [stamps[i] for i in keep]
        records = [records[i] for i in keep]
    texts, sizes = _decode(lines)
    ms = [t // _MS for t in stamps]
    if pattern is not None:
        ev = group_lines(texts, ms, sizes, records, pattern, MAX_EVENT_BYTES)
    else:
        ev = Events(texts, ms, sizes, records)
    if ev.sizes and max(ev.sizes) > MAX_EVENT_BYTES:
        ev = _split_long(ev)
    if not all(map(le, ev.ts, islice(ev.ts, 1, None))):
        order = sorted(range(len(ev.ts)), key=ev.ts.__getitem__)  # stable
        ev = Events(*([column[i] for i in order] for column in ev))
    return ev


def cut_requests(ts: list[int], sizes: list[int]) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of sorted events, each within one PutLogEvents call's limits:
    10,000 events, 1,048,576 bytes counting 26 per event, and less than 24 h between its
    first and last timestamp. The shipper cuts to the same limits, but invalid bytes grow
    threefold once replaced and a long line split in two adds an event."""
    n = len(ts)
    if n == 0:
        return []
    if (n <= MAX_PUT_EVENTS and sum(sizes) + PER_EVENT_BYTES * n <= MAX_PUT_BYTES
            and ts[-1] - ts[0] < MAX_SPAN_MS):
        return [(0, n)]
    ranges, start, total, first = [], 0, 0, ts[0]
    for i in range(n):
        cost = sizes[i] + PER_EVENT_BYTES
        if i > start and (i - start >= MAX_PUT_EVENTS or total + cost > MAX_PUT_BYTES
                          or ts[i] - first >= MAX_SPAN_MS):
            ranges.append((start, i))
            start, total, first = i, 0, ts[i]
        total += cost
    ranges.append((start, n))
    return ranges


def rejected_records(info: Mapping[str, int], records: list[int]) -> int:
    """How many input records the events of ``rejectedLogEventsInfo`` held. Per the API
    reference ``tooNewLogEventStartIndex`` is inclusive, the two end indexes exclusive."""
    if not info:
        return 0
    n = len(records)
    old_end = min(n, max(info.get("tooOldLogEventEndIndex", 0) or 0,
                         info.get("expiredLogEventEndIndex", 0) or 0))
    new_start = max(old_end, min(n, info.get("tooNewLogEventStartIndex", n)))
    return sum(records[:old_end]) + sum(records[new_start:])


# -- botocore ------------------------------------------------------------------------------

#: botocore comes with boto3, which a plain install of logpipe includes.
BOTOCORE = Library("botocore.session", "boto3")
_loader: Any = None
_loader_lock = threading.Lock()


def _session(credentials_url: str | None) -> Any:
    """A botocore session per driver (credentials are resolved per container), sharing one
    model loader: a fresh loader costs 120 ms per container, a shared one 10 ms."""
    global _loader
    session = BOTOCORE.load("awslogs").Session()
    with _loader_lock:
        if _loader is None:
            _loader = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _loader)
    if credentials_url:
        from botocore.credentials import ContainerProvider, CredentialResolver
        from botocore.utils import ContainerMetadataFetcher

        # One try, no sleep: the shipper's backoff retries (Docker: endpointcreds provider).
        fetcher = ContainerMetadataFetcher(sleep=lambda _seconds: None)
        fetcher.RETRY_ATTEMPTS = 1
        provider = ContainerProvider(environ={ContainerProvider.ENV_VAR_FULL: credentials_url},
                                     fetcher=fetcher)
        session.register_component("credential_provider", CredentialResolver([provider]))
    return session


def _quiet_botocore() -> None:
    """botocore's DEBUG records carry request headers (the session token) and credential
    endpoint answers (the secret key); a daemon running with debug logging must not write
    them anywhere."""
    logger = logging.getLogger("botocore")
    logger.setLevel(max(logging.INFO, logger.getEffectiveLevel()))


def _new_client(cfg: Settings, *, probe: bool = False) -> tuple[Any, Any]:
    """A CloudWatch Logs client and its session. botocore tries twice at most (once for the
    probe): throttling and outages go back to the shipper, whose backoff is in control. May
    do network I/O (credential endpoints): never called by the constructor."""
    from botocore.config import Config

    _quiet_botocore()
    session = _session(cfg.credentials_url)
    config = Config(
        connect_timeout=2 if probe else 5,
        read_timeout=5 if probe else 30,
        retries={"total_max_attempts": 1 if probe else 2, "mode": "standard"},
        parameter_validation=False,  # 7 µs per event; our events are well-formed by design
        user_agent_extra="logpipe-awslogs",
    )
    client = session.create_client("logs", region_name=cfg.region,
                                   endpoint_url=cfg.endpoint, config=config)
    if cfg.emf:
        def emf_header(request: Any, **_: Any) -> None:
            request.headers["x-amzn-logs-format"] = JSON_EMF

        client.meta.events.register("before-sign.cloudwatch-logs", emf_header)
    return client, session


def open_client(cfg: Settings, *, probe: bool = False) -> tuple[Any, Any]:
    """``_new_client``, its failures (a credential endpoint that is down or answers
    nonsense) raised as the shipper's errors; ``MissingLibrary`` without botocore."""
    BOTOCORE.load("awslogs")
    result, err = _attempt(_new_client, cfg, probe=probe)
    if err is not None:
        raise classify(err, "awslogs", None, _where(cfg))
    return result


def _attempt(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, Exception | None]:
    """``(fn(...), None)``, or ``(None, error)`` for a botocore error. Our errors are raised
    outside the ``except`` block, so they carry no botocore exception as their context:
    its text may quote whatever an endpoint answered."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(*args, **kwargs), None
    except (BotoCoreError, ClientError) as err:
        return None, err


def _where(cfg: Settings) -> str:
    return cfg.endpoint or f"CloudWatch Logs in {cfg.region}"


class _NoCredentials(RetryableError):
    """No credentials anywhere in the chain: retried by the shipper, refused by ``probe``."""


def _error_code(err: Any) -> str:
    response = getattr(err, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "") or "")


def _error_message(err: Any) -> str:
    response = getattr(err, "response", None) or {}
    return str(response.get("Error", {}).get("Message", "") or "")


def _redact(text: str, session: Any) -> str:
    """``text`` without the secret key or session token the session holds, should a
    misbehaving endpoint echo what it was sent."""
    try:
        creds = session.get_credentials() if session is not None else None
        frozen = creds.get_frozen_credentials() if creds is not None else None
    except Exception:  # cannot tell what to hide: hide the whole text
        return "(message withheld)"
    for secret in (frozen.secret_key, frozen.token) if frozen is not None else ():
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def classify(err: Exception, what: str, session: Any, endpoint: str
             ) -> RetryableError | PermanentError:
    """A botocore exception as the shipper's error. Texts are built here from the error code,
    the status and the service's message only: never from a request, its headers or a
    credential endpoint's answer."""
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        HTTPClientError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    if isinstance(err, ClientError):
        code = _error_code(err) or "Error"
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = _redact(_error_message(err), session)
        text = f"{what}: {code}: {message[:500]}" + (f" (HTTP {status})" if status else "")
        if code in RETRYABLE_CODES or status >= 500 or status == 429:
            return RetryableError(text)
        return PermanentError(text)
    if isinstance(err, (HTTPClientError, ConnectionError)):  # refused, reset, timed out
        return RetryableError(f"{what}: cannot reach {endpoint}: {type(err).__name__}")
    if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
        return _NoCredentials(f"{what}: NoCredentialProviders: no valid providers in chain")
    if isinstance(err, NoRegionError):
        return PermanentError(f"{what}: Cannot determine region for awslogs driver")
    # CredentialRetrievalError and friends: their text may quote the credential endpoint's
    # answer, which holds the secret key. Name the class only.
    return RetryableError(f"{what}: could not get AWS credentials ({type(err).__name__})")


def _next_token(message: str) -> str | None:
    """Docker's token recovery: the next sequence token is the last word of the message
    ("... The next expected sequenceToken is: 4958..."); ``null`` means none (a new stream),
    which Docker would send as the token "null"."""
    word = message.rsplit(" ", 1)[-1]
    return None if word in ("", "null") else word


def create_stream(client: Any, cfg: Settings, session: Any = None) -> None:
    """Docker's order: CreateLogStream; if the group does not exist and
    ``awslogs-create-group`` is set, CreateLogGroup then CreateLogStream again. "Already
    exists" is success at every step."""
    exists = "ResourceAlreadyExistsException"
    _, err = _attempt(client.create_log_stream, logGroupName=cfg.group,
                      logStreamName=cfg.stream)
    if err is not None and _error_code(err) == "ResourceNotFoundException" and cfg.create_group:
        _, group_err = _attempt(client.create_log_group, logGroupName=cfg.group)
        if group_err is not None and _error_code(group_err) != exists:
            raise classify(group_err, "failed to create Cloudwatch log group", session,
                           _where(cfg))
        _, err = _attempt(client.create_log_stream, logGroupName=cfg.group,
                          logStreamName=cfg.stream)
    if err is not None and _error_code(err) != exists:
        raise classify(err, "failed to create Cloudwatch log stream", session, _where(cfg))


# -- the driver ----------------------------------------------------------------------------

class AWSLogsDriver(RemoteDriverBase):
    """One CloudWatch Logs stream per container (``awslogs-stream``, default the full id)."""

    name = "awslogs"
    limits = BatchLimits(max_count=MAX_PUT_EVENTS, max_bytes=MAX_PUT_BYTES,
                         overhead=PER_EVENT_BYTES, max_span_ns=_LIMITS_SPAN_NS,
                         wait=float(DEFAULT_FLUSH_INTERVAL), whole_lines=True)
    libraries = (BOTOCORE,)

    @staticmethod
    def validate(opts: Mapping[str, str], info: LogInfo | None = None) -> None:
        """Docker's ``ValidateLogOpt``, then what its constructor checks (tag, multi-line
        pattern, region), with Docker's texts, then CloudWatch's naming rules."""
        _check_docker_opts(opts)
        if info is not None:
            cfg = settings(opts, info)
            _check_names(cfg.group, cfg.stream)
            return
        # Without the container (daemon defaults) the tag is parsed, not rendered.
        _tag_template(opts)
        start_pattern(opts.get(DATETIME_FORMAT), opts.get(MULTILINE_PATTERN))
        region(opts)
        if opts.get(ENDPOINT):
            endpoint_url(opts[ENDPOINT])
        credentials_url(opts)
        _check_names(opts[GROUP], opts.get(STREAM) or None)

    @staticmethod
    def probe(info: LogInfo) -> None:
        """Docker in blocking mode (its default) creates the stream at start and refuses the
        container if that fails. We do the same for answers that will not change by waiting
        (missing group, access denied, no credentials), but start the container when
        CloudWatch is only unreachable, slow or throttling: the spool keeps the output and
        ``send`` creates the stream later (Docker's #33803, #41714). Non-blocking mode and
        ``awslogs-create-stream=false`` create nothing at start, as in Docker."""
        if info.config.get("mode") == "non-blocking":
            return
        cfg = settings(driver_opts(info.config), info)
        if not cfg.create_stream:
            return
        try:
            client, session = open_client(cfg, probe=True)
            try:
                create_stream(client, cfg, session)
            finally:
                client.close()
        except (PermanentError, _NoCredentials) as err:
            raise LogpipeError(str(err)) from None
        except RetryableError as err:
            log.warning("awslogs: starting %s without its CloudWatch stream for now: %s",
                        info.container_id[:12], err)

    def __init__(self, info: LogInfo) -> None:
        super().__init__(info)
        BOTOCORE.load(self.name)  # fail here, not at the first send, if it is missing

        self.cfg = settings(self.opts, info)
        self.limits = self.limits._replace(wait=float(self.cfg.flush_interval))
        self._client: Any = None
        self._session: Any = None
        self._ready = not self.cfg.create_stream  # Docker skips creation entirely then
        self._token: str | None = None
        self._body: bytes | None = None
        # (batch key, PutLogEvents calls already delivered, records rejected so far): a
        # batch retried after a failure in its third call resumes at the third call.
        self._resume: tuple[Any, int, int] | None = None

    def send(self, batch: Sequence[Message]) -> int | None:
        """Send ``batch`` as one or more PutLogEvents calls; return the records CloudWatch
        accepted but discarded (too old, too new, expired).

        If a call fails after earlier calls of the same batch succeeded, the shipper's retry
        of that batch resumes after them; only a daemon restart in between resends them.
        """
        if not batch:
            return 0
        ev = encode_events(batch, self.cfg.pattern)
        ranges = cut_requests(ev.ts, ev.sizes)
        if not ranges:
            return 0
        key = (len(batch), batch[0], batch[-1])
        done, rejected = 0, 0
        if self._resume is not None and self._resume[0] == key:
            _, done, rejected = self._resume
        client = self._connect()
        if not self._ready:
            create_stream(client, self.cfg, self._session)
            self._ready = True
        for i in range(done, len(ranges)):
            start, end = ranges[i]
            info = self._put(client, ev, start, end)
            rejected += rejected_records(info, ev.records[start:end])
            self._resume = (key, i + 1, rejected)
        self._resume = None
        return rejected

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = self._session = None

    # -- internals ---------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is None:
            client, session = open_client(self.cfg)
            # PutLogEvents bodies are built by ``_put`` in one orjson call: botocore's own
            # serializer costs 13 µs per event. This hook swaps the body in before signing.
            client.meta.events.register("before-call.cloudwatch-logs.PutLogEvents",
                                        self._swap_body)
            self._client, self._session = client, session
        return self._client

    def _swap_body(self, params: dict[str, Any], **_: Any) -> None:
        if self._body is not None:
            params["body"] = self._body
            self._body = None

    def _put(self, client: Any, ev: Events, start: int, end: int) -> Mapping[str, int]:
        """One PutLogEvents call for events ``[start, end)``, with Docker's sequence-token
        recovery (older endpoints) and one stream re-creation if the stream vanished."""
        import orjson

        cfg = self.cfg
        events = [{"message": m, "timestamp": t}
                  for m, t in zip(ev.messages[start:end], ev.ts[start:end])]
        for attempt in (1, 2):
            body: dict[str, Any] = {"logEvents": events, "logGroupName": cfg.group,
                                    "logStreamName": cfg.stream}
            if self._token:
                body["sequenceToken"] = self._token
            self._body = orjson.dumps(body)
            resp, err = _attempt(client.put_log_events, logGroupName=cfg.group,
                                 logStreamName=cfg.stream, logEvents=[])
            unsent, self._body = self._body, None
            if err is None:
                if unsent is not None:  # the hook never ran: an empty batch went out
                    raise RuntimeError("awslogs: botocore did not emit before-call")
                self._token = resp.get("nextSequenceToken") or self._token
                return resp.get("rejectedLogEventsInfo") or {}
            code = _error_code(err)
            if code == "DataAlreadyAcceptedException":
                self._token = _next_token(_error_message(err))
                return {}
            if attempt == 1 and code == "InvalidSequenceTokenException":
                self._token = _next_token(_error_message(err))
                continue
            if attempt == 1 and code == "ResourceNotFoundException" and cfg.create_stream:
                create_stream(client, cfg, self._session)
                continue
            break
        raise classify(err, "PutLogEvents failed", self._session, _where(cfg))
