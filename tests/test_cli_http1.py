"""The CLI's own HTTP/1.1 reader (``runtime/cli/http1.py``) on a real socket pair: every body
framing the daemon uses, cut at every byte, and a daemon that goes away mid-answer raising
what ``http.client`` raises (the commands report both alike). Its URL encoding is
``urllib.parse``'s, checked against it."""

from __future__ import annotations

import socket
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given, strategies as st

from runtime.cli import http1

pytestmark = pytest.mark.integration


class Trickle:
    """A real socket whose ``recv`` returns at most ``step`` bytes: the answer arrives cut at
    every ``step``-th byte, as a slow daemon or a busy machine cuts it."""

    def __init__(self, sock: socket.socket, step: int) -> None:
        self.sock, self.step = sock, step

    def recv(self, n: int) -> bytes:
        return self.sock.recv(min(n, self.step))

    def close(self) -> None:
        self.sock.close()


def answer(raw: bytes, step: int = 1 << 16, method: str = "GET") -> http1.Response:
    """A ``Response`` reading ``raw`` from a socket pair whose writer then closes its end."""
    ours, theirs = socket.socketpair()
    with theirs:
        theirs.sendall(raw)
    return http1.Response(Trickle(ours, step), method)


CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Docker-Thing: a:b\r\n\r\n"
           b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n")
SIZED = b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nhelloEXTRA"
UNTIL_CLOSE = b"HTTP/1.0 200 OK\r\n\r\nhello, world"


@pytest.mark.parametrize("raw,body", [(CHUNKED, b"hello, world"), (SIZED, b"hello"),
                                      (UNTIL_CLOSE, b"hello, world")])
def test_each_framing_reads_the_whole_body_wherever_the_bytes_are_cut(raw, body):
    for step in range(1, len(raw) + 1):
        resp = answer(raw, step)
        assert resp.read() == body and resp.read() == b"", step
        step_read = answer(raw, step)
        assert b"".join(iter(lambda: step_read.read1(3), b"")) == body, step


def test_status_reason_and_headers_are_read_as_http_client_reads_them():
    resp = answer(CHUNKED)
    assert (resp.status, resp.reason) == (200, "OK")
    assert resp.getheader("x-docker-thing") == "a:b" and resp.getheader("Nope", "-") == "-"
    assert answer(SIZED).status == 404


def test_read_with_a_size_and_read1_give_the_body_in_order():
    resp = answer(CHUNKED, 1)
    assert resp.read(3) == b"hel"
    assert resp.read1(100) == b"l"  # what has arrived: one byte at a time here
    assert resp.read(3) == b"o, " and resp.read() == b"world"
    assert answer(CHUNKED).read1(2) == b"he"


def test_no_body_after_head_or_204():
    assert answer(b"HTTP/1.1 204 No Content\r\n\r\n").read() == b""
    assert answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", method="HEAD").read() == b""


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("raw", [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
                                 CHUNKED_HEAD + b"5\r\nhel", CHUNKED_HEAD + b"5\r\nhello\r\n"])
def test_a_daemon_gone_inside_a_body_is_incomplete_read(raw):
    with pytest.raises(http1.IncompleteRead):
        answer(raw).read()


def test_a_daemon_gone_before_its_answer_is_remote_disconnected():
    with pytest.raises(http1.RemoteDisconnected):
        answer(b"HTTP/1.1 200")
    assert issubclass(http1.RemoteDisconnected, ConnectionError)


@given(st.text())
def test_quote_is_urllib_quote_with_nothing_safe(text):
    assert http1.quote(text) == quote(text, safe="")


@given(st.dictionaries(st.text(), st.one_of(
    st.text(), st.integers(), st.booleans(), st.binary(),
    st.lists(st.one_of(st.text(), st.integers())))))
def test_query_string_is_urlencode_with_doseq(query):
    assert http1.query_string(query) == urlencode(query, doseq=True)
