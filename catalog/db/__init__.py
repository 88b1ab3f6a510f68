"""Database models, engine/session factory and migrations; shared by the service and the indexer."""
