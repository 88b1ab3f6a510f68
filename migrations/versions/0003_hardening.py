"""Ids never reused, deletions that stick, and a retry limit for jobs.

- images: SQLite reused the id of a deleted row, so an old link or a stale index entry could name
  another gallery's photo. AUTOINCREMENT makes SQLite never hand an id out twice (PostgreSQL's
  sequences never do).
- image_exclusions: a photo deleted from a source-folder gallery is remembered by content hash, so the
  next reindex does not bring it back from the folder.
- jobs.attempts: how many times a worker took the job; a job whose workers keep dying is given up.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("images", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass
    op.create_table(
        "image_exclusions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "gallery_id", sa.Integer, sa.ForeignKey("galleries.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("gallery_id", "sha256", name="uq_image_exclusions_gallery_sha256"),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("attempts")
    op.drop_table("image_exclusions")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("images", recreate="always"):
            pass
