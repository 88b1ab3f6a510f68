"""Every JSON answer of the API as a Pydantic model, so OpenAPI documents each one, errors included."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from catalog.enums import JobKind, JobState, VersionState

# Database ids are 32-bit on PostgreSQL: a larger number can name nothing, so it is a 422, not a query.
DbId = Annotated[int, Path(ge=1, le=2**31 - 1, description="a database id")]


class ErrorDetail(BaseModel):
    code: str = Field(description="short machine-readable cause, e.g. not_png, unknown_gallery")
    message: str = Field(description="what went wrong, for a person")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ClassGuess(BaseModel):
    label: str = Field(description="a class the model was trained on")
    probability: float = Field(description="softmax probability from the model's sketch classifier")
    in_gallery: bool = Field(
        description="whether the searched gallery has photos with this label; when false, label= with it "
        "answers 422 unknown_label (or, in a gallery without labels, filters nothing)"
    )


class Heatmap(BaseModel):
    png: str = Field(
        description="data: URI of an RGBA PNG heat map, stretched to the mask's range (at least 0.25 wide)"
    )
    mask_min: float = Field(description="the raw mask's smallest value (attention weights lie in 0..1)")
    mask_max: float = Field(description="the raw mask's largest value")
    uniform: bool = Field(
        description="the mask is nearly flat (range under 0.05): the network weighs every part alike"
    )


class SketchExplanation(Heatmap):
    box: list[int] = Field(
        description="where the heat map lies on the sketch as sent: left, top, side in its pixels "
        "(the network sees the strokes' bounding square; it may reach past the sketch's edges)",
        min_length=3,
        max_length=3,
    )
    width: int = Field(description="the sketch's width in pixels")
    height: int = Field(description="the sketch's height in pixels")


class Match(BaseModel):
    rank: int
    image_id: int
    label: str | None
    url: str
    thumbnail_url: str
    hamming_distance: int = Field(description="bits that differ between the sketch's and the photo's code")
    similarity: float = Field(
        description="1 - distance / bits in [0, 1]: 1 when the photo's bits equal the query's code, 0 when "
        'every bit is the opposite; for "more like this" it is 1 - hamming_distance / bits'
    )
    distance: float = Field(
        description="re-ranking distance: squared L2 from the query's continuous code to the photo's bits"
    )
    attention: Heatmap | None = Field(
        default=None,
        description="with explain=1, for the top results: the photo+edge co-attention mask, cropped to "
        "the photo's own area so it lies over the photo as shown",
    )


class SearchWarningCode(StrEnum):
    LOOKS_LIKE_PHOTO = "looks_like_photo"


class SearchWarning(BaseModel):
    code: SearchWarningCode = Field(
        description="looks_like_photo: the upload looks like a photo, not a drawing (solid areas, many "
        "colours); it was searched as a drawing, so the results may not mean much"
    )
    message: str = Field(description="what to know about the answer, for a person")


class SearchResponse(BaseModel):
    gallery: str
    index_version: int
    bits: int
    took_ms: float
    guesses: list[ClassGuess] = Field(
        description="what the sketch looks like to the model: its top-5 classes (empty for a photo query)"
    )
    label: str | None = Field(
        description="the label the results were restricted to; null when none was asked for, or the "
        "gallery has no labels (then nothing is filtered). A label that none of a labelled gallery's "
        "photos carries is refused: 422 unknown_label"
    )
    explanation: SketchExplanation | None = Field(
        default=None, description="with explain=1: the sketch branch's spatial attention mask"
    )
    min_similarity: float | None = Field(
        default=None,
        description="the relevance cutoff asked for (min_similarity=): results hold only the matches whose "
        "similarity reaches it; null without one",
    )
    below_cutoff: int = Field(
        default=0,
        description="how many of the k best matches the cutoff left out (0 without one)",
    )
    results: list[Match]
    warnings: list[SearchWarning] = Field(
        default_factory=list,
        description="the search ran, but something about the upload may make its answer less useful",
    )


class GalleryInfo(BaseModel):
    name: str
    indexed: bool
    image_count: int = Field(
        description="photos a search can return: those of the served index not deleted since its build "
        "(photos added since are counted once reindexed)"
    )


class Orm(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class IndexVersionOut(Orm):
    id: int
    state: VersionState
    bits: int
    count: int
    model_checksum: str
    created_at: datetime
    activated_at: datetime | None


class AdminGallery(Orm):
    id: int
    name: str
    source_dir: str | None


class GalleryWarningCode(StrEnum):
    NO_PHOTOS = "no_photos"


class GalleryWarning(BaseModel):
    code: GalleryWarningCode = Field(
        description="no_photos: the source folder holds no photo a reindex could index (it was registered)"
    )
    message: str = Field(description="what to know, for a person")


class GalleryCreated(AdminGallery):
    warnings: list[GalleryWarning] = Field(
        default_factory=list, description="what may not be what was meant; the gallery was registered"
    )


class AdminGalleryStatus(AdminGallery):
    image_count: int
    active_version: IndexVersionOut | None


class FailedItem(BaseModel):
    path: str
    reason: str


class JobOut(Orm):
    id: int
    kind: JobKind
    gallery_id: int | None
    state: JobState
    processed: int
    total: int
    failed_items: list[FailedItem]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    gallery: str | None = Field(description="the gallery's name (null once the gallery is gone)")
    duration_s: float | None = Field(description="from start to finish, or to now while running")


class GalleryDeleted(BaseModel):
    gallery: str
    images_removed: int


class JobCreated(BaseModel):
    job_id: int


class UploadedImage(BaseModel):
    image_id: int
    filename: str
    sha256: str
    duplicate: bool = Field(description="the gallery already held this photo; nothing new was stored")
    label: str | None = Field(description="the photo's label (a duplicate keeps the one it has)")


class UploadResponse(BaseModel):
    images: list[UploadedImage]


class GalleryVersions(BaseModel):
    gallery: str
    serving_version: int | None
    versions: list[IndexVersionOut]


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    model: bool
    indexes: list[str]
    database: bool
    database_error: str | None = None


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses=`` entries for the error statuses a route can answer."""
    return {
        status: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[status]} for status in statuses
    }


ERROR_DESCRIPTIONS = {
    400: "malformed request",
    401: "missing or wrong admin token",
    404: "no such gallery, image or job",
    409: "conflicts with what is stored, or the gallery has no index yet",
    413: "too large (body or pixels)",
    415: "unsupported media type",
    422: "invalid input",
    429: "too many searches waiting; retry after the Retry-After seconds",
    503: "temporarily unavailable (database unavailable, admin disabled)",
}
