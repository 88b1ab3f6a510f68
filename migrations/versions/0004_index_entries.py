"""The row -> photo mapping of index versions moves into the database (8 bytes a photo in memory).

Index versions used to carry an ``ids.npy`` (8 more bytes a photo, held in every API process). Their
rows now live in ``index_entries``; versions written before this revision get theirs from that file,
which is then no longer read.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from pathlib import Path

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CHUNK = 50_000


def _stored_ids(path: Path) -> np.ndarray | None:
    """The photo ids a version written before this revision kept: an ``ids.npy``, or (older still) the
    id map of an IndexBinaryIDMap2."""
    if (path / "ids.npy").exists():
        return np.load(path / "ids.npy", allow_pickle=False)
    if not (path / "index.faiss").exists():
        return None
    import faiss

    index = faiss.downcast_IndexBinary(faiss.read_index_binary(str(path / "index.faiss")))
    if not isinstance(index, faiss.IndexBinaryIDMap2):
        return None
    return faiss.vector_to_array(index.id_map).astype(np.int64)


def upgrade() -> None:
    entries = op.create_table(
        "index_entries",
        sa.Column(
            "version_id",
            sa.Integer,
            sa.ForeignKey("index_versions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    )
    op.create_index("ix_index_entries_version_image", "index_entries", ["version_id", "image_id"])
    bind = op.get_bind()
    images = {row[0] for row in bind.execute(sa.text("SELECT id FROM images"))}
    for version_id, path in bind.execute(sa.text("SELECT id, path FROM index_versions")).all():
        ids = _stored_ids(Path(path))
        if ids is None:
            continue  # a version whose files are gone cannot load either way
        rows = [
            {"version_id": version_id, "position": position, "image_id": int(image_id)}
            for position, image_id in enumerate(ids.tolist())
            if int(image_id) in images  # photos deleted since the build: nothing to map
        ]
        for start in range(0, len(rows), CHUNK):
            op.bulk_insert(entries, rows[start : start + CHUNK])


def downgrade() -> None:
    # Versions written since carry no ids.npy: give them one, so the older code can load them.
    bind = op.get_bind()
    for version_id, path, count in bind.execute(sa.text("SELECT id, path, count FROM index_versions")).all():
        ids_file = Path(path) / "ids.npy"
        if ids_file.exists() or not Path(path).is_dir():
            continue
        ids = np.full(count, -1, dtype=np.int64)  # a photo deleted since: an id no row has
        for position, image_id in bind.execute(
            sa.text("SELECT position, image_id FROM index_entries WHERE version_id = :v"), {"v": version_id}
        ):
            ids[position] = image_id
        np.save(ids_file, ids)
    op.drop_index("ix_index_entries_version_image", table_name="index_entries")
    op.drop_table("index_entries")
