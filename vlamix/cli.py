"""The `vlamix` command."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="vlamix: raw robot and web data to pi0.5 training shards.")


def main() -> None:
    app()
