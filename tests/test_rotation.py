"""Size rotation shared by json-file and local: Docker's naming and size rules, plus the
generation stamps and writer lock that make following exact."""

import gzip
import json
import os
import stat
import struct
import threading

import pytest

from drivers.rotation import RotatingFile
from logpipe.errors import LogWriterBusy
from logpipe.fileset import read_seq, rotated_files, writer_alive

pytestmark = pytest.mark.unit

LINE = lambda i: b"%05d " % i + b"x" * 94 + b"\n"  # 101 bytes  # noqa: E731
NEWLINE = lambda data, i: data.find(b"\n", i) + 1  # noqa: E731


def write_lines(rf, n, per_write=7):
    lines = [LINE(i) for i in range(n)]
    for k in range(0, n, per_write):
        rf.write(b"".join(lines[k:k + per_write]))
    return lines


def test_file_exceeds_max_size_by_at_most_one_record_and_rotates_before_the_next(tmp_path):
    path = str(tmp_path / "c-json.log")
    rf = RotatingFile(path, max_size=1000, max_file=3, boundary=NEWLINE)
    lines = write_lines(rf, 25)
    rf.close()
    files = rotated_files(path)
    assert [os.path.basename(f) for f in files] == ["c-json.log.2", "c-json.log.1", "c-json.log"]
    sizes = [os.path.getsize(f) for f in files]
    # 10 records of 101 bytes reach 1010 ≥ 1000: the 10th is written, the 11th rotates.
    assert sizes == [1010, 1010, 505]
    assert b"".join(open(f, "rb").read() for f in files) == b"".join(lines[-25:])


def test_oldest_generation_is_deleted_and_generations_are_stamped_in_order(tmp_path):
    path = str(tmp_path / "c-json.log")
    rf = RotatingFile(path, max_size=1000, max_file=3, boundary=NEWLINE)
    write_lines(rf, 60)
    rf.close()
    files = rotated_files(path)
    assert len(files) == 3
    seqs = [read_seq(f) for f in files]
    assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2] and seqs[-1] == 6


def test_max_file_1_keeps_only_the_current_file_no_stale_dot_1(tmp_path):
    path = str(tmp_path / "c-json.log")
    rf = RotatingFile(path, max_size=1000, max_file=1, boundary=NEWLINE)
    lines = write_lines(rf, 25)
    rf.close()
    assert sorted(os.listdir(tmp_path)) == ["c-json.log", "c-json.log.lock"]
    assert open(path, "rb").read() == b"".join(lines[20:])


def test_compressed_rotations_are_gzip_with_dockers_last_time_extra(tmp_path):
    class TsFormat:  # the last record's timestamp is its 5-digit number
        def tail_offset(self, f, size, n):  # rotation counts records: none here
            return 0, 0

        def last_ts(self, f, size):
            f.seek(max(0, size - 101))
            return int(f.read(5)) * 10**9

    path = str(tmp_path / "c-json.log")
    rf = RotatingFile(path, max_size=1000, max_file=4, compress=True, fmt=TsFormat(),
                      boundary=NEWLINE)
    lines = write_lines(rf, 35)
    rf.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["c-json.log", "c-json.log.1.gz", "c-json.log.2.gz", "c-json.log.3.gz",
                     "c-json.log.lock"]
    raw = open(path + ".1.gz", "rb").read()
    assert raw[:4] == b"\x1f\x8b\x08\x04" and raw[4:8] == b"\0\0\0\0" and raw[9] == 0xFF
    xlen = struct.unpack("<H", raw[10:12])[0]
    assert json.loads(raw[12:12 + xlen]) == {"lastTime": "1970-01-01T00:00:29Z"}
    assert gzip.decompress(raw) == b"".join(lines[20:30])
    assert read_seq(path + ".1.gz") == read_seq(path) - 1


def test_files_are_created_0640(tmp_path):
    path = str(tmp_path / "c-json.log")
    rf = RotatingFile(path, max_size=300, max_file=2, boundary=NEWLINE)
    write_lines(rf, 10)
    rf.close()
    for name in os.listdir(tmp_path):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o640, name


def test_reopening_appends_and_counts_the_existing_size(tmp_path):
    path = str(tmp_path / "c-json.log")
    rf = RotatingFile(path, max_size=1000, max_file=2, boundary=NEWLINE)
    write_lines(rf, 5)
    rf.close()
    rf = RotatingFile(path, max_size=1000, max_file=2, boundary=NEWLINE)
    assert rf.size == 505
    write_lines(rf, 6)
    rf.close()
    assert os.path.getsize(path + ".1") == 1010 and os.path.getsize(path) == 101


def test_a_second_writer_is_refused_and_the_lock_tells_readers_when_writing_ends(tmp_path):
    path = str(tmp_path / "c-json.log")
    rf = RotatingFile(path)
    assert writer_alive(path)
    with pytest.raises(LogWriterBusy):
        RotatingFile(path)
    rf.close()
    assert not writer_alive(path)


def test_a_reader_probing_the_lock_never_makes_a_writer_look_busy(tmp_path):
    """A reader waiting for a container to start probes ``writer_alive`` every few ms; the
    shim opening the log at that moment must not be refused as a second writer."""
    path = str(tmp_path / "c-json.log")
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            writer_alive(path)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(300):
            RotatingFile(path).close()
    finally:
        stop.set()
        prober.join()
