"""FastAPI dependencies: the running service's state, and the admin token check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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


# The admin token as OpenAPI's bearer scheme: /docs shows an "Authorize" button and sends the token with
# each admin call it tries. (A header parameter named Authorization is one Swagger UI, as OpenAPI says,
# ignores: its calls went out without the token.) Refusing is admin_refusal's, not the scheme's.
ADMIN_TOKEN = HTTPBearer(
    scheme_name="adminToken",
    description="the admin token: SKETCH_ADMIN_TOKEN (`make demo` prints one as it starts)",
    auto_error=False,
)


async def require_admin(
    state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(ADMIN_TOKEN)]
) -> None:
    """Also checked by app.guards.AdminTokenFirst before the body is read; here for the OpenAPI
    security scheme and as a second line should a route be mounted outside the guarded prefixes."""
    authorization = f"{credentials.scheme} {credentials.credentials}" if credentials is not None else None
    refusal = admin_refusal(state.settings, authorization)
    if refusal is not None:
        raise APIError(*refusal)
