"""The local driver: Docker's option texts, and logpipe's block format read back exactly,
past torn and damaged blocks, with tail and since found from block headers alone."""

import json
import os
import random
import stat
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import drivers.local.reader as local
from drivers.local import LocalDriver
from drivers.local.blocks import FLAG_LZ4, HEADER_SIZE, MAGIC, parse_header
from drivers.local.reader import LocalFormat
from drivers.local.writer import LocalConfig, pack_blocks
from logpipe.driver import LogInfo
from logpipe.errors import LogOptError
from logpipe.message import Chunk, PartialMeta
from logpipe.reading import ReadConfig, iter_decoded, read_pieces

pytestmark = pytest.mark.unit

T0 = 1_795_000_000_000_000_000


# -- helpers ----------------------------------------------------------------------------------

def write_file(path, batches, compress=True, limit=None):
    """Write ``batches`` as blocks to a plain file; returns the block boundaries."""
    bounds, pos = [], 0
    with open(path, "wb") as f:
        for batch in batches:
            blocks = pack_blocks(batch, compress, limit) if limit else pack_blocks(batch, compress)
            for block in blocks:
                f.write(block)
                bounds.append((pos, pos + len(block)))
                pos += len(block)
    return bounds


def decode_file(path, start=0, pieces=None):
    """Chunks and warnings of ``path[start:]`` through the generic decoding loop."""
    warnings = []
    with open(path, "rb") as f:
        if pieces is None:
            source = read_pieces(f, start, os.path.getsize(path))
        else:
            data = f.read()[start:]
            source = [data[i:i + pieces] for i in range(0, len(data), pieces)]
        chunks = list(iter_decoded(LocalFormat(), source, path, warnings.append))
    return chunks, warnings


def records(chunks):
    return [m for c in chunks for m in c.messages()]


def block_chunks(path, start, end):
    """What one block decodes to."""
    with open(path, "rb") as f:
        f.seek(start)
        chunks, used = LocalFormat().decode(f.read(end - start), True, pytest.fail)
    assert used == end - start
    return chunks


def lines_chunk(i, n, ts=None, source="stdout"):
    return Chunk(source, T0 + i if ts is None else ts,
                 b"".join(b"line %d.%d\n" % (i, k) for k in range(n)))


def typical_log_lines(n, seed=1):
    """Mixed container output as services write it: access log, Spring-style app log, JSON
    log lines with random request ids, klog lines and the odd Java stack trace."""
    rnd = random.Random(seed)
    clients = [f"10.{rnd.randint(0, 3)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"
               for _ in range(40)]
    paths = ["/api/v1/users/{}", "/api/v1/orders/{}/items", "/healthz", "/static/js/app.3f9a1c.js",
             "/api/v2/search?q=shoes&page={}", "/login", "/metrics", "/api/v1/cart/{}"]
    agents = ["Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
              "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/119.0.0.0 Safari/537.36",
              "kube-probe/1.28", "curl/8.4.0", "Prometheus/2.48.0"]
    templates = ["processed order {n} for customer {m} in {ms} ms",
                 "cache miss for key user:{m}, loading from database",
                 "connection pool stats: active={a} idle={b} waiting=0",
                 "session {h} expired after {s} s of inactivity",
                 "payment {n} accepted: amount={amt} currency=EUR",
                 "retrying upstream request to inventory-service (attempt {a}/5): connect timeout",
                 "user {m} logged in from 10.0.{a}.{b}"]
    stack = ["java.lang.IllegalStateException: order {n} is already closed",
             "\tat com.example.orders.OrderService.place(OrderService.java:214)",
             "\tat com.example.orders.OrderController.create(OrderController.java:88)",
             "\tat org.springframework.web.servlet.FrameworkServlet.service"
             "(FrameworkServlet.java:883)",
             "\t... 48 common frames omitted"]
    levels = ["INFO"] * 6 + ["DEBUG"] * 2 + ["WARN", "ERROR"]
    classes = ["c.e.orders.OrderService", "c.e.auth.TokenFilter",
               "com.zaxxer.hikari.pool.HikariPool", "c.e.payments.PaymentClient",
               "c.e.web.RequestLogger"]
    out, t = [], 0
    while len(out) < n:
        t += rnd.randint(0, 40)
        s, ms = 43200 + t // 1000, t % 1000
        clock = f"{s // 3600:02}:{s // 60 % 60:02}:{s % 60:02}"
        ident = int(rnd.paretovariate(1.2)) % 5000
        k = rnd.random()
        if k < 0.35:
            method = rnd.choice(["GET"] * 4 + ["POST", "PUT"])
            status = rnd.choice([200] * 8 + [201, 304, 404, 500])
            line = (f'{rnd.choice(clients)} - - [23/Nov/2026:{clock} +0000] '
                    f'"{method} {rnd.choice(paths).format(ident)} HTTP/1.1" {status} '
                    f'{rnd.randint(200, 40000)} "-" "{rnd.choice(agents)}" '
                    f'rt={rnd.random() * 0.3:.3f}')
        elif k < 0.6:
            msg = rnd.choice(templates).format(
                n=rnd.randint(10**5, 10**6), m=ident, ms=rnd.randint(1, 900), a=rnd.randint(0, 20),
                b=rnd.randint(0, 20), s=rnd.randint(60, 3600), h="%08x" % rnd.getrandbits(32),
                amt=f"{rnd.random() * 300:.2f}")
            line = (f"2026-11-23 {clock}.{ms:03} {rnd.choice(levels):5} 1 --- "
                    f"[nio-8080-exec-{rnd.randint(1, 10)}] {rnd.choice(classes):40} : {msg}")
        elif k < 0.85:
            line = json.dumps({"level": rnd.choice(levels).lower(),
                               "ts": f"2026-11-23T{clock}.{ms:03}Z",
                               "caller": f"server/handler.go:{rnd.choice([142, 187, 233])}",
                               "msg": "request completed",
                               "method": rnd.choice(["GET", "GET", "POST"]),
                               "path": rnd.choice(paths).format(ident),
                               "status": rnd.choice([200] * 9 + [404]),
                               "duration_ms": round(rnd.random() * 50, 2),
                               "request_id": "%032x" % rnd.getrandbits(128)}, separators=(",", ":"))
        elif k < 0.98:
            line = (f"I1123 {clock}.{ms:03}{rnd.randint(0, 999):03}       1 "
                    f'controller.go:{rnd.choice([117, 204, 311])}] "Reconciling" '
                    f'object="default/web-{rnd.randint(0, 9)}" generation={rnd.randint(1, 20)}')
        else:
            out.extend(f.format(n=rnd.randint(10**5, 10**6)).encode() + b"\n" for f in stack)
            continue
        out.append(line.encode() + b"\n")
    return out[:n]


def json_file_size(lines):
    """Bytes json-file would store for ``lines`` (Docker's escaping, 9-digit fraction)."""
    total = 0
    for line in lines:
        text = json.dumps(line.decode("utf-8", "replace"), ensure_ascii=False)
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        total += len(('{"log":' + text + ',"stream":"stdout",'
                      '"time":"2026-11-23T12:00:00.123456789Z"}\n').encode())
    return total


@pytest.fixture
def count_decompress(monkeypatch):
    calls = []
    real = local._decompress

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(local, "_decompress", counting)
    return calls


# -- options ----------------------------------------------------------------------------------

def test_defaults_are_dockers_20_mib_5_files_compressed():
    assert LocalConfig.from_opts({}) == LocalConfig(20_971_520, 5, True)


@pytest.mark.parametrize("opts, expected", [
    ({"max-size": "1k"}, LocalConfig(1000, 5, True)),  # decimal, like Docker
    ({"max-size": "1KiB"}, LocalConfig(1000, 5, True)),
    ({"max-size": "0"}, LocalConfig(0, 5, True)),  # accepted: rotates before every write
    ({"max-file": "1", "compress": "false"}, LocalConfig(20_971_520, 1, False)),
    ({"max-file": "0", "compress": "0"}, LocalConfig(20_971_520, 0, False)),
    ({"max-size": "10m", "max-file": "3", "compress": "true"}, LocalConfig(10**7, 3, True)),
])
def test_valid_options_are_accepted_and_parsed(opts, expected):
    LocalDriver.validate(opts)
    assert LocalConfig.from_opts(opts) == expected


@pytest.mark.parametrize("opts, text", [
    ({"tag": "x"}, "unknown log opt 'tag' for log driver local"),
    ({"labels": "a"}, "unknown log opt 'labels' for log driver local"),
    ({"max-size": "abc"}, "invalid value for max-size: abc: invalid size: 'abc'"),
    ({"max-size": "-1"}, "invalid value for max-size: -1: invalid size: '-1'"),
    ({"max-file": "abc"},
     'invalid value for max-file: abc: strconv.Atoi: parsing "abc": invalid syntax'),
    ({"max-file": "-1"}, "max file count cannot be less than 0"),
    ({"max-file": "-1", "compress": "false"}, "max file count cannot be less than 0"),
    ({"max-file": "1"}, "compression cannot be enabled when max file count is 1"),
    ({"max-file": "0", "compress": "true"},
     "compression cannot be enabled when max file count is 1"),
    ({"compress": "maybe"},
     'error reading compress log option: strconv.ParseBool: parsing "maybe": invalid syntax'),
])
def test_invalid_options_are_rejected_with_dockers_text(opts, text):
    with pytest.raises(LogOptError) as err:
        LocalDriver.validate(opts)
    assert str(err.value) == text


# -- round trip -------------------------------------------------------------------------------

_line = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"\r"))
_attrs = st.none() | st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=8),
                                     max_size=3)


@st.composite
def _chunks(draw):
    source = draw(st.sampled_from(["stdout", "stderr"]))
    ts = draw(st.integers(0, 2**63 - 1))
    attrs = draw(_attrs)
    if draw(st.booleans()):
        lines = draw(st.lists(_line, min_size=1, max_size=8))
        return Chunk(source, ts, b"".join(l + b"\n" for l in lines), None, attrs)
    last = draw(st.booleans())
    partial = PartialMeta(draw(st.text(min_size=1, max_size=64)), draw(st.integers(1, 2**31 - 1)),
                          last)
    return Chunk(source, ts, draw(_line) + (b"\n" if last else b""), partial, attrs)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(_chunks(), max_size=12), max_size=5),
       compress=st.booleans(), block_limit=st.integers(1, 600), piece=st.integers(8, 700))
def test_chunks_read_back_exactly_with_partials_attrs_and_both_streams(
        tmp_path, batches, compress, block_limit, piece):
    path = tmp_path / "container.log"
    write_file(path, batches, compress, limit=lambda: block_limit)
    chunks, warnings = decode_file(path, pieces=piece)
    assert warnings == []
    written = [c for batch in batches for c in batch]
    assert records(chunks) == records(written)
    if block_limit >= 600:  # nothing had to be split: the chunks themselves come back
        assert chunks == written


def test_a_chunk_larger_than_a_block_is_split_at_line_boundaries_only(tmp_path):
    path = tmp_path / "container.log"
    chunk = Chunk("stderr", T0, b"".join(b"%05d\n" % i for i in range(1000)), None, {"a": "b"})
    bounds = write_file(path, [[chunk]], limit=lambda: 1000)
    assert len(bounds) > 4
    pieces = [c for start, end in bounds for c in block_chunks(path, start, end)]
    assert all(c.data.endswith(b"\n") and c.ts == T0 and c.attrs == {"a": "b"} for c in pieces)
    assert b"".join(c.data for c in pieces) == chunk.data


def test_incompressible_payload_is_stored_raw_and_flagged_so(tmp_path):
    path = tmp_path / "container.log"
    noise = random.Random(7).randbytes(3000).replace(b"\n", b"") + b"\n"
    bounds = write_file(path, [[Chunk("stdout", T0, noise)], [lines_chunk(1, 200)]])
    data = path.read_bytes()
    flags = [parse_header(data, start).flags for start, _ in bounds]
    assert flags == [0, FLAG_LZ4]
    assert records(decode_file(path)[0]) == \
        records([Chunk("stdout", T0, noise), lines_chunk(1, 200)])


# -- damage -----------------------------------------------------------------------------------

def three_blocks(path):
    batches = [[lines_chunk(i, 20 + i)] for i in range(3)]
    return batches, write_file(path, batches)


def test_torn_last_block_yields_everything_before_it_and_reports_the_tear(tmp_path):
    path = tmp_path / "container.log"
    batches, bounds = three_blocks(path)
    whole = path.read_bytes()
    before = records(batches[0] + batches[1])
    last_start = bounds[-1][0]
    fmt = LocalFormat()
    for cut in range(last_start, len(whole)):
        path.write_bytes(whole[:cut])
        chunks, warnings = decode_file(path)
        assert records(chunks) == before, cut
        if cut == last_start:
            assert warnings == []
        else:
            assert len(warnings) == 1 and "torn record at end of file" in warnings[0], cut
        with open(path, "rb") as f:
            assert fmt.tail_offset(f, cut, 10**6) == (0, len(before))
            assert fmt.last_ts(f, cut) == T0 + 1
            assert fmt.since_offset(f, cut, T0 + 2) == last_start


def test_block_torn_by_a_crash_and_then_appended_to_is_skipped(tmp_path):
    path = tmp_path / "container.log"
    batches, bounds = three_blocks(path)
    whole = path.read_bytes()
    (s1, e1), (s2, e2) = bounds[1], bounds[2]
    # The writer died halfway through block 1; the restarted writer appended block 2.
    path.write_bytes(whole[:s1 + (e1 - s1) // 2] + whole[s2:])
    chunks, warnings = decode_file(path)
    assert records(chunks) == records(batches[0] + batches[2])
    assert len(warnings) == 1 and "21 records" in warnings[0]
    with open(path, "rb") as f:
        assert LocalFormat().tail_offset(f, os.path.getsize(path), 10**6)[1] == 20 + 22


def test_corrupted_middle_block_is_skipped_and_its_records_reported_lost(tmp_path):
    path = tmp_path / "container.log"
    batches, bounds = three_blocks(path)
    data = bytearray(path.read_bytes())
    data[bounds[1][0] + HEADER_SIZE + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    chunks, warnings = decode_file(path)
    assert records(chunks) == records(batches[0] + batches[2])
    assert len(warnings) == 1
    assert "checksum" in warnings[0] and "21 records" in warnings[0]
    assert f"offset {bounds[1][0]}" in warnings[0]
    with open(path, "rb") as f:  # --tail counts only what decode will deliver
        assert LocalFormat().tail_offset(f, len(data), 30) == (0, 20 + 22)


def test_damaged_header_is_skipped_by_resynchronising_on_the_next_block(tmp_path):
    path = tmp_path / "container.log"
    batches, bounds = three_blocks(path)
    data = bytearray(path.read_bytes())
    data[bounds[1][0] + 12] ^= 0x01  # inside the payload length: the header crc catches it
    path.write_bytes(bytes(data))
    chunks, warnings = decode_file(path)
    assert records(chunks) == records(batches[0] + batches[2])
    start, end = bounds[1]
    assert warnings == [f"skipped {end - start} unreadable bytes at offset {start}"]
    with open(path, "rb") as f:
        assert LocalFormat().since_offset(f, len(data), T0 + 1) == bounds[2][0]


def test_garbage_between_blocks_is_skipped_and_reported(tmp_path):
    path = tmp_path / "container.log"
    batches, bounds = three_blocks(path)
    whole = path.read_bytes()
    garbage = b"\x00" * 100 + MAGIC + b"not a header" + b"\x00" * 50
    path.write_bytes(whole[:bounds[2][0]] + garbage + whole[bounds[2][0]:])
    for pieces in (None, 7):
        chunks, warnings = decode_file(path, pieces=pieces)
        assert records(chunks) == records(batches[0] + batches[1] + batches[2])
        assert sum(int(w.split()[1]) for w in warnings) == len(garbage)
    with open(path, "rb") as f:
        assert LocalFormat().tail_offset(f, os.path.getsize(path), 10**6) == (0, 20 + 21 + 22)


def test_trailing_garbage_is_reported_and_offsets_ignore_it(tmp_path):
    path = tmp_path / "container.log"
    batches, bounds = three_blocks(path)
    with open(path, "ab") as f:
        f.write(b"\x00" * 5000)  # e.g. blocks allocated but never written before a crash
    chunks, warnings = decode_file(path)
    assert records(chunks) == records(batches[0] + batches[1] + batches[2])
    assert len(warnings) == 1 and " 5000 " in warnings[0]
    fmt = LocalFormat()
    with open(path, "rb") as f:
        size = os.path.getsize(path)
        assert fmt.tail_offset(f, size, 22) == (bounds[2][0], 22)
        assert fmt.last_ts(f, size) == T0 + 2
        assert fmt.since_offset(f, size, T0 + 3) == bounds[2][1]


def is_subsequence(small, big):
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32),
       damage=st.sampled_from(["flip", "cut", "insert", "torn-then-appended"]),
       piece=st.integers(1, 300))
def test_random_damage_loses_only_damaged_blocks_and_offsets_agree_with_decode(
        tmp_path, seed, damage, piece):
    rnd = random.Random(seed)
    chunks, ts = [], T0
    for i in range(rnd.randint(1, 30)):
        ts += rnd.choice([0, 1, 3])
        chunks.append(lines_chunk(i, rnd.randint(1, 5), ts, rnd.choice(["stdout", "stderr"])))
    path = tmp_path / "container.log"
    bounds = write_file(path, [chunks[i:i + 4] for i in range(0, len(chunks), 4)],
                        compress=rnd.random() < 0.8, limit=lambda: rnd.randint(50, 400))
    per_block = [records(block_chunks(path, s, e)) for s, e in bounds]
    data = bytearray(path.read_bytes())
    hit = set()
    if damage == "flip":
        x = rnd.randrange(len(data))
        data[x] ^= 1 << rnd.randrange(8)
        hit = {k for k, (s, e) in enumerate(bounds) if s <= x < e}
    elif damage == "cut":
        x = rnd.randrange(len(data))
        del data[x:]
        hit = {k for k, (s, e) in enumerate(bounds) if e > x}
    elif damage == "insert":
        x = rnd.choice([s for s, _ in bounds] + [len(data)])
        data[x:x] = bytes(rnd.choice(b"\0LPBE1" + bytes([rnd.randrange(256)]))
                          for _ in range(rnd.randint(1, 60)))
    elif len(bounds) > 1:
        k = rnd.randrange(len(bounds) - 1)
        s, e = bounds[k]
        del data[rnd.randint(s + 1, e - 1):e]
        hit = {k}
    path.write_bytes(bytes(data))
    got = records(decode_file(path, pieces=piece)[0])
    assert got == records(decode_file(path)[0])
    everything = [m for b in per_block for m in b]
    assert is_subsequence([m for k, b in enumerate(per_block) if k not in hit for m in b], got)
    assert is_subsequence(got, everything)
    fmt = LocalFormat()
    with open(path, "rb") as f:
        for n in (1, 4, 10**6):
            offset, found = fmt.tail_offset(f, len(data), n)
            assert sum(c.count for c in decode_file(path, start=offset)[0]) == found
        if got:
            assert fmt.last_ts(f, len(data)) >= got[-1].ts
        for since in (T0, T0 + 10, T0 + 10**6):
            offset = fmt.since_offset(f, len(data), since)
            assert [m for m in records(decode_file(path, start=offset)[0]) if m.ts >= since] == \
                [m for m in got if m.ts >= since]


def test_empty_file_has_no_records(tmp_path):
    path = tmp_path / "container.log"
    path.write_bytes(b"")
    fmt = LocalFormat()
    with open(path, "rb") as f:
        assert fmt.tail_offset(f, 0, 5) == (0, 0)
        assert fmt.since_offset(f, 0, T0) == 0
        assert fmt.last_ts(f, 0) is None
    assert fmt.decode(b"", True, pytest.fail) == ([], 0)


# -- finding offsets --------------------------------------------------------------------------

def many_blocks(path, seed=3):
    """~60 small blocks with runs of equal timestamps spanning several blocks."""
    rnd = random.Random(seed)
    chunks, ts = [], T0
    for i in range(300):
        ts += rnd.choice([0, 0, 0, 1, 5])
        chunks.append(lines_chunk(i, rnd.randint(1, 6), ts, rnd.choice(["stdout", "stderr"])))
    bounds = write_file(path, [chunks[i:i + 10] for i in range(0, 300, 10)], limit=lambda: 300)
    per_block = [block_chunks(path, s, e) for s, e in bounds]
    return bounds, per_block


def test_tail_offset_is_the_latest_block_boundary_covering_n_records(tmp_path):
    path = tmp_path / "container.log"
    bounds, per_block = many_blocks(path)
    counts = [sum(c.count for c in b) for b in per_block]
    starts = [s for s, _ in bounds]
    total = sum(counts)
    fmt = LocalFormat()
    with open(path, "rb") as f:
        for n in range(0, total + 3):
            offset, found = fmt.tail_offset(f, bounds[-1][1], n)
            k = starts.index(offset) if offset in starts else len(starts)
            assert found == sum(counts[k:])
            assert found >= min(n, total)
            if k < len(starts):  # tight: one block later would not have been enough
                assert found - counts[k] < n


def test_since_offset_is_the_first_block_that_may_hold_since_with_equal_timestamps(tmp_path):
    path = tmp_path / "container.log"
    bounds, per_block = many_blocks(path)
    starts = [s for s, _ in bounds]
    all_ts = sorted({c.ts for b in per_block for c in b})
    fmt = LocalFormat()
    with open(path, "rb") as f:
        for since in [all_ts[0] - 1] + [t + d for t in all_ts for d in (0, 1)]:
            offset = fmt.since_offset(f, bounds[-1][1], since)
            k = starts.index(offset) if offset in starts else len(starts)
            assert offset == (starts[k] if k < len(starts) else bounds[-1][1])
            assert all(c.ts < since for b in per_block[:k] for c in b)  # nothing wanted skipped
            if k < len(starts):
                assert any(c.ts >= since for c in per_block[k])  # and no block too early


def test_since_skips_blocks_by_header_without_decompressing_them(tmp_path, count_decompress):
    path = tmp_path / "container.log"
    bounds, per_block = many_blocks(path)
    count_decompress.clear()
    fmt = LocalFormat()
    since = per_block[40][0].ts + 1
    with open(path, "rb") as f:
        size = bounds[-1][1]
        offset = fmt.since_offset(f, size, since)
        assert fmt.last_ts(f, size) == per_block[-1][-1].ts
        assert count_decompress == []
    chunks, _ = decode_file(path, start=offset)
    data = path.read_bytes()
    compressed = [s for s, _ in bounds if parse_header(data, s).flags & FLAG_LZ4]
    assert len(count_decompress) == len([s for s in compressed if s >= offset])
    assert len(count_decompress) < len(compressed) // 2
    assert [c for c in records(chunks) if c.ts >= since] == \
        [m for b in per_block for m in records(b) if m.ts >= since]


# -- the driver -------------------------------------------------------------------------------

@pytest.fixture
def info(tmp_path):
    def make(**opts):
        return LogInfo(container_id="c" * 64, log_dir=str(tmp_path), config=opts)
    return make


def write_typical(driver, n, per_chunk=400, start=0):
    lines = typical_log_lines(n)
    for i in range(0, n, per_chunk):
        driver.write([Chunk("stdout", T0 + start + i, b"".join(lines[i:i + per_chunk]))])
    return lines


def test_driver_writes_local_logs_container_log_with_dockers_permissions(info, tmp_path):
    driver = LocalDriver(info())
    driver.write([lines_chunk(0, 3)])
    driver.flush()
    driver.close()
    path = tmp_path / "local-logs" / "container.log"
    assert LocalDriver.log_path(info()) == str(path)
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


WRITE_AND_LIST_MODULES = """
import os, sys
from drivers.local import LocalDriver
from logpipe.driver import LogInfo
from logpipe.message import Chunk
drv = LocalDriver(LogInfo(container_id="c" * 64, log_dir=sys.argv[1],
                          config={"max-size": "10k", "max-file": "3"}))
for i in range(100):
    drv.write([Chunk("stdout", 1_795_000_000_000_000_000 + i,
                     b"%d %s\\n" % (i, os.urandom(400).hex().encode()))])
drv.close()
print(" ".join(sorted(sys.modules)))
"""


def test_writing_and_rotating_never_imports_the_reader(info, tmp_path):
    """The shim only writes: writing and rotating without a follower loads the block layout
    and the writer, not the reader; what was written reads back."""
    run = subprocess.run([sys.executable, "-c", WRITE_AND_LIST_MODULES, str(tmp_path)],
                         capture_output=True, text=True, timeout=60, check=True)
    loaded = set(run.stdout.split())
    assert {"drivers.local.writer", "drivers.local.blocks"} <= loaded
    assert "drivers.local.reader" not in loaded
    assert os.path.exists(LocalDriver.log_path(info()) + ".2")  # it did rotate
    got = [c.data.split(b" ")[0] for c in LocalDriver.read(info(), ReadConfig(tail=2))]
    assert got == [b"98", b"99"]


def test_driver_reads_back_all_tail_and_since(info):
    driver = LocalDriver(info())
    batches = [[lines_chunk(i, 3, source="stderr" if i % 2 else "stdout")] for i in range(50)]
    for batch in batches:
        driver.write(batch)
    driver.close()
    written = records([c for b in batches for c in b])
    assert records(LocalDriver.read(info(), ReadConfig())) == written
    assert records(LocalDriver.read(info(), ReadConfig(tail=7))) == written[-7:]
    assert records(LocalDriver.read(info(), ReadConfig(since=T0 + 45))) == written[-15:]
    assert records(LocalDriver.read(info(), ReadConfig(since=T0 + 45, until=T0 + 46))) == \
        written[-15:-9]


def test_tail_decompresses_only_the_blocks_it_returns(info, count_decompress):
    driver = LocalDriver(info(**{"max-size": "1m", "max-file": "2"}))
    lines = write_typical(driver, 40_000)
    driver.close()
    count_decompress.clear()
    assert records(LocalDriver.read(info(), ReadConfig(tail=5))) == \
        records([Chunk("stdout", T0 + 39_600, b"".join(lines[-400:]))])[-5:]
    assert len(count_decompress) == 1


def test_rotated_files_stay_close_to_max_size_and_read_back_in_order(info, tmp_path):
    driver = LocalDriver(info(**{"max-size": "100k", "max-file": "3"}))
    lines = write_typical(driver, 60_000)
    driver.close()
    names = sorted(n for n in os.listdir(tmp_path / "local-logs") if not n.startswith("."))
    assert names == ["container.log", "container.log.1", "container.log.2", "container.log.lock"]
    for name in ("container.log.1", "container.log.2"):
        size = os.path.getsize(tmp_path / "local-logs" / name)
        assert 95_000 <= size <= 100_000 + 4096, (name, size)  # filled, overflowing by little
    got = [m.line + b"\n" for m in records(LocalDriver.read(info(), ReadConfig()))]
    assert 3000 < len(got) < len(lines) and got == lines[-len(got):]


def test_max_size_zero_keeps_one_block_per_file(info, tmp_path):
    driver = LocalDriver(info(**{"max-size": "0", "max-file": "3"}))
    write_typical(driver, 2000)
    driver.close()
    for name in ("container.log.1", "container.log.2"):
        data = (tmp_path / "local-logs" / name).read_bytes()
        header = parse_header(data)
        assert header is not None and header.total == len(data)


def test_compress_false_stores_blocks_uncompressed(info, tmp_path):
    driver = LocalDriver(info(compress="false", **{"max-file": "1"}))
    write_typical(driver, 1000)
    driver.close()
    data = (tmp_path / "local-logs" / "container.log").read_bytes()
    assert parse_header(data).flags == 0
    assert len(records(LocalDriver.read(info(), ReadConfig()))) == 1000


# -- size -------------------------------------------------------------------------------------

def test_typical_text_takes_at_least_five_times_less_room_than_json_file(tmp_path):
    lines = typical_log_lines(50_000)
    path = tmp_path / "container.log"
    # As the shim writes: one batch per pipe read of about 64 KiB.
    write_file(path, [[Chunk("stdout", T0 + i, b"".join(lines[i:i + 430]))]
                      for i in range(0, len(lines), 430)])
    assert json_file_size(lines) / os.path.getsize(path) >= 5
