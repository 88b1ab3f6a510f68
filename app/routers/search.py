"""POST /search: a PNG sketch in, ranked photos out; GET /galleries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile

from app import search_service
from app.deps import State
from app.schemas import GalleryInfo, SearchResponse, error_responses

router = APIRouter(tags=["search"])


@router.post(
    "/search",
    response_model=SearchResponse,
    responses=error_responses(400, 404, 409, 413, 415, 422, 429, 503),
)
async def search(
    file: Annotated[
        UploadFile, File(description="PNG sketch: dark strokes on a light or transparent background")
    ],
    state: State,
    k: Annotated[int, Query(ge=1, le=100, description="number of matches")] = 20,
    gallery: Annotated[str | None, Query(max_length=128)] = None,
) -> SearchResponse:
    return await search_service.search(state, await file.read(), gallery, k)


@router.get("/galleries", response_model=list[GalleryInfo])
def galleries(state: State) -> list[GalleryInfo]:
    """Galleries a search can name; ``indexed`` is false until one has an active index."""
    return search_service.public_galleries(state)
