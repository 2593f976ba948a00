"""The gcplogs driver through google-cloud-logging, pointed at ``FakeCloudLogging``.

Google ships no emulator for Cloud Logging, so the library is pointed (``api_endpoint``, and
anonymous credentials unless a test gives it a credentials file) at a local HTTP server that
implements ``POST /v2/entries:write`` and checks every body against the API's schema,
answering 400 for unknown fields as the real API does. Expected payloads follow Docker
20.10.24's ``daemon/logger/gcplogs`` (shared/reference/docker-logging.md §4.8); severity by
stream is logpipe's deliberate difference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

import drivers.gcplogs as gcplogs
from drivers.gcplogs import NO_CREDENTIALS, NO_PROJECT, PING_FAILED, GCPLogsDriver
from logpipe.driver import LogInfo
from logpipe.errors import LogOptError, LogpipeError, PermanentError, RetryableError
from logpipe.message import Message
from receivers.gcp import MAX_REQUEST_BYTES, FakeCloudLogging, FakeGCEMetadata

pytestmark = pytest.mark.integration

T0 = 1_715_000_000_123_456_789  # 2024-05-06T12:53:20.123456789Z
CID = "5f3c" * 16
IMAGE_ID = "sha256:" + "ab" * 32
LOG_NAME = "projects/test-project/logs/gcplogs-docker-driver"
CONTAINER = {"name": "/web1", "id": CID, "imageName": "registry.example/app:1.2",
             "imageId": IMAGE_ID, "created": "2024-05-06T07:08:09.0123456Z"}


@pytest.fixture
def gcp_env(monkeypatch, tmp_path):
    """No credentials, default project or metadata server leak in from the machine."""
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT",
                "GCE_METADATA_HOST", "GCE_METADATA_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setattr(gcplogs, "_DMI_PRODUCT_NAME", str(tmp_path / "product_name"))
    return tmp_path


@pytest.fixture
def gcp(gcp_env):
    fake = FakeCloudLogging()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def drivers():
    """Build (validated) drivers that are closed after the test, even if it fails."""
    made: list[GCPLogsDriver] = []

    def make(info: LogInfo) -> GCPLogsDriver:
        GCPLogsDriver.validate(info.config, info)
        driver = GCPLogsDriver(info)
        made.append(driver)
        return driver

    yield make
    for d in made:
        d.close()


def container(endpoint: str | None, **opts: str) -> LogInfo:
    """A container's info; ``gcp_meta_zone`` stands for ``gcp-meta-zone``. The project is
    ``test-project`` unless ``gcp_project=None`` leaves it out."""
    config = {"gcp-project": "test-project"}
    if endpoint is not None:
        config["gcp-endpoint"] = endpoint
    for key, value in opts.items():
        if value is None:
            config.pop(key.replace("_", "-"), None)
        else:
            config[key.replace("_", "-")] = value
    return LogInfo(CID, "/nonexistent", config, container_name="/web1", image_id=IMAGE_ID,
                   image_name="registry.example/app:1.2", entrypoint="/bin/app",
                   args=("--port", "80"), created="2024-05-06T07:08:09.012345600Z",
                   env=("REGION=eu-west", "SECRET=hunter2", "NOVALUE"),
                   labels={"com.example.team": "core", "tier": "web"})


def out(line: bytes, ts: int = T0, source: str = "stdout") -> Message:
    return Message(line, source, ts)


# -- the payload -------------------------------------------------------------------------


def test_entry_is_dockers_payload_with_label_and_env_extras(gcp, drivers):
    d = drivers(container(gcp.url, labels="com.example.team,missing", env="REGION"))
    d.send([out(b"hello world")])
    [entry] = gcp.wait_for(1)
    assert entry == {
        "logName": LOG_NAME,
        "resource": {"type": "global", "labels": {"project_id": "test-project"}},
        "timestamp": "2024-05-06T12:53:20.123456789Z",
        "severity": "INFO",
        "jsonPayload": {
            "container": {**CONTAINER,
                          "metadata": {"com.example.team": "core", "REGION": "eu-west"}},
            "message": "hello world",
        },
    }
    [(headers, body)] = gcp.requests
    # logName and resource travel once per request, as Docker's library sends them
    assert body["logName"] == LOG_NAME and "logName" not in body["entries"][0]
    assert "authorization" not in headers  # anonymous: an endpoint override, no credentials


def test_without_extras_the_container_has_no_metadata(gcp, drivers):
    drivers(container(gcp.url)).send([out(b"x")])
    [entry] = gcp.wait_for(1)
    assert entry["jsonPayload"] == {"container": CONTAINER, "message": "x"}


@pytest.mark.parametrize("value, command", [
    ("true", "/bin/app --port 80"),
    ("false", None),
    ("1", None),      # Docker compares with "true", not strconv.ParseBool
    ("TRUE", None),
])
def test_gcp_log_cmd_adds_the_command_only_when_exactly_true(gcp, drivers, value, command):
    drivers(container(gcp.url, gcp_log_cmd=value)).send([out(b"x")])
    [entry] = gcp.wait_for(1)
    assert entry["jsonPayload"]["container"].get("command") == command


def test_meta_options_make_a_gce_instance_resource_and_an_instance_object(gcp, drivers):
    d = drivers(container(gcp.url, gcp_meta_zone="europe-west1-b", gcp_meta_name="vm-7",
                          gcp_meta_id="4242"))
    d.send([out(b"x")])
    [entry] = gcp.wait_for(1)
    assert entry["resource"] == {"type": "gce_instance",
                                 "labels": {"instance_id": "4242", "zone": "europe-west1-b"}}
    payload = entry["jsonPayload"]
    assert list(payload) == ["instance", "container", "message"]
    assert payload["instance"] == {"zone": "europe-west1-b", "name": "vm-7", "id": "4242"}


def test_one_meta_option_is_enough_and_empty_instance_fields_are_left_out(gcp, drivers):
    drivers(container(gcp.url, gcp_meta_zone="us-east1-c")).send([out(b"x")])
    [entry] = gcp.wait_for(1)
    # Docker sets both resource labels, even empty; the payload omits empty fields
    assert entry["resource"] == {"type": "gce_instance",
                                 "labels": {"instance_id": "", "zone": "us-east1-c"}}
    assert entry["jsonPayload"]["instance"] == {"zone": "us-east1-c"}


def test_severity_is_info_for_stdout_and_error_for_stderr(gcp, drivers):
    drivers(container(gcp.url)).send([out(b"a"), out(b"b", source="stderr"), out(b"c")])
    assert [(e["jsonPayload"]["message"], e["severity"]) for e in gcp.wait_for(3)] == [
        ("a", "INFO"), ("b", "ERROR"), ("c", "INFO")]


def test_timestamps_are_the_log_times_with_nanoseconds(gcp, drivers):
    times = [T0, 1_715_000_000_000_000_000, 1_715_000_061_000_000_001, T0]
    drivers(container(gcp.url)).send([out(b"%d" % i, ts) for i, ts in enumerate(times)])
    assert [e["timestamp"] for e in gcp.wait_for(4)] == [
        "2024-05-06T12:53:20.123456789Z", "2024-05-06T12:53:20.000000000Z",
        "2024-05-06T12:54:21.000000001Z", "2024-05-06T12:53:20.123456789Z"]


def test_invalid_utf8_becomes_one_replacement_character_per_byte(gcp, drivers):
    lines = [b"ok \xe2\x82 \xff\xfe end \xc3\xa9", b"\x00\t\"<&>\\ \xe2\x80\xa8", b"\xed\xa0\x80"]
    drivers(container(gcp.url)).send([out(line) for line in lines])
    assert [e["jsonPayload"]["message"] for e in gcp.wait_for(3)] == [
        "ok \ufffd\ufffd \ufffd\ufffd end \u00e9", "\x00\t\"<&>\\ \u2028",
        "\ufffd\ufffd\ufffd"]  # an encoded surrogate is three invalid bytes, as in Go


def test_empty_line_is_an_entry_without_message_as_dockers_omitempty(gcp, drivers):
    drivers(container(gcp.url)).send([out(b""), out(b" ")])
    empty, space = gcp.wait_for(2)
    assert empty["jsonPayload"] == {"container": CONTAINER}
    assert space["jsonPayload"]["message"] == " "


def test_a_line_holding_a_newline_stays_one_entry(gcp, drivers):
    drivers(container(gcp.url)).send([out(b"a\nb"), out(b"c\xff")])
    assert [e["jsonPayload"]["message"] for e in gcp.wait_for(2)] == ["a\nb", "c\ufffd"]


def test_a_batch_is_one_entries_write_request(gcp, drivers):
    d = drivers(container(gcp.url))
    batch = [out(b"line %d" % i, T0 + i, "stderr" if i % 3 else "stdout") for i in range(1000)]
    d.send(batch)
    entries = gcp.wait_for(1000)
    assert len(gcp.requests) == 1
    assert [e["jsonPayload"]["message"] for e in entries] == [f"line {i}" for i in range(1000)]
    assert d.limits.max_count == 1000


def test_worst_case_batch_at_the_limits_fits_the_10_mib_request_limit(gcp, drivers):
    """Control bytes cost six bytes of JSON each (``\\u0001``): the byte limit must allow
    for that, or the API refuses the batch."""
    d = drivers(container(gcp.url, labels="com.example.team", env="REGION"))
    limits = d.limits
    line = b"\x01" * 16384  # Docker's longest line piece
    n = limits.max_bytes // (len(line) + limits.overhead)
    d.send([out(line, T0 + i, "stderr") for i in range(n)])
    assert len(gcp.wait_for(n)) == n
    size = int(gcp.requests[0][0]["content-length"])
    assert 0.9 * MAX_REQUEST_BYTES < size <= MAX_REQUEST_BYTES


# -- errors and retries -------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 429])
def test_throttling_and_server_errors_are_retryable_and_the_batch_arrives_once(
        gcp, drivers, status):
    d = drivers(container(gcp.url))
    batch = [out(b"a"), out(b"b")]
    gcp.fail(status)
    for _ in range(2):
        with pytest.raises(RetryableError, match=f"answered {status}"):
            d.send(batch)
    gcp.recover()
    d.send(batch)
    assert [e["jsonPayload"]["message"] for e in gcp.wait_for(2)] == ["a", "b"]
    assert len(gcp.log()) == 2


@pytest.mark.parametrize("status", [400, 403, 404])
def test_other_client_errors_are_permanent_and_say_what_the_api_said(gcp, drivers, status):
    d = drivers(container(gcp.url))
    gcp.fail(status, times=1, message="Resource label zone is invalid")
    with pytest.raises(PermanentError, match=f"answered {status}: .*Resource label zone is"):
        d.send([out(b"x")])
    d.send([out(b"next")])  # the driver goes on with the next batch
    assert gcp.wait_for(1)[0]["jsonPayload"]["message"] == "next"


def test_receiver_down_is_retryable_and_delivery_resumes_on_the_same_port(gcp, drivers):
    d = drivers(container(gcp.url))
    d.send([out(b"before")])
    gcp.stop()
    with pytest.raises(RetryableError, match="cannot reach Cloud Logging at http://127.0.0.1"):
        d.send([out(b"during")])
    gcp.start()
    d.send([out(b"during")])
    assert [e["jsonPayload"]["message"] for e in gcp.wait_for(2)] == ["before", "during"]


def test_the_constructor_does_no_network_io(gcp, drivers):
    gcp.stop()
    d = drivers(container(gcp.url))  # a receiver that is down does not stop construction
    with pytest.raises(RetryableError):
        d.send([out(b"x")])


# -- start: Docker's Ping ------------------------------------------------------------------


def test_probe_pings_like_docker(gcp):
    GCPLogsDriver.probe(container(gcp.url))
    assert gcp.log("ping") == [{
        "logName": "projects/test-project/logs/ping",
        "resource": {"type": "global", "labels": {"project_id": "test-project"}},
        "textPayload": "ping", "timestamp": "1970-01-01T00:00:00Z", "insertId": "ping"}]
    assert gcp.log() == []  # the container's log is untouched


def test_probe_refuses_to_start_when_the_endpoint_is_down(gcp):
    gcp.stop()
    with pytest.raises(LogpipeError) as err:
        GCPLogsDriver.probe(container(gcp.url))
    assert str(err.value).startswith(PING_FAILED)


def test_probe_without_credentials_fails_with_dockers_text_and_without_waiting(gcp_env):
    started = time.monotonic()
    with pytest.raises(LogpipeError) as err:
        GCPLogsDriver.probe(container(None))
    assert str(err.value) == NO_CREDENTIALS
    # no metadata-server probing off GCE (google-auth's own takes seconds of back-off)
    assert time.monotonic() - started < 2


# -- credentials and project from the environment ----------------------------------------


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    """A service-account private key (cryptography is a dependency of google-auth)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def service_account_file(path, pem: str, token_uri: str, project: str | None) -> str:
    """A service-account key whose token endpoint is the fake (google-auth honours a key's
    ``token_uri``; it overrides the one of ``authorized_user`` files)."""
    info = {"type": "service_account", "private_key_id": "k1", "private_key": pem,
            "client_email": "logger@example.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": token_uri}
    if project:
        info["project_id"] = project
    path.write_text(json.dumps(info))
    return str(path)


def test_service_account_key_gives_project_and_bearer_token(gcp, gcp_env, drivers, rsa_pem,
                                                             monkeypatch):
    key = service_account_file(gcp_env / "key.json", rsa_pem, gcp.url + "/token", "sa-project")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", key)
    gcp.require_token = True
    d = drivers(container(gcp.url, gcp_project=None))  # validate finds the key's project
    d.send([out(b"x")])
    [entry] = gcp.wait_for(1)
    assert entry["logName"] == "projects/sa-project/logs/gcplogs-docker-driver"
    assert gcp.requests[0][0]["authorization"] == f"Bearer {gcp.token}"
    assert gcp.token_requests == 1
    gcp.fail(403, times=1, message="Permission 'logging.logEntries.create' denied")
    with pytest.raises(PermanentError) as err:
        d.send([out(b"y")])
    assert gcp.token not in str(err.value) and "PRIVATE KEY" not in str(err.value)


def test_a_broken_credentials_file_fails_the_start_naming_the_file(gcp, gcp_env, monkeypatch):
    (gcp_env / "broken.json").write_text("{not json")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(gcp_env / "broken.json"))
    with pytest.raises(LogpipeError, match="^google: .*broken.json"):
        GCPLogsDriver.probe(container(gcp.url))


def test_project_from_google_cloud_project_environment(gcp, drivers, monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    drivers(container(gcp.url, gcp_project=None)).send([out(b"x")])
    assert gcp.wait_for(1)[0]["logName"] == "projects/env-project/logs/gcplogs-docker-driver"


def test_on_gce_instance_and_project_come_from_the_metadata_server(gcp, gcp_env, drivers,
                                                                   rsa_pem, monkeypatch):
    values = {"project/project-id": "gce-project",
              "instance/zone": "projects/123456/zones/europe-west1-b",
              "instance/name": "vm-1", "instance/id": "987654321"}
    with FakeGCEMetadata(values) as metadata:
        monkeypatch.setenv("GCE_METADATA_HOST", metadata.address)
        key = service_account_file(gcp_env / "key.json", rsa_pem, gcp.url + "/token", None)
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", key)
        # on GCE, Docker takes the instance from the metadata server, not gcp-meta-*
        d = drivers(container(gcp.url, gcp_project=None, gcp_meta_zone="ignored"))
        d.send([out(b"x")])
    [entry] = gcp.wait_for(1)
    assert entry["logName"] == "projects/gce-project/logs/gcplogs-docker-driver"
    assert entry["resource"] == {"type": "gce_instance", "labels": {
        "instance_id": "987654321", "zone": "europe-west1-b"}}
    assert entry["jsonPayload"]["instance"] == {"zone": "europe-west1-b", "name": "vm-1",
                                                "id": "987654321"}
    assert gcp.requests[0][0]["authorization"] == f"Bearer {gcp.token}"


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["tag", "max-size", "gcp-projects", "a\tb"])
def test_unknown_options_are_refused_with_dockers_text(gcp_env, key):
    with pytest.raises(LogOptError) as err:
        GCPLogsDriver.validate({"gcp-project": "p", key: "x"})
    quoted = '"a\\tb"' if key == "a\tb" else f'"{key}"'  # Go's %q
    assert str(err.value) == f"{quoted} is not a valid option for the gcplogs driver"


def test_every_docker_option_is_accepted(gcp_env):
    GCPLogsDriver.validate({
        "gcp-project": "p", "gcp-log-cmd": "true", "gcp-meta-zone": "z", "gcp-meta-name": "n",
        "gcp-meta-id": "1", "labels": "a", "labels-regex": "^a", "env": "E", "env-regex": "E$"})


def test_no_project_anywhere_is_refused_at_create_with_dockers_text(gcp_env):
    started = time.monotonic()
    with pytest.raises(LogOptError) as err:
        GCPLogsDriver.validate({"gcp-meta-zone": "z"}, container(None, gcp_project=None))
    assert str(err.value) == NO_PROJECT
    assert time.monotonic() - started < 2  # off GCE nothing waits on a metadata server


def test_an_empty_gcp_project_is_not_replaced_by_a_default(gcp_env, monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    info = container(None, gcp_project="")
    with pytest.raises(LogOptError, match="No project was specified"):
        GCPLogsDriver.validate(info.config, info)


def test_daemon_default_options_may_leave_the_project_to_each_container(gcp_env):
    # validated at daemon start without a container: Docker only checks the keys there
    GCPLogsDriver.validate({"gcp-log-cmd": "true"})
    with pytest.raises(LogOptError, match="is not a valid option"):
        GCPLogsDriver.validate({"tag": "x"})


def test_a_bad_regex_is_refused_at_create_in_gos_words(gcp_env):
    with pytest.raises(LogOptError) as err:
        GCPLogsDriver.validate({"gcp-project": "p", "labels-regex": "["})
    assert str(err.value) == "error parsing regexp: missing closing ]: `[`"


@pytest.mark.parametrize("endpoint", ["localhost:8080", "ftp://h", "http://", "https://h/?q=1",
                                      "http://h:port"])
def test_a_bad_endpoint_is_refused(gcp_env, endpoint):
    with pytest.raises(LogOptError) as err:
        GCPLogsDriver.validate({"gcp-project": "p", "gcp-endpoint": endpoint})
    assert str(err.value).startswith(f'invalid gcp-endpoint "{endpoint}": expected the base URL')


def test_a_missing_client_library_is_refused_at_create_and_at_start(gcp, monkeypatch):
    from logpipe.errors import MissingLibrary
    from logpipe.registry import validate_log_config

    gone = gcplogs.LIBRARY._replace(module="google.cloud.no_such_library")
    monkeypatch.setattr(gcplogs, "LIBRARY", gone)
    monkeypatch.setattr(GCPLogsDriver, "libraries", (gone,))
    text = ("gcplogs log driver needs google-cloud-logging, which is not installed: "
            "pip install google-cloud-logging")
    with pytest.raises(MissingLibrary, match=text) as err:
        validate_log_config("gcplogs", {"gcp-project": "p"})
    assert err.value.status == 400
    with pytest.raises(MissingLibrary, match=text):
        GCPLogsDriver.probe(container(gcp.url))


def test_the_module_does_not_import_the_client_library():
    code = ("import sys, drivers.gcplogs; "
            "sys.exit('google.cloud.logging' in sys.modules or 'google.auth' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_the_registry_finds_the_driver():
    from logpipe.registry import get_driver

    assert get_driver("gcplogs") is GCPLogsDriver


# -- the fake checks bodies as the API does -----------------------------------------------

_GOOD = {"logName": LOG_NAME, "resource": {"type": "global", "labels": {}},
         "entries": [{"timestamp": "2024-05-06T12:53:20.5Z", "severity": "INFO",
                      "jsonPayload": {"message": "m"}}]}


def _post(url: str, body: dict) -> tuple[int, str]:
    req = urllib.request.Request(url + "/v2/entries:write", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())["error"]["message"]


@pytest.mark.parametrize("change, message", [
    ({"entries": [{"jsonPayload": {}, "foo": 1}]},
     "Unknown name \"foo\" at 'entries[0]': Cannot find field."),
    ({"bogus": True}, 'Unknown name "bogus": Cannot find field.'),
    ({"entries": [{"severity": "LOUD"}]}, "entries[0].severity"),
    ({"entries": [{"timestamp": "2024-05-06 12:53:20"}]}, "entries[0].timestamp"),
    ({"entries": [{"labels": {"n": 1}}]}, "entries[0].labels"),
    ({"resource": {"type": "global", "labels": {"zone": "z"}}}, "Unrecognized resource label"),
    ({"logName": "projects/p/gcplogs"}, "Invalid log name"),
    ({"entries": [{"textPayload": "a", "jsonPayload": {}}]}, "more than one payload"),
    ({"entries": [{"textPayload": "x" * (MAX_REQUEST_BYTES + 1)}]}, "exceeds the limit"),
])
def test_the_fake_refuses_what_the_api_refuses(gcp, change, message):
    assert _post(gcp.url, _GOOD)[0] == 200
    status, text = _post(gcp.url, {**_GOOD, **change})
    assert status == 400 and message in text
    assert len(gcp.log(None)) == 1


def test_the_fake_can_only_count_for_benchmarks(gcp_env, drivers):
    with FakeCloudLogging(keep=False, check_schema=False) as fake:
        drivers(container(fake.url)).send([out(b"%d" % i) for i in range(50)])
        assert fake.wait_count(50) == 50
        assert fake.entries == [] and fake.requests == []


def test_the_fake_accepts_proto_field_names_as_the_api_does(gcp):
    body = {"log_name": LOG_NAME, "resource": {"type": "global"}, "dry_run": False,
            "entries": [{"text_payload": "t", "insert_id": "i"}]}
    assert _post(gcp.url, body)[0] == 200
    assert gcp.log()[0]["textPayload"] == "t"
