"""The training-side verbs of `vlamix`: `mixture validate|stats` and `train`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vlamix.cli_common import fail as _fail

__all__ = ["mixture_app", "train"]

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
    schema version) and stage sanity. Lists every problem; exits 1 if there is any."""
    from vlamix.config import ConfigError
    from vlamix.mixtures.resolve import resolve

    try:
        res = resolve(file)
    except ConfigError as e:  # the file itself is malformed: one line, exit 1
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
    file: Annotated[Path, typer.Argument(help="A mixture YAML (mixtures/*.yaml).")],
    steps: Annotated[int, typer.Option(help="Training steps to account for.")] = 10_000,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
    report: Annotated[
        Path | None, typer.Option(help="Write an HTML page with plots into this folder.")
    ] = None,
) -> None:
    """Effective shares per dataset and kind after filters and nesting, epochs at N steps, tokens per
    example, action dims per embodiment and the non-MM share. Reads manifests, indexes and stats only."""
    from vlamix.mixtures.stats import format_stats, mixture_stats, write_report

    res = _resolve_mixture(file)
    if res.problems and not res.entries:
        _fail("; ".join(res.problems))
    s = mixture_stats(res, steps, batch_size)
    if report is not None:
        s["report"] = str(write_report(res, s, report))
    typer.echo(json.dumps(s, indent=2) if as_json else format_stats(s))
    if report is not None and not as_json:
        typer.echo(f"report: {s['report']}")


def train(
    stage: Annotated[
        str, typer.Option(help="pretrain (CE on text + FAST tokens) or posttrain (+ flow-matching expert).")
    ],
    mixture: Annotated[Path, typer.Option(help="A mixture YAML (mixtures/*.yaml); its layouts may be URLs.")],
    out: Annotated[
        Path,
        typer.Option(
            help="Run folder: checkpoints/step_NNNNNN/ and metrics.csv; resumes when it has checkpoints."
        ),
    ],
    config: Annotated[str, typer.Option(help="Model size: tiny (CPU, minutes) or base (a GPU).")] = "tiny",
    steps: Annotated[
        int, typer.Option(help="Training steps in all (a resumed run continues up to this).")
    ] = 100,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 8,
    lr: Annotated[float, typer.Option(help="Peak learning rate (linear warm-up, cosine decay).")] = 3e-4,
    seed: Annotated[int, typer.Option(help="Seed of the model, the sampler and the flow noise.")] = 0,
    init: Annotated[
        Path | None,
        typer.Option(help="Stage 2: the stage-1 checkpoint folder to start from (a fresh action expert)."),
    ] = None,
    checkpoint_every: Annotated[
        int, typer.Option(help="Save a checkpoint every N steps (and at the end).")
    ] = 50,
    stop_at: Annotated[
        int | None,
        typer.Option(help="Stop after this step with a checkpoint (time-limited jobs); re-run to resume."),
    ] = None,
) -> None:
    """Train the bundled VLA on a mixture: stage 1 all-discrete, stage 2 with the flow-matching expert."""
    from tqdm import tqdm

    from vlamix.config import ConfigError
    from vlamix.trainer.train import CONFIGS, TrainOptions
    from vlamix.trainer.train import train as run_train

    if stage not in ("pretrain", "posttrain"):
        _fail(f"--stage {stage!r}: stages are pretrain and posttrain")
    if config not in CONFIGS:
        _fail(f"--config {config!r}: configs are {sorted(CONFIGS)}")
    opts = TrainOptions(
        stage=stage,
        mixture=mixture,
        out=out,
        config=config,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        init=init,
        checkpoint_every=checkpoint_every,
        stop_at=stop_at,
    )
    bar = tqdm(total=steps, desc=f"{stage} {config}")

    def progress(step: int, row: dict) -> None:
        bar.n = step
        bar.set_postfix(loss=row["loss"], sps=row["samples_per_s"], wait=row["data_wait"], refresh=False)
        bar.refresh()

    try:
        row = run_train(opts, progress)
    except (ConfigError, ValueError, OSError) as e:
        _fail(str(e))
    finally:
        bar.close()
    typer.echo(
        f"{stage}: step {row.get('step', steps)}, loss {row.get('loss')}; checkpoints in {out}/checkpoints"
    )
