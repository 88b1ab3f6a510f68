"""Every error leaves the API as JSON {"error": {"code", "message"}} with the right status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from catalog.errors import CatalogError, Conflict, Invalid, NotFound
from model.imageio import ImageRejected, RejectReason

log = logging.getLogger(__name__)
CATALOG_STATUS: dict[type[CatalogError], int] = {NotFound: 404, Conflict: 409, Invalid: 422}
# Why an uploaded image (sketch or photo) was refused, as an HTTP status; any other reason is a 422.
REJECTION_STATUS: dict[RejectReason, int] = {
    RejectReason.TOO_LARGE: 413,
    RejectReason.NOT_AN_IMAGE: 415,
    RejectReason.UNSUPPORTED_FORMAT: 415,
}


class APIError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def image_rejected(exc: ImageRejected, code: str, message: str) -> APIError:
    """The answer to an image that was refused: the status its reason maps to, the caller's code."""
    return APIError(REJECTION_STATUS.get(exc.reason, 422), code, message)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        # the body as a whole (absent, or not an object) is named; a field inside it by its own name
        where = (
            "body"
            if loc == ("body",)
            else ".".join(str(p) for p in loc if p not in ("body", "query", "path"))
        )
        parts.append(f"{where or 'request'}: {err.get('msg')}")
    return "; ".join(parts) or "invalid request"


def _malformed_json(exc: RequestValidationError) -> str | None:
    """What is wrong with a JSON body that is not JSON (FastAPI reports it as the validation error
    ``json_invalid``, at the character where decoding stopped), or None."""
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            where = err.get("loc", ("body", None))[-1]
            why = (err.get("ctx") or {}).get("error") or "it does not decode"
            return f"the body is not valid JSON: {why} (at character {where})"
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(CatalogError)
    async def _catalog_error(_request: Request, exc: CatalogError) -> JSONResponse:
        # The nearest kind in the error's ancestry: a Conflict's subclass is a 409 too.
        status = next((CATALOG_STATUS[kind] for kind in type(exc).__mro__ if kind in CATALOG_STATUS), 422)
        return error_response(status, exc.code, exc.message)

    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return error_response(
            503,
            "database_unavailable",
            "the database is not answering; try again in a moment",
            {"Retry-After": "5"},
        )

    for unavailable in (OperationalError, InterfaceError, PoolTimeout):  # not IntegrityError: that is a bug
        app.add_exception_handler(unavailable, _database_down)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        malformed = _malformed_json(exc)
        if malformed is not None:  # a body that cannot be read is malformed, not invalid input
            return error_response(400, "malformed_json", malformed)
        return error_response(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        message = str(exc.detail)
        if exc.status_code == 400:  # the body parsers' own refusals (a form past its limits, JSON not UTF-8)
            message = f"the request body could not be read: {message}"
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "something went wrong on our side; it has been logged")
