"""Bad input gets Docker's 400 (or, for a fault of the host, a JSON 500), never aiohttp's
plain-text page: wrong JSON types in bodies and query values, values a start could not use,
hostile archives, runaway templates, a full disk.

One real daemon (``process`` runtime) serves the whole module: every request here is
refused, so nothing a test does is seen by the next one (each checks nothing was created).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile

import pytest

from conftest import EMPTY_IMAGE as IMAGE
from conftest import api_daemon, import_empty_image, start_daemon, stop_daemon
from runtime.cli.client import Client

pytest.importorskip("aiohttp")

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def daemon():
    with api_daemon({"default-runtime": "process"}) as d:
        yield d


@pytest.fixture
def api(daemon) -> Client:
    return Client(daemon.host, autostart=False)


def send(api: Client, method: str, path: str, body: bytes | None = None,
         query: dict | None = None, content_type: str = "application/json"):
    """``(status, headers, parsed body)`` of a raw request."""
    resp = api._send(method, path, query, body, {"Content-Type": content_type} if body else None,
                     30)
    data = resp.read()
    return resp.status, resp.headers, json.loads(data) if data.strip() else None


def refused(api: Client, method: str, path: str, body: bytes | None = None,
            query: dict | None = None, content_type: str = "application/json"):
    """The status and message of a refused request, checking it is Docker-shaped JSON."""
    status, headers, data = send(api, method, path, body, query, content_type)
    assert headers["Content-Type"] == "application/json", headers
    assert set(data) == {"message"}, data
    return status, data["message"]


def no_containers(api: Client) -> bool:
    return api.json("GET", "/containers/json", {"all": 1}) == []


# -- wrong JSON types: Go's words, 400 -------------------------------------------------------

CREATE_TYPE_ERRORS = [
    ({"Image": 5},
     "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Image of type "
     "string"),
    ({"HostConfig": "x"},
     "json: cannot unmarshal string into Go struct field ContainerConfigWrapper.HostConfig of "
     "type container.HostConfig"),
    ({"HostConfig": {"LogConfig": "x"}},
     "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.LogConfig of "
     "type container.LogConfig"),
    ({"HostConfig": {"LogConfig": {"Type": "json-file", "Config": {"max-file": "2",
                                                                   "max-size": 5}}}},
     "json: cannot unmarshal number into Go struct field LogConfig.HostConfig.LogConfig.Config "
     "of type string"),
    ({"HostConfig": {"RestartPolicy": "always"}},
     "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.RestartPolicy of "
     "type container.RestartPolicy"),
    ({"WorkingDir": 5},
     "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.WorkingDir of "
     "type string"),
    ({"Hostname": 5},
     "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Hostname of "
     "type string"),
    ({"HostConfig": {"Memory": 1 << 64}},
     "json: cannot unmarshal number 18446744073709551616 into Go struct field "
     "HostConfig.HostConfig.Memory of type int64"),
    ({"Cmd": 5},  # strslice's own UnmarshalJSON: reported "of type string", whole
     "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Cmd of type "
     "string"),
    ({"Env": ["A=1", 2]},
     "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Env of type "
     "string"),
    ({"Labels": {"a": True}},
     "json: cannot unmarshal bool into Go struct field ContainerConfigWrapper.Labels of type "
     "string"),
    ({"HostConfig": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": "3"}}},
     "json: cannot unmarshal string into Go struct field "
     "RestartPolicy.HostConfig.RestartPolicy.MaximumRetryCount of type int"),
    ({"HostConfig": {"Binds": "/a:/b"}},
     "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.Binds of type "
     "[]string"),
]


@pytest.mark.parametrize("extra, message", CREATE_TYPE_ERRORS,
                         ids=[json.dumps(e)[:40] for e, _ in CREATE_TYPE_ERRORS])
def test_wrong_json_types_in_a_create_body_are_400_with_gos_text(api, extra, message):
    body = json.dumps({"Image": IMAGE, "Cmd": ["true"], **extra}).encode()
    assert refused(api, "POST", "/containers/create", body) == (400, message)
    assert no_containers(api)


def test_create_body_that_is_not_an_object_or_not_json_or_empty_is_400(api):
    assert refused(api, "POST", "/containers/create", b"[1]") == (
        400, "json: cannot unmarshal array into Go value of type "
             "runconfig.ContainerConfigWrapper")
    status, message = refused(api, "POST", "/containers/create", b'{"Image": ')
    assert status == 400 and message.startswith("invalid JSON: ")
    assert refused(api, "POST", "/containers/create") == (
        400, "invalid JSON: got EOF while reading request body")
    assert no_containers(api)


def test_unknown_fields_and_nulls_are_ignored_as_go_does(api):
    body = {"Image": IMAGE, "Cmd": ["true"], "NoSuchField": {"x": [1]}, "Env": None,
            "HostConfig": {"LogConfig": None, "Memory": None, "Future": 1}}
    status, _, data = send(api, "POST", "/containers/create", json.dumps(body).encode())
    assert status == 201
    api.request("DELETE", f"/containers/{data['Id']}").read()


@pytest.mark.parametrize("filters, message", [
    ("[1]", "json: cannot unmarshal array into Go value of type map[string]map[string]bool"),
    ('{"name": 5}', "json: cannot unmarshal number into Go value of type map[string]bool"),
])
def test_filters_of_the_wrong_json_type_are_400(api, filters, message):
    assert refused(api, "GET", "/containers/json", query={"filters": filters}) == (400, message)


def test_filters_in_the_legacy_list_form_still_work(api):
    assert api.json("GET", "/containers/json", {"all": 1, "filters": '{"name": ["x"]}'}) == []


# -- values a start could not use: refused at create ----------------------------------------


@pytest.mark.parametrize("extra, message", [
    ({"WorkingDir": "relative/dir"},
     "the working directory 'relative/dir' is invalid, it needs to be an absolute path"),
    ({"Hostname": "bad\nname"}, "invalid hostname format: bad\nname"),
    ({"Hostname": "h" * 65}, "invalid hostname format: " + "h" * 65),
    ({"Env": ["A=1\x002"]}, "invalid Env 'A=1\\x002': it contains a NUL byte"),
    ({"Cmd": ["echo", "a\x00b"]}, "invalid Cmd 'a\\x00b': it contains a NUL byte"),
])
def test_values_a_start_would_fail_on_are_refused_at_create(api, extra, message):
    body = json.dumps({"Image": IMAGE, "Cmd": ["true"], **extra}).encode()
    assert refused(api, "POST", "/containers/create", body) == (400, message)
    assert no_containers(api)


def _save_archive(layer: bytes, config: dict, tag: str) -> bytes:
    """A ``docker save`` archive of one layer."""
    config = {"rootfs": {"type": "layers",
                         "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}, **config}
    files = {"layer.tar": layer, "config.json": json.dumps(config).encode(),
             "manifest.json": json.dumps([{"Config": "config.json", "Layers": ["layer.tar"],
                                           "RepoTags": [tag]}]).encode()}
    return _tar([(name, "file", data) for name, data in files.items()])


def _tar(members: list[tuple[str, str, bytes | str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_an_image_whose_config_cmd_is_a_string_is_refused_at_create(api):
    archive = _save_archive(_tar([("tmp/", "file", b"")]), {"config": {"Cmd": "sh"}},
                            "stringcmd:latest")
    status, _, _ = send(api, "POST", "/images/load", archive, content_type="application/x-tar")
    assert status == 200
    body = json.dumps({"Image": "stringcmd"}).encode()
    assert refused(api, "POST", "/containers/create", body) == (
        400, "the image stringcmd has an unusable config: json: cannot unmarshal string into "
             "Go struct field Config.Cmd of type []string")
    assert no_containers(api)


# -- hostile archives ---------------------------------------------------------------------------

HOSTILE_LAYERS = {
    "a 256-byte name": ([("a" * 256, "file", b"x")],
                        "invalid tar member " + "a" * 200 + "...: file name too long"),
    "a symlink loop": ([("a", "symlink", "b"), ("b", "symlink", "a"), ("a/x", "file", b"x")],
                       "invalid tar member a/x: too many levels of symbolic links"),
    "a link to itself": ([("l", "symlink", "l/l"), ("l/x", "file", b"x")],
                         "invalid tar member l/x: too many levels of symbolic links"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_LAYERS))
def test_import_and_load_of_archives_the_filesystem_cannot_hold_are_400(api, daemon, case):
    members, message = HOSTILE_LAYERS[case]
    layer = _tar(members)
    assert refused(api, "POST", "/images/create", layer, {"fromSrc": "-", "repo": "hostile"},
                   "application/x-tar") == (400, message)
    assert refused(api, "POST", "/images/load",
                   _save_archive(layer, {"config": {"Cmd": ["true"]}}, "hostile:latest"),
                   content_type="application/x-tar") == (400, message)
    tags = [t for im in api.json("GET", "/images/json") for t in im["RepoTags"] or []]
    assert not [t for t in tags if t.startswith("hostile")]
    assert os.listdir(os.path.join(daemon.root, "images", "tmp")) == []


# -- runaway tag templates ----------------------------------------------------------------------


@pytest.mark.parametrize("tag, message", [
    ("{{" + "(" * 2000 + ".ID" + ")" * 2000 + "}}",
     "failed to initialize logging driver: template: log-tag:1: max expression depth exceeded"),
    ("{{if 1}}" * 2000 + "x" + "{{end}}" * 2000,
     "failed to initialize logging driver: template: log-tag:1: max expression depth exceeded"),
    ("{{range $i, $e := $.ContainerArgs}}" * 60 + "{{$i}}" + "{{end}}" * 60,
     "failed to initialize logging driver: template: log-tag: execution stopped after 100000 "
     "steps: a tag must render in bounded time"),
])
def test_deeply_nested_or_exponential_tag_templates_are_400(api, tag, message):
    body = json.dumps({"Image": IMAGE, "Cmd": ["echo", "a", "b"],
                       "HostConfig": {"LogConfig": {"Type": "json-file",
                                                    "Config": {"tag": tag}}}}).encode()
    assert refused(api, "POST", "/containers/create", body) == (400, message)
    assert no_containers(api)


# -- the answer's shape ------------------------------------------------------------------------


def test_every_answer_has_dockers_headers_and_exact_json_content_type(api):
    status, headers, data = send(api, "GET", "/containers/nosuch/json")
    assert (status, data) == (404, {"message": "No such container: nosuch"})
    assert headers["Content-Type"] == "application/json"
    assert (headers["Api-Version"], headers["Docker-Experimental"], headers["Ostype"]) == (
        "1.41", "false", "linux")
    status, headers, _ = send(api, "GET", "/version")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert refused(api, "GET", "/no/such/route") == (404, "page not found")
    status, message = refused(api, "POST", "/containers/create", b"{" + b" " * (2 << 20) + b"}")
    assert status == 413


# -- a full disk: a fault of the host, a JSON 500, logged once ---------------------------------


@pytest.fixture
def full_disk_daemon():
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    base = tempfile.mkdtemp(prefix="lp-")
    root = os.path.join(base, "root")
    os.mkdir(root)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", root]).returncode:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip("cannot mount a tmpfs here")
    d = None
    try:
        d = start_daemon(base, root, {"default-runtime": "process"})
        yield d
    finally:
        if d is not None:
            stop_daemon(d)
        subprocess.run(["umount", "-l", root])
        shutil.rmtree(base, ignore_errors=True)


def test_create_on_a_full_disk_is_a_json_500_logged_once(full_disk_daemon):
    d = full_disk_daemon
    api = Client(d.host, autostart=False)
    import_empty_image(d.host)
    filler = os.path.join(d.root, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:  # fill the tmpfs to its last byte
        for size in (1 << 16, 4096, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
    body = json.dumps({"Image": IMAGE, "Cmd": ["true"]}).encode()
    status, message = refused(api, "POST", "/containers/create", body)
    assert status == 500
    assert message.endswith("no space left on device"), message
    with open(d.log) as f:
        log = f.read()
    assert log.count("/containers/create failed") == 1, log
    os.unlink(filler)  # space again: the daemon works on
    status, _, data = send(api, "POST", "/containers/create", body)
    assert status == 201
