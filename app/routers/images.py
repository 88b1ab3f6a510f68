"""GET /images/{id} and /images/{id}/thumbnail."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.deps import State
from app.images import image_record, thumbnail_path
from app.routing import GetAnswersHead
from app.schemas import DbId, error_responses
from model.imageio import media_type

router = APIRouter(tags=["images"], route_class=GetAnswersHead)
CACHE = {"Cache-Control": "public, max-age=86400"}


@router.get("/images/{image_id}", response_class=FileResponse, responses=error_responses(404, 422))
def get_image(image_id: DbId, state: State) -> FileResponse:
    record = image_record(state, image_id)
    return FileResponse(record.stored_path, media_type=media_type(record.stored_path), headers=CACHE)


@router.get("/images/{image_id}/thumbnail", response_class=FileResponse, responses=error_responses(404, 422))
def get_thumbnail(image_id: DbId, state: State) -> FileResponse:
    return FileResponse(
        thumbnail_path(state, image_record(state, image_id)), media_type="image/jpeg", headers=CACHE
    )
