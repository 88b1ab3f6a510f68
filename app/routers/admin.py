"""Admin endpoints behind a bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Response, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app import admin_service
from app.deps import State, require_admin
from app.routing import GetAnswersHead
from app.schemas import (
    AdminGalleryStatus,
    DbId,
    GalleryCreated,
    GalleryDeleted,
    GalleryVersions,
    JobCreated,
    JobOut,
    UploadResponse,
    error_responses,
)
from catalog.scan import MAX_SOURCE_PATH

router = APIRouter(
    prefix="/admin",
    route_class=GetAnswersHead,
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses=error_responses(401, 503),
)


class GalleryIn(BaseModel):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\- ]*$")
    source_dir: str | None = Field(None, min_length=1, max_length=MAX_SOURCE_PATH)


@router.post("/galleries", status_code=201, responses=error_responses(400, 409, 422))
def create_gallery(body: GalleryIn, state: State) -> GalleryCreated:
    return admin_service.create_gallery(state, body.name, body.source_dir)


@router.get("/galleries")
def list_galleries(state: State) -> list[AdminGalleryStatus]:
    return admin_service.list_galleries(state)


@router.delete("/galleries/{name}", responses=error_responses(404, 409, 422))
def delete_gallery(name: str, state: State) -> GalleryDeleted:
    """The gallery, its index versions and its uploaded photos; its source folder is never touched."""
    return admin_service.delete_gallery(state, name)


@router.post("/galleries/{name}/images", status_code=201, responses=error_responses(400, 404, 413, 415, 422))
async def upload_images(
    name: str,
    files: Annotated[list[UploadFile], File()],
    state: State,
    label: Annotated[
        str | None,
        Form(
            min_length=1,
            max_length=256,
            pattern=r"^[^\x00]*\S[^\x00]*$",  # some text, no NUL (PostgreSQL refuses it)
            description="what the photos show (e.g. teapot): the label a search's label= filters by and its "
            "guesses know, as a class folder's name is for a source folder's photos; none: unlabelled",
        ),
    ] = None,
) -> UploadResponse:
    payload = [(f.filename or "upload", await f.read()) for f in files]
    # decoding up to 20 photos to validate them must not hold the event loop
    stored = await run_in_threadpool(admin_service.store_uploads, state, name, payload, label)
    return UploadResponse(images=stored)


@router.delete("/images/{image_id}", status_code=204, responses=error_responses(404, 422))
def delete_image(image_id: DbId, state: State) -> Response:
    admin_service.delete_image(state, image_id)
    return Response(status_code=204)


@router.post("/galleries/{name}/reindex", status_code=202, responses=error_responses(404, 422))
def reindex(name: str, state: State) -> JobCreated:
    return JobCreated(job_id=admin_service.reindex(state, name))


@router.get("/jobs", responses=error_responses(404, 422))
def list_jobs(
    state: State,
    gallery: Annotated[
        str | None, Query(min_length=1, max_length=128, description="only this gallery's")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[JobOut]:
    """Job history, newest first: state, counts, failed photos with their reasons, duration."""
    return admin_service.list_jobs(state, gallery, limit)


@router.get("/jobs/{job_id}", responses=error_responses(404, 422))
def get_job(job_id: DbId, state: State) -> JobOut:
    return admin_service.get_job(state, job_id)


@router.get("/index")
def list_versions(state: State) -> list[GalleryVersions]:
    return admin_service.list_versions(state)
