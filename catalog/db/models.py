"""Tables: galleries, their images, the index versions built from them, and background jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from catalog.enums import ImageOrigin, JobKind, JobState, VersionState


def utcnow() -> datetime:
    return datetime.now(UTC)


PENDING_SQL = "state IN ('queued', 'running')"


def stored_enum(enum: type[StrEnum], length: int) -> Enum:
    """A StrEnum kept as its value in a plain VARCHAR (the schema the migrations created)."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda e: [m.value for m in e],
    )


class Base(DeclarativeBase):
    pass


class Gallery(Base):
    __tablename__ = "galleries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    source_dir: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    images: Mapped[list[ImageRecord]] = relationship(back_populates="gallery", cascade="all, delete-orphan")


class ImageRecord(Base):
    __tablename__ = "images"
    # AUTOINCREMENT (migration 0003): SQLite must never reuse a deleted photo's id for another photo.
    __table_args__ = (
        UniqueConstraint("gallery_id", "sha256", name="uq_images_gallery_sha256"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    stored_path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    label: Mapped[str | None] = mapped_column(String(256))
    origin: Mapped[ImageOrigin] = mapped_column(stored_enum(ImageOrigin, 16), default=ImageOrigin.SOURCE)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    gallery: Mapped[Gallery] = relationship(back_populates="images")


class ImageExclusion(Base):
    """A photo deleted from a source-folder gallery: the folder still holds it, the gallery does not."""

    __tablename__ = "image_exclusions"
    __table_args__ = (UniqueConstraint("gallery_id", "sha256", name="uq_image_exclusions_gallery_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IndexVersion(Base):
    __tablename__ = "index_versions"
    __table_args__ = (Index("ix_index_versions_gallery_state", "gallery_id", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"))
    model_checksum: Mapped[str] = mapped_column(String(64))
    bits: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    state: Mapped[VersionState] = mapped_column(stored_enum(VersionState, 16), default=VersionState.READY)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IndexEntry(Base):
    """Which photo each row of an index version holds. The version's files store the codes alone (8 bytes
    a 64-bit photo, the physical floor); the row -> photo mapping lives here, where deletions and
    rebuilds already are. A deleted photo takes its entries with it; so does a dropped version."""

    __tablename__ = "index_entries"
    __table_args__ = (Index("ix_index_entries_version_image", "version_id", "image_id"),)

    version_id: Mapped[int] = mapped_column(
        ForeignKey("index_versions.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_state_created", "state", "created_at"),
        # One queued-or-running job per gallery (migration 0002): concurrent reindex requests share it.
        Index(
            "uq_jobs_one_pending_per_gallery",
            "gallery_id",
            unique=True,
            postgresql_where=text(PENDING_SQL),
            sqlite_where=text(PENDING_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[JobKind] = mapped_column(stored_enum(JobKind, 32))
    gallery_id: Mapped[int | None] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"))
    state: Mapped[JobState] = mapped_column(stored_enum(JobState, 16), default=JobState.QUEUED)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    failed_items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
