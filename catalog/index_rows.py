"""Which photo each row of an index version holds (``index_entries``): written with the version, read
for the few rows a search returns. The index files hold codes only, so this is where a position
becomes a photo, and where a photo deleted since the build is seen to be gone (its entries go with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from catalog.db.models import ImageRecord, IndexEntry

INSERT_CHUNK = 50_000  # rows a statement: bounded memory for a version of millions of photos


def write_rows(session: Session, version_id: int, image_ids: np.ndarray) -> None:
    """Position i of the version holds photo ``image_ids[i]``; in the caller's transaction, so a version
    never exists without its rows."""
    ids = np.asarray(image_ids, dtype=np.int64).tolist()
    for start in range(0, len(ids), INSERT_CHUNK):
        session.execute(
            insert(IndexEntry),
            [
                {"version_id": version_id, "position": start + offset, "image_id": image_id}
                for offset, image_id in enumerate(ids[start : start + INSERT_CHUNK])
            ],
        )


class RowPhoto(NamedTuple):  # a tuple: a search builds dozens, and a frozen dataclass costs 4x to make
    position: int
    image_id: int
    label: str | None
    stored_path: str


_PHOTOS_AT = (
    select(IndexEntry.position, ImageRecord.id, ImageRecord.label, ImageRecord.stored_path)
    .join(ImageRecord, ImageRecord.id == IndexEntry.image_id)
    .where(
        IndexEntry.version_id == bindparam("version_id"),
        IndexEntry.position.in_(bindparam("positions", expanding=True)),
        ImageRecord.gallery_id == bindparam("gallery_id"),
    )
)
# Built once: composing the statement for every search cost more than running it (0.3 of 0.45 ms).
_PHOTOS_AT_LABEL = _PHOTOS_AT.where(ImageRecord.label == bindparam("label"))


def photos_at(
    session: Session,
    version_id: int,
    gallery_id: int,
    positions: Sequence[int],
    label: str | None = None,
) -> dict[int, RowPhoto]:
    """The photos at these positions of a version (one query), keyed by position;
    positions whose photo was deleted, or another gallery's, or without ``label`` are left out."""
    params: dict[str, object] = {
        "version_id": version_id,
        "gallery_id": gallery_id,
        "positions": [int(p) for p in positions],
    }
    if label is not None:
        params["label"] = label
    rows = session.connection().execute(_PHOTOS_AT_LABEL if label is not None else _PHOTOS_AT, params)
    return {row[0]: RowPhoto._make(row) for row in rows}  # the columns in RowPhoto's order


def position_of(session: Session, version_id: int, image_id: int) -> int | None:
    """Where a photo's code sits in a version; None when it was added after the build."""
    return session.scalar(
        select(IndexEntry.position).where(
            IndexEntry.version_id == version_id, IndexEntry.image_id == image_id
        )
    )


def image_ids(session: Session, version_id: int, count: int) -> np.ndarray:
    """(count,) the photo id at every position of a version; -1 where the photo was deleted since."""
    ids = np.full(count, -1, dtype=np.int64)
    rows = session.execute(
        select(IndexEntry.position, IndexEntry.image_id).where(IndexEntry.version_id == version_id)
    )
    for position, image_id in rows:
        ids[position] = image_id
    return ids
