"""The `indexer` command: offline training, evaluation, index building and the reindex worker."""

from __future__ import annotations

import typer

from indexer import commands_index, commands_train

app = typer.Typer(
    help="Train and evaluate CSCAN, build gallery indexes, run the reindex worker.", no_args_is_help=True
)
app.command()(commands_train.prepare)
app.command()(commands_train.train)
app.command()(commands_train.evaluate)
app.command()(commands_index.migrate)
app.command()(commands_index.build)
app.command()(commands_index.search)
app.command()(commands_index.worker)

if __name__ == "__main__":
    app()
