"""The `indexer` command: offline training, evaluation, index building and the reindex worker."""

from __future__ import annotations

import sys

import typer

from catalog.ray_encoding import LOCAL
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


def optional_ray_address(argv: list[str]) -> list[str]:
    """`--ray` alone means a local Ray (Typer options cannot have an optional value)."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--ray" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out[i] = f"--ray={LOCAL}"
    return out


def main() -> None:
    app(args=optional_ray_address(sys.argv[1:]), prog_name="indexer")


if __name__ == "__main__":
    main()
