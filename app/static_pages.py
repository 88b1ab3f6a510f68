"""The web pages, mounted at "/" behind the API routes.

A mount at "/" would otherwise swallow every request the API routes turn down by method: GET /search
would look for a file and answer 404. Here a path that an API route serves with other methods gets 405
with an ``Allow`` header naming them.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(routes: list[BaseRoute], scope: Scope) -> set[str]:
    """Methods an API route (not a mount) fully matches for this request's path: the routes decide."""
    allowed = set()
    for route in routes:
        if isinstance(route, Mount):
            continue
        for method in METHODS:
            match, _ = route.matches({**scope, "method": method})
            if match == Match.FULL:
                allowed.add(method)
    return allowed


class PagesOrMethodNotAllowed(StaticFiles):
    def __init__(self, *, routes: list[BaseRoute], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.api_routes = routes

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code in (404, 405):
                allowed = allowed_methods(self.api_routes, scope)
                if allowed and scope["method"] not in allowed:
                    raise HTTPException(405, headers={"Allow": ", ".join(sorted(allowed))}) from None
            raise
