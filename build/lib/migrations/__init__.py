"""Alembic migrations (packaged so an installed service can migrate itself)."""
