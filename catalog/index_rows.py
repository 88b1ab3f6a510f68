"""Which photo each row of an index version holds (``index_entries``): written with the version, read
for the few rows a search returns. The index files hold codes only, so this is where a position
becomes a photo, and where a photo deleted since the build is seen to be gone (its entries go with it).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from sqlalchemy import Dialect, Engine, bindparam, func, insert, select
from sqlalchemy.exc import DBAPIError
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
_PHOTOS_AT_LABEL = _PHOTOS_AT.where(ImageRecord.label == bindparam("label"))
_NAMED = ("version_id", "gallery_id", "label")


class _CompiledPhotosAt(NamedTuple):
    sql: str
    slots: tuple[str | int, ...]  # what fills each parameter: a name of _NAMED, or a position's index
    names: tuple[str, ...] | None  # the parameters' names for a named paramstyle (psycopg); None: in order


EXACT_COUNTS = 128


@functools.lru_cache(maxsize=2 * (EXACT_COUNTS + 16))  # both label forms: every exact count, 16 powers of 2
def _photos_at_sql(dialect: Dialect, count: int, labelled: bool) -> _CompiledPhotosAt:
    """The statement for ``count`` positions compiled once by SQLAlchemy for this dialect, its IN list
    expanded."""
    compiled = (_PHOTOS_AT_LABEL if labelled else _PHOTOS_AT).compile(dialect=dialect)
    markers = [-1 - i for i in range(count)]  # position i's parameter is recognised by its value -1 - i
    state = compiled.construct_expanded_state(
        {"version_id": 0, "gallery_id": 0, "label": "", "positions": markers}
    )
    names = state.positiontup if state.positiontup is not None else list(state.parameters)
    slots = tuple(name if name in _NAMED else -1 - int(state.parameters[name]) for name in names)
    return _CompiledPhotosAt(state.statement, slots, None if state.positiontup is not None else tuple(names))


def photos_at(
    engine: Engine,
    version_id: int,
    gallery_id: int,
    positions: Sequence[int],
    label: str | None = None,
) -> dict[int, RowPhoto]:
    """The photos at these positions of a version (one query), keyed by position;
    positions whose photo was deleted, or another gallery's, or without ``label`` are left out.

    The query runs on a pooled DBAPI connection with SQL SQLAlchemy compiled once per dialect and
    count: a search's hot path, where SQLAlchemy's per-execution work cost more than the query itself,
    several times more right after the network has run (python -m benchmarks.search_load, fetch stage)."""
    count = len(positions)
    # Counts up to EXACT_COUNTS are compiled as they are (a search's k + slack); larger ones (a labelled
    # search's thousands) as the next power of two, padded with a position no row has: few statements.
    size = count if count <= EXACT_COUNTS else 1 << (count - 1).bit_length()
    query = _photos_at_sql(engine.dialect, size, label is not None)
    named: dict[str, object] = {"version_id": version_id, "gallery_id": gallery_id, "label": label}
    values = [
        named[slot] if isinstance(slot, str) else int(positions[slot]) if slot < count else -1
        for slot in query.slots
    ]
    params = values if query.names is None else dict(zip(query.names, values, strict=True))
    # Driver errors become SQLAlchemy's own, as Core's would (which the service answers as the database
    # being unavailable), and a connection lost mid-query leaves the pool.
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        connection = engine.raw_connection()
    except dbapi_error as exc:
        raise DBAPIError.instance(query.sql, params, exc, dbapi_error) from exc
    try:
        cursor = connection.cursor()
        cursor.execute(query.sql, params)
        rows = cursor.fetchall()
        cursor.close()
    except dbapi_error as exc:
        lost = engine.dialect.is_disconnect(exc, connection.dbapi_connection, None)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(query.sql, params, exc, dbapi_error, connection_invalidated=lost) from exc
    finally:
        connection.close()  # back to the pool, rolled back (or discarded when invalidated)
    return {row[0]: RowPhoto._make(row) for row in rows}  # the columns in RowPhoto's order


def photos_held(session: Session, version_ids: Sequence[int]) -> dict[int, int]:
    """How many photos each version's rows still hold: its count at the build less the photos deleted
    since (their entries went with them). One grouped count, a scan of the versions' rows: about 0.1 s
    a version of 1M rows (``app.photo_counts`` caches it)."""
    if not version_ids:
        return {}
    query = (
        select(IndexEntry.version_id, func.count())
        .where(IndexEntry.version_id.in_(list(version_ids)))
        .group_by(IndexEntry.version_id)
    )
    return {version_id: count for version_id, count in session.execute(query)}


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
