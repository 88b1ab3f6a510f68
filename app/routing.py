"""The API's route class: every GET route answers HEAD as well.

HTTP asks it (RFC 9110 §9.1: a general-purpose server must support GET and HEAD), Starlette's own
routes do it, and clients rely on it: ``curl -I``, uptime monitors and load balancers that probe
``HEAD /healthz``, a download manager asking a photo's size. FastAPI's routes answer 405 instead
(fastapi/fastapi#1773). HEAD is not added to the route's methods, so the OpenAPI schema still lists
each operation once: HEAD is implied by GET.
"""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Receive, Scope, Send


def head_as_get(scope: Scope) -> Scope:
    """The request as the routes match it: a HEAD request as the GET it stands for."""
    return {**scope, "method": "GET"} if scope.get("method") == "HEAD" else scope


class GetAnswersHead(APIRoute):
    """An ``APIRoute`` that serves HEAD wherever it serves GET: the GET endpoint runs, and the answer
    keeps its status and headers (Content-Length included) while the server sends no body (uvicorn
    drops a HEAD answer's body, as HTTP requires)."""

    @property
    def _answers_get(self) -> bool:
        return "GET" in (self.methods or ())

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return super().matches(head_as_get(scope) if self._answers_get else scope)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # FastAPI's own handling (the dependencies and limits the router was included with) of the GET
        # the HEAD stands for. A copy of the scope: the server's own still says HEAD, so it sends no body.
        await super().handle(head_as_get(scope) if self._answers_get else scope, receive, send)
