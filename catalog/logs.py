"""How the services log: the API's two entry points (`sketch-server` and `uvicorn app.asgi:app`, the
image's command) and the reindex worker (`indexer worker`) alike: one root handler to stderr at INFO,
each line naming its logger, so the start-up report (which device and backend run the network, where
FAISS searches, why admin is disabled), the access log and the worker's jobs reach `docker compose
logs` in one format.

The API sets it before the app's imports, which is when two libraries speak (the worker sets it as
it starts, after its imports: until then no handler prints their INFO lines either): FAISS's loader
tries instruction-set variants this wheel does not ship (it dispatches to AVX2/AVX-512 at run time
from one library) and reports each miss as "Could not load library ... ModuleNotFoundError": nothing
is wrong, and the start-up line names the FAISS build instead. Alembic announces each of its plugins
at INFO.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET = ("faiss.loader", "alembic.runtime.plugins")  # INFO from these says nothing a reader needs


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format=FORMAT)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
