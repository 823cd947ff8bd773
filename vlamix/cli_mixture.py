"""The mixture verbs of `vlamix`: `mixture validate|stats|sweep`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vlamix.cli_common import fail as _fail

__all__ = ["mixture_app"]

mixture_app = typer.Typer(no_args_is_help=True, help="Mixture files: which sources a stage sees, how often.")


def _resolve_mixture(file: Path):
    from vlamix.config import ConfigError
    from vlamix.mixtures.resolve import resolve

    try:
        return resolve(file)
    except ConfigError as e:
        _fail(str(e))


@mixture_app.command("validate")
def mixture_validate(
    file: Annotated[Path, typer.Argument(help="A mixture YAML (mixtures/*.yaml).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print problems and warnings as JSON.")] = False,
) -> None:
    """Check a mixture: its schema, weights, datasets, layouts (shards present, one tokenizer set, one
    schema version) and stage sanity. Lists every problem, one a line naming the file and the component
    (schema problems of several components included); exits 1 if there is any."""
    from vlamix.config import ConfigError
    from vlamix.mixtures.resolve import resolve

    try:
        res = resolve(file, strict=False)  # schema problems are listed beside the others
    except ConfigError as e:  # missing, not YAML, not a mapping: one line, exit 1
        typer.secho(f"problem: {e}", fg=typer.colors.RED)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(
            json.dumps(
                {"mixture": res.spec.name, "problems": res.problems, "warnings": res.warnings}, indent=2
            )
        )
    else:
        for w in res.warnings:
            typer.secho(f"warning: {w}", fg=typer.colors.YELLOW)
        for p in res.problems:
            typer.secho(f"problem: {p}", fg=typer.colors.RED)
        if not res.problems:
            typer.echo(f"{file}: ok ({len(res.entries)} datasets, stage {res.spec.stage})")
    if res.problems:
        raise typer.Exit(1)


@mixture_app.command("stats")
def mixture_stats_cmd(
    files: Annotated[
        list[Path],
        typer.Argument(help="A mixture YAML (mixtures/*.yaml), or several: a sweep, summarized together."),
    ],
    steps: Annotated[int, typer.Option(help="Training steps to account for.")] = 10_000,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Write an HTML page with plots into this folder (several files: one per mixture, and the sweep's)."
        ),
    ] = None,
) -> None:
    """Effective shares per dataset and kind after filters and nesting, epochs at N steps, tokens per
    example, action dims per embodiment, the non-MM share, and the environments drawn from (share,
    episodes, samples). With several files (a sweep), also the environment count per mixture. Reads
    manifests, indexes and stats only."""
    from vlamix.mixtures.stats import format_stats, mixture_stats, write_report
    from vlamix.mixtures.sweep import format_sweep, sweep_summary, write_sweep_report

    every, pages = [], {}
    for file in files:
        res = _resolve_mixture(file)
        if res.problems and not res.entries:
            _fail("; ".join(res.problems))
        s = mixture_stats(res, steps, batch_size)
        if report is not None:
            folder = report if len(files) == 1 else report / s["mixture"]
            s["report"] = str(write_report(res, s, folder))
            pages[s["mixture"]] = Path(s["report"])
        every.append(s)
    if len(every) == 1:
        s = every[0]
        typer.echo(json.dumps(s, indent=2) if as_json else format_stats(s))
        if report is not None and not as_json:
            typer.echo(f"report: {s['report']}")
        return
    sweep = sweep_summary(every)
    doc: dict = {"mixtures": every, "sweep": sweep}
    if report is not None:
        doc["report"] = str(write_sweep_report(sweep, pages, report))
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo("\n\n".join(format_stats(s) for s in every))
    typer.echo("\n" + format_sweep(sweep))
    if report is not None:
        typer.echo(f"report: {doc['report']}")


@mixture_app.command("sweep")
def mixture_sweep(
    base: Annotated[
        Path, typer.Argument(help="A mixture whose components ask for `environments: {count: N, seed: S}`.")
    ],
    environments: Annotated[
        str, typer.Option("--environments", help="The environment counts, comma separated: 1,2,4.")
    ],
    out: Annotated[Path, typer.Option(help="Folder for the mixtures, one per count: <base>_envs_<N>.yaml.")],
) -> None:
    """Write one mixture per environment count: the base with every `{count, seed}` set to it. The
    seeded order is nested (the rooms of 1 are within those of 2, ...): a true scaling curve. Then
    `vlamix mixture stats OUT/*.yaml` shows the environments each one draws from."""
    from vlamix.config import ConfigError
    from vlamix.mixtures.sweep import write_sweep

    try:
        counts = [int(c) for c in environments.split(",") if c.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        _fail(f"--environments {environments!r}: give distinct whole numbers >= 1, comma separated (1,2,4)")
    try:
        written = write_sweep(base, counts, out)
    except (ConfigError, OSError) as e:
        _fail(str(e))
    for n, path in zip(counts, written, strict=True):
        typer.echo(f"wrote {path} ({n} environment{'s' if n != 1 else ''} per counted component)")
