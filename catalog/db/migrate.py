"""Running and checking Alembic migrations from code (the embedded default migrates itself)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from catalog.db.session import make_engine
from catalog.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_at_head(engine: Engine) -> bool:
    return current_revision(engine) == head_revision(engine.url.render_as_string(hide_password=False))


class NotAtHead(RuntimeError):
    """The database is behind the code's schema; the message says which command brings it forward."""


def prepared_engine(settings: Settings) -> Engine:
    """The database's engine, at the latest migration: the embedded SQLite default (no
    SKETCH_DATABASE_URL) migrates itself, as the service and every ``indexer`` command use it; any
    other database must already be at head (its migrations are a deployment's step: compose's
    ``migrate`` service). Raises NotAtHead."""
    url = settings.resolved_database_url
    if settings.database_url is None:
        upgrade(url)
    engine = make_engine(url)
    if not is_at_head(engine):
        engine.dispose()
        raise NotAtHead(
            f"the database is not at the latest migration ({head_revision(url)}): "
            "run 'indexer migrate' (or 'alembic upgrade head') first"
        )
    return engine
