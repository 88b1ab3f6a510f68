"""POST /search: a PNG sketch in, ranked photos out; GET /galleries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from python_multipart.multipart import parse_options_header
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from app import search_service
from app.deps import State, service_of
from app.errors import APIError
from app.limits import BodyTooLarge
from app.routing import GetAnswersHead
from app.schemas import DbId, GalleryInfo, SearchResponse, error_responses

router = APIRouter(tags=["search"], route_class=GetAnswersHead)


def as_json(answer: SearchResponse) -> Response:
    """The answer serialised once, by Pydantic's own encoder: FastAPI would validate the model it was
    just built from again and encode it twice (to a dict, then to JSON), a measurable share of a
    search. The route's ``response_model`` still documents it."""
    return Response(answer.model_dump_json(), media_type="application/json")


MinSimilarity = Annotated[
    float | None,
    Query(
        ge=0,
        le=1,
        description="relevance cutoff: only matches whose similarity (as each match reports it) is at "
        "least this; below_cutoff says how many of the k best it left out",
    ),
]
K = Annotated[int, Query(ge=1, le=100, description="number of matches")]
LabelFilter = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=256,
        pattern=r"^[^\x00]+$",  # no NUL: PostgreSQL refuses it in a query parameter
        description="only photos with this label (e.g. one of the guesses that is in_gallery); "
        "ignored by a gallery without labels; a label no photo of a labelled gallery carries is "
        "422 unknown_label",
    ),
]


HOW = "send the PNG sketch as the form field 'file', or as the whole body with Content-Type image/png"

# The request's body, read by ``sketch_bytes`` rather than by FastAPI (which parses any form before the
# route runs: a PNG sent url-encoded by mistake, curl --data-binary without the header, was answered
# with the form parser's "Too many fields" instead of what to do). Documented here: one of the two.
SKETCH_FIELD = (
    "PNG sketch: dark strokes on a light or transparent background (or the PNG as the whole body, "
    "Content-Type image/png)"
)
SKETCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "title": "SketchForm",
                    "properties": {
                        # OpenAPI 3.1, as FastAPI documents a file: Swagger UI shows a file picker
                        "file": {
                            "type": "string",
                            "contentMediaType": "application/octet-stream",
                            "description": SKETCH_FIELD,
                        }
                    },
                }
            },
            "image/png": {
                "schema": {"type": "string", "contentMediaType": "image/png"},
                "example": "(the PNG file's bytes)",
            },
        },
    }
}


async def sketch_bytes(request: Request) -> bytes:
    """The sketch: the multipart field ``file``, or else the whole body (``Content-Type: image/png``,
    what the drawing page sends: no form to parse, a measurable share of a lone search). Raises
    APIError 422 ``no_sketch`` for a form without ``file``, an empty file or body, or a url-encoded
    body; 413 ``too_large`` past the body limit or SKETCH_MAX_UPLOAD_BYTES; 400 ``incomplete_body``
    when the client left before sending all of it (the page aborts a search a newer one replaces);
    a form that cannot be parsed is the form parser's 400. What the bytes are is ``decode_sketch``'s
    check (415 ``not_png``)."""
    content_type = parse_options_header(request.headers.get("content-type"))[0]
    if content_type == b"application/x-www-form-urlencoded":
        # what curl --data-binary sends without -H 'Content-Type: image/png': the PNG was meant as the body
        raise APIError(
            422,
            "no_sketch",
            f"the body was sent as a url-encoded form (Content-Type is not image/png): {HOW}",
        )
    try:
        if content_type == b"multipart/form-data":
            async with request.form(max_files=1) as form:
                file = form.get("file")
                if not isinstance(file, UploadFile):
                    raise APIError(422, "no_sketch", f"the form has no file field 'file': {HOW}")
                data = await file.read()
            if not data:  # as an empty body is: nothing was sent, whatever its name says
                raise APIError(422, "no_sketch", f"the form's field 'file' is empty: {HOW}")
            return within_limit(request, data)
        body = await request.body()
    except BodyTooLarge:  # answered by BodySizeLimit with its limit; raised here so no 500 is counted
        raise APIError(413, "too_large", "the upload is larger than the limit") from None
    except ClientDisconnect:
        raise APIError(400, "incomplete_body", "the request ended before its body was complete") from None
    if not body:
        raise APIError(422, "no_sketch", f"the request has no sketch: {HOW}")
    return within_limit(request, body)


def within_limit(request: Request, sketch: bytes) -> bytes:
    """The sketch, if it is within SKETCH_MAX_UPLOAD_BYTES; else APIError 413 ``too_large``. (The body
    limit in front allows room for a form around it.)"""
    limit = service_of(request).settings.max_upload_bytes
    if len(sketch) > limit:
        raise APIError(
            413,
            "too_large",
            f"the sketch is {len(sketch)} bytes; the most is {limit} (SKETCH_MAX_UPLOAD_BYTES)",
        )
    return sketch


@router.post(
    "/search",
    response_model=SearchResponse,
    responses=error_responses(400, 404, 409, 413, 415, 422, 429, 503),
    openapi_extra=SKETCH_BODY,
)
async def search(
    request: Request,  # not the State dependency: solving one is a measurable share of a search
    k: K = 20,
    gallery: Annotated[str | None, Query(max_length=128)] = None,
    label: LabelFilter = None,
    explain: Annotated[
        bool,
        Query(
            description="also return the sketch's attention mask and the top photos' co-attention masks "
            "as PNG heat maps (slower; one at a time per server, else 429)"
        ),
    ] = False,
    min_similarity: MinSimilarity = None,
) -> Response:
    answer = await search_service.search(
        service_of(request), await sketch_bytes(request), gallery, k, label, explain, min_similarity
    )
    return as_json(answer)


@router.post(
    "/search/similar/{image_id}",
    response_model=SearchResponse,
    responses=error_responses(404, 409, 422, 503),
)
async def similar(
    image_id: DbId,
    state: State,
    k: K = 20,
    label: LabelFilter = None,
    min_similarity: MinSimilarity = None,
) -> Response:
    """ "More like this": the photo's gallery ranked by the photo's own code, the photo itself left out."""
    return as_json(await search_service.similar(state, image_id, k, label, min_similarity))


@router.get("/galleries", response_model=list[GalleryInfo])
def galleries(state: State) -> list[GalleryInfo]:
    """Galleries a search can name; ``indexed`` is false until one has an active index."""
    return search_service.public_galleries(state)
