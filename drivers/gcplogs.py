"""The ``gcplogs`` remote driver: Docker's Google Cloud Logging driver, one ``entries:write``
request per batch.

Each record becomes a LogEntry of the log ``gcplogs-docker-driver`` carrying Docker's JSON
payload (``instance``, ``container``, ``message``, empty fields left out), the record's own
log time with nanoseconds, and a severity by stream (``INFO`` for stdout, ``ERROR`` for
stderr; Docker sends none). A batch is written with one synchronous ``entries:write`` call
through google-cloud-logging's REST client, so the shipper moves its checkpoint only once
Cloud Logging has taken the whole batch. Docker instead hands entries to the library's
background bundler, which drops them when it overflows; that transport is never used here.

This module owns the options and their validation (Docker's texts), finding the project and
the credentials without hanging off Google Cloud (the metadata server is asked only when the
machine says it is a Compute Engine VM), building the entries, and sorting the API's answers
into retryable and permanent errors. It must not import google-cloud-logging (about a second
of imports) before a driver or a probe needs it, must never put credentials in a message,
and never touches the spool.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
import warnings
from typing import Any, Mapping, NamedTuple, Sequence
from urllib.parse import urlsplit

from logpipe.driver import BatchLimits, Library, LogInfo
from logpipe.errors import LogOptError, LogpipeError, PermanentError, RetryableError, SendError
from logpipe.extras import compile_go_regexp, extra_attrs
from logpipe.message import STDERR, STDOUT, Message
from logpipe.options import driver_opts
from logpipe.template.gotime import GoTime
from logpipe.template.literals import go_quote
from logpipe.timespec import NS, format_fixed

from .remote import RemoteDriverBase

LOG_ID = "gcplogs-docker-driver"

PROJECT_OPT = "gcp-project"
LOG_CMD_OPT = "gcp-log-cmd"
META_OPTS = ("gcp-meta-zone", "gcp-meta-name", "gcp-meta-id")
EXTRA_OPTS = ("labels", "labels-regex", "env", "env-regex")
#: logpipe only (Docker 20.10 has no way to change the API host): the base URL of a Cloud
#: Logging endpoint, e.g. a Private Service Connect name or a local test receiver.
ENDPOINT_OPT = "gcp-endpoint"
OPTIONS = frozenset((PROJECT_OPT, LOG_CMD_OPT, ENDPOINT_OPT) + META_OPTS + EXTRA_OPTS)

DEFAULT_ENDPOINT = "https://logging.googleapis.com"

NO_PROJECT = ("No project was specified and couldn't read project from the metadata server. "
              "Please specify a project")
NO_CREDENTIALS = ("google: could not find default credentials. See https://developers.google"
                  ".com/accounts/docs/application-default-credentials for more information.")
PING_FAILED = "unable to connect or authenticate with Google Cloud Logging: "
#: Part of a plain install of logpipe; checked by the registry at create and start.
LIBRARY = Library("google.cloud.logging", "google-cloud-logging")

#: Deliberately unlike Docker, which sends no severity at all.
SEVERITY = {STDOUT: "INFO", STDERR: "ERROR"}

#: entries:write refuses request bodies over 10 MiB.
REQUEST_LIMIT = 10 * 1024 * 1024
#: The library writes JSON with ASCII escapes, so one byte of a line can cost six bytes of
#: body (a control byte is ``\\u0001``, an invalid byte ``\\ufffd``); batches are cut so that
#: even such lines fit, leaving room for the request's own fields.
_WORST_ESCAPE = 6
_HEADROOM = 256 * 1024
MAX_LINE_BYTES = (REQUEST_LIMIT - _HEADROOM) // _WORST_ESCAPE
#: Room for the ``instance`` object, which on GCE is only known after the first send.
_INSTANCE_ALLOWANCE = 256

#: Docker's Ping (cloud.google.com/go/logging ``Client.Ping``): an entry the service dedups.
_PING_ENTRY = {"textPayload": "ping", "timestamp": "1970-01-01T00:00:00Z", "insertId": "ping"}

# -- where we run: Compute Engine or not, decided without the network ---------------------

_DMI_PRODUCT_NAME = "/sys/class/dmi/id/product_name"
_METADATA_IP = "169.254.169.254"
METADATA_TIMEOUT = 2.0


class GCEFacts(NamedTuple):
    """What Docker reads from the metadata server on GCE (``initGCP``)."""

    project: str
    zone: str
    name: str
    id: str


_facts: dict[str, GCEFacts] = {}
_facts_lock = threading.Lock()


def metadata_host() -> str | None:
    """The metadata server to ask, or None when this is not a Compute Engine VM.

    Decided without the network, so that nothing waits on an address that does not answer
    off Google Cloud: ``GCE_METADATA_HOST`` (or the older ``GCE_METADATA_ROOT``) names one;
    otherwise the VM's DMI product name says "Google" on GCE (google-auth's own test).
    """
    host = os.environ.get("GCE_METADATA_HOST") or os.environ.get("GCE_METADATA_ROOT")
    if host:
        return host
    try:
        with open(_DMI_PRODUCT_NAME, encoding="utf-8", errors="replace") as f:
            on_gce = f.read().strip().startswith("Google")
    except OSError:
        return None
    return _METADATA_IP if on_gce else None


def gce_facts() -> GCEFacts | None:
    """Project, zone, name and id of this VM; None off GCE. Read once per process and
    metadata host, as Docker does, except that a failed read is tried again next time."""
    host = metadata_host()
    if host is None:
        return None
    with _facts_lock:
        facts = _facts.get(host)
        if facts is None:
            facts = _read_facts(host)
            if facts.project:
                _facts[host] = facts
    return facts


def _read_facts(host: str) -> GCEFacts:
    # Never through a proxy: the metadata server is link-local.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(path: str) -> str:
        req = urllib.request.Request(f"http://{host}/computeMetadata/v1/{path}",
                                     headers={"Metadata-Flavor": "Google"})
        try:
            with opener.open(req, timeout=METADATA_TIMEOUT) as resp:
                return resp.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):  # URLError and HTTPError are OSErrors
            return ""

    project = get("project/project-id")
    if not project:  # down or not a metadata server: do not wait on three more timeouts
        return GCEFacts("", "", "", "")
    zone = get("instance/zone").rpartition("/")[2]  # "projects/123/zones/europe-west1-b"
    return GCEFacts(project, zone, get("instance/name"), get("instance/id"))


# -- project and credentials ------------------------------------------------------------------

def adc_file() -> str | None:
    """The Application Default Credentials file, in google-auth's order: the file
    ``GOOGLE_APPLICATION_CREDENTIALS`` names, else gcloud's well-known file if it exists."""
    explicit = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if explicit:
        return explicit
    config = os.environ.get("CLOUDSDK_CONFIG") or os.path.join(
        os.path.expanduser("~"), ".config", "gcloud")
    path = os.path.join(config, "application_default_credentials.json")
    return path if os.path.isfile(path) else None


def _adc_project() -> str:
    """``project_id`` of the credentials file (service-account keys carry one)."""
    path = adc_file()
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return ""  # a broken file is reported where credentials are loaded, at start
    project = data.get("project_id") if isinstance(data, dict) else None
    return project if isinstance(project, str) else ""


def find_project(opts: Mapping[str, str]) -> str:
    """``gcp-project``, else the environment's default project (``GOOGLE_CLOUD_PROJECT``,
    ``GCLOUD_PROJECT``, the credentials file's), else the metadata server's; "" if none.

    As in Docker, a ``gcp-project`` that is present but empty is not replaced by a default.
    """
    if PROJECT_OPT in opts:
        return opts[PROJECT_OPT]
    project = (os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT")
               or _adc_project())
    if not project:
        facts = gce_facts()
        project = facts.project if facts is not None else ""
    return project


def find_credentials(endpoint: str | None) -> Any:
    """The daemon's Application Default Credentials, without google-auth's metadata-server
    probe off GCE (it retries with back-off for seconds). Anonymous credentials only when an
    endpoint override is given and no credentials exist. Raises ``LogpipeError``."""
    import google.auth
    from google.auth import exceptions as auth_errors

    path = adc_file()
    try:
        if path:
            with warnings.catch_warnings():
                # the generic loader warns about untrusted files; this is the operator's ADC
                # file, which google.auth.default() loads the same way, just as quietly
                warnings.simplefilter("ignore", DeprecationWarning)
                credentials, _ = google.auth.load_credentials_from_file(path)
            return credentials
        if metadata_host() is not None:
            from google.auth import compute_engine

            return compute_engine.Credentials()
    except auth_errors.DefaultCredentialsError as err:
        raise LogpipeError(f"google: {err}") from None
    if endpoint is not None:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    raise LogpipeError(NO_CREDENTIALS)


def parse_endpoint(opts: Mapping[str, str]) -> str | None:
    """The ``gcp-endpoint`` base URL without a trailing slash, or None for Google's."""
    value = opts.get(ENDPOINT_OPT)
    if value is None:
        return None
    url = urlsplit(value)
    try:
        url.port  # raises on a port that is not a number or out of range
    except ValueError:
        url = urlsplit("")
    if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
        raise LogOptError(f"invalid {ENDPOINT_OPT} {go_quote(value)}: expected the base URL "
                          f"of a Cloud Logging endpoint, such as {DEFAULT_ENDPOINT}")
    return value.rstrip("/")


def make_client(project: str, endpoint: str | None) -> Any:
    """A google-cloud-logging client on the REST transport (JSON over HTTPS), also where
    Docker uses gRPC: one transport, in production and against the test receiver."""
    Client = LIBRARY.load("gcplogs").Client  # google-auth comes with it
    credentials = find_credentials(endpoint)
    return Client(project=project, credentials=credentials, _use_grpc=False,
                  client_options={"api_endpoint": endpoint} if endpoint else None)


def send_error(err: Exception, where: str) -> SendError | None:
    """The shipper's view of a failed write: throttling, 5xx, timeouts and network errors
    are retryable, any other 4xx is permanent. None for anything else (a bug: let it out).
    Messages hold the status and the API's own text, never credentials."""
    import requests
    from google.api_core import exceptions as api_errors
    from google.auth import exceptions as auth_errors

    if isinstance(err, api_errors.GoogleAPICallError):
        code = int(err.code or 0)
        text = f"Cloud Logging answered {code}: {err.message}"
        if code in (408, 429) or code >= 500:
            return RetryableError(text)
        return PermanentError(text)
    if isinstance(err, auth_errors.RefreshError):
        text = f"Cloud Logging credentials were refused: {err}"
        return RetryableError(text) if err.retryable else PermanentError(text)
    if isinstance(err, (requests.RequestException, auth_errors.TransportError, OSError)):
        return RetryableError(f"cannot reach Cloud Logging at {where}: {err}")
    return None


# -- entries ---------------------------------------------------------------------------------

_SURROGATE_TO_FFFD = {c: "\ufffd" for c in range(0xDC80, 0xDD00)}


def decode_lines(lines: Sequence[bytes]) -> list[str]:
    """Lines as text, one U+FFFD per invalid byte as Go's JSON encoder writes them (Python's
    "replace" would give one per invalid *sequence*). Decoded in one call for the batch."""
    texts = _decode(b"\n".join(lines)).split("\n")
    if len(texts) == len(lines):
        return texts
    return [_decode(line) for line in lines]  # a line held a newline (none should)


def _decode(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        # surrogateescape maps each undecodable byte to its own U+DC80..U+DCFF
        return data.decode("utf-8", "surrogateescape").translate(_SURROGATE_TO_FFFD)


def timestamps(batch: Sequence[Message]) -> dict[int, str]:
    """RFC 3339 with nine fraction digits for each distinct log time of a batch; the date part
    is formatted once per second (records of one chunk share their time, a batch its second)."""
    seconds: dict[int, str] = {}
    out: dict[int, str] = {}
    for ts in {m.ts for m in batch}:
        sec, frac = divmod(ts, NS)
        base = seconds.get(sec)
        if base is None:
            base = seconds[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        out[ts] = f"{base}.{frac:09d}Z"
    return out


def container_info(info: LogInfo, opts: Mapping[str, str]) -> dict[str, Any]:
    """Docker's ``containerInfo``, in its field order, empty fields left out (``omitempty``).
    ``created`` is a Go ``time.Time``, never empty: it is always written."""
    container: dict[str, Any] = {}
    for key, value in (("name", info.container_name), ("id", info.container_id),
                       ("imageName", info.image_name), ("imageId", info.image_id)):
        if value:
            container[key] = value
    container["created"] = GoTime.parse(info.created).rfc3339nano()
    if opts.get(LOG_CMD_OPT) == "true" and info.command:  # Docker compares with "true" only
        container["command"] = info.command
    extras = extra_attrs(opts, info)
    if extras:
        container["metadata"] = extras
    return container


def instance_and_resource(opts: Mapping[str, str], project: str
                          ) -> tuple[dict[str, str] | None, dict[str, Any]]:
    """Docker's ``instance`` payload object and the entries' monitored resource.

    On GCE both come from the metadata server and ``gcp-meta-*`` is ignored (as in Docker);
    elsewhere any ``gcp-meta-*`` makes a ``gce_instance`` resource, else the library's
    default, ``global`` with the project.
    """
    facts = gce_facts()
    if facts is not None:
        zone, name, iid = facts.zone, facts.name, facts.id
    elif any(opts.get(key) for key in META_OPTS):
        zone, name, iid = (opts.get(key, "") for key in META_OPTS)
    else:
        return None, {"type": "global", "labels": {"project_id": project}}
    instance = {k: v for k, v in (("zone", zone), ("name", name), ("id", iid)) if v}
    return instance, {"type": "gce_instance", "labels": {"instance_id": iid, "zone": zone}}


def entry_overhead(container: Mapping[str, Any]) -> int:
    """Bytes of JSON one entry costs besides its message (counted by the shipper per record)."""
    sample = {"timestamp": format_fixed(0), "severity": "ERROR",
              "jsonPayload": {"container": container, "message": ""}}
    return len(json.dumps(sample)) + len(", ") + _INSTANCE_ALLOWANCE


def _log_name(project: str, log_id: str) -> str:
    return f"projects/{project}/logs/{log_id}"


# -- the driver -------------------------------------------------------------------------------

class GCPLogsDriver(RemoteDriverBase):
    """Ships a container's records to Google Cloud Logging, one ``entries:write`` per batch."""

    name = "gcplogs"
    libraries = (LIBRARY,)

    @staticmethod
    def validate(opts: Mapping[str, str], info: LogInfo | None = None) -> None:
        """Docker's key check, plus what Docker only finds at start: a bad ``labels-regex``
        or ``env-regex``, and, for a container (``info`` given), no project, reported at
        create with Docker's text (a missing client library: the registry, ``libraries``).
        The daemon's default options (validated at daemon start, without ``info``) may leave
        the project to each container, as Docker's only check there is the keys."""
        for key in opts:
            if key not in OPTIONS:
                raise LogOptError(f"{go_quote(key)} is not a valid option for the gcplogs driver")
        parse_endpoint(opts)
        if info is None:
            for key in ("labels-regex", "env-regex"):
                if opts.get(key):
                    compile_go_regexp(opts[key])
            return
        extra_attrs(opts, info)
        if not find_project(opts):
            raise LogOptError(NO_PROJECT)

    @staticmethod
    def probe(info: LogInfo) -> None:
        """Docker's start-time checks: a project, credentials, and a Ping (an ``entries:write``
        of one deduplicated entry to the log ``ping``); any failure stops the start."""
        opts = driver_opts(info.config)
        endpoint = parse_endpoint(opts)
        project = find_project(opts)
        if not project:
            raise LogpipeError(NO_PROJECT)
        client = make_client(project, endpoint)
        try:
            client.logging_api.write_entries(
                [_PING_ENTRY], logger_name=_log_name(project, "ping"),
                resource={"type": "global", "labels": {"project_id": project}},
                partial_success=False)
        except Exception as err:
            mapped = send_error(err, endpoint or DEFAULT_ENDPOINT)
            if mapped is None:
                raise
            raise LogpipeError(PING_FAILED + str(mapped)) from None
        finally:
            client.close()

    def __init__(self, info: LogInfo) -> None:
        super().__init__(info)
        self.endpoint = parse_endpoint(self.opts)
        self.where = self.endpoint or DEFAULT_ENDPOINT
        self.container = container_info(info, self.opts)
        self.limits = BatchLimits(max_count=1000, max_bytes=MAX_LINE_BYTES,
                                  overhead=entry_overhead(self.container))
        self._client: Any = None
        self._log_name = ""
        self._resource: dict[str, Any] = {}
        self._payload: dict[str, Any] = {}

    def _api(self) -> Any:
        """The client's logging API, made at the first send (it may ask the metadata server).
        A missing project or credentials is retryable: the operator can fix the daemon's
        environment, and nothing is lost meanwhile."""
        if self._client is None:
            project = find_project(self.opts)
            if not project:
                raise RetryableError(NO_PROJECT)
            instance, resource = instance_and_resource(self.opts, project)
            try:
                client = make_client(project, self.endpoint)
            except LogpipeError as err:
                raise RetryableError(str(err)) from None
            self._payload = ({"container": self.container} if instance is None
                             else {"instance": instance, "container": self.container})
            self._log_name = _log_name(project, LOG_ID)
            self._resource = resource
            self._client = client
        return self._client.logging_api

    def entries(self, batch: Sequence[Message]) -> list[dict[str, Any]]:
        """The LogEntry objects of a batch. Docker's ``message`` is ``omitempty``: an empty
        line is still an entry, without the key."""
        texts = decode_lines([m.line for m in batch])
        stamps = timestamps(batch)
        base = self._payload
        return [{"timestamp": stamps[m.ts], "severity": SEVERITY[m.source],
                 "jsonPayload": {**base, "message": text} if text else base}
                for m, text in zip(batch, texts)]

    def send(self, batch: Sequence[Message]) -> int | None:
        if not batch:
            return None
        api = self._api()
        entries = self.entries(batch)
        try:
            # logName and resource once per request, as Docker's library sends them
            api.write_entries(entries, logger_name=self._log_name, resource=self._resource,
                              partial_success=False)
        except Exception as err:
            mapped = send_error(err, self.where)
            if mapped is None:
                raise
            raise mapped from None
        return None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
