"""``logpipe capture`` and ``logpipe logs --log-dir``: a program's output stored and read back
with Docker's flags, through real processes and real files."""

import json
import re
import time

import pytest

from conftest import logpipe

pytestmark = pytest.mark.integration


def capture(tmp_path, script, *opts, driver="json-file", extra=()):
    args = ["capture", "--log-driver", driver, "--log-dir", str(tmp_path / "log")]
    for o in opts:
        args += ["--log-opt", o]
    return logpipe(*args, *extra, "--", "sh", "-c", script)


def logs(tmp_path, *flags):
    return logpipe("logs", "--log-dir", str(tmp_path / "log"), *flags)


def test_exit_status_of_the_command_is_the_exit_status_of_capture(tmp_path):
    assert capture(tmp_path, "echo hi; exit 3").returncode == 3
    assert capture(tmp_path, "kill -9 $$").returncode == 137


def test_stdout_lines_go_to_stdout_and_stderr_lines_to_stderr(tmp_path):
    for driver in ("json-file", "local"):
        d = tmp_path / driver
        d.mkdir()
        assert capture(d, "echo out1; echo err1 >&2; echo out2", driver=driver).returncode == 0
        r = logs(d)
        assert r.stdout == b"out1\nout2\n" and r.stderr == b"err1\n", driver


def test_json_file_on_disk_is_dockers_format(tmp_path):
    capture(tmp_path, "printf 'a\\tb <x>\\n'", extra=["--id", "c" * 64])
    raw = (tmp_path / "log" / ("c" * 64 + "-json.log")).read_bytes()
    assert re.fullmatch(rb'\{"log":"a\\u0009b \\u003cx\\u003e\\n","stream":"stdout",'
                        rb'"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z"\}\n', raw), raw


def test_labels_and_env_become_attrs_and_env_reaches_the_command(tmp_path):
    r = capture(tmp_path, 'echo "region=$REGION"', "labels=app,missing", "env=REGION",
                "tag={{.Name}}", extra=["--label", "app=web", "--label", "other=x",
                                        "-e", "REGION=eu", "--name", "web1"])
    assert r.returncode == 0, r.stderr
    [line] = next((tmp_path / "log").glob("*-json.log")).read_text().splitlines()
    entry = json.loads(line)
    assert entry["log"] == "region=eu\n"
    assert entry["attrs"] == {"REGION": "eu", "app": "web", "tag": "web1"}
    details = logs(tmp_path, "--details").stdout
    assert details == b"REGION=eu,app=web,tag=web1 region=eu\n"


def test_timestamps_have_exactly_nine_fraction_digits(tmp_path):
    capture(tmp_path, "echo one; echo two")
    out = logs(tmp_path, "-t").stdout.decode().splitlines()
    assert len(out) == 2
    for line in out:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (one|two)", line)


def test_tail_counts_records_of_both_streams_before_the_stream_split(tmp_path):
    # The order of lines across two pipes is not kept by any runtime (moby#31706), so the log
    # is written through the driver in a known order, then read with the real CLI.
    from drivers.json_file import JSONFileDriver
    from logpipe.driver import LogInfo
    from logpipe.message import STDERR, STDOUT, Chunk
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    (log_dir / "capture.json").write_text(json.dumps({"id": "a" * 64, "driver": "json-file"}))
    driver = JSONFileDriver(LogInfo(container_id="a" * 64, log_dir=str(log_dir)))
    driver.write([Chunk(STDOUT, 1, b"1\n"), Chunk(STDERR, 2, b"2\n"), Chunk(STDOUT, 3, b"3\n"),
                  Chunk(STDERR, 4, b"4\n")])
    driver.close()
    r = logs(tmp_path, "--tail", "2")
    assert r.stdout == b"3\n" and r.stderr == b"4\n"
    assert logs(tmp_path, "--tail", "0").stdout == b""
    assert logs(tmp_path, "--tail", "all").stdout == b"1\n3\n"


def test_since_and_until_select_by_time_including_durations(tmp_path):
    capture(tmp_path, "echo early")
    time.sleep(1.1)  # the two lines must fall in different seconds: the CLI truncates to s
    mid = time.time()
    capture(tmp_path, "echo late")
    assert logs(tmp_path, "--since", f"{mid:.9f}").stdout == b"late\n"
    assert logs(tmp_path, "--until", f"{mid:.9f}").stdout == b"early\n"
    assert logs(tmp_path, "--since", "10m").stdout == b"early\nlate\n"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mid)) + f".{int(mid % 1 * 1e9):09d}Z"
    assert logs(tmp_path, "--since", stamp).stdout == b"late\n"


def test_a_restarted_capture_appends_to_the_same_log(tmp_path):
    capture(tmp_path, "echo first run")
    capture(tmp_path, "echo second run")
    assert logs(tmp_path).stdout == b"first run\nsecond run\n"


def test_bad_options_are_refused_before_running_anything(tmp_path):
    marker = tmp_path / "ran"
    r = capture(tmp_path, f"touch {marker}", "max-size=abc")
    assert r.returncode == 125 and b"invalid size: 'abc'" in r.stderr
    r = capture(tmp_path, f"touch {marker}", "foo=bar")
    assert b"unknown log opt 'foo' for json-file log driver" in r.stderr
    r = capture(tmp_path, f"touch {marker}", driver="bogus")
    assert b'plugin "bogus" not found' in r.stderr
    r = capture(tmp_path, f"touch {marker}", "mode=fast")
    assert b"logger: logging mode not supported: fast" in r.stderr
    r = capture(tmp_path, f"touch {marker}", "gelf-address=udp://127.0.0.1:9", driver="gelf")
    assert r.returncode == 125 and b"use logpipe run --log-driver gelf" in r.stderr
    assert not marker.exists()


def test_bad_since_value_names_the_problem(tmp_path):
    capture(tmp_path, "echo x")
    r = logs(tmp_path, "--since", "abc")
    assert r.returncode != 0
    assert b'invalid value for "since": failed to parse value as time or duration: "abc"' in r.stderr


def test_non_blocking_mode_reports_what_it_dropped(tmp_path):
    # A tiny buffer and a burst: some lines may be dropped, and then capture says how many.
    r = capture(tmp_path, "seq 1 200000", "mode=non-blocking", "max-buffer-size=1k")
    assert r.returncode == 0
    kept = logs(tmp_path).stdout.count(b"\n")
    m = re.search(rb"dropped (\d+) lines", r.stderr)
    dropped = int(m.group(1)) if m else 0
    assert kept + dropped == 200000


def test_binary_output_and_long_lines_come_back_exactly(tmp_path):
    """local keeps every byte; json-file keeps every byte but invalid UTF-8, which Docker's
    format stores as one U+FFFD per byte."""
    script = ("printf '\\377\\376 bad utf8\\n\\000nul\\r\\n\\033[31mred\\033[0m\\n'; "
              "head -c 40000 /dev/zero | tr '\\0' 'x'; echo; printf 'cut off'")
    rest = b" bad utf8\n\x00nul\r\n\x1b[31mred\x1b[0m\n" + b"x" * 40000 + b"\ncut off"
    expected = {"local": b"\xff\xfe" + rest, "json-file": "\ufffd\ufffd".encode() + rest}
    for driver, want in expected.items():
        d = tmp_path / driver
        d.mkdir()
        capture(d, script, driver=driver)
        assert logs(d).stdout == want, driver


def test_a_100_mb_line_without_newline_is_stored_in_pieces_and_read_back_whole(tmp_path):
    for driver in ("json-file", "local"):
        d = tmp_path / driver
        d.mkdir()
        r = capture(d, "head -c 100000000 /dev/zero | tr '\\0' 'a'", driver=driver)
        assert r.returncode == 0, r.stderr
        out = logs(d).stdout
        assert len(out) == 100_000_000 and out.count(b"a") == 100_000_000, driver


def test_logs_log_dir_into_a_pipe_closed_early_exits_quietly(tmp_path):
    import signal
    import subprocess

    from conftest import LOGPIPE

    assert capture(tmp_path, "seq 1 200000").returncode == 0
    for flags in ([], ["-f"]):
        p = subprocess.Popen(LOGPIPE + ["logs", "--log-dir", str(tmp_path / "log"), *flags],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert p.stdout.readline() == b"1\n"
            p.stdout.close()  # `| head -1`
            assert (p.wait(timeout=30), p.stderr.read()) == (-signal.SIGPIPE, b""), flags
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
