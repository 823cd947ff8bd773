"""What every `vlamix` verb shares: a one-line error and its exit code."""

from __future__ import annotations

import typer

__all__ = ["fail"]


def fail(message: str) -> None:
    """Print `error: message` in red on stderr and exit with code 2 (a usage or input error)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)
