"""uvicorn's HTTP protocol (httptools) with each answer written to its socket in one piece.

uvicorn writes an answer's head (status line and headers) as soon as the app starts it, and its body
in a second write. Each write is a system call, and the first wakes the client to read a head whose
body follows a moment later: two wake-ups on the client's side where one would do. Here what is
written while the event loop runs one step is joined, and written when the answer is complete or the
step ends, whichever comes first: an answer whose head and body are sent together (Starlette's
``Response``, every JSON answer of the API) leaves in one write, before the app's work after it
(the access log, the metrics). A streamed body (a photo file) still goes out chunk by chunk as the app
produces them, and a write of ``FLUSH_BYTES`` or more goes at once, so big bodies keep uvicorn's flow
control. Part of what ``python -m benchmarks.search_load`` measures (README, Results; docs/search_service.md).

Served with ``uvicorn --http app.http_protocol:OneWriteHttpTools`` (as ``sketch-server``, the image's
command and compose's api service do).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FLUSH_BYTES = 64 * 1024  # pending bytes that are written at once rather than at the end of the step


class JoinedWrites:
    """A transport whose writes within one event-loop step reach the socket as one write, in order.
    Everything else is the wrapped transport's; closing (or ending the stream) writes what is pending
    first, aborting drops it with the connection."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if len(data) >= FLUSH_BYTES:  # a big body: what is pending, then the body itself, uncopied
            self.flush()
            if not self._transport.is_closing():
                self._transport.write(data)
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))  # a copy only of a mutable buffer the caller may reuse
        self._size += len(data)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Write what is pending now: at the end of the loop step that wrote it, when the answer is
        complete, or before a big write or closing."""
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._size + self._transport.get_write_buffer_size()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._size = 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through ``JoinedWrites``, and writing an answer the moment
    its last byte is sent: what the app does after that (its access log line, its metrics) is not
    waited for."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.joined = JoinedWrites(transport, asyncio.get_running_loop())
        super().connection_made(cast(asyncio.Transport, self.joined))

    def on_response_complete(self) -> None:
        self.joined.flush()
        super().on_response_complete()
