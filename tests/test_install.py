"""What a plain ``pip install logpipe`` gives: every driver's library that installs without a
compiler, a ``logpipe[all]`` extra, and for the one library that stays an extra
(systemd-python, for journald) a 400 naming the extra, never a 500.

A fresh virtualenv without the extra takes minutes to build, so the missing library is made
missing inside a real daemon instead: a ``sitecustomize`` on its ``PYTHONPATH`` puts
``None`` in ``sys.modules`` for the modules named in ``LOGPIPE_TEST_BLOCK_IMPORTS``, which
makes every ``import`` of them fail exactly as an uninstalled package does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import metadata, requires

import pytest

from conftest import EMPTY_IMAGE as IMAGE
from conftest import import_empty_image, start_daemon, stop_daemon
from runtime.cli.client import APIError, Client

pytest.importorskip("aiohttp")

pytestmark = pytest.mark.e2e

SITECUSTOMIZE = """\
import os, sys
for _name in os.environ.get("LOGPIPE_TEST_BLOCK_IMPORTS", "").split(","):
    if _name:
        sys.modules[_name] = None  # "import _name" now fails as for a missing package
"""

JOURNALD_TEXT = ("journald log driver needs systemd-python, which is not installed: "
                 "pip install 'logpipe[journald]'")
#: (driver, its options, the module made missing, the start of the daemon's answer)
MISSING = [
    ("journald", {}, "systemd", JOURNALD_TEXT),
    ("awslogs", {"awslogs-region": "us-east-1", "awslogs-group": "g"}, "botocore",
     "awslogs log driver needs boto3, which is not installed: pip install boto3"),
    ("gcplogs", {"gcp-project": "p"}, "google.cloud.logging",
     "gcplogs log driver needs google-cloud-logging, which is not installed: "
     "pip install google-cloud-logging"),
]


# -- the package's metadata -----------------------------------------------------------------


def _unconditional(reqs: list[str]) -> set[str]:
    names = set()
    for req in reqs:
        if ";" not in req:
            name = req.split("[")[0]
            for sep in "<>=!~ ":
                name = name.split(sep)[0]
            names.add(name.lower())
    return names


def test_plain_install_requires_the_awslogs_and_gcplogs_libraries_and_offers_all():
    reqs = requires("logpipe") or []
    assert {"boto3", "google-cloud-logging"} <= _unconditional(reqs)
    extras = metadata("logpipe").get_all("Provides-Extra") or []
    assert {"all", "journald"} <= set(extras)
    assert any(r.startswith("systemd-python") and 'extra == "journald"' in r for r in reqs)
    assert any(r.startswith("logpipe[journald]") and 'extra == "all"' in r for r in reqs)


def test_the_shim_imports_no_driver_client_library():
    """The heavy libraries stay lazily imported: a shim (one per container) never pays."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "runtime.shim", "--help"],
                         capture_output=True, text=True, timeout=60)
    modules = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()
               if line.startswith("import time:")}
    assert modules, out.stderr
    heavy = {m for m in modules if m.split(".")[0] in ("boto3", "botocore", "google", "systemd")}
    assert not heavy


# -- a daemon without the libraries ----------------------------------------------------------


@pytest.fixture
def blocked_env(monkeypatch, tmp_path):
    """Environment for a daemon whose Python cannot import ``modules`` (and its shims)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)

    def block(*modules: str) -> None:
        path = os.environ.get("PYTHONPATH", "")
        monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{path}" if path else str(site))
        monkeypatch.setenv("LOGPIPE_TEST_BLOCK_IMPORTS", ",".join(modules))

    return block


@pytest.fixture
def base():
    directory = tempfile.mkdtemp(prefix="lp-")  # short: unix socket paths are limited
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _daemon(base: str):
    d = start_daemon(base, os.path.join(base, "root"), {"default-runtime": "process"})
    api = Client(d.host, autostart=False)
    import_empty_image(d.host)
    return d, api


def _create(api: Client, driver: str, opts: dict[str, str]) -> str:
    body = {"Image": IMAGE, "Cmd": ["true"],
            "HostConfig": {"LogConfig": {"Type": driver, "Config": opts}}}
    return api.json("POST", "/containers/create", None, body)["Id"]


def test_missing_driver_libraries_are_a_400_naming_what_to_install(blocked_env, base):
    blocked_env(*(module for _, _, module, _ in MISSING))
    d, api = _daemon(base)
    try:
        for driver, opts, _, text in MISSING:
            with pytest.raises(APIError) as err:
                _create(api, driver, opts)
            assert (err.value.status, str(err.value).split(" (")[0]) == (400, text), driver
        assert api.json("GET", "/containers/json", {"all": 1}) == []  # nothing half-created
        # every other driver is untouched
        _create(api, "syslog", {"syslog-address": "udp://127.0.0.1:514"})
    finally:
        stop_daemon(d)


def test_journald_container_whose_library_went_missing_is_a_400_at_start_and_logs(
        blocked_env, base):
    d, api = _daemon(base)
    try:
        cid = _create(api, "journald", {})
    finally:
        stop_daemon(d, remove_containers=False)
    blocked_env("systemd")
    d, api = _daemon(base)
    try:
        for method, path, query in (("POST", f"/containers/{cid}/start", None),
                                    ("GET", f"/containers/{cid}/logs", {"stdout": 1})):
            with pytest.raises(APIError) as err:
                api.request(method, path, query).read()
            assert err.value.status == 400, (path, str(err.value))
            assert str(err.value).startswith(JOURNALD_TEXT), path
    finally:
        stop_daemon(d)
