"""Live capture, storage and drop counters of every container, in ``inspect`` and ``/metrics``.

A real daemon and real containers (runc with busybox as root, else the process runtime; see
``engine_daemon`` in ``tests/conftest.py``), a real fluentd-protocol receiver for the
remote driver.
"""

from __future__ import annotations

import contextlib
import json

import pytest

from conftest import IMAGE, wait_until
from runtime.cli.client import Client
from receivers.fluentd import FakeFluentd

pytestmark = pytest.mark.e2e


@pytest.fixture
def daemon(engine_daemon):
    """This module's tests run on ``engine_daemon`` (conftest.py)."""
    return engine_daemon


def _metrics(d) -> list[str]:
    return Client(d.host, autostart=False).request("GET", "/metrics").read().decode().splitlines()


@pytest.mark.parametrize("driver", ["json-file", "local", "fluentd"])
def test_counters_are_live_while_the_container_runs_for_every_driver(daemon, driver):
    with contextlib.ExitStack() as stack:
        opts = []
        if driver == "fluentd":
            rx = stack.enter_context(FakeFluentd())
            opts = ["--log-opt", f"fluentd-address={rx.address}"]
        daemon.ok("run", "-d", "--name", "live", "--log-driver", driver, *opts, IMAGE,
                  "sh", "-c", "seq 1 250; exec sleep 60")
        cid = daemon.inspect("live", "{{.Id}}")
        labels = f'{{container_id="{cid}",container_name="live",driver="{driver}"}}'
        wait_until(lambda: f"logpipe_stored_lines_total{labels} 250" in _metrics(daemon), 20,
                   "the live count in /metrics")
        text = _metrics(daemon)
        assert f"logpipe_captured_lines_total{labels} 250" in text
        size = sum(len(str(i)) + 1 for i in range(1, 251))
        assert f"logpipe_captured_bytes_total{labels} {size}" in text
        assert f"logpipe_stored_bytes_total{labels} {size}" in text
        assert f"logpipe_dropped_lines_total{labels} 0" in text
        assert f"logpipe_storage_failing{labels} 0" in text
        assert daemon.inspect("live", "{{.State.Running}}") == "true"
        storage = json.loads(daemon.inspect("live", "{{json .LogStorage}}"))
        assert storage["Driver"] == driver
        assert (storage["CapturedLines"], storage["StoredLines"], storage["DroppedLines"]) == \
            (250, 250, 0)
        assert daemon.inspect("live", "{{.State.LinesLogged}}") == "250"
        daemon.ok("rm", "-f", "live")
