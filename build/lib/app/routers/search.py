"""POST /search: a PNG sketch in, ranked photos out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, UploadFile
from pydantic import BaseModel

from app import search_service
from app.state import ServiceState, get_state

router = APIRouter(tags=["search"])


class Match(BaseModel):
    rank: int
    image_id: int
    label: str | None
    url: str
    thumbnail_url: str
    hamming_distance: int
    similarity: float


class SearchResponse(BaseModel):
    gallery: str
    index_version: int
    bits: int
    took_ms: float
    results: list[Match]


@router.post("/search", response_model=SearchResponse)
async def search(
    file: Annotated[
        UploadFile, File(description="PNG sketch: dark strokes on a light or transparent background")
    ],
    k: Annotated[int, Query(ge=1, le=100, description="number of matches")] = 20,
    gallery: Annotated[str | None, Query(max_length=128)] = None,
    state: ServiceState = Depends(get_state),
) -> dict:
    data = await file.read()
    return await search_service.search(state, data, gallery, k)


class GalleryInfo(BaseModel):
    name: str
    indexed: bool
    image_count: int


@router.get("/galleries", response_model=list[GalleryInfo])
def galleries(state: ServiceState = Depends(get_state)) -> list[dict]:
    """Galleries a search can name; ``indexed`` is false until one has an active index."""
    return search_service.public_galleries(state)
