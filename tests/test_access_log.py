"""The access log: one line per request, written after the answer has gone out."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from app import serve
from app.access_log import AccessLog
from tests.helpers import REPO, make_client

LINE = re.compile(r'^(?P<client>\S+) - "(?P<request>[^"]+)" (?P<status>\d{3}|-) (?P<ms>\d+\.\d) ms$')


def http_scope(path: str = "/search", query: bytes = b"k=3") -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "http_version": "1.1",
        "headers": [],
        "client": ("10.1.2.3", 5555),
    }


class Events(logging.Handler):
    """The access log's records and the ASGI messages sent, in the order they happened."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())

    async def send(self, message: Message) -> None:
        self.seen.append(message["type"])


@pytest.fixture
def events() -> Any:
    handler = Events()
    logger = logging.getLogger("app.access")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


async def no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def run(app: Any, scope: Scope, send: Send, receive: Receive = no_body) -> None:
    asyncio.run(AccessLog(app)(scope, receive, send))


async def answers_201(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await asyncio.sleep(0.03)  # the body takes a while to go out
    await send({"type": "http.response.body", "body": b"{}"})


def test_the_line_is_written_after_the_answer_is_sent_and_says_how_long_it_took(events: Events) -> None:
    run(answers_201, http_scope(), events.send)
    # uvicorn's own line comes before the answer goes out: a client waits for it
    assert events.seen[:2] == ["http.response.start", "http.response.body"]
    assert len(events.seen) == 3
    line = LINE.match(events.seen[2])
    assert line is not None, events.seen[2]
    assert line["client"] == "10.1.2.3:5555"
    assert line["request"] == "POST /search?k=3 HTTP/1.1"
    assert line["status"] == "201"
    assert 30 <= float(line["ms"]) < 5000  # up to the body's end


def test_the_path_is_logged_as_sent_and_a_request_without_query_has_no_question_mark(
    events: Events,
) -> None:
    scope = {**http_scope("/images/é", b""), "raw_path": b"/images/%C3%A9", "client": None}
    run(answers_201, scope, events.send)
    line = LINE.match(events.seen[-1])
    assert line is not None and line["request"] == "POST /images/%C3%A9 HTTP/1.1" and line["client"] == "-"


@pytest.mark.parametrize(
    ("raw_path", "query", "logged"),
    [
        (b'/a"b', b'x="y"', "/a%22b?x=%22y%22"),  # a quote would end the quoted field early
        (b"/a b\\c", b"q=\\x", "/a%20b%5Cc?q=%5Cx"),
        (b"/p", b"q=1%0A", "/p?q=1%0A"),  # an escape stays as sent
        (b"/p\r\n2026 INFO forged", b"", "/p%0D%0A2026%20INFO%20forged"),  # no second line
        (b"/caf\xc3\xa9", b"a=\xff", "/caf%C3%A9?a=%FF"),  # bytes beyond ASCII, byte for byte
    ],
)
def test_the_request_line_cannot_break_its_field_or_forge_a_line(
    events: Events, raw_path: bytes, query: bytes, logged: str
) -> None:
    run(answers_201, {**http_scope(), "raw_path": raw_path, "query_string": query}, events.send)
    line = LINE.match(events.seen[-1])
    assert line is not None and line["request"] == f"POST {logged} HTTP/1.1", events.seen[-1]


def test_a_server_without_raw_path_has_the_decoded_path_escaped(events: Events) -> None:
    scope = {**http_scope("/a\nb c"), "query_string": b""}
    del scope["raw_path"]
    run(answers_201, scope, events.send)
    assert LINE.match(events.seen[-1]) is not None and '"POST /a%0Ab%20c HTTP/1.1"' in events.seen[-1]


def test_a_handler_that_raised_is_logged_as_the_500_it_becomes(events: Events) -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        run(broken, http_scope(), events.send)
    line = LINE.match(events.seen[-1])
    assert line is not None and line["status"] == "500"


def test_a_request_left_before_any_answer_is_logged_without_a_status(events: Events) -> None:
    async def abandoned(scope: Scope, receive: Receive, send: Send) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        run(abandoned, http_scope(), events.send)
    line = LINE.match(events.seen[-1])
    assert line is not None and line["status"] == "-"


def test_the_app_logs_every_request_once_refused_ones_included(
    tmp_path: Path, tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.access")
    with make_client(tmp_path, tiny_checkpoint) as client:
        caplog.clear()
        assert client.get("/healthz").status_code == 200
        # refused before any route runs (the admin token is checked ahead of the body)
        assert client.get("/admin/jobs/1").status_code == 401
        assert client.get("/no/such/page").status_code == 404
    lines = [LINE.match(r.getMessage()) for r in caplog.records if r.name == "app.access"]
    assert all(lines), [r.getMessage() for r in caplog.records]
    assert [(m["request"], m["status"]) for m in lines if m] == [
        ("GET /healthz HTTP/1.1", "200"),
        ("GET /admin/jobs/1 HTTP/1.1", "401"),
        ("GET /no/such/page HTTP/1.1", "404"),
    ]


def test_the_access_log_can_be_turned_off(
    tmp_path: Path, tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.access")
    with make_client(tmp_path, tiny_checkpoint, access_log=False) as client:
        assert client.get("/healthz").status_code == 200
    assert not [r for r in caplog.records if r.name == "app.access"]


def test_sketch_server_turns_uvicorn_s_own_access_log_off(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: dict[str, Any] = {}
    monkeypatch.setattr(serve.uvicorn, "run", lambda app, **options: ran.update(options))
    monkeypatch.setattr(sys, "argv", ["sketch-server", "--port", "8123"])
    serve.main()
    assert ran["access_log"] is False and ran["port"] == 8123


def test_the_image_entry_point_logs_like_sketch_server_and_keeps_faiss_quiet(tmp_path: Path) -> None:
    # `uvicorn app.asgi:app` (the image's command) configures nothing for the app's loggers itself
    code = "import logging, app.asgi; logging.getLogger('app').info('start-up report')"
    env = {**os.environ, "SKETCH_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    line = r"^\d{4}-\d\d-\d\d [\d:,]+ INFO app: start-up report$"
    assert re.search(line, result.stderr, re.M), result.stderr
    assert "faiss.loader" not in result.stderr and "Could not load library" not in result.stderr
