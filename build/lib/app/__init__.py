"""The search service (FastAPI) and the configuration and database it shares with the indexer."""
