"""The daemon-backed CLI as a user runs it: ``logpipe run|ps|logs|inspect|rm|...`` against a
real daemon (the ``daemon`` fixture of ``conftest.py``), output and exit codes as docker's."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from conftest import EMPTY_IMAGE as IMAGE
from conftest import LOGPIPE, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def lp(daemon):
    """Run ``logpipe ARGS`` against the test daemon; never autostart another one."""
    env = dict(os.environ, LOGPIPE_HOST=daemon.host, LOGPIPE_NO_AUTOSTART="1")

    def run(*args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(LOGPIPE + list(args), env=env,
                              capture_output=True, timeout=60, **kw)
    return run


def test_run_attached_splits_streams_and_exits_with_the_containers_code(lp):
    res = lp("run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert res.returncode == 7
    assert res.stdout == b"out\n"
    assert b"err\n" in res.stderr
    assert b"WARNING: runtime process" in res.stderr  # no isolation, said loudly
    assert lp("ps", "-aq").stdout == b""  # --rm removed it


def test_run_detached_prints_the_id_and_logs_reads_with_dockers_flags(lp):
    res = lp("run", "-d", "--name", "web", IMAGE, "sh", "-c", "for i in 1 2 3; do echo l$i; done")
    cid = res.stdout.decode().strip()
    assert res.returncode == 0 and len(cid) == 64
    assert lp("wait", "web").stdout == b"0\n"
    assert lp("logs", "web").stdout == b"l1\nl2\nl3\n"
    assert lp("logs", "--tail", "1", "web").stdout == b"l3\n"
    assert lp("logs", "--since", "1h", "web").stdout == b"l1\nl2\nl3\n"
    assert lp("logs", "--since", "2099-01-01T00:00:00Z", "web").stdout == b""
    stamped = lp("logs", "-t", "web").stdout.splitlines()
    assert [line.split(b" ", 1)[1] for line in stamped] == [b"l1", b"l2", b"l3"]
    assert lp("logs", "-f", "web").stdout == b"l1\nl2\nl3\n"  # exited: follow ends at once


def test_logs_follow_ends_when_the_container_exits(lp):
    lp("run", "-d", "--name", "slow", IMAGE, "sh", "-c", "echo a; sleep 0.5; echo b")
    res = lp("logs", "-f", "slow")
    assert (res.returncode, res.stdout) == (0, b"a\nb\n")


def test_ps_lists_running_by_default_all_with_a_and_formats(lp):
    lp("run", "-d", "--name", "up1", IMAGE, "sleep", "30")
    lp("create", "--name", "new1", IMAGE, "true")
    out = lp("ps").stdout.decode().splitlines()
    assert out[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                              "PORTS", "NAMES"]
    assert len(out) == 2 and out[1].endswith("up1") and "Up " in out[1]
    assert len(lp("ps", "-a", "-q").stdout.split()) == 2
    assert lp("ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.decode().splitlines() \
        == ["new1 created", "up1 running"]


def test_inspect_format_and_json(lp):
    lp("run", "-d", "--name", "insp", "--log-driver", "local", "--log-opt", "max-size=1m",
       "-l", "team=a", IMAGE, "sleep", "30")
    res = lp("inspect", "-f", "{{.State.Status}} {{.Name}} {{json .HostConfig.LogConfig}} "
             '{{index .Config.Labels "team"}} {{.LogPath}}', "insp")
    assert res.stdout == b'running /insp {"Type":"local","Config":{"max-size":"1m"}} a \n'
    pid = int(lp("inspect", "-f", "{{.State.Pid}}", "insp").stdout)
    assert os.path.exists(f"/proc/{pid}")
    data = json.loads(lp("inspect", "insp").stdout)
    assert data[0]["Name"] == "/insp" and data[0]["RestartCount"] == 0


def test_format_ranges_over_mounts_and_labels_with_if_with_and_index(lp, tmp_path):
    src_a, src_b = tmp_path / "a", tmp_path / "b"
    src_a.mkdir()
    src_b.mkdir()
    lp("create", "--name", "ranged", "-v", f"{src_a}:/a", "-v", f"{src_b}:/b:ro",
       "-l", "team=core", "-l", "app=web", IMAGE, "true")
    res = lp("inspect", "-f", "{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}|"
             "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}},{{end}}|"
             "{{if .State.Running}}up{{else}}{{.State.Status}}{{end}}|"
             "{{with .HostConfig.LogConfig}}{{.Type}}{{end}}|{{(index .Mounts 1).Mode}}",
             "ranged")
    assert (res.returncode, res.stderr) == (0, b"")
    assert res.stdout.decode() == f"{src_a}:/a {src_b}:/b |app=web,team=core,|created|" \
                                  "json-file|ro\n"
    ps = lp("ps", "-a", "--format", "{{.Names}}:{{range split .Labels \",\"}}[{{.}}]{{end}}")
    assert ps.stdout == b"ranged:[app=web][team=core]\n"
    table = lp("ps", "-a", "--format", "table {{.Names}}\t{{.State}}")
    assert table.stdout.decode().splitlines() == ["NAMES     STATE", "ranged    created"]
    bad = lp("inspect", "-f", "{{range .Mounts}}{{.Nope}}{{end}}", "ranged")
    assert (bad.returncode, bad.stdout) == (125, b"")
    assert bad.stderr == b'logpipe: template: :1:19: executing "" at <.Nope>: map has no entry ' \
                         b'for key "Nope"\n'


def test_rm_needs_force_for_a_running_container(lp):
    lp("run", "-d", "--name", "busy", IMAGE, "sleep", "30")
    res = lp("rm", "busy")
    assert res.returncode == 1
    assert res.stderr.startswith(b"Error response from daemon: You cannot remove a running container")
    res = lp("rm", "-f", "busy")
    assert (res.returncode, res.stdout) == (0, b"busy\n")
    assert lp("ps", "-aq").stdout == b""


def test_errors_are_reported_like_the_docker_cli(lp):
    res = lp("logs", "nosuch")
    assert (res.returncode, res.stderr) == (1, b"Error response from daemon: No such container: nosuch\n")
    res = lp("run", "--pull", "never", "nosuch:latest", "true")
    assert (res.returncode, res.stderr) == (125, b"Error response from daemon: No such image: nosuch:latest\n")
    res = lp("run", "--log-opt", "foo=bar", IMAGE, "true")
    assert res.returncode == 125
    assert res.stderr.endswith(b"unknown log opt 'foo' for json-file log driver\n")
    res = lp("run", IMAGE, "no-such-command")
    assert res.returncode == 127


def test_stop_and_restart_print_the_names(lp):
    lp("run", "-d", "--name", "cycle", IMAGE, "sleep", "30")
    assert lp("stop", "-t", "5", "cycle").stdout == b"cycle\n"
    assert lp("inspect", "-f", "{{.State.ExitCode}}", "cycle").stdout == b"143\n"
    assert lp("restart", "cycle").stdout == b"cycle\n"
    assert lp("inspect", "-f", "{{.State.Running}}", "cycle").stdout == b"true\n"


def test_no_daemon_and_no_autostart_says_where_it_looked(tmp_path):
    env = dict(os.environ, LOGPIPE_HOST=f"unix://{tmp_path}/none.sock", LOGPIPE_NO_AUTOSTART="1")
    res = subprocess.run(LOGPIPE + ["ps"], env=env,
                         capture_output=True, timeout=60)
    assert res.returncode == 1
    assert f"Cannot connect to the logpipe daemon at unix://{tmp_path}/none.sock".encode() in res.stderr


def test_images_import_and_rmi(lp, tmp_path):
    import tarfile
    path = tmp_path / "root.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(__file__, arcname="hello.py")
    out = lp("import", str(path), "mine:v1")
    assert out.returncode == 0 and out.stdout.startswith(b"sha256:")
    listing = lp("images").stdout.decode().splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert any(line.split()[:2] == ["mine", "v1"] for line in listing[1:])
    res = lp("rmi", "mine:v1")
    assert res.returncode == 0 and b"Untagged: mine:v1" in res.stdout


@pytest.mark.parametrize("flag", ["--label", "--log-opt"])
def test_key_value_flag_with_an_empty_key_is_refused_before_anything_is_created(lp, flag):
    res = lp("create", flag, "=x", IMAGE, "true")
    assert res.returncode != 0
    assert f'invalid argument "=x" for "{flag}" flag'.encode() in res.stderr
    assert lp("ps", "-aq").stdout == b""


def _log_lines(lp, name: str) -> int:
    return len(lp("logs", name).stdout.splitlines())


def test_pause_freezes_the_container_and_unpause_resumes_it_with_dockers_refusals(lp):
    ticker = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done"
    assert lp("run", "-d", "--name", "ticker", IMAGE, "sh", "-c", ticker).returncode == 0
    wait_until(lambda: _log_lines(lp, "ticker") >= 3, what="the ticker to tick")
    assert lp("pause", "ticker").stdout == b"ticker\n"
    assert lp("inspect", "-f", "{{.State.Status}} {{.State.Paused}} {{.State.Running}}",
              "ticker").stdout == b"paused true true\n"
    assert b"(Paused)" in lp("ps", "--format", "{{.Status}}").stdout
    frozen = _log_lines(lp, "ticker")
    # That nothing happens can only be observed over time: 20 ticks' worth.
    time.sleep(0.4)
    assert _log_lines(lp, "ticker") == frozen
    again = lp("pause", "ticker")
    assert again.returncode != 0 and b"is already paused" in again.stderr
    assert lp("unpause", "ticker").returncode == 0
    wait_until(lambda: _log_lines(lp, "ticker") > frozen + 2, what="the ticker to go on")
    not_paused = lp("unpause", "ticker")
    assert not_paused.returncode != 0 and b"is not paused" in not_paused.stderr
    assert lp("pause", "ticker").returncode == 0
    assert lp("stop", "-t", "5", "ticker").returncode == 0  # a paused container still stops
    assert lp("inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "ticker").stdout \
        == b"exited false\n"


def _read_one_line_then_close(argv: list[str], env: dict) -> tuple[int, bytes]:
    """``logpipe ... | head -1`` with a real pipe: read one line, close the read end early."""
    import signal  # noqa: F401 - the expected status names it

    p = subprocess.Popen(LOGPIPE + list(argv), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline()
        p.stdout.close()
        err = p.stderr.read()
        return p.wait(timeout=30), err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_logs_into_a_pipe_closed_early_exits_quietly_like_docker(lp, daemon):
    import signal

    lp("run", "-d", "--name", "talky", IMAGE, "sh", "-c",
       "i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done; sleep 30")
    wait_until(lambda: lp("logs", "--tail", "1", "talky").stdout == b"line 19999\n", 30)
    env = dict(os.environ, LOGPIPE_HOST=daemon.host, LOGPIPE_NO_AUTOSTART="1")
    for flags in ([], ["-f"]):
        status, err = _read_one_line_then_close(["logs", *flags, "talky"], env)
        # docker (Go) is killed by SIGPIPE: no message, no traceback
        assert (status, err) == (-signal.SIGPIPE, b""), flags
    lp("rm", "-f", "talky")
