"""At most one queued or running job per gallery, enforced by the database.

Two reindex requests racing each other used to check, then insert, and both succeed. A partial unique
index makes the second insert fail, and the service answers with the job already pending. Duplicates
left by the old race are closed first (the oldest pending job of a gallery is kept).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PENDING = "state IN ('queued', 'running')"


def upgrade() -> None:
    op.execute(
        sa.text(
            f"UPDATE jobs SET state = 'failed', error = 'superseded by another pending job' "
            f"WHERE {PENDING} AND id NOT IN (SELECT MIN(id) FROM jobs WHERE {PENDING} GROUP BY gallery_id)"
        )
    )
    op.create_index(
        "uq_jobs_one_pending_per_gallery",
        "jobs",
        ["gallery_id"],
        unique=True,
        postgresql_where=sa.text(PENDING),
        sqlite_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_index("uq_jobs_one_pending_per_gallery", table_name="jobs")
