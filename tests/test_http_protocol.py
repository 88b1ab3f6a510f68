"""Answers written in one piece: JoinedWrites on a recording transport, and real uvicorn servers."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app import serve
from app.http_protocol import FLUSH_BYTES, JoinedWrites, OneWriteHttpTools
from benchmarks.common import free_port
from tests.helpers import wait_until


class Recording:
    """A transport that records what reaches it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7

    def close(self) -> None:
        self.events.append("close")
        self.closing = True

    def abort(self) -> None:
        self.events.append("abort")
        self.closing = True

    def write_eof(self) -> None:
        self.events.append("eof")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("10.0.0.1", 5)}.get(name, default)


def joined() -> tuple[JoinedWrites, Recording, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    real = Recording()
    return JoinedWrites(real, loop), real, loop  # type: ignore[arg-type]


def end_step(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def test_a_steps_writes_reach_the_socket_as_one_write_in_order() -> None:
    writes, real, loop = joined()
    try:
        writes.write(b"HTTP/1.1 200 OK\r\n\r\n")
        writes.write(bytearray(b"{"))
        writes.writelines([memoryview(b'"a"'), b"", b"}"])
        assert real.writes == [] and writes.get_write_buffer_size() == 24 + 7
        end_step(loop)
        assert real.writes == [b'HTTP/1.1 200 OK\r\n\r\n{"a"}']
        writes.write(b"next")
        end_step(loop)
        assert real.writes[1:] == [b"next"]
        end_step(loop)
        assert len(real.writes) == 2  # nothing pending: no empty write
    finally:
        loop.close()


def test_big_writes_go_at_once_and_closing_writes_what_is_pending_first() -> None:
    writes, real, loop = joined()
    try:
        big = b"x" * FLUSH_BYTES
        writes.write(b"h")
        writes.write(big)
        assert real.writes == [b"h", big] and real.writes[1] is big  # at once, in order, uncopied
        half = b"y" * (FLUSH_BYTES // 2)
        writes.write(half)
        writes.write(half)
        assert real.writes[2:] == [half + half]  # pending reaching the limit goes at once too
        writes.write(b"tail")
        writes.close()
        assert real.writes[3:] == [b"tail"] and real.events == ["close"]
        writes.write(b"late")  # after close: dropped with the connection, as the socket would
        writes.write(big)
        end_step(loop)
        assert real.writes[3:] == [b"tail"]
    finally:
        loop.close()


def test_ending_the_stream_flushes_and_aborting_drops() -> None:
    writes, real, loop = joined()
    try:
        writes.write(b"a")
        writes.write_eof()
        assert real.writes == [b"a"] and real.events == ["eof"]
        writes.write(b"b")
        writes.abort()
        end_step(loop)
        assert real.writes == [b"a"] and real.events == ["eof", "abort"]
        assert writes.get_extra_info("peername") == ("10.0.0.1", 5)  # the rest is the transport's
    finally:
        loop.close()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """/plain answers like Starlette's Response; /stream in three chunks with the loop running between;
    /echo reads the body first (so a client expecting 100 Continue gets it)."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/echo":
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one,", b"two,", b"three"):
            await asyncio.sleep(0.01)
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


WRITES: list[int] = []  # per connection of the counting protocols: writes that reached the socket


class Counted:
    """A transport that counts the writes reaching it, in ``WRITES[slot]``."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport, self.slot = transport, len(WRITES)
        WRITES.append(0)

    def write(self, data: bytes) -> None:
        WRITES[self.slot] += 1
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def counting(base: type[HttpToolsProtocol]) -> type[HttpToolsProtocol]:
    class Counting(base):  # type: ignore[valid-type, misc]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(Counted(transport))

    return Counting


@contextmanager
def served(protocol: type[HttpToolsProtocol], asgi: Any = app) -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        asgi, host="127.0.0.1", port=port, http=protocol, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def started() -> bool:
        assert thread.is_alive(), "uvicorn stopped while starting"
        return bool(server.started)

    wait_until(started, "uvicorn to start", 20, every=0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def exchange(port: int, request: bytes, until: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        got = b""
        while not got.endswith(until):
            chunk = conn.recv(65536)
            assert chunk, f"connection closed after {got!r}"
            got += chunk
        return got


def received(conn: socket.socket) -> bytes:
    chunk = conn.recv(65536)
    assert chunk, "the server closed the connection"
    return chunk


def test_uvicorn_writes_a_plain_answer_once_where_it_wrote_twice() -> None:
    WRITES.clear()
    for protocol in (HttpToolsProtocol, OneWriteHttpTools):
        with served(counting(protocol)) as port:
            answer = exchange(port, b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n", b"ok")
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nok")
    assert WRITES == [2, 1]


def test_streams_keep_alive_close_and_100_continue_work_as_before() -> None:
    with served(OneWriteHttpTools) as port:
        stream = exchange(port, b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n", b"0\r\n\r\n")
        assert stream.split(b"\r\n\r\n", 1)[1] == b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:  # one connection, twice
            for _ in range(2):
                conn.sendall(b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n")
                got = b""
                while not got.endswith(b"ok"):
                    got += received(conn)
                assert got.startswith(b"HTTP/1.1 200") and got.count(b"HTTP/1.1") == 1
        closing = exchange(port, b"GET /plain HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", b"ok")
        assert b"connection: close" in closing.lower()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(
                b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
            )
            assert conn.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"  # before the body is sent
            conn.sendall(b"hello")
            got = b""
            while not got.endswith(b"hello"):
                got += received(conn)
            assert got.startswith(b"HTTP/1.1 200")


def test_sketch_server_serves_with_one_write_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: dict[str, Any] = {}
    monkeypatch.setattr(serve.uvicorn, "run", lambda app, **options: ran.update(options))
    monkeypatch.setattr(sys, "argv", ["sketch-server"])
    serve.main()
    assert ran["http"] is OneWriteHttpTools


RELEASED = threading.Event()  # set by the client once it has the answer
WAITED: list[bool] = []  # per answer: whether the client had it while the app still worked after it


async def works_after_answering(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers, then works on the event loop (as the access log and the metrics do after the body is
    sent) until the client says it has the answer, or 10 s."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
    WAITED.append(RELEASED.wait(timeout=10))


def test_a_complete_answer_is_written_before_the_apps_work_after_it() -> None:
    """Held to the end of the loop step, the answer would wait for the app's work after it."""
    RELEASED.clear()
    WAITED.clear()
    with served(OneWriteHttpTools, works_after_answering) as port:
        assert exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", b"ok").startswith(b"HTTP/1.1 200")
        RELEASED.set()
        wait_until(lambda: WAITED, "the app's work after its answer", 20, every=0.01)
    assert WAITED == [True]


def test_pipelined_requests_get_the_same_bytes_as_from_uvicorn_s_own_protocol() -> None:
    """Several requests sent at once on one connection (an answer, HEAD, a stream, a body read first,
    and a last one that closes): the same answers, in the same order, byte for byte but the date."""
    requests = (
        b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n"
        b"HEAD /plain HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /plain HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    answers = []
    for protocol in (HttpToolsProtocol, OneWriteHttpTools):
        with served(protocol) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(requests)
            got = b""
            while chunk := conn.recv(65536):
                got += chunk
            answers.append(re.sub(rb"date: [^\r]*\r\n", b"", got))
    assert answers[0].count(b"HTTP/1.1 200") == 5 and answers[0].endswith(b"ok")
    assert answers[1] == answers[0]
