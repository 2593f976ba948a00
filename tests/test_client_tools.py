"""The tools users drive a daemon with, beyond the docker CLI and docker-py: python-on-whales
(it runs the docker CLI binary against ``DOCKER_HOST``) and testcontainers-python (docker-py
underneath, with its own waiting strategies), on runc with busybox: run, logs, wait, stats,
rename, image tag and exec as each tool does them."""

from __future__ import annotations

import shutil

import pytest

from conftest import RUNC, clean_daemon

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not RUNC, reason="needs root, runc and busybox-static"),
              pytest.mark.skipif(shutil.which("docker") is None,
                                 reason="python-on-whales drives the docker CLI binary")]

IMAGE = "busybox:latest"


@pytest.fixture
def d(runc_module_daemon):
    yield runc_module_daemon
    clean_daemon(runc_module_daemon)


def test_python_on_whales_runs_logs_waits_stats_renames_and_tags(d):
    pow_ = pytest.importorskip("python_on_whales")
    whales = pow_.DockerClient(host=d.host)
    box = whales.run(IMAGE, ["sh", "-c", "echo out; echo err >&2; exec sleep 60"],
                     name="whale", detach=True, networks=["none"])
    assert whales.execute(box, ["sh", "-c", "echo $((6*7))"]) == "42"
    stats = whales.stats([box])
    assert len(stats) == 1 and stats[0].container_name == "whale"
    assert stats[0].memory_used > 0
    whales.container.rename(box, "whale2")
    assert whales.container.inspect("whale2").id == box.id
    assert sorted(whales.container.logs("whale2").splitlines()) == ["err", "out"]

    done = whales.run(IMAGE, ["sh", "-c", "exit 5"], detach=True, networks=["none"])
    assert whales.container.wait(done) == 5

    whales.image.tag(IMAGE, "whaled:v1")
    assert "whaled:v1" in whales.image.inspect("whaled:v1").repo_tags
    whales.image.remove("whaled:v1")


def test_testcontainers_waits_for_a_log_line_and_reads_logs_and_the_exit(d, monkeypatch):
    pytest.importorskip("testcontainers")
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    monkeypatch.setenv("DOCKER_HOST", d.host)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")  # no reaper container
    with DockerContainer(IMAGE).with_command(
            "sh -c 'echo starting; echo ready >&2; exec sleep 60'").waiting_for(
            LogMessageWaitStrategy("ready")) as box:
        out, err = box.get_logs()
        assert (out, err) == (b"starting\n", b"ready\n")
        assert box.exec(["cat", "/etc/hostname"])[0] == 0
        wrapped = box.get_wrapped_container()
        wrapped.rename("tc-renamed")
        wrapped.reload()
        assert wrapped.name == "tc-renamed"
        assert wrapped.stats(stream=False)["memory_stats"]["usage"] > 0
        wrapped.kill()
        assert wrapped.wait(timeout=30)["StatusCode"] == 137
