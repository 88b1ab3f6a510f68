"""Migrations run up and down on SQLite and a real PostgreSQL, and match the ORM models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from catalog.db import migrate
from catalog.db.models import Base, Gallery, ImageRecord
from catalog.db.session import make_engine

TABLES = {"galleries", "images", "index_versions", "jobs"}


def test_upgrade_downgrade_roundtrip(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(database_url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert migrate.is_at_head(engine)
    migrate.downgrade(database_url)
    assert not (TABLES & set(inspect(engine).get_table_names()))
    assert not migrate.is_at_head(engine)
    migrate.upgrade(database_url)  # and up again: downgrade left nothing behind
    assert migrate.is_at_head(engine)
    engine.dispose()


def test_models_match_migrations(database_url: str) -> None:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_image_sha256_unique_per_gallery(database_url: str) -> None:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        a, b = Gallery(name="a"), Gallery(name="b")
        session.add_all([a, b])
        session.flush()
        for gallery in (a, b):  # the same photo may sit in two galleries
            session.add(
                ImageRecord(gallery_id=gallery.id, stored_path="x.jpg", sha256="f" * 64, size_bytes=1)
            )
        session.commit()
        session.add(ImageRecord(gallery_id=a.id, stored_path="y.jpg", sha256="f" * 64, size_bytes=1))
        try:
            session.commit()
            raise AssertionError("duplicate sha256 in one gallery was accepted")
        except IntegrityError:
            session.rollback()
    engine.dispose()
