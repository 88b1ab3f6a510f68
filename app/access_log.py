"""One access-log line per HTTP request, written once the response has gone out.

uvicorn's own access log formats and writes its line when the response starts, on the event loop,
before the answer's headers and body are written: on every search's critical path (part of the
`--against aee91ce` gain in docs/benchmarks/search_load.json's history). This line is written after
the body is sent, so a client waits for none of it; it also says how long the request took, which
uvicorn's does not. Both entry points (`sketch-server`, and `uvicorn ... --no-access-log` in the
Dockerfile and compose file) turn uvicorn's off, so each request is logged once;
``SKETCH_ACCESS_LOG=false`` turns this one off too (a proxy in front that logs requests already).
"""

from __future__ import annotations

import logging
import time
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

from app.response_status import ResponseStatus

log = logging.getLogger("app.access")

# Kept as sent: RFC 3986's reserved characters and "%" (so an escape stays as the client wrote it).
# Everything else that is not a letter, digit or "-._~" is percent-encoded: a quote, a backslash,
# spaces, control characters and non-ASCII bytes can neither break the line's quoted field nor forge
# another line, whatever server runs the app.
_KEPT = "/?#[]@!$&'()*+,;=:%"


def _escaped(raw: bytes) -> str:
    return quote(raw.decode("latin-1"), safe=_KEPT, encoding="latin-1")  # latin-1: byte for byte


def request_line(scope: Scope) -> str:
    """``METHOD /path?query HTTP/1.1``: the request target as the client sent it, escaped
    (``_KEPT``)."""
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    target = _escaped(path) + (f"?{_escaped(query)}" if query else "")
    return f"{scope['method']} {target} HTTP/{scope.get('http_version', '1.1')}"


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


class AccessLog:
    """Logs ``client - "request line" status duration`` to the ``app.access`` logger at INFO, for every
    HTTP request, refused ones included (it sits outside every other middleware of the app).

    The status is what the app answered, whether or not the client was still there to read it (uvicorn
    lets an app finish after its client left). A handler that raised is logged as 500, the answer
    Starlette's error middleware (outside this one) then sends: that line is written just before the
    500 goes out, and before the error's traceback. A request cancelled before any answer (a server
    shutting down past its grace period) is logged with status ``-``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        sent = ResponseStatus(send)
        raised = False
        try:
            await self.app(scope, receive, sent)
        except Exception:  # not a cancellation: that request gets no answer at all
            raised = True
            raise
        finally:
            shown = 500 if raised and sent.status is None else sent.status
            log.info(
                '%s - "%s" %s %.1f ms',
                client_address(scope),
                request_line(scope),
                "-" if shown is None else shown,
                (time.perf_counter() - start) * 1000,
            )
