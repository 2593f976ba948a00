"""Security end to end: what a hostile image, a hostile local user or a careless flag must not
achieve, through a real ``logpipe daemon`` running real runc containers on a busybox image.

The container tests need root, runc and busybox-static (``tests/busybox.py``) and skip without
them; the ``capture`` tests need root (they plant files as ``nobody``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import IMAGE, RUNC, logpipe, raw_create, running_daemon

pytestmark = pytest.mark.e2e

needs_runc = pytest.mark.skipif(not RUNC, reason="needs root, runc and busybox-static")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (plants files as nobody)")
NOBODY = 65534


@pytest.fixture(scope="module")
def daemon(busybox_tar):
    """One runc daemon for the module's container tests (starting one costs ~1 s)."""
    if not RUNC:
        pytest.skip("needs root, runc and busybox-static")
    with running_daemon("runc", busybox_tar) as d:
        yield d


def run(daemon, *args: str):
    """``logpipe run --rm ARGS`` attached: (exit status, stdout, stderr)."""
    r = daemon.lp("run", "--rm", *args, timeout=60)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


# -- binds ---------------------------------------------------------------------------------


@needs_runc
def test_single_file_binds_work_read_only_and_read_write(daemon, tmp_path):
    src = tmp_path / "app.conf"
    src.write_text("from the host\n")
    code, out, err = run(daemon, "-v", f"{src}:/etc/app.conf:ro", IMAGE,
                         "sh", "-c", "cat /etc/app.conf; echo x >> /etc/app.conf")
    assert out == "from the host\n", err
    assert code != 0 and "Read-only file system" in err
    code, out, err = run(daemon, "-v", f"{src}:/data/app.conf", IMAGE,
                         "sh", "-c", "echo from the container >> /data/app.conf")
    assert code == 0, err
    assert src.read_text() == "from the host\nfrom the container\n"


@needs_runc
def test_a_missing_bind_source_is_created_as_a_directory(daemon, tmp_path):
    src = tmp_path / "made" / "here"
    code, _, err = run(daemon, "-v", f"{src}:/data", IMAGE, "sh", "-c", "echo hi > /data/f")
    assert code == 0, err
    assert src.is_dir() and (src / "f").read_text() == "hi\n"


# -- user lookup in the image --------------------------------------------------------------


def with_fifo_passwd(busybox: str, out: str) -> str:
    """The busybox tarball with ``/etc/passwd`` replaced by a FIFO."""
    with tarfile.open(busybox) as src, tarfile.open(out, "w") as dst:
        for m in src.getmembers():
            if m.name == "etc/passwd":
                fifo = tarfile.TarInfo("etc/passwd")
                fifo.type, fifo.mode = tarfile.FIFOTYPE, 0o644
                dst.addfile(fifo)
            else:
                dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    return out


@needs_runc
def test_a_fifo_as_etc_passwd_gives_dockers_error_instead_of_a_hang(daemon, busybox_tar,
                                                                    tmp_path):
    daemon.ok("import", with_fifo_passwd(busybox_tar, str(tmp_path / "fifo.tar")), "fifo:1")
    started = time.monotonic()
    r = daemon.lp("run", "--rm", "--user", "someone", "fifo:1", "true", timeout=30)
    assert r.returncode != 0
    assert b"unable to find user someone: no matching entries in passwd file" in r.stderr
    assert time.monotonic() - started < 10
    # runc reads /etc/passwd itself before the process starts (for any user): the FIFO is
    # covered with an empty file, so the image runs, named user or not.
    started = time.monotonic()
    code, out, err = run(daemon, "fifo:1", "echo", "hi")
    assert (code, out) == (0, "hi\n"), err
    code, out, err = run(daemon, "--user", "1000:1000", "fifo:1",
                         "grep", "^Uid:", "/proc/self/status")
    assert code == 0 and out.split()[1:] == ["1000"] * 4, err
    assert time.monotonic() - started < 10


def test_user_lookup_never_opens_what_is_not_a_regular_file(tmp_path):
    """FIFO (``open`` would wait for a writer), symlink out of the root, directory: none is
    read; a named user is then not found, with Docker's text, at once."""
    from runtime.oci import OCIConfigError, resolve_user

    (tmp_path / "etc").mkdir()
    os.mkfifo(tmp_path / "etc" / "passwd")
    started = time.monotonic()
    with pytest.raises(OCIConfigError, match="^unable to find user someone: no matching "
                                             "entries in passwd file$"):
        resolve_user(str(tmp_path), "someone")
    assert time.monotonic() - started < 1
    os.unlink(tmp_path / "etc" / "passwd")
    host = tmp_path / "host-passwd"
    host.write_text("someone:x:4242:4242::/:/bin/sh\n")
    os.symlink(str(host), tmp_path / "etc" / "passwd")  # resolved inside the root: missing
    with pytest.raises(OCIConfigError, match="unable to find user someone"):
        resolve_user(str(tmp_path), "someone")
    os.unlink(tmp_path / "etc" / "passwd")
    (tmp_path / "etc" / "passwd").mkdir()
    with pytest.raises(OCIConfigError, match="unable to find user someone"):
        resolve_user(str(tmp_path), "someone")


# -- seccomp -------------------------------------------------------------------------------


def seccomp_mode(daemon, *opts: str) -> str:
    code, out, err = run(daemon, *opts, IMAGE, "grep", "^Seccomp:", "/proc/self/status")
    assert code == 0, err
    return out.split()[1]


@needs_runc
def test_containers_run_under_the_default_seccomp_profile(daemon):
    assert seccomp_mode(daemon) == "2"  # SECCOMP_MODE_FILTER
    # A new user namespace would give the container every capability inside it.
    code, out, err = run(daemon, IMAGE, "sh", "-c", "unshare -U -r true && echo escaped")
    assert code != 0 and "escaped" not in out
    assert "Operation not permitted" in err
    code, out, err = run(daemon, IMAGE, "sh", "-c", "unshare -m true || echo refused")
    assert out == "refused\n"
    # An ordinary workload does not notice.
    code, out, err = run(daemon, IMAGE, "sh", "-c",
                         "echo hi; ls / >/dev/null && sleep 0.01 && (echo sub) && echo $((6*7))")
    assert (code, out) == (0, "hi\nsub\n42\n"), err


@needs_runc
def test_security_opt_seccomp_unconfined_runs_without_a_filter(daemon):
    assert seccomp_mode(daemon, "--security-opt", "seccomp=unconfined") == "0"
    code, out, err = run(daemon, "--security-opt", "seccomp=unconfined", IMAGE,
                         "sh", "-c", "unshare -U -r true && echo unshared")
    assert out == "unshared\n", err


@needs_runc
def test_security_opt_seccomp_profile_file_replaces_the_default_and_inspect_shows_it(daemon,
                                                                                    tmp_path):
    # Docker's own profile format (archMap, includes): what `docker run` users already have.
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                            "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                           {"architecture": "SCMP_ARCH_AARCH64",
                            "subArchitectures": ["SCMP_ARCH_ARM"]}],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                             "errnoRet": 13},
                            {"names": ["chdir"], "action": "SCMP_ACT_ERRNO",
                             "includes": {"caps": ["CAP_SYS_ADMIN"]}}]}
    path = tmp_path / "no-mkdir.json"
    path.write_text(json.dumps(profile, indent=2))
    opt = f"seccomp={path}"
    code, out, err = run(daemon, "--security-opt", opt, IMAGE, "sh", "-c",
                         "cd /tmp && echo in-tmp; mkdir /tmp/d || echo refused; "
                         "unshare -U -r true && echo unshared")
    assert out == "in-tmp\nrefused\nunshared\n", err  # chdir kept: no CAP_SYS_ADMIN here
    assert "Permission denied" in err  # errnoRet 13
    cid = daemon.ok("create", "--security-opt", opt, IMAGE, "true").decode().strip()
    [sent] = json.loads(daemon.inspect(cid, "{{json .HostConfig.SecurityOpt}}"))
    assert sent.startswith("seccomp=") and json.loads(sent[8:]) == profile
    daemon.ok("rm", cid)
    # The process runtime has no filter to apply: it says so instead of pretending.
    r = daemon.lp("create", "--runtime", "process", "--security-opt", opt, IMAGE, "true")
    assert r.returncode == 0, r.stderr
    assert b"no seccomp filter" in r.stderr
    assert b"WARNING: runtime process: the seccomp profile of --security-opt is not applied" \
        in r.stderr
    daemon.ok("rm", r.stdout.decode().strip())


@needs_runc
def test_bad_security_opts_are_refused_at_create_with_dockers_text(daemon, tmp_path):
    for opt, text in [("bogus", 'invalid --security-opt 1: "bogus"'),
                      ("foo=bar", 'invalid --security-opt 2: "foo=bar"'),
                      ("seccomp={not json", "decoding seccomp profile failed: ")]:
        status, body = raw_create(daemon.host, "bad", {"Image": IMAGE, "Cmd": ["true"],
                                                       "HostConfig": {"SecurityOpt": [opt]}})
        assert status == 400 and body["message"].startswith(text), (opt, body)
    r = daemon.lp("run", "--security-opt", f"seccomp={tmp_path}/missing.json", IMAGE, "true")
    assert r.returncode == 125
    assert f"opening seccomp profile ({tmp_path}/missing.json) failed" in r.stderr.decode()


def test_default_profile_blocks_what_dockers_default_profile_blocks():
    """The shipped data file, as runc receives it for a container with Docker's default
    capabilities."""
    from runtime.oci import DEFAULT_CAPS
    from runtime.seccomp import DEFAULT_PROFILE, oci_seccomp

    assert os.path.isfile(DEFAULT_PROFILE)
    filt = oci_seccomp((), DEFAULT_CAPS)
    assert filt["defaultAction"] == "SCMP_ACT_ALLOW"
    denied = {name for rule in filt["syscalls"] if rule["action"] == "SCMP_ACT_ERRNO"
              and not rule.get("args") for name in rule["names"]}
    for name in ["unshare", "setns", "keyctl", "add_key", "request_key", "bpf", "mount",
                 "umount2", "kexec_load", "kexec_file_load", "init_module", "finit_module",
                 "delete_module", "open_by_handle_at", "perf_event_open", "pivot_root",
                 "reboot", "swapon", "swapoff", "acct", "settimeofday", "clock_settime",
                 "userfaultfd", "clone3"]:
        assert name in denied, name
    assert ("ptrace" in denied) == (tuple(map(int, os.uname().release.split(".")[:2])) < (4, 8))
    masks = [rule["args"][0] for rule in filt["syscalls"] if rule["names"] == ["clone"]]
    assert all(a["op"] == "SCMP_CMP_MASKED_EQ" and a["value"] == a["valueTwo"] for a in masks)
    assert sum(a["value"] for a in masks) == 0x7E020000  # every CLONE_NEW* flag, as Docker
    assert oci_seccomp(("seccomp=unconfined",), DEFAULT_CAPS) is None


# -- regexes from the user -----------------------------------------------------------------


@needs_runc
def test_a_pathological_labels_regex_neither_slows_create_nor_freezes_the_api(daemon):
    from runtime.cli.client import Client

    evil = "a" * 30 + "!"
    args = ("run", "--name", "regex", "--label", f"{evil}=x", "--label", "aaa=ok",
            "--log-opt", "labels-regex=^(a+)+$", IMAGE, "echo", "hi")
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        result = pool.submit(daemon.lp, *args, timeout=60)
        client = Client(daemon.host, autostart=False)
        slowest = 0.0
        while not result.done():  # the daemon answers while it creates and starts
            t = time.monotonic()
            client.request("GET", "/_ping").read()
            slowest = max(slowest, time.monotonic() - t)
        r = result.result()
    assert r.returncode == 0 and r.stdout == b"hi\n", r.stderr
    assert slowest < 1.0 and time.monotonic() - started < 10
    assert daemon.ok("logs", "--details", "regex") == b"aaa=ok hi\n"
    daemon.ok("rm", "regex")


# -- capture --log-dir ---------------------------------------------------------------------

CID = "c" * 64


def plant(directory, victim) -> list:
    """Symlinks another user leaves where a capture writes by name: the metadata's temporary
    file and the rotation's next file, both pointing at ``victim``."""
    links = [directory / "capture.json.tmp", directory / f".{CID}-json.log.new"]
    for link in links:
        os.symlink(victim, link)
        os.lchown(link, NOBODY, NOBODY)
    return links


def capture(log_dir, *opts: str):
    args = ["capture", "--id", CID, "--log-dir", str(log_dir)]
    for o in opts:
        args += ["--log-opt", o]
    return logpipe(*args, "--", "sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; done")


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim"
    path.write_text("root's file\n")
    path.chmod(0o600)
    yield path
    assert path.read_text() == "root's file\n", "a capture wrote through a planted symlink"


@needs_root
def test_capture_refuses_a_log_dir_owned_by_another_user(tmp_path, victim):
    log_dir = tmp_path / "nobodys"
    log_dir.mkdir(mode=0o755)
    os.chown(log_dir, NOBODY, NOBODY)
    plant(log_dir, victim)
    r = capture(log_dir, "max-size=20")
    assert r.returncode == 125
    assert r.stderr.decode() == (f"logpipe: refusing log directory {log_dir}: it is owned by "
                                 f"uid {NOBODY} (nobody), not by root or by uid 0 (root)\n")
    assert sorted(p.name for p in log_dir.iterdir()) == [f".{CID}-json.log.new",
                                                          "capture.json.tmp"]


@needs_root
@pytest.mark.parametrize("mode, why", [(0o777, "writable by others"),
                                       (0o1777, "writable by others"),
                                       (0o770, "writable by its group")],
                         ids=["0777", "1777-sticky", "0770"])
def test_capture_refuses_a_log_dir_others_may_write_in(tmp_path, victim, mode, why):
    log_dir = tmp_path / "shared"
    log_dir.mkdir()
    log_dir.chmod(mode)
    plant(log_dir, victim)
    r = capture(log_dir)
    assert r.returncode == 125 and f"refusing log directory {log_dir}: it is {why}" in \
        r.stderr.decode(), r.stderr
    # Under a parent others may write in without the sticky bit, a safe-looking dir is not.
    parent = tmp_path / "open"
    (parent / "logs").mkdir(parents=True)
    parent.chmod(0o777)
    r = capture(parent / "logs")
    assert r.returncode == 125 and f"its parent {parent} is writable by others without the " \
        "sticky bit" in r.stderr.decode(), r.stderr


@needs_root
def test_capture_never_writes_through_symlinks_left_in_its_log_dir(tmp_path, victim):
    """A dir that passes the check may still hold names planted before it was handed over:
    the capture creates its files with O_EXCL/O_NOFOLLOW, so it replaces them instead."""
    log_dir = tmp_path / "handed-over"
    log_dir.mkdir(mode=0o755)
    plant(log_dir, victim)
    r = capture(log_dir, "max-size=20", "max-file=3")  # rotates at every line
    assert r.returncode == 0, r.stderr
    assert logpipe("logs", "--log-dir", str(log_dir)).stdout == b"line-3\nline-4\nline-5\n"
    assert not os.path.lexists(log_dir / "capture.json.tmp") or \
        os.path.islink(log_dir / "capture.json.tmp")  # never used: fresh names only
    assert not os.path.islink(log_dir / f"{CID}-json.log")
    # A symlink where the log itself is: refused, not followed.
    (log_dir / f"{CID}-json.log").unlink()
    os.symlink(victim, log_dir / f"{CID}-json.log")
    r = capture(log_dir)
    assert r.returncode == 125 and b"cannot open the log in" in r.stderr, r.stderr


DOCKER = shutil.which("docker")


@needs_runc
@pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed")
def test_the_docker_cli_security_opt_reaches_runc(daemon, tmp_path):
    """``docker --security-opt`` sends HostConfig.SecurityOpt (a profile file as its JSON)."""
    def docker(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, "-H", daemon.host, *args], capture_output=True,
                              timeout=60, stdin=subprocess.DEVNULL)

    status = ["grep", "^Seccomp:", "/proc/self/status"]
    assert docker("run", "--rm", IMAGE, *status).stdout.split()[1:] == [b"2"]
    r = docker("run", "--rm", "--security-opt", "seccomp=unconfined", IMAGE, *status)
    assert r.stdout.split()[1:] == [b"0"], r.stderr
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    r = docker("run", "--rm", "--security-opt", f"seccomp={profile}", IMAGE,
               "sh", "-c", "mkdir /tmp/x || echo refused")
    assert r.stdout == b"refused\n", r.stderr
    assert b" Security Options:\n  seccomp\n   Profile: builtin\n" in docker("info").stdout


# -- load ----------------------------------------------------------------------------------


@needs_runc
def test_load_of_an_archive_whose_layer_is_not_the_configs_answers_400(daemon, busybox_tar,
                                                                      tmp_path):
    from conftest import add, diff_id, tar_bytes, write_save_archive
    from runtime.cli.client import APIError, Client

    with open(busybox_tar, "rb") as f:
        base = f.read()
    good = tar_bytes(lambda tar: add(tar, "etc/motd", b"genuine\n"))
    poisoned = tar_bytes(lambda tar: add(tar, "etc/motd", b"poisoned\n"))
    ids = [diff_id(base), diff_id(good)]
    client = Client(daemon.host, autostart=False)
    bad = write_save_archive(tmp_path / "bad.tar", [base, poisoned], ids, tag="motd:1")
    with open(bad, "rb") as f, pytest.raises(APIError) as err:
        client.request("POST", "/images/load", body=f.read()).read()
    assert err.value.status == 400
    assert str(err.value) == (f'invalid diffID for layer 1: expected "{diff_id(good)}", '
                              f'got "{diff_id(poisoned)}"')
    daemon.ok("load", "-i", write_save_archive(tmp_path / "good.tar", [base, good], tag="motd:1"))
    code, out, err = run(daemon, "motd:1", "cat", "/etc/motd")
    assert out == "genuine\n", err
