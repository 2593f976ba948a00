"""The runtime's container model without a daemon: create's spec, the restart policy, the
API's JSON views, and the one mapping of errors to HTTP statuses."""

from __future__ import annotations

import importlib
import pathlib
import pkgutil

import pytest

from logpipe import errors as core_errors
from logpipe.errors import InvalidParameter
from logpipe.registry import log_plan
from runtime import errors as runtime_errors
from runtime import images, schema
from runtime.containers import Container
from runtime.create import container_name, container_spec, requested_image
from runtime.restart import (BACKOFF_MAX, BACKOFF_START, next_backoff, restart_policy,
                             should_restart)
from runtime.config import DaemonConfig
from runtime.state import EXITED, State
from runtime.views import container_inspect, container_summary, image_inspect, image_summary

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_http_statuses_are_set_only_by_the_error_categories():
    """A ``status`` set on an error class outside ``logpipe/errors.py`` would be a second
    mapping of errors to statuses."""
    offenders = []
    for package in ("logpipe", "drivers", "runtime"):
        for info in pkgutil.walk_packages([str(ROOT / package)], prefix=package + "."):
            if info.name.endswith("__main__"):
                continue
            try:
                module = importlib.import_module(info.name)
            except ImportError:  # an optional client library: its driver defines no error class
                continue
            for obj in vars(module).values():
                if isinstance(obj, type) and issubclass(obj, core_errors.LogpipeError) \
                        and obj.__module__ == info.name != "logpipe.errors" \
                        and "status" in vars(obj):
                    offenders.append(f"{info.name}.{obj.__name__}")
    assert offenders == []


@pytest.mark.parametrize("cls, status", [
    (runtime_errors.NoSuchContainer, 404), (runtime_errors.NameConflict, 409),
    (runtime_errors.ContainerConflict, 409), (runtime_errors.StartFailed, 500),
    (runtime_errors.StartInvalidConfig, 400), (core_errors.NotModified, 304),
    (images.NoSuchImage, 404), (images.ImageConflict, 409), (core_errors.LogWriterBusy, 409)])
def test_each_error_keeps_dockers_status_through_its_category(cls, status):
    assert cls.status == status


def test_start_invalid_config_is_still_a_failed_start():
    assert issubclass(runtime_errors.StartInvalidConfig, runtime_errors.StartFailed)


@pytest.mark.parametrize("policy, max_, code, count, stopped, expected", [
    ("no", 0, 1, 0, False, False), ("always", 0, 0, 9, False, True),
    ("unless-stopped", 0, 0, 0, True, False), ("on-failure", 0, 0, 0, False, False),
    ("on-failure", 0, 3, 50, False, True), ("on-failure", 2, 3, 2, False, False),
    ("on-failure", 2, 3, 1, False, True)])
def test_restart_policy_decides_like_dockers_restartmanager(policy, max_, code, count, stopped,
                                                            expected):
    assert should_restart(policy, max_, code, count, stopped) is expected


def test_restart_backoff_doubles_to_a_minute_and_resets_after_a_long_run():
    assert next_backoff(0.0, 0.5) == BACKOFF_START
    assert next_backoff(0.4, 0.5) == 0.8
    assert next_backoff(50.0, 0.5) == BACKOFF_MAX
    assert next_backoff(50.0, 11.0) == BACKOFF_START


def test_restart_policy_of_a_request_is_checked_with_dockers_words():
    assert restart_policy(schema.RestartPolicy(Name="on-failure", MaximumRetryCount=3)) == \
        ("on-failure", 3)
    with pytest.raises(InvalidParameter, match="invalid restart policy 'sometimes'"):
        restart_policy(schema.RestartPolicy(Name="sometimes"))
    with pytest.raises(InvalidParameter, match="cannot be used with restart policy 'always'"):
        restart_policy(schema.RestartPolicy(Name="always", MaximumRetryCount=1))


def _config(tmp_path) -> DaemonConfig:
    return DaemonConfig(data_root=str(tmp_path), host="", default_runtime="process")


def _image(tmp_path) -> images.Image:
    return images.Image(id="sha256:" + "1" * 64, repo_tags=("busybox:latest",),
                        created="2024-01-02T03:04:05Z", size=1234,
                        config={"Cmd": ["sh"], "Env": ["PATH=/bin"]}, rootfs=str(tmp_path))


def test_create_builds_a_spec_from_the_request_alone(tmp_path):
    body = {"Image": "busybox", "Cmd": ["echo", "hi"], "Env": ["A=1"],
            "HostConfig": {"Runtime": "process",
                           "LogConfig": {"Type": "loki",
                                         "Config": {"loki-url": "http://u:pw@127.0.0.1:1/x"}}}}
    req = schema.container_create(body)
    assert container_name("/web") == "web" and requested_image(req) == "busybox"
    spec, warnings = container_spec(req, "web", "busybox", _image(tmp_path), "c" * 64,
                                    str(tmp_path / "c"), _config(tmp_path))
    assert spec.cmd == ("echo", "hi") and spec.env == ("PATH=/bin", "A=1")
    assert spec.log_plan == log_plan("loki")
    assert warnings and warnings[0].startswith("runtime process:")
    assert not (tmp_path / "c").exists()  # create's checks write nothing
    with pytest.raises(InvalidParameter, match=r"Invalid container name \(a b\)"):
        container_name("a b")
    with pytest.raises(InvalidParameter, match="No image specified"):
        requested_image(schema.container_create({"Cmd": ["true"]}))


def test_inspect_and_ps_views_of_a_stopped_container(tmp_path):
    req = schema.container_create(
        {"Image": "busybox", "HostConfig": {"Runtime": "process", "LogConfig": {
            "Type": "loki", "Config": {"loki-url": "http://u:pw@127.0.0.1:1/x"}}}})
    spec, _ = container_spec(req, "web", "busybox", _image(tmp_path), "d" * 64, str(tmp_path),
                             _config(tmp_path))
    c = Container(spec, State(status=EXITED, exit_code=3, started_at="2024-01-02T03:04:05Z",
                              finished_at="2024-01-02T03:04:06Z"))
    data = container_inspect(c)
    assert "LogPlan" not in data  # logpipe's own record stays out of Docker's document
    assert data["HostConfig"]["LogConfig"]["Config"]["loki-url"] == "http://***@127.0.0.1:1/x"
    assert data["State"]["Status"] == "exited" and data["State"]["ExitCode"] == 3
    assert data["Path"] == "sh" and data["LogPath"] == ""
    item = container_summary(c)
    assert item["Names"] == ["/web"] and item["State"] == "exited"
    assert item["Status"].startswith("Exited (3) ")


def test_image_views_have_dockers_shape(tmp_path):
    im = _image(tmp_path)
    assert image_summary(im)["Created"] == 1704164645
    assert image_summary(im)["RepoTags"] == ["busybox:latest"]
    assert image_inspect(im)["Config"] == {"Cmd": ["sh"], "Env": ["PATH=/bin"]}
