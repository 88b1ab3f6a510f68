"""The API's route class: every GET route answers HEAD as well.

HTTP asks it (RFC 9110 §9.1: a general-purpose server must support GET and HEAD), Starlette's own
routes do it, and clients rely on it: ``curl -I``, uptime monitors and load balancers that probe
``HEAD /healthz``, a link checker. FastAPI's routes answer 405 instead (fastapi/fastapi#1773). HEAD is
not added to the route's methods, so the OpenAPI schema still lists each operation once: HEAD is
implied by GET. The pages FastAPI adds itself (``/docs``) are not routes of this class.
"""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Receive, Scope, Send


def head_as_get(scope: Scope) -> Scope:
    """The request as the routes match it: a HEAD request as the GET it stands for."""
    return {**scope, "method": "GET"} if scope.get("method") == "HEAD" else scope


class GetAnswersHead(APIRoute):
    """An ``APIRoute`` that serves HEAD wherever it serves GET, as that GET: the endpoint does the
    GET's work (a photo is read) and sees the request as GET (so would its log lines), and the answer
    keeps its status and headers (Content-Length included) while the server sends no body (uvicorn
    drops a HEAD answer's body, as HTTP requires). A 405 from the route itself names HEAD in
    ``Allow`` beside GET."""

    @property
    def _answers_get(self) -> bool:
        return "GET" in (self.methods or ())

    def as_served(self, scope: Scope) -> Scope:
        """The request as this route serves it: a HEAD as the GET it stands for, where there is one."""
        return head_as_get(scope) if self._answers_get else scope

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return super().matches(self.as_served(scope))

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        allowed = (self.methods or set()) | ({"HEAD"} if self._answers_get else set())
        if scope["type"] == "http" and allowed and scope["method"] not in allowed:
            # Starlette's own 405 names only ``methods``; inside an app, an HTTPException its handlers answer
            raise HTTPException(405, headers={"Allow": ", ".join(sorted(allowed))})
        # FastAPI's own handling (the dependencies and limits the router was included with) of the GET
        # the HEAD stands for. A copy of the scope: the server's own still says HEAD, so it sends no body.
        await super().handle(self.as_served(scope), receive, send)
