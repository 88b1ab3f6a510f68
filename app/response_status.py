"""The status an ASGI app answers with, as middleware around it sees it."""

from __future__ import annotations

from starlette.types import Message, Send


class ResponseStatus:
    """A ``send`` that passes every message on and keeps the answer's status (None until the
    response starts): what the metrics and the access log record of each request."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status: int | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)
