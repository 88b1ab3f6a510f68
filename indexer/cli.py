"""The `indexer` command: offline training, evaluation, index building and the reindex worker."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from catalog.ray_encoding import LOCAL
from indexer import commands_index
from model.loader import torch_available

app = typer.Typer(
    help="Train and evaluate CSCAN, build gallery indexes, run the reindex worker.", no_args_is_help=True
)
TORCH_COMMANDS = ("prepare", "train", "evaluate", "export-onnx")  # these need PyTorch


def needs_torch(name: str) -> Callable[[], None]:
    def command() -> None:
        typer.echo(
            f"'indexer {name}' needs PyTorch, which this installation does not have (the CPU serving "
            "image runs the network with ONNX Runtime alone): run it where 'pip install -e .' installed "
            "PyTorch, or in the GPU image",
            err=True,
        )
        raise typer.Exit(2)

    return command


if torch_available():
    from indexer import commands_export, commands_train

    app.command()(commands_train.prepare)
    app.command()(commands_train.train)
    app.command()(commands_train.evaluate)
    app.command(name="export-onnx")(commands_export.export_onnx)
else:
    for _name in TORCH_COMMANDS:
        app.command(
            _name,
            help="Needs PyTorch (not installed here).",
            context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        )(needs_torch(_name))
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
