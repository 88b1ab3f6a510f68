"""ASGI entry point for process managers: `uvicorn app.asgi:app` (settings from SKETCH_* variables).

uvicorn configures only its own loggers, so the service's start-up report (which device and backend run
the network, where FAISS searches, why admin is disabled) would be lost without a root handler: it is what
`docker compose logs api` shows."""

import logging

from app.main import create_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
app = create_app()
