"""Volumes: ``/volumes`` (create, list with filters, inspect, rm, prune), ``-v name:/path``,
anonymous volumes, copy-up, ``--mount`` and ``--tmpfs``, through a real daemon.

The data tests run real runc busybox containers (one daemon for the module; skipped without
root, runc and busybox-static); the API's own answers are checked on the ``process`` daemon.
The docker CLI and docker-py drive the same daemon unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import (EMPTY_IMAGE, IMAGE, RUNC, add, busybox_tar,  # noqa: F401
                      diff_id, running_daemon, tar_bytes)
from runtime.cli.client import APIError

pytestmark = pytest.mark.e2e

DOCKER = shutil.which("docker")


@pytest.fixture(scope="module")
def rd(busybox_tar):  # noqa: F811 - the module-scoped fixture of conftest
    """One runc daemon with busybox for the module's container tests."""
    if not RUNC:
        pytest.skip("needs root, runc and busybox-static")
    with running_daemon("runc", busybox_tar) as d:
        yield d


def run(rd, *args: str) -> subprocess.CompletedProcess:
    return rd.lp("run", "--rm", *args)


def api_error(call) -> APIError:
    with pytest.raises(APIError) as info:
        call()
    return info.value


# -- data in real containers ---------------------------------------------------------------


def test_named_volume_outlives_its_container_and_is_seen_read_only_by_the_next(rd):
    res = run(rd, "-v", "keep:/data", IMAGE, "sh", "-c", "echo kept > /data/f")
    assert res.returncode == 0, res.stderr
    # Docker's layout: <data-root>/volumes/<name>/_data
    with open(os.path.join(rd.root, "volumes", "keep", "_data", "f")) as f:
        assert f.read() == "kept\n"
    res = run(rd, "-v", "keep:/data:ro", IMAGE, "sh", "-c",
              "cat /data/f; echo no > /data/g || echo refused")
    assert res.stdout == b"kept\nrefused\n"
    assert b"Read-only file system" in res.stderr
    assert json.loads(rd.ok("volume", "inspect", "keep"))[0]["Name"] == "keep"
    assert rd.ok("volume", "rm", "keep") == b"keep\n"
    assert not os.path.exists(os.path.join(rd.root, "volumes", "keep"))


def test_a_new_volume_is_filled_from_the_image_once(rd):
    res = run(rd, "-v", "etc:/etc", IMAGE, "sh", "-c", "head -1 /etc/passwd; echo x > /etc/mine")
    assert res.stdout == b"root:x:0:0:root:/root:/bin/sh\n", res.stderr
    data = os.path.join(rd.root, "volumes", "etc", "_data")
    assert {"group", "mine", "passwd"} <= set(os.listdir(data))
    os.unlink(os.path.join(data, "passwd"))  # not empty any more: no second copy-up
    res = run(rd, "-v", "etc:/etc", IMAGE, "sh", "-c", "ls /etc/passwd || echo gone")
    assert res.stdout.endswith(b"gone\n")
    res = run(rd, "--mount", "type=volume,source=fresh,target=/etc,volume-nocopy", IMAGE,
              "sh", "-c", "test -e /etc/group || echo empty")
    assert res.stdout == b"empty\n", res.stderr
    rd.ok("volume", "rm", "etc", "fresh")


def test_mount_and_tmpfs_flags_mount_binds_volumes_and_real_tmpfs(rd, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "in").write_text("from host\n")
    rd.ok("create", "--name", "mnt", "--tmpfs", "/scratch:size=1m",
          "--mount", "type=tmpfs,target=/t2,tmpfs-size=2m",
          "--mount", f"type=bind,source={host},target=/b,readonly",
          "--mount", "type=volume,source=mv,target=/mv,volume-label=made=by-mount", IMAGE,
          "sh", "-c",
          "grep -E ' /(scratch|t2) ' /proc/mounts; cat /b/in; echo x > /b/out || echo ro;"
          "echo v > /mv/v")
    mounts = json.loads(rd.inspect("mnt", "{{json .Mounts}}"))
    assert sorted(mounts, key=lambda m: m["Destination"]) == [
        {"Type": "bind", "Source": str(host), "Destination": "/b", "Mode": "", "RW": False,
         "Propagation": "rprivate"},
        {"Type": "volume", "Name": "mv", "Source": os.path.join(rd.root, "volumes", "mv", "_data"),
         "Destination": "/mv", "Driver": "local", "Mode": "", "RW": True, "Propagation": ""},
        {"Type": "tmpfs", "Source": "", "Destination": "/t2", "Mode": "", "RW": True,
         "Propagation": ""}]
    assert rd.inspect("mnt", "{{json .HostConfig.Tmpfs}}") == '{"/scratch":"size=1m"}'
    assert json.loads(rd.ok("volume", "inspect", "mv"))[0]["Labels"] == {"made": "by-mount"}
    assert rd.ok("start", "-a", "mnt").decode().splitlines()[2:] == ["from host", "ro"]
    out = rd.ok("logs", "mnt").decode().splitlines()
    scratch = next(line for line in out if " /scratch " in line).split()
    t2 = next(line for line in out if " /t2 " in line).split()
    assert scratch[2] == t2[2] == "tmpfs"
    assert "size=1024k" in scratch[3] and "noexec" in scratch[3] and "size=2048k" in t2[3]
    assert not (host / "out").exists()
    # in use: refused with Docker's text and status, also with force
    res = rd.lp("volume", "rm", "-f", "mv")
    assert res.returncode == 1
    cid = rd.inspect("mnt", "{{.Id}}")
    assert res.stderr.decode() == (f"Error response from daemon: remove mv: volume is in use "
                                   f"- [{cid}]\n")
    rd.ok("rm", "mnt")
    assert rd.ok("volume", "prune", "-f").decode().startswith("Deleted Volumes:\nmv\n\n")


def test_anonymous_volumes_go_with_rm_v_and_named_ones_stay(rd):
    rd.ok("create", "--name", "anon", "-v", "/scratch", "-v", "named:/n", IMAGE, "true")
    vols = json.loads(rd.inspect("anon", "{{json .Mounts}}"))
    anon = next(m["Name"] for m in vols if m["Destination"] == "/scratch")
    assert len(anon) == 64
    names = rd.ok("volume", "ls", "-q").decode().split()
    assert anon in names and "named" in names
    rd.sigkill()  # what uses a volume is known again after a restart
    rd.start()
    assert rd.lp("volume", "rm", "named").stderr.startswith(
        b"Error response from daemon: remove named: volume is in use - [")
    assert set(rd.ok("ps", "-a", "--format", "{{.Mounts}}", "-f", "name=anon").decode()
               .strip().split(",")) == {"named", anon}
    rd.ok("rm", "-v", "anon")
    assert rd.ok("volume", "ls", "-q").decode().split() == ["named"]
    rd.ok("volume", "rm", "named")


# -- the API's answers -------------------------------------------------------------------


def test_volume_api_create_list_filters_inspect_and_prune(api):
    vol = api.json("POST", "/volumes/create", None,
                   {"Name": "v1", "Labels": {"team": "a"}, "DriverOpts": {}})
    assert set(vol) == {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options",
                        "Scope"}
    assert (vol["Driver"], vol["Scope"], vol["Labels"], vol["Options"]) == \
        ("local", "local", {"team": "a"}, {})
    assert vol["Mountpoint"].endswith("/volumes/v1/_data") and os.path.isdir(vol["Mountpoint"])
    assert api.json("POST", "/volumes/create", None, {"Name": "v1"}) == vol  # Docker: the same
    api.json("POST", "/volumes/create", None, {"Name": "v2"})
    api.json("POST", "/containers/create", {"name": "user"},
             {"Image": EMPTY_IMAGE, "Cmd": ["true"], "HostConfig": {"Binds": ["v2:/d"]}})

    def names(filters):
        q = {"filters": json.dumps(filters)}
        return sorted(v["Name"] for v in api.json("GET", "/volumes", q)["Volumes"])
    assert names({"name": ["v"]}) == ["v1", "v2"]
    assert names({"label": ["team=a"]}) == ["v1"]
    assert names({"dangling": ["true"]}) == ["v1"]
    assert names({"dangling": ["false"]}) == ["v2"]
    assert api.json("GET", "/volumes/v1") == vol
    err = api_error(lambda: api.json("GET", "/volumes", {"filters": '{"nope":["x"]}'}))
    assert err.status == 400
    report = api.json("POST", "/volumes/prune")
    assert report == {"VolumesDeleted": ["v1"], "SpaceReclaimed": 0}
    err = api_error(lambda: api.request("DELETE", "/volumes/v2").read())
    assert err.status == 409 and "remove v2: volume is in use - [" in str(err)
    api.request("DELETE", "/containers/user").read()
    api.request("DELETE", "/volumes/v2").read()
    err = api_error(lambda: api.json("GET", "/volumes/v2"))
    assert (err.status, str(err)) == (404, "get v2: no such volume")
    api.request("DELETE", "/volumes/v2", {"force": 1}).read()  # force: a missing one is fine


def test_an_images_volume_is_anonymous_filled_from_the_image_and_removed_by_rm_v(api):
    def layer(tar):
        add(tar, "srv")
        add(tar, "srv/seed")
        add(tar, "srv/seed/file", b"seeded\n")
    layer_tar = tar_bytes(layer)
    config = json.dumps({"config": {"Cmd": ["sh"], "Volumes": {"/srv/seed": {}}},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id(layer_tar)]}})
    manifest = [{"Config": "cfg.json", "RepoTags": ["withvol:2"], "Layers": ["l0/layer.tar"]}]
    archive = tar_bytes(lambda tar: (add(tar, "l0"), add(tar, "l0/layer.tar", layer_tar),
                                     add(tar, "cfg.json", config.encode()),
                                     add(tar, "manifest.json", json.dumps(manifest).encode())))
    api.request("POST", "/images/load", body=archive).read()
    assert api.json("GET", "/images/withvol:2/json")["Config"]["Volumes"] == {"/srv/seed": {}}
    cid = api.json("POST", "/containers/create", None,
                   {"Image": "withvol:2", "Cmd": ["true"]})["Id"]
    mounts = api.json("GET", f"/containers/{cid}/json")["Mounts"]
    assert [(m["Type"], m["Destination"], len(m["Name"])) for m in mounts] == \
        [("volume", "/srv/seed", 64)]
    with open(os.path.join(mounts[0]["Source"], "file")) as f:
        assert f.read() == "seeded\n"  # copy-up from the image
    api.request("DELETE", f"/containers/{cid}", {"v": 1}).read()
    assert api.json("GET", "/volumes")["Volumes"] == []


def test_prune_keeps_what_its_label_filter_excludes(api):
    api.json("POST", "/volumes/create", None, {"Name": "keep1", "Labels": {"keep": "1"}})
    api.json("POST", "/volumes/create", None, {"Name": "drop1", "Labels": {"tier": "x"}})
    api.json("POST", "/volumes/create", None, {"Name": "drop2"})
    q = {"filters": json.dumps({"label": ["tier=x"]})}
    assert api.json("POST", "/volumes/prune", q)["VolumesDeleted"] == ["drop1"]
    q = {"filters": json.dumps({"label!": ["keep"]})}
    assert api.json("POST", "/volumes/prune", q)["VolumesDeleted"] == ["drop2"]
    assert [v["Name"] for v in api.json("GET", "/volumes")["Volumes"]] == ["keep1"]


@pytest.mark.parametrize("host, text", [
    ({"Binds": ["./x:/d"]},
     "invalid volume specification: './x:/d': invalid mount config for type \"bind\": "
     "invalid mount path: './x' mount path must be absolute"),
    ({"Binds": ["x y:/d"]},
     'create x y: "x y" includes invalid characters for a local volume name, only '
     '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
     "use absolute path"),
    ({"Mounts": [{"Type": "bind", "Source": "/nonexistent-x", "Target": "/x"}]},
     'invalid mount config for type "bind": bind source path does not exist: /nonexistent-x'),
    ({"Mounts": [{"Type": "volume", "Source": "v"}]},
     'invalid mount config for type "volume": field Target must not be empty'),
    ({"Mounts": [{"Type": "tmpfs", "Source": "x", "Target": "/t"}]},
     'invalid mount config for type "tmpfs": field Source must not be specified'),
    ({"Mounts": [{"Type": "nfs", "Target": "/t"}]},
     'invalid mount config for type "nfs": mount type unknown'),
    ({"Mounts": [{"Type": "volume", "Target": 5}]},
     "json: cannot unmarshal number into Go struct field Mount.HostConfig.Mounts.Target "
     "of type string"),
    ({"Binds": ["ab:/d"], "Tmpfs": {"/d": ""}}, "Duplicate mount point: /d"),
    ({"Mounts": [{"Type": "bind", "Source": "/tmp", "Target": "/t",
                  "BindOptions": {"Propagation": "sideways"}}]},
     'invalid mount config for type "bind": invalid propagation mode: sideways'),
    ({"Tmpfs": {"/t": "size=1m,bogus"}}, None),
])
def test_bad_mounts_are_refused_at_create_with_dockers_text(api, host, text):
    err = api_error(lambda: api.json("POST", "/containers/create", None,
                                     {"Image": EMPTY_IMAGE, "Cmd": ["true"], "HostConfig": host}))
    assert err.status == 400
    if text is not None:
        assert str(err) == text
    assert api.json("GET", "/containers/json", {"all": 1}) == []
    assert api.json("GET", "/volumes")["Volumes"] == []  # nothing made on the way


def test_bad_volume_create_is_a_400_with_dockers_text(api):
    err = api_error(lambda: api.json("POST", "/volumes/create", None, {"Name": "a/b"}))
    assert err.status == 400 and str(err).startswith('create a/b: "a/b" includes invalid')
    err = api_error(lambda: api.json("POST", "/volumes/create", None, {"Labels": "x"}))
    assert err.status == 400 and str(err).startswith("json: cannot unmarshal string")
    err = api_error(lambda: api.json("POST", "/volumes/create", None, {"Driver": "nfs"}))
    assert err.status == 404
    anon = api.json("POST", "/volumes/create", None, {})
    assert len(anon["Name"]) == 64 and anon["Labels"] is None


# -- real clients --------------------------------------------------------------------------


@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
def test_docker_cli_volume_commands_and_run_with_v_and_mount(rd):
    def docker(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, "-H", rd.host, *args], capture_output=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    assert docker("volume", "create", "--label", "k=v", "dv").stdout == b"dv\n"
    assert docker("volume", "ls", "-q").stdout == b"dv\n"
    assert docker("volume", "ls", "--format", "{{.Name}} {{.Driver}} {{.Labels}}",
                  "-f", "label=k").stdout == b"dv local k=v\n"
    assert docker("volume", "inspect", "-f", "{{.Mountpoint}}", "dv").stdout.decode().strip() \
        == os.path.join(rd.root, "volumes", "dv", "_data")
    res = docker("run", "--rm", "-v", "dv:/data", IMAGE, "sh", "-c", "echo via-cli > /data/x")
    assert res.returncode == 0, res.stderr
    res = docker("run", "--rm", "--mount", "type=volume,source=dv,target=/d,readonly", IMAGE,
                 "cat", "/d/x")
    assert res.stdout == b"via-cli\n", res.stderr
    assert docker("volume", "rm", "dv").stdout == b"dv\n"
    assert docker("volume", "create", "--label", "gone=1", "dv2").returncode == 0
    res = docker("volume", "prune", "-f", "--filter", "label=gone")
    assert res.stdout == b"Deleted Volumes:\ndv2\n\nTotal reclaimed space: 0B\n", res.stderr
    res = docker("volume", "inspect", "dv")
    assert res.returncode == 1 and b"no such volume" in res.stderr.lower()


def test_docker_py_volumes_collection(daemon):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=daemon.host, version="auto", timeout=60)
    try:
        vol = client.volumes.create("pyv", labels={"app": "x"})
        assert (vol.name, vol.attrs["Driver"], vol.attrs["Labels"]) == ("pyv", "local",
                                                                         {"app": "x"})
        assert [v.name for v in client.volumes.list(filters={"label": "app=x"})] == ["pyv"]
        c = client.containers.create(EMPTY_IMAGE, ["true"],
                                     volumes={"pyv": {"bind": "/data", "mode": "ro"}})
        assert c.attrs["Mounts"][0]["Name"] == "pyv" and c.attrs["Mounts"][0]["RW"] is False
        with pytest.raises(docker.errors.APIError) as info:
            client.volumes.get("pyv").remove()
        assert info.value.status_code == 409
        c.remove()
        client.volumes.get("pyv").remove()
        with pytest.raises(docker.errors.NotFound):
            client.volumes.get("pyv")
        assert client.volumes.prune() == {"VolumesDeleted": None, "SpaceReclaimed": 0}
    finally:
        client.close()
