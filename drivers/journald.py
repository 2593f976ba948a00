"""The ``journald`` remote driver: records into the systemd journal with Docker's fields, and
``logs`` read back from the journal.

Sending: one datagram per record in journald's native protocol, on our own socket, with
exactly the fields Docker 20.10 sends (``CONTAINER_ID``, ``CONTAINER_ID_FULL``,
``CONTAINER_NAME``, ``CONTAINER_TAG``, ``IMAGE_NAME``, ``SYSLOG_IDENTIFIER``, ``PRIORITY``
6/3, the ``CONTAINER_PARTIAL_*`` fields and the mangled label/env extras) plus one of ours, ``CONTAINER_LOG_TIME_NS``: the record's log time. The
journal stamps an entry with the time it *receives* it, and records reach it from the spool,
possibly late, so Docker's choice (receive time only) would misdate every shipped backlog.

Reading: ``JournaldDriver.read`` queries the journal by ``CONTAINER_ID_FULL``, as Docker
does, instead of the spool; ``--since``/``--until`` and timestamps use the log time.

This module owns the mapping between records and journal entries in both directions, and
journald's native protocol on the sending side (see ``_deliver`` for why not systemd-python's
``sendv``). It must not import systemd-python at module level (only readers need it), and it
never touches the spool's records: following only asks whether the spool's writer is alive.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import socket
import struct
import time
from typing import TYPE_CHECKING, Any, Generator, Iterator, Mapping, Sequence

from logpipe.driver import BatchLimits, Library, LogInfo
from logpipe.errors import LogpipeError, RetryableError
from logpipe.message import STDERR, STDOUT, Chunk, Message, PartialMeta
from logpipe.options import check_known_keys
from logpipe.reading import ReadConfig

from .remote import RemoteDriverBase, spool_path

if TYPE_CHECKING:
    from systemd._reader import _Reader

#: Where journald takes native-protocol datagrams.
JOURNAL_SOCKET = "/run/systemd/journal/socket"

#: Our field with the record's log time in ns since the epoch (Docker sends none).
LOG_TIME_FIELD = "CONTAINER_LOG_TIME_NS"

#: systemd-python builds a C extension, so it is an extra: ``pip install 'logpipe[journald]'``.
JOURNAL = Library("systemd.journal", "systemd-python", "journald")

OPTIONS = frozenset({"labels", "labels-regex", "env", "env-regex", "tag"})
_EXTRA_KEYS = ("labels", "labels-regex", "env", "env-regex")

_PRIORITY = {STDOUT: b"PRIORITY=6\n", STDERR: b"PRIORITY=3\n"}
#: Docker's read side: 3 is stderr, 6 stdout; entries with any other priority are skipped.
_SOURCE = {b"6": STDOUT, b"3": STDERR}

_PARTIAL_ID = "CONTAINER_PARTIAL_ID"
_PARTIAL_ORDINAL = "CONTAINER_PARTIAL_ORDINAL"
_PARTIAL_LAST = "CONTAINER_PARTIAL_LAST"
_PARTIAL_MESSAGE = "CONTAINER_PARTIAL_MESSAGE"
_PARTIAL_FIELDS = frozenset({_PARTIAL_ID, _PARTIAL_ORDINAL, _PARTIAL_LAST, _PARTIAL_MESSAGE})

#: Fields Docker leaves out of ``--details`` (besides every ``_``-prefixed one), and ours.
_NOT_ATTRS = frozenset({
    "MESSAGE", "MESSAGE_ID", "PRIORITY", "CODE_FILE", "CODE_LINE", "CODE_FUNC", "ERRNO",
    "SYSLOG_FACILITY", "SYSLOG_IDENTIFIER", "SYSLOG_PID", "CONTAINER_NAME", "CONTAINER_ID",
    "CONTAINER_ID_FULL", "CONTAINER_TAG", LOG_TIME_FIELD,
})

#: How long one entry may wait for room in journald's socket queue before the batch is
#: given back to the shipper to retry (a stalled journald must not stall the shipper).
SEND_TIMEOUT_S = 10.0
_SNDBUF = 8 << 20

#: Docker polls ``sd_journal_wait`` every 250 ms while following.
_FOLLOW_POLL_US = 250_000
#: A follower ends once the container's log writer is gone and the journal has been quiet
#: this long: records still reach the journal through the shipper after the writer exits.
FOLLOW_QUIET_S = 1.0
#: ``--since`` seeks by the journal's receive time, which is never before the log time on
#: one host; the slack absorbs wall-clock steps (NTP) between logging and receiving.
_SINCE_SLACK_US = 10_000_000


def journald_field_ok(key: str) -> bool:
    """Whether journald keeps a field of this (already mangled) name.

    journald silently drops names that are empty, longer than 64 bytes, start with a digit
    or ``_``, or hold anything but ``A-Z 0-9 _`` (Docker's label ``9lives`` is lost this
    way). Dropping them here gives the journal Docker's result without sending them.
    """
    return (0 < len(key) <= 64 and not key[0].isdigit() and key[0] != "_"
            and all("A" <= c <= "Z" or "0" <= c <= "9" or c == "_" for c in key))


def journal_fields(opts: Mapping[str, str], info: LogInfo) -> dict[str, str]:
    """Docker's constant fields for a container (``journald.New``): the built-in ones, then
    the mangled extras, which overwrite built-ins of the same name as in Docker.

    Raises ``LogOptError`` for a bad ``tag`` template or extra-attribute regex.
    """
    from logpipe.template import render_tag

    tag = render_tag(opts, info)
    fields = {
        "CONTAINER_ID": info.container_id[:12],
        "CONTAINER_ID_FULL": info.container_id,
        "CONTAINER_NAME": info.name,
        "CONTAINER_TAG": tag,
        "IMAGE_NAME": info.image_name,
        "SYSLOG_IDENTIFIER": tag,
    }
    if any(k in opts for k in _EXTRA_KEYS):
        from logpipe.extras import extra_attrs, mangle_journald

        extras = extra_attrs(opts, info, mangle_journald)
        fields.update((k, v) for k, v in extras.items() if journald_field_ok(k))
    return fields


def native_field(key: str, value: bytes) -> bytes:
    """One field in journald's native protocol (systemd.io/JOURNAL_NATIVE_PROTOCOL):
    ``KEY=value\\n``, or, for a value holding a newline, ``KEY\\n`` + its length as a
    little-endian u64 + the value + ``\\n``. Every other byte (NUL, invalid UTF-8) is data."""
    if b"\n" in value:
        return b"%s\n%s%s\n" % (key.encode(), struct.pack("<Q", len(value)), value)
    return b"%s=%s\n" % (key.encode(), value)


def _encode(fields: Mapping[str, str]) -> bytes:
    return b"".join(native_field(k, v.encode("utf-8", "surrogateescape"))
                    for k, v in fields.items())


class JournaldDriver(RemoteDriverBase):
    """Sends each record as one journal entry; reads a container's entries back."""

    name = "journald"
    #: Only reading needs it (sending speaks the native protocol), but a journald container
    #: whose ``logs`` cannot work is refused at create rather than found out later.
    libraries = (JOURNAL,)
    #: A local datagram socket: no reason to wait for fuller batches.
    limits = BatchLimits(max_count=1000, max_bytes=1 << 20, wait=0.0)

    @staticmethod
    def validate(opts: Mapping[str, str], info: LogInfo | None = None) -> None:
        """Docker's key check (``unknown log opt 'k' for journald log driver``), then what
        Docker only finds at start: a tag template or extras regex that does not work."""
        check_known_keys(opts, OPTIONS, "journald")
        journal_fields(opts, info if info is not None else LogInfo("0" * 64, ""))

    @staticmethod
    def probe(info: LogInfo) -> None:
        """Docker refuses to start the container without a running journal: it dials the
        socket (go-systemd ``journal.Enabled``), and so do we."""
        if not _journal_listening(JOURNAL_SOCKET):
            raise LogpipeError("journald is not enabled on this host")

    def __init__(self, info: LogInfo) -> None:
        super().__init__(info)
        fields = journal_fields(self.opts, info)
        fields.pop(LOG_TIME_FIELD, None)  # ours is per record and wins over an extra
        #: Everything but MESSAGE, PRIORITY and the log time, encoded once: journald takes
        #: one entry per datagram, so per-record work is one format and one ``sendmsg``.
        self._const = _encode(fields)
        # Docker sets the partial fields per message, over extras of the same name.
        self._const_partial = _encode({k: v for k, v in fields.items()
                                       if k not in _PARTIAL_FIELDS})
        self._sock: socket.socket | None = None
        #: (first record of the failed batch, how many of it the journal took): a retried
        #: batch skips what was delivered, so a journald restart does not duplicate entries.
        self._resume: tuple[Message, int] | None = None

    def send(self, batch: Sequence[Message]) -> int | None:
        """One datagram per record. A datagram is taken whole or not at all, so on failure
        the records before it are remembered as delivered (see ``_resume``)."""
        start = 0
        if self._resume is not None and batch and batch[0] == self._resume[0]:
            start = min(self._resume[1], len(batch))
        self._resume = None
        deliver, const, prio = self._deliver, self._const, _PRIORITY
        i = start
        try:
            for i in range(start, len(batch)):
                msg = batch[i]
                line = msg.line
                if msg.partial is None and b"\n" not in line:  # the common case, inline
                    deliver(b"MESSAGE=%s\n%sCONTAINER_LOG_TIME_NS=%d\n%s"
                            % (line, prio[msg.source], msg.ts, const))
                else:
                    deliver(self._entry(msg))
        except OSError as err:
            self.close()
            if i > 0:
                self._resume = (batch[0], i)
            reason = ("journald took nothing for %g s" % SEND_TIMEOUT_S
                      if err.errno == errno.EAGAIN else err.strerror or err)
            raise RetryableError(f"journald: sending to {JOURNAL_SOCKET} failed: {reason}") \
                from err
        return None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _entry(self, msg: Message) -> bytes:
        """The datagram of a record that is a piece of a long line (or holds a newline)."""
        parts = [native_field("MESSAGE", msg.line), _PRIORITY[msg.source],
                 b"CONTAINER_LOG_TIME_NS=%d\n" % msg.ts]
        if msg.partial is None:
            parts.append(self._const)
        else:
            parts.append(_partial_fields(msg.partial))
            parts.append(self._const_partial)
        return b"".join(parts)

    def _deliver(self, payload: bytes) -> None:
        """Send one entry. Not ``sd_journal_sendv``: systemd-python holds the GIL while it
        blocks, so a stalled journald (its queue holds 10 datagrams) would freeze the whole
        daemon. This socket releases the GIL and gives up after ``SEND_TIMEOUT_S``."""
        sock = self._sock
        if sock is None:
            sock = self._sock = _journal_socket()
        try:
            sock.sendto(payload, JOURNAL_SOCKET)
        except OSError as err:
            if err.errno != errno.EMSGSIZE:
                raise
            _send_memfd(sock, payload)

    @classmethod
    def read(cls, info: LogInfo, config: ReadConfig) -> Iterator[Chunk]:
        """The container's entries from the journal (Docker's ``ReadLogs``), not the spool.
        systemd-python is imported now, so that its absence is the request's 400, not an
        error in the middle of a stream."""
        _systemd_journal()
        return _read_journal(info, config)


def _systemd_journal() -> Any:
    """systemd-python's ``systemd.journal``, imported on first use (``MissingLibrary``
    without it)."""
    return JOURNAL.load("journald")


def _partial_fields(p: PartialMeta) -> bytes:
    """Docker's partial fields; ``CONTAINER_PARTIAL_MESSAGE`` only before the last piece."""
    fields = b"CONTAINER_PARTIAL_ID=%s\nCONTAINER_PARTIAL_ORDINAL=%d\n" % (p.id.encode(),
                                                                        p.ordinal)
    if p.last:
        return fields + b"CONTAINER_PARTIAL_LAST=true\n"
    return fields + b"CONTAINER_PARTIAL_LAST=false\nCONTAINER_PARTIAL_MESSAGE=true\n"


def _journal_socket() -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    # A blocking socket with a kernel send timeout: one syscall per entry (Python's own
    # timeout would poll before every send), EAGAIN once journald's queue stays full.
    sec = int(SEND_TIMEOUT_S)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                    struct.pack("ll", sec, int((SEND_TIMEOUT_S - sec) * 1e6)))
    # A datagram may be as large as the send buffer; libsystemd asks for 8 MiB too.
    for opt in (getattr(socket, "SO_SNDBUFFORCE", 32), socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, _SNDBUF)
            break
        except OSError:  # SO_SNDBUFFORCE needs CAP_NET_ADMIN; SO_SNDBUF is capped by wmem_max
            continue
    return sock


def _send_memfd(sock: socket.socket, payload: bytes) -> None:
    """An entry too large for one datagram goes in a sealed memfd whose descriptor is sent
    instead (the native protocol's large-entry path, as libsystemd does it)."""
    fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                    | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
        sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))],
                     0, JOURNAL_SOCKET)
    finally:
        os.close(fd)


def _journal_listening(path: str) -> bool:
    """Whether a journald answers at ``path`` (a stale socket file refuses the connect)."""
    if not os.path.exists(path):
        return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.connect(path)
    except OSError:
        return False
    finally:
        sock.close()
    return True


# -- reading -------------------------------------------------------------------------------


def _open_reader(container_id: str) -> "_Reader":
    """The journal, matched to one container. ``_Reader`` rather than ``Reader``: the latter
    decodes every field to text and every timestamp to a ``datetime`` per entry."""
    journal = _systemd_journal()
    reader = journal._Reader(journal.LOCAL_ONLY)
    reader.data_threshold = 0  # whole fields: the default cuts values at 64 KiB
    reader.add_match(f"CONTAINER_ID_FULL={container_id}")
    return reader


def _field(reader: "_Reader", key: str) -> bytes | None:
    try:
        return reader._get(key)
    except KeyError:
        return None


def _entry_chunk(reader: "_Reader", details: bool) -> Chunk | None:
    """The current entry as a chunk, or None for a priority that is neither stream."""
    source = _SOURCE.get(_field(reader, "PRIORITY") or b"")
    if source is None:
        return None
    message = _field(reader, "MESSAGE") or b""
    stamp = _field(reader, LOG_TIME_FIELD)
    ts = int(stamp) if stamp and stamp.isdigit() else reader._get_realtime() * 1000
    partial = None
    pid = _field(reader, _PARTIAL_ID)
    pending = _field(reader, _PARTIAL_MESSAGE) == b"true"
    if pid is not None or pending:
        ordinal = _field(reader, _PARTIAL_ORDINAL) or b""
        partial = PartialMeta((pid or b"").decode("utf-8", "replace"),
                              int(ordinal) if ordinal.isdigit() else 1,
                              _field(reader, _PARTIAL_LAST) == b"true")
    data = message if pending else message + b"\n"
    attrs = _attrs(reader._get_all()) if details else None
    return Chunk(source, ts, data, partial, attrs)


def _attrs(entry: Mapping[str, Any]) -> dict[str, str]:
    """Docker's ``--details`` for a journal entry: every field not excluded in ``_NOT_ATTRS``
    and not starting with ``_`` (IMAGE_NAME, extras and CONTAINER_PARTIAL_* remain)."""
    attrs = {}
    for key, value in entry.items():
        if key[0] == "_" or key in _NOT_ATTRS:
            continue
        if isinstance(value, list):  # a field sent twice: Docker's map keeps one value
            value = value[-1]
        attrs[key] = value.decode("utf-8", "replace")
    return attrs


def _history(reader: "_Reader", cfg: ReadConfig) -> Generator[Chunk, None, bool]:
    """Entries already in the journal, with Docker's journald semantics: ``tail`` N is the
    last N entries at or before ``until``, then ``since`` filters. Returns (as the
    generator's value) True if reading stopped at ``until``. Leaves the reader on the last
    entry considered, so that ``_next`` then returns only newer ones."""
    if cfg.tail == 0:
        reader.seek_tail()
        reader._previous()
        return False
    if cfg.tail > 0:
        reader.seek_tail()
        picked: list[Chunk] = []
        newest = None
        passed = False
        while len(picked) < cfg.tail and reader._previous():
            if newest is None:
                newest = reader._get_cursor()
            chunk = _entry_chunk(reader, cfg.details)
            if chunk is None:
                continue
            if cfg.until and chunk.ts > cfg.until:
                passed = True
                continue
            picked.append(chunk)
        if newest is not None:
            reader.seek_cursor(newest)
            reader._next()
        for chunk in reversed(picked):
            if not cfg.since or chunk.ts >= cfg.since:
                yield chunk
        return passed
    if cfg.since:
        reader.seek_realtime(max(0, cfg.since // 1000 - _SINCE_SLACK_US))
    else:
        reader.seek_head()
    while reader._next():
        chunk = _entry_chunk(reader, cfg.details)
        if chunk is None or (cfg.since and chunk.ts < cfg.since):
            continue
        if cfg.until and chunk.ts > cfg.until:
            return True
        yield chunk
    return False


def _follow(reader: "_Reader", info: LogInfo, cfg: ReadConfig) -> Iterator[Chunk]:
    """New entries until the container's log writer is gone and everything it wrote is in
    the journal: the shipper's checkpoint has reached the end of the spool and a poll found
    nothing more. If the shipper makes no progress (journald down), the follow ends once the
    journal has been quiet for ``FOLLOW_QUIET_S`` with the checkpoint standing still."""
    from logpipe.fileset import writer_alive

    from .spool import shipping_position, spool_drained

    spool = spool_path(info)
    cursor = _cursor(reader)
    quiet_since: float | None = None  # set once the writer is seen gone
    position = None
    while True:
        got = False
        while reader._next():
            got = True
            chunk = _entry_chunk(reader, cfg.details)
            if chunk is None:
                continue
            if cfg.until and chunk.ts > cfg.until:
                return
            if not cfg.since or chunk.ts >= cfg.since:
                yield chunk
        now = time.monotonic()
        if got:
            cursor = _cursor(reader)
        if writer_alive(spool):
            quiet_since = None
        else:
            if not got and spool_drained(info, JournaldDriver.name):
                return
            moved = shipping_position(info, JournaldDriver.name)
            if got or quiet_since is None or moved != position:
                quiet_since, position = now, moved
            elif now - quiet_since >= FOLLOW_QUIET_S:
                return
        reader.wait(_FOLLOW_POLL_US)
        _reposition(reader, cursor)


def _cursor(reader: "_Reader") -> str | None:
    """The cursor of the entry the reader is on (it stays on the last one at the end)."""
    try:
        return reader._get_cursor()
    except OSError:  # not on any entry: the container had none
        return None


def _reposition(reader: "_Reader", cursor: str | None) -> None:
    """Put the reader back on the entry at ``cursor``, so that ``_next`` continues after it.

    Needed, not cosmetic: a reader that reached the end while journald was appending an entry
    of ours (the journal's entry count already raised, our match not yet linked to it) skips
    the file until the count changes again; on a quiet journal that is never, and the entry
    would be missed. A seek makes sd-journal look at every file afresh.
    """
    if cursor is None:
        reader.seek_head()  # nothing of ours existed before: every entry is new
        return
    reader.seek_cursor(cursor)
    if reader._next() and not reader.test_cursor(cursor):
        # That entry is gone (vacuumed) and we stand on a newer one: step back before it.
        if not reader._previous():
            reader.seek_head()


def _read_journal(info: LogInfo, cfg: ReadConfig) -> Iterator[Chunk]:
    reader = _open_reader(info.container_id)
    try:
        until_passed = yield from _history(reader, cfg)
        if cfg.follow and not until_passed:
            yield from _follow(reader, info, cfg)
    finally:
        reader.close()
