"""Admin endpoints behind a bearer token."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Header, Response, UploadFile
from pydantic import BaseModel, Field

from app import admin_service
from app.errors import APIError
from app.state import ServiceState, get_state

log = logging.getLogger(__name__)


def require_admin(
    state: ServiceState = Depends(get_state), authorization: Annotated[str | None, Header()] = None
) -> None:
    settings = state.settings
    if not settings.admin_enabled:
        raise APIError(
            503, "admin_disabled", f"admin endpoints are disabled: {settings.admin_disabled_reason}"
        )
    expected = settings.admin_token.get_secret_value().encode() if settings.admin_token else b""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise APIError(
            401,
            "unauthorized",
            "a valid 'Authorization: Bearer <token>' header is required",
            {"WWW-Authenticate": "Bearer"},
        )


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


class GalleryIn(BaseModel):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\- ]*$")
    source_dir: str | None = None


@router.post("/galleries", status_code=201)
def create_gallery(body: GalleryIn, state: ServiceState = Depends(get_state)) -> dict[str, Any]:
    return admin_service.create_gallery(state, body.name, body.source_dir)


@router.get("/galleries")
def list_galleries(state: ServiceState = Depends(get_state)) -> list[dict[str, Any]]:
    return admin_service.list_galleries(state)


@router.post("/galleries/{name}/images", status_code=201)
async def upload_images(
    name: str, files: Annotated[list[UploadFile], File()], state: ServiceState = Depends(get_state)
) -> dict[str, Any]:
    payload = [(f.filename or "upload", await f.read()) for f in files]
    return {"images": admin_service.store_uploads(state, name, payload)}


@router.delete("/images/{image_id}", status_code=204)
def delete_image(image_id: int, state: ServiceState = Depends(get_state)) -> Response:
    admin_service.delete_image(state, image_id)
    return Response(status_code=204)


@router.post("/galleries/{name}/reindex", status_code=202)
def reindex(name: str, state: ServiceState = Depends(get_state)) -> dict[str, int]:
    return {"job_id": admin_service.reindex(state, name)}


@router.get("/jobs/{job_id}")
def get_job(job_id: int, state: ServiceState = Depends(get_state)) -> dict[str, Any]:
    return admin_service.get_job(state, job_id)


@router.get("/index")
def list_versions(state: ServiceState = Depends(get_state)) -> list[dict[str, Any]]:
    return admin_service.list_versions(state)
