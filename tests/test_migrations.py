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


def test_versions_written_before_0004_keep_their_rows_and_new_ones_get_ids_for_a_downgrade(
    database_url: str, tmp_path
) -> None:
    import numpy as np
    from sqlalchemy import text

    from catalog.index_rows import image_ids, write_rows

    migrate.upgrade(database_url, "0003")
    engine = make_engine(database_url)
    old = tmp_path / "old"
    old.mkdir()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO galleries (id, name, created_at) VALUES (1, 'g', CURRENT_TIMESTAMP)"))
        for image_id in (5, 6, 7):
            conn.execute(
                text(
                    "INSERT INTO images (id, gallery_id, stored_path, sha256, size_bytes, origin, "
                    "created_at) VALUES (:i, 1, '/p', :s, 1, 'source', CURRENT_TIMESTAMP)"
                ),
                {"i": image_id, "s": f"{image_id:064d}"},
            )
        conn.execute(
            text(
                "INSERT INTO index_versions (id, gallery_id, model_checksum, bits, count, path, state, "
                "created_at) VALUES (1, 1, 'm', 64, 4, :p, 'active', CURRENT_TIMESTAMP)"
            ),
            {"p": str(old)},
        )
    np.save(old / "ids.npy", np.array([7, 5, 99, 6]))  # 99: a photo deleted since that build
    migrate.upgrade(database_url)
    with Session(engine) as session:
        np.testing.assert_array_equal(image_ids(session, 1, 4), [7, 5, -1, 6])
    # a version written now has no ids.npy; a downgrade writes one, so the older code can load it
    new = tmp_path / "new"
    new.mkdir()
    with Session(engine) as session, session.begin():
        session.execute(
            text(
                "INSERT INTO index_versions (id, gallery_id, model_checksum, bits, count, path, state, "
                "created_at) VALUES (2, 1, 'm', 64, 2, :p, 'ready', CURRENT_TIMESTAMP)"
            ),
            {"p": str(new)},
        )
        write_rows(session, 2, np.array([6, 7]))
    migrate.downgrade(database_url, "0003")
    np.testing.assert_array_equal(np.load(new / "ids.npy"), [6, 7])
    engine.dispose()
