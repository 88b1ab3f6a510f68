"""Request body limits enforced while the body streams in, before any of it is parsed."""

from __future__ import annotations

import threading

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import APIError, error_response

MULTIPART_SLACK = 64 * 1024  # form boundaries and headers around the file itself


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """413 as soon as the declared or received body exceeds the limit for its path."""

    def __init__(self, app: ASGIApp, limits: dict[str, int], default: int) -> None:
        self.app, self.limits, self.default = app, limits, default

    def _limit(self, path: str) -> int:
        for prefix, limit in self.limits.items():
            if path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")

        async def too_large(scope: Scope, receive: Receive, send: Send) -> None:
            # Built only when needed: rendering the answer on every request is a measurable share of a search.
            answer = error_response(
                413,
                "too_large",
                f"the request is larger than {limit} bytes, the most this path reads: "
                "SKETCH_MAX_UPLOAD_BYTES a file, with room for the form around it",
            )
            await answer(scope, receive, send)

        if declared is not None and declared.isdigit() and int(declared) > limit:
            await too_large(scope, receive, send)
            return
        received = 0
        started = exceeded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if exceeded:  # the body parser swallowed BodyTooLarge and answers 400: answer 413 instead
                if not started:
                    started = True
                    await too_large(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await too_large(scope, receive, send)


class ExplainSlots:
    """At most ``size`` explanations at once; the others are refused, not queued."""

    def __init__(self, size: int = 1) -> None:
        self._slots = threading.BoundedSemaphore(size)

    def __enter__(self) -> None:
        if not self._slots.acquire(blocking=False):
            raise APIError(
                429,
                "busy",
                "another explanation is being computed; try again in a moment",
                {"Retry-After": "1"},
            )

    def __exit__(self, *exc: object) -> None:
        self._slots.release()
