"""One access-log line per HTTP request, written once the response has gone out.

uvicorn's own access log formats and writes its line when the response *starts*, on the event loop,
between the answer's headers and its body: about 0.2 ms of every search's latency on a small machine
(`python -m benchmarks.search_load`). This line is written after the body is sent, so a client waits for
none of it; it also says how long the request took, which uvicorn's does not. Both entry points
(`sketch-server`, and `uvicorn ... --no-access-log` in the Dockerfile and compose files) turn uvicorn's
off, so each request is logged once.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("app.access")


def request_line(scope: Scope) -> str:
    """``METHOD /path?query HTTP/1.1``: the request as the client sent it (the path undecoded)."""
    path = scope.get("raw_path") or scope["path"].encode()
    if isinstance(path, bytes):
        path = path.decode("latin-1")
    query = scope.get("query_string", b"")
    target = f"{path}?{query.decode('latin-1')}" if query else path
    return f"{scope['method']} {target} HTTP/{scope.get('http_version', '1.1')}"


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


class AccessLog:
    """Logs ``client - "request line" status duration`` to the ``app.access`` logger at INFO, for every
    HTTP request, refused ones included (it sits outside every other middleware of the app). A request
    whose handler raised is logged as 500, which is what Starlette's error middleware answers; one whose
    client left before the answer started is logged with status ``-``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: int | None = None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        raised = False
        try:
            await self.app(scope, receive, send_status)
        except Exception:  # not a cancellation: the client that left gets no answer at all
            raised = True
            raise
        finally:
            shown = 500 if raised and status is None else status
            log.info(
                '%s - "%s" %s %.1f ms',
                client_address(scope),
                request_line(scope),
                "-" if shown is None else shown,
                (time.perf_counter() - start) * 1000,
            )
