"""What every `vlamix` verb shares: a one-line error and its exit code, and the `--debug` switch."""

from __future__ import annotations

import os
import re
import sys
import traceback
from typing import NoReturn

import typer

__all__ = ["DEBUG_ENV", "debugging", "fail", "one_line", "parse_size", "rank_tag"]

DEBUG_ENV = "VLAMIX_DEBUG"  # set by `vlamix --debug`; engine workers inherit it from the driver


def debugging() -> bool:
    """True under `vlamix --debug` (or VLAMIX_DEBUG=1): errors come with their traceback, and a reader's
    unexpected exception fails the job instead of quarantining the episode."""
    return os.environ.get(DEBUG_ENV) == "1"


def one_line(message: str, limit: int = 400) -> str:
    """`message` with its whitespace collapsed, cut at `limit` characters (engines wrap worker errors in
    whole tracebacks; the first words say what went wrong)."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def rank_tag() -> str:
    """`rank N: ` in a process of a torchrun world of several, else nothing: whose line an error is."""
    if os.environ.get("WORLD_SIZE", "1") in ("", "0", "1"):
        return ""
    return f"rank {os.environ.get('RANK', '?')}: "


def fail(message: str) -> NoReturn:
    """Print `error: message` in red on stderr and exit with code 2 (a usage or input error). Under
    --debug the traceback of the exception being handled, if any, comes first."""
    if debugging() and sys.exc_info()[0] is not None:
        traceback.print_exc()
    typer.secho(f"error: {rank_tag()}{one_line(message, 2000)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(text: str, flag: str) -> int:
    """'256MB' / '1GiB' / '50000' -> bytes."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        fail(f"{flag} {text!r}: give a size like 256MB, 1GiB or 500000 (bytes)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
