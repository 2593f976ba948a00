"""The journald driver against a real systemd-journald: the entries Docker writes, field for
field (checked with ``journalctl -o json`` and with systemd-python), and ``logs`` read back
from the journal with tail/since/until/follow.

Every test uses its own random container id, so entries of other tests (and of earlier runs:
the journal keeps them) are never seen.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time

import pytest

from drivers import journald as jd
from drivers.journald import JournaldDriver
from drivers.remote import spool_path
from logpipe.driver import LogInfo
from logpipe.errors import LogOptError, LogpipeError, RetryableError
from logpipe.message import Chunk, Message, PartialMeta
from logpipe.reading import ReadConfig
from receivers.journald import JournaldReceiver, JournaldUnavailable, unavailable_reason

pytestmark = pytest.mark.e2e

NS = 1_000_000_000
IMAGE = "registry.example/app:1.2"


@pytest.fixture(scope="module")
def journald():
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"real systemd-journald unavailable: {reason}")
    rx = JournaldReceiver()
    try:
        rx.start()
    except JournaldUnavailable as err:
        pytest.skip(f"real systemd-journald unavailable: {err}")
    try:
        yield rx
    finally:
        rx.stop()


@pytest.fixture
def make_info(tmp_path):
    def make(config=None, **kw) -> LogInfo:
        kw.setdefault("container_name", "/web-1")
        kw.setdefault("image_name", IMAGE)
        return LogInfo(os.urandom(32).hex(), str(tmp_path), config or {}, **kw)
    return make


def user_fields(entry: dict) -> dict:
    """The fields a client sent (journald's own start with ``_``)."""
    return {k: v for k, v in entry.items() if not k.startswith("_")}


def base_ts() -> int:
    """Log times an hour in the past: records shipped late, as from a spool backlog."""
    return time.time_ns() - 3600 * NS


def read(info: LogInfo, **cfg) -> list[Chunk]:
    return list(JournaldDriver.read(info, ReadConfig(**cfg)))


# -- what is sent --------------------------------------------------------------------------


def test_entries_carry_dockers_fields_priority_6_for_stdout_3_for_stderr(journald, make_info):
    info = make_info()
    cid = info.container_id
    ts = base_ts()
    driver = JournaldDriver(info)
    driver.send([Message(b"to stdout", "stdout", ts), Message(b"to stderr", "stderr", ts + 1)])
    journald.wait_for(cid, 2)

    entries = journald.journalctl_json(cid)
    common = {
        "CONTAINER_ID": cid[:12].encode(),
        "CONTAINER_ID_FULL": cid.encode(),
        "CONTAINER_NAME": b"web-1",
        "CONTAINER_TAG": cid[:12].encode(),
        "SYSLOG_IDENTIFIER": cid[:12].encode(),
        "IMAGE_NAME": IMAGE.encode(),
    }
    assert [user_fields(e) for e in entries] == [
        {**common, "MESSAGE": b"to stdout", "PRIORITY": b"6",
         "CONTAINER_LOG_TIME_NS": str(ts).encode()},
        {**common, "MESSAGE": b"to stderr", "PRIORITY": b"3",
         "CONTAINER_LOG_TIME_NS": str(ts + 1).encode()},
    ]
    assert all(e["_TRANSPORT"] == b"journal" for e in entries)
    # The journal's own stamp is its receive time: now, not the hour-old log time.
    assert int(entries[0]["__REALTIME_TIMESTAMP"]) * 1000 > ts + 3000 * NS


def test_line_split_at_16k_is_sent_as_partials_and_read_back_whole(journald, make_info):
    info = make_info()
    ts = base_ts()
    line = bytes(range(256)) * 156 + b"end"  # 39,939 bytes: 16384 + 16384 + 7171
    line = line + b"x" * (40_000 - len(line))
    pid = os.urandom(32).hex()
    sizes = [16384, 16384, 7232]
    pieces, pos = [], 0
    for n, size in enumerate(sizes, 1):
        last = n == 3
        pieces.append(Message(line[pos:pos + size], "stdout", ts, last, PartialMeta(pid, n, last)))
        pos += size
    JournaldDriver(info).send(pieces)
    entries = journald.wait_for(info.container_id, 3)

    for n, entry in enumerate(entries, 1):
        assert entry["CONTAINER_PARTIAL_ID"] == pid.encode()
        assert entry["CONTAINER_PARTIAL_ORDINAL"] == str(n).encode()
        assert entry["CONTAINER_PARTIAL_LAST"] == (b"true" if n == 3 else b"false")
        # Docker marks only the pieces before the last one.
        assert entry.get("CONTAINER_PARTIAL_MESSAGE") == (None if n == 3 else b"true")
    assert [len(e["MESSAGE"]) for e in entries] == sizes
    assert [e["MESSAGE"] for e in journald.journalctl_json(info.container_id)] == [
        p.line for p in pieces]

    chunks = read(info)
    assert [c.partial for c in chunks] == [p.partial for p in pieces]
    assert b"".join(c.data for c in chunks) == line + b"\n"
    assert [c.data.endswith(b"\n") for c in chunks] == [False, False, True]


def test_unterminated_last_line_is_a_pending_partial_read_back_without_newline(journald,
                                                                              make_info):
    info = make_info()
    ts = base_ts()
    eof = Message(b"noeol", "stderr", ts, False, PartialMeta("ab" * 32, 1, False))
    JournaldDriver(info).send([Message(b"done", "stderr", ts), eof])
    (_, entry) = journald.wait_for(info.container_id, 2)
    assert entry["CONTAINER_PARTIAL_MESSAGE"] == b"true"
    assert entry["CONTAINER_PARTIAL_LAST"] == b"false"
    assert read(info) == [Chunk("stderr", ts, b"done\n"),
                          Chunk("stderr", ts, b"noeol", PartialMeta("ab" * 32, 1, False))]


def test_binary_bytes_and_empty_lines_are_stored_and_read_back_exactly(journald, make_info):
    info = make_info()
    ts = base_ts()
    lines = [b"bad utf8 \xff\xfe\xc3(", b"nul\x00inside", b"", b" ", b"cr\r", b"esc\x1b[31m",
             b"\xe2\x80\xa8 U+2028 <>&", bytes(range(0, 10)) + bytes(range(11, 256)),
             b"not from a pipe: \n inside"]  # the protocol's binary form of a field
    JournaldDriver(info).send([Message(line, "stdout", ts + i) for i, line in enumerate(lines)])
    journald.wait_for(info.container_id, len(lines))

    assert [e["MESSAGE"] for e in journald.journalctl_json(info.container_id)] == lines
    assert read(info) == [Chunk("stdout", ts + i, line + b"\n") for i, line in enumerate(lines)]


def test_labels_and_env_become_mangled_fields_and_invalid_names_are_dropped(journald,
                                                                           make_info):
    info = make_info(
        {"labels": "com.example.team-x,9lives,.", "env-regex": "^my_", "env": "REGION"},
        labels={"com.example.team-x": "payments", "9lives": "cat", ".": "dot", "other": "no"},
        env=("my_var=a=b", "REGION=eu\nwest", "HOME=/root"))
    JournaldDriver(info).send([Message(b"x", "stdout", base_ts())])
    (entry,) = journald.wait_for(info.container_id, 1)
    fields = user_fields(entry)
    assert fields["COM_EXAMPLE_TEAM_X"] == b"payments"
    assert fields["MY_VAR"] == b"a=b"
    assert fields["REGION"] == b"eu\nwest"  # sent in the protocol's binary form
    # 9LIVES starts with a digit and "." mangles to nothing: journald keeps neither name.
    assert set(fields) == {"MESSAGE", "PRIORITY", "CONTAINER_ID", "CONTAINER_ID_FULL",
                           "CONTAINER_NAME", "CONTAINER_TAG", "SYSLOG_IDENTIFIER", "IMAGE_NAME",
                           "CONTAINER_LOG_TIME_NS", "COM_EXAMPLE_TEAM_X", "MY_VAR", "REGION"}


def test_a_label_named_like_a_builtin_field_overrides_it_as_in_docker(journald, make_info):
    info = make_info({"labels": "container_name"}, labels={"container_name": "from-label"})
    JournaldDriver(info).send([Message(b"x", "stdout", base_ts())])
    (entry,) = journald.wait_for(info.container_id, 1)
    assert entry["CONTAINER_NAME"] == b"from-label"


def test_tag_template_sets_container_tag_and_syslog_identifier(journald, make_info):
    info = make_info({"tag": "{{.Name}}/{{.ImageName}}/{{.ID}}"})
    JournaldDriver(info).send([Message(b"x", "stdout", base_ts())])
    journald.wait_for(info.container_id, 1)
    (entry,) = journald.journalctl_json(info.container_id)
    want = f"web-1/{IMAGE}/{info.container_id[:12]}".encode()
    assert entry["CONTAINER_TAG"] == want
    assert entry["SYSLOG_IDENTIFIER"] == want


# -- reading back --------------------------------------------------------------------------


@pytest.fixture
def ten_lines(journald, make_info):
    """A container with lines 0..9 logged one second apart, alternating stdout/stderr."""
    info = make_info()
    ts = base_ts()
    msgs = [Message(b"line %d" % i, ("stdout", "stderr")[i % 2], ts + i * NS) for i in range(10)]
    JournaldDriver(info).send(msgs)
    journald.wait_for(info.container_id, 10)
    return info, ts


def lines(chunks: list[Chunk]) -> list[bytes]:
    return [c.data for c in chunks]


def test_read_uses_log_time_and_priority_for_timestamp_and_stream(ten_lines):
    info, ts = ten_lines
    chunks = read(info)
    assert [(c.source, c.ts) for c in chunks] == [
        (("stdout", "stderr")[i % 2], ts + i * NS) for i in range(10)]
    assert lines(chunks) == [b"line %d\n" % i for i in range(10)]


def test_read_tail_returns_the_last_n_entries(ten_lines):
    info, _ = ten_lines
    assert lines(read(info, tail=3)) == [b"line 7\n", b"line 8\n", b"line 9\n"]
    assert lines(read(info, tail=50)) == [b"line %d\n" % i for i in range(10)]
    assert read(info, tail=0) == []


def test_read_since_and_until_are_inclusive_log_times(ten_lines):
    info, ts = ten_lines
    assert lines(read(info, since=ts + 7 * NS)) == [b"line 7\n", b"line 8\n", b"line 9\n"]
    assert lines(read(info, until=ts + 2 * NS)) == [b"line 0\n", b"line 1\n", b"line 2\n"]
    assert lines(read(info, since=ts + 4 * NS, until=ts + 5 * NS)) == [b"line 4\n",
                                                                     b"line 5\n"]


def test_read_tail_counts_back_from_until_then_since_filters(ten_lines):
    """Docker's journald reader: seek to ``until``, step back N, never before ``since``."""
    info, ts = ten_lines
    assert lines(read(info, tail=2, until=ts + 5 * NS)) == [b"line 4\n", b"line 5\n"]
    assert lines(read(info, tail=4, since=ts + 8 * NS)) == [b"line 8\n", b"line 9\n"]


def test_read_entries_written_by_docker_use_receive_time_and_skip_other_priorities(journald,
                                                                                   make_info):
    """Docker sends no log time: such entries are dated by the journal's receive time (µs),
    and an entry whose priority is neither 6 nor 3 is not a container stream."""
    from systemd.journal import sendv

    info = make_info()
    match = f"CONTAINER_ID_FULL={info.container_id}".encode()
    sendv(b"MESSAGE=from docker", b"PRIORITY=3", match)
    sendv(b"MESSAGE=notice", b"PRIORITY=5", match)
    entries = journald.wait_for(info.container_id, 2)
    assert read(info) == [Chunk("stderr", entries[0]["__REALTIME_TIMESTAMP"] * 1000,
                                b"from docker\n")]


def test_read_details_are_the_fields_docker_shows(journald, make_info):
    info = make_info({"labels": "app"}, labels={"app": "shop"})
    ts = base_ts()
    JournaldDriver(info).send([Message(b"a", "stdout", ts),
                               Message(b"b", "stdout", ts, False, PartialMeta("c" * 64, 1, False))])
    journald.wait_for(info.container_id, 2)
    plain, partial = read(info, details=True)
    assert plain.attrs == {"APP": "shop", "IMAGE_NAME": IMAGE}
    assert partial.attrs == {"APP": "shop", "IMAGE_NAME": IMAGE, "CONTAINER_PARTIAL_ID": "c" * 64,
                             "CONTAINER_PARTIAL_ORDINAL": "1", "CONTAINER_PARTIAL_LAST": "false",
                             "CONTAINER_PARTIAL_MESSAGE": "true"}
    assert read(info)[0].attrs is None  # not asked for: not built


@pytest.fixture
def writer_lock(make_info):
    """Stand in for the shim: a real spool writer holds the spool (one record in it, not
    shipped) while the "container" runs; ``release`` is the container's exit."""
    from drivers.spool import SpoolWriter

    info = make_info()
    writer = SpoolWriter(info, JournaldDriver.name)
    writer.write([Chunk("stdout", base_ts(), b"spooled\n")])
    held = [True]

    def release() -> None:
        if held[0]:
            writer.close()
            held[0] = False
    try:
        yield info, release
    finally:
        release()


def mark_spool_shipped(info: LogInfo) -> None:
    """What the shipper's checkpoint says once everything in the spool is delivered."""
    from logpipe.checkpoint import Checkpoint, checkpoint_path, write_checkpoint
    from logpipe.fileset import read_seq

    path = spool_path(info)
    write_checkpoint(checkpoint_path(info.log_dir, JournaldDriver.name),
                     Checkpoint(seq=read_seq(path), offset=os.stat(path).st_size))


def start_follow(info: LogInfo, **cfg) -> "queue.Queue[Chunk | None]":
    """Consume a follow in a thread; None on the queue marks its end."""
    got: queue.Queue = queue.Queue()

    def run() -> None:
        try:
            for chunk in JournaldDriver.read(info, ReadConfig(follow=True, **cfg)):
                got.put(chunk)
        finally:
            got.put(None)
    threading.Thread(target=run, daemon=True).start()
    return got


def test_follow_sees_new_entries_and_ends_when_writer_is_gone_and_journal_is_quiet(
        journald, writer_lock, monkeypatch):
    quiet = 0.6
    monkeypatch.setattr(jd, "FOLLOW_QUIET_S", quiet)
    info, release = writer_lock
    ts = base_ts()
    driver = JournaldDriver(info)
    driver.send([Message(b"before", "stdout", ts)])
    journald.wait_for(info.container_id, 1)

    got = start_follow(info)
    assert got.get(timeout=5).data == b"before\n"
    driver.send([Message(b"after 1", "stdout", ts + 1), Message(b"after 2", "stderr", ts + 2)])
    assert [got.get(timeout=5).data for _ in range(2)] == [b"after 1\n", b"after 2\n"]

    release()  # the container exited, but the shipper may still be delivering its spool
    with pytest.raises(queue.Empty):
        got.get(timeout=quiet * 2 / 3)  # the follow stays open while the journal is quiet
    sent_late = time.monotonic()
    driver.send([Message(b"shipped late", "stdout", ts + 3)])
    assert got.get(timeout=5).data == b"shipped late\n"
    assert got.get(timeout=5) is None
    assert time.monotonic() - sent_late >= quiet  # the late entry restarted the quiet time


def test_follow_ends_at_once_when_the_writer_is_gone_and_its_spool_is_shipped(
        journald, writer_lock, monkeypatch):
    monkeypatch.setattr(jd, "FOLLOW_QUIET_S", 30)  # the fallback must not be what ends it
    info, release = writer_lock
    ts = base_ts()
    JournaldDriver(info).send([Message(b"only", "stdout", ts)])
    journald.wait_for(info.container_id, 1)
    got = start_follow(info)
    assert got.get(timeout=5).data == b"only\n"
    release()
    mark_spool_shipped(info)
    assert got.get(timeout=5) is None  # well before the 30 s quiet fallback


def test_follow_after_tail_continues_after_the_last_entry_shown(journald, writer_lock,
                                                               monkeypatch):
    monkeypatch.setattr(jd, "FOLLOW_QUIET_S", 0.2)
    info, release = writer_lock
    ts = base_ts()
    driver = JournaldDriver(info)
    driver.send([Message(b"%d" % i, "stdout", ts + i) for i in range(5)])
    journald.wait_for(info.container_id, 5)
    got = start_follow(info, tail=2)
    assert [got.get(timeout=5).data for _ in range(2)] == [b"3\n", b"4\n"]
    driver.send([Message(b"5", "stdout", ts + 5)])
    assert got.get(timeout=5).data == b"5\n"
    release()
    assert got.get(timeout=5) is None


def test_follow_with_tail_0_sends_only_new_entries(journald, writer_lock, monkeypatch):
    monkeypatch.setattr(jd, "FOLLOW_QUIET_S", 0.2)
    info, release = writer_lock
    ts = base_ts()
    driver = JournaldDriver(info)
    driver.send([Message(b"old", "stdout", ts)])
    journald.wait_for(info.container_id, 1)
    got = start_follow(info, tail=0)
    # The follower finds the journal's end in its own thread, at a moment the test cannot
    # see: send until a new line shows up; whatever it sends must be a run of them.
    deadline = time.monotonic() + 5
    sent: list[bytes] = []
    received: list[bytes] = []
    while not received and time.monotonic() < deadline:
        sent.append(b"new %d\n" % len(sent))
        driver.send([Message(sent[-1][:-1], "stdout", ts + len(sent))])
        try:
            received.append(got.get(timeout=0.2).data)
        except queue.Empty:
            pass
    release()
    while (chunk := got.get(timeout=5)) is not None:
        received.append(chunk.data)
    assert received and received == sent[-len(received):]


def test_follow_of_a_stopped_container_returns_history_and_ends(journald, make_info,
                                                                 monkeypatch):
    monkeypatch.setattr(jd, "FOLLOW_QUIET_S", 0.2)
    info = make_info()
    JournaldDriver(info).send([Message(b"only", "stdout", base_ts())])
    journald.wait_for(info.container_id, 1)
    got = start_follow(info)
    assert got.get(timeout=5).data == b"only\n"
    assert got.get(timeout=5) is None


# -- failures ------------------------------------------------------------------------------


def test_send_while_journald_is_down_is_retryable_and_the_retry_delivers(journald, make_info):
    if not journald.started_here:
        pytest.skip("the host's own journald is running: the test will not stop it")
    info = make_info()
    driver = JournaldDriver(info)
    batch = [Message(b"a", "stdout", base_ts()), Message(b"b", "stdout", base_ts())]
    journald.stop(keep_config=True)
    try:
        with pytest.raises(RetryableError, match="journald: sending to /run/systemd/journal"):
            driver.send(batch)
        with pytest.raises(LogpipeError, match="^journald is not enabled on this host$"):
            JournaldDriver.probe(info)
    finally:
        journald.start()
    driver.send(batch)
    assert [e["MESSAGE"] for e in journald.wait_for(info.container_id, 2)] == [b"a", b"b"]


def test_retry_after_failure_mid_batch_does_not_duplicate_delivered_entries(journald,
                                                                            make_info):
    info = make_info()
    driver = JournaldDriver(info)
    real, calls = driver._deliver, []

    def fail_third_once(payload: bytes) -> None:
        calls.append(payload)
        if len(calls) == 3:
            raise ConnectionRefusedError(111, "Connection refused")
        real(payload)

    driver._deliver = fail_third_once
    batch = [Message(b"m%d" % i, "stdout", base_ts()) for i in range(5)]
    with pytest.raises(RetryableError, match="Connection refused"):
        driver.send(batch)
    driver.send(batch)  # the shipper's retry of the same batch
    entries = journald.wait_for(info.container_id, 5)
    assert [e["MESSAGE"] for e in entries] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    driver.send([Message(b"m5", "stdout", base_ts())])  # the next batch is sent whole
    assert len(journald.wait_for(info.container_id, 6)) == 6


def test_a_stalled_journald_times_out_without_freezing_the_process(journald, make_info,
                                                                   monkeypatch):
    """journald's socket queues 10 datagrams; then senders wait. systemd-python's sendv would
    wait holding the GIL, freezing every thread of the daemon, and forever."""
    if not journald.started_here:
        pytest.skip("the host's own journald is running: the test will not freeze it")
    monkeypatch.setattr(jd, "SEND_TIMEOUT_S", 0.5)
    info = make_info()
    driver = JournaldDriver(info)
    batch = [Message(b"r%d" % i, "stdout", base_ts()) for i in range(100)]
    ticks = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.01):
            ticks.append(1)
    ticker = threading.Thread(target=tick)
    journald.pause()
    try:
        ticker.start()
        began = time.monotonic()
        with pytest.raises(RetryableError, match="journald took nothing for 0.5 s"):
            driver.send(batch)
        assert time.monotonic() - began < 5
        assert len(ticks) >= 10  # the other thread ran while send waited
    finally:
        stop.set()
        journald.resume()
    ticker.join()
    driver.send(batch)  # the retry: what the queue had taken is not sent again
    entries = journald.wait_for(info.container_id, 100)
    assert [e["MESSAGE"] for e in entries] == [m.line for m in batch]


def test_an_entry_larger_than_a_datagram_goes_through_a_memfd(journald, make_info,
                                                             monkeypatch):
    monkeypatch.setattr(jd, "_SNDBUF", 4096)  # so that a 100 kB entry cannot be a datagram
    info = make_info({"env": "BIG"}, env=("BIG=" + "v\n" * 50_000,))
    JournaldDriver(info).send([Message(b"x" * 16384, "stdout", base_ts())])
    (entry,) = journald.wait_for(info.container_id, 1)
    assert entry["MESSAGE"] == b"x" * 16384
    assert entry["BIG"] == b"v\n" * 50_000


def test_probe_accepts_a_running_journald(journald, make_info):
    JournaldDriver.probe(make_info())


def test_probe_refuses_a_missing_or_stale_socket_with_dockers_text(tmp_path, make_info,
                                                                   monkeypatch):
    monkeypatch.setattr(jd, "JOURNAL_SOCKET", str(tmp_path / "missing"))
    with pytest.raises(LogpipeError, match="^journald is not enabled on this host$"):
        JournaldDriver.probe(make_info())
    stale = tmp_path / "stale"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(stale))  # the file stays after close, as journald's does when it dies
    monkeypatch.setattr(jd, "JOURNAL_SOCKET", str(stale))
    with pytest.raises(LogpipeError, match="^journald is not enabled on this host$"):
        JournaldDriver.probe(make_info())


# -- options -------------------------------------------------------------------------------


@pytest.mark.parametrize("opts", [
    {}, {"tag": "{{.Name}}"}, {"labels": "a,b", "labels-regex": "^com\\.", "env": "X",
                               "env-regex": "^APP_"}])
def test_validate_accepts_dockers_options(opts, make_info):
    JournaldDriver.validate(opts)
    JournaldDriver.validate(opts, make_info())


@pytest.mark.parametrize("key", ["max-size", "syslog-address", "Tag", "journald-foo"])
def test_validate_refuses_other_keys_with_dockers_text(key):
    with pytest.raises(LogOptError, match=f"^unknown log opt '{key}' for journald log driver$"):
        JournaldDriver.validate({"tag": "x", key: "1"})


def test_validate_refuses_a_bad_regex_or_template_at_create(make_info):
    with pytest.raises(LogOptError, match=r"^error parsing regexp: missing closing \]: `\[`$"):
        JournaldDriver.validate({"labels-regex": "["}, make_info())
    with pytest.raises(LogOptError, match="can't evaluate field Foo"):
        JournaldDriver.validate({"tag": "{{.Foo}}"})
