"""ASGI guards that act before a request body is read: the admin token, and headers every page needs.

The admin token is checked here, not only in a route dependency, because FastAPI reads and parses the
whole body (a multipart upload of up to 20 photos) before any dependency runs: a stranger could make
the server read 100 MB only to be told 401.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_response
from app.static_pages import allowed_methods
from catalog.settings import Settings

# The admin API (the admin *page* under /admin/ is static and public; it asks for the token itself).
ADMIN_API_PREFIXES = ("/admin/galleries", "/admin/images", "/admin/jobs", "/admin/index")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
}


def admin_refusal(
    settings: Settings, authorization: str | None
) -> tuple[int, str, str, dict[str, str]] | None:
    """Why an admin request is refused (status, code, message, headers), or None when it may pass."""
    if not settings.admin_enabled:
        return 503, "admin_disabled", f"admin endpoints are disabled: {settings.admin_disabled_reason}", {}
    expected = settings.admin_token.get_secret_value().encode() if settings.admin_token else b""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        return (
            401,
            "unauthorized",
            "a valid 'Authorization: Bearer <token>' header is required",
            {"WWW-Authenticate": "Bearer"},
        )
    return None


class AdminTokenFirst:
    """Refuses admin API requests without a valid token before their body is read. A method no route
    serves is left to the router's 405 (which reads no body either)."""

    def __init__(self, app: ASGIApp, settings: Settings, routes: list[BaseRoute]) -> None:
        self.app, self.settings, self.routes = app, settings, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].startswith(ADMIN_API_PREFIXES)
            and scope["method"] in allowed_methods(self.routes, scope)
        ):
            refusal = admin_refusal(self.settings, Headers(scope=scope).get("authorization"))
            if refusal is not None:
                status, code, message, headers = refusal
                await error_response(status, code, message, headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """No MIME sniffing, no framing (clickjacking), no referrer leaking to other sites."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)
