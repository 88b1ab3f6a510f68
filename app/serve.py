"""`sketch-server`: run the API and web page with uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from catalog.settings import SettingsError, load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the sketch search API and web page.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Set before the app's imports, which is when both speak. FAISS's loader tries instruction-set
    # variants this wheel does not ship (it dispatches to AVX2/AVX-512 at run time from one library) and
    # reports each miss as "Could not load library ... ModuleNotFoundError": nothing is wrong, and the
    # start-up line names the FAISS build instead. Alembic announces each of its plugins at INFO.
    for quiet in ("faiss.loader", "alembic.runtime.plugins"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    from app.http_protocol import OneWriteHttpTools
    from app.main import create_app

    # The app logs each request itself, after its answer is sent (app.access_log): not uvicorn as well.
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        http=OneWriteHttpTools,
        timeout_graceful_shutdown=10,
        access_log=False,
    )


if __name__ == "__main__":
    main()
