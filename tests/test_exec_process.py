"""``exec`` on the ``process`` runtime (no root, no runc): the command runs on the host in
the container's working directory and environment, ``-u`` is refused, and the exec dies
with its container."""

from __future__ import annotations

import os

import pytest

from conftest import EMPTY_IMAGE, docker_cli, wait_until

pytestmark = pytest.mark.e2e

docker = pytest.importorskip("docker")


@pytest.fixture
def client(daemon):
    c = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=60)
    yield c
    c.close()


def _alive(marker: str) -> bool:
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read().replace(b"\0", b" "):
                    return True
        except OSError:
            pass
    return False


def test_a_host_exec_gets_the_containers_env_and_dir_and_its_own(daemon, client, tmp_path):
    """Output through the docker CLI: docker-py reads a hijacked stream from the raw socket,
    past what its HTTP parser buffered with the answer's headers — a host command that
    prints at once may race it (see docs/exec.md)."""
    ctr = client.containers.run(EMPTY_IMAGE, ["sleep", "60"], detach=True,
                                environment={"FROM_CTR": "c"}, working_dir=str(tmp_path))
    res = docker_cli(daemon, "exec", "-e", "X=x", ctr.id, "sh", "-c",
                     "echo $FROM_CTR $X; pwd; exit 4")
    assert (res.returncode, res.stdout) == (4, f"c x\n{tmp_path}\n".encode())
    res = docker_cli(daemon, "exec", "-w", "/", ctr.id, "pwd")
    assert res.stdout == b"/\n"
    res = docker_cli(daemon, "exec", ctr.id, "no-such-command-here")
    assert res.returncode == 127
    assert b'exec: "no-such-command-here": executable file not found in $PATH' in res.stdout
    assert ctr.exec_run(["sh", "-c", "exit 5"]).exit_code == 5
    with pytest.raises(docker.errors.APIError) as err:
        ctr.exec_run("true", user="nobody")
    assert err.value.status_code == 400
    assert "--user nobody needs an isolating runtime" in err.value.explanation
    ctr.remove(force=True)


def test_a_host_exec_dies_with_its_container(client):
    ctr = client.containers.run(EMPTY_IMAGE, ["sleep", "60"], detach=True)
    eid = client.api.exec_create(ctr.id, ["sleep", "4545"])["Id"]
    client.api.exec_start(eid, detach=True)
    assert client.api.exec_inspect(eid)["Running"] is True
    wait_until(lambda: _alive("sleep 4545"), what="the exec's process")
    ctr.kill()
    wait_until(lambda: not _alive("sleep 4545"), what="the exec's process to die")
    wait_until(lambda: not client.api.exec_inspect(eid)["Running"], what="the exec's end")
    assert client.api.exec_inspect(eid)["ExitCode"] == 137
    ctr.remove()
    with pytest.raises(docker.errors.NotFound):
        client.api.exec_inspect(eid)
