"""`sketch-server`: run the API and web page with uvicorn."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from catalog.logs import configure_logging
from catalog.settings import SettingsError, load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the sketch search API and web page.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    configure_logging()  # before the app's imports: see catalog.logs
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
