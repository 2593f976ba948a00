"""The pieces of ``-i`` that need no daemon: Docker's detach keys (``runtime.detach_keys``)
and the shim's stdin relay (``runtime.stdin_relay``) over a real pipe and real sockets."""

from __future__ import annotations

import os
import selectors
import socket

import pytest

from runtime.detach_keys import EscapeWatch, InvalidDetachKeys, parse_detach_keys
from runtime.stdin_relay import StdinRelay

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text, keys", [("", b"\x10\x11"), ("ctrl-p,ctrl-q", b"\x10\x11"),
                                        ("a,ctrl-@,ctrl-_,DEL", b"a\x00\x1f\x7f"),
                                        ("ctrl-\\", b"\x1c")])
def test_detach_keys_are_read_as_dockers_term_to_bytes(text, keys):
    assert parse_detach_keys(text) == keys


@pytest.mark.parametrize("text", ["ctrl-1", "ctrl-", "ab", "ctrl-p,,ctrl-q"])
def test_bad_detach_keys_get_dockers_text(text):
    with pytest.raises(InvalidDetachKeys, match=r"^Invalid detach keys \(.*\) provided$"):
        parse_detach_keys(text)


def test_the_escape_watch_holds_a_partial_match_and_swallows_a_full_one():
    watch = EscapeWatch(b"\x10\x11")
    assert watch.feed(b"ls\x10") == (b"ls", False)  # held: the next byte decides
    assert watch.feed(b"\x10") == (b"\x10", False)  # ctrl-p ctrl-p: the first goes on
    assert watch.feed(b"x") == (b"\x10x", False)
    assert watch.feed(b"ab\x10\x11cd") == (b"ab", True)  # the sequence is not passed on
    assert EscapeWatch(b"").feed(b"\x10\x11") == (b"\x10\x11", False)


@pytest.fixture
def relay(tmp_path):
    made = []

    def make(close_on_eof: bool):
        read_end, write_end = os.pipe()
        r = StdinRelay(str(tmp_path / "stdin.sock"), write_end, close_on_eof, True,
                       report=lambda _text: None)
        made.append((r, read_end))
        return r, read_end

    yield make
    for r, read_end in made:
        r.close()
        os.close(read_end)


def _serve(r: StdinRelay, until, turns: int = 200) -> None:
    sel = selectors.DefaultSelector()
    sel.register(r.fileno(), selectors.EVENT_READ)
    for _ in range(turns):
        if until():
            break
        if sel.select(1.0):
            r.ready()
    sel.close()
    assert until()


def _connect(r: StdinRelay) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(r.path)
    return s


def test_the_relay_writes_what_clients_send_and_closes_stdin_on_eof_with_stdin_once(relay):
    r, out = relay(close_on_eof=True)
    idle = _connect(r)  # sends nothing, costs nothing
    client = _connect(r)
    client.sendall(b"hello\n")
    client.close()
    _serve(r, lambda: r.closed)
    assert os.read(out, 100) == b"hello\n"
    assert os.read(out, 100) == b""  # EOF: the container's stdin is closed
    assert not os.path.exists(r.path)  # a later attach finds no stdin
    idle.close()


def test_the_relay_keeps_stdin_open_without_stdin_once_and_waits_for_a_slow_reader(relay):
    r, out = relay(close_on_eof=False)
    client = _connect(r)
    client.setblocking(False)
    sent = 0
    try:
        while True:  # more than the pipe holds: the relay must stop reading the client
            sent += client.send(b"x" * 65536)
            r.ready()
    except BlockingIOError:
        pass
    assert r.writing  # it waits for the pipe, without blocking
    got = 0
    while got < sent:
        os.set_blocking(out, False)
        try:
            got += len(os.read(out, 1 << 20))
        except BlockingIOError:
            r.ready()
    client.close()
    _serve(r, lambda: not r.conns)
    assert not r.closed and got == sent
