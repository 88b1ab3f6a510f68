"""FastAPI dependencies: the running service's state, and the admin token check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from app.errors import APIError
from app.guards import admin_refusal
from app.state import ServiceState


def service_of(request: Request) -> ServiceState:
    """The running service's state, for a route on the hot path that takes the request itself."""
    return request.app.state.service


async def get_state(request: Request) -> ServiceState:
    # async: FastAPI runs a plain-def dependency on a worker thread, a thread hop on every request for
    # an attribute read
    return service_of(request)


State = Annotated[ServiceState, Depends(get_state)]


async def require_admin(state: State, authorization: Annotated[str | None, Header()] = None) -> None:
    """Also checked by app.guards.AdminTokenFirst before the body is read; here for the OpenAPI
    security description and as a second line should a route be mounted outside the guarded prefixes."""
    refusal = admin_refusal(state.settings, authorization)
    if refusal is not None:
        raise APIError(*refusal)
