"""ASGI entry point for process managers: `uvicorn app.asgi:app` (settings from SKETCH_* variables).

uvicorn configures only its own loggers, so the service's logging is set here (``catalog.logs``),
before the app's imports, as `sketch-server` sets it: the start-up report is what `docker compose logs
api` shows."""

from catalog.logs import configure_logging

configure_logging()

from app.main import create_app  # noqa: E402  (after the logging: FAISS's loader speaks on import)

app = create_app()
