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
at INFO, and its migration context itself. The ``indexer`` commands log the same way, plainer.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PLAIN = "%(message)s"  # the ``indexer`` commands': a person reads them in a terminal
QUIET = ("faiss.loader", "alembic.runtime.plugins")  # INFO from these says nothing a reader needs
# Alembic's migration context introduces itself each time one is made (a migration, and the check that
# the schema is at head: twice at every start); "Running upgrade ..." from the same logger stays.
ALEMBIC_GREETINGS = ("Context impl ", "Will assume ")


def _not_a_greeting(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(ALEMBIC_GREETINGS)


def configure_logging(fmt: str = FORMAT, quiet: tuple[str, ...] = ()) -> None:
    """INFO to stderr in ``fmt``, without the lines of ``QUIET`` (and ``quiet``: loggers whose INFO the
    caller reports itself) or Alembic's greetings."""
    logging.basicConfig(level=logging.INFO, format=fmt)
    for name in QUIET + quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    migration = logging.getLogger("alembic.runtime.migration")
    if _not_a_greeting not in migration.filters:
        migration.addFilter(_not_a_greeting)
