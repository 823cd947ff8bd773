"""The training-side verbs of `vlamix`: `train` and `predict` (the mixture verbs: cli_mixture.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal, cast

import typer

from vlamix.cli_common import fail as _fail
from vlamix.cli_common import parse_size

__all__ = ["predict", "train"]


def train(
    stage: Annotated[
        str, typer.Option(help="pretrain (CE on text + FAST tokens) or posttrain (+ flow-matching expert).")
    ],
    mixture: Annotated[Path, typer.Option(help="A mixture YAML (mixtures/*.yaml); its layouts may be URLs.")],
    out: Annotated[
        Path,
        typer.Option(
            help="Run folder: checkpoints/step_NNNNNN/, metrics.csv, eval.csv; resumes when it has checkpoints."
        ),
    ],
    config: Annotated[
        str | None,
        typer.Option(
            help="Model size: tiny (CPU, minutes), base (a GPU) or a YAML `{preset: tiny, depth: 3}`. "
            "Default: tiny, or the --init checkpoint's."
        ),
    ] = None,
    steps: Annotated[
        int, typer.Option(help="Training steps in all (a resumed run continues up to this).")
    ] = 100,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 8,
    lr: Annotated[
        float | None,
        typer.Option(
            help="Peak learning rate (linear warm-up, cosine decay). Default: the config's (tiny 3e-3, base "
            "3e-4), 5e-5 with --backbone."
        ),
    ] = None,
    warmup: Annotated[int, typer.Option(help="Warm-up steps.")] = 10,
    seed: Annotated[
        int, typer.Option(help="Seed of the model, the sampler, augmentation and the flow noise.")
    ] = 0,
    init: Annotated[
        Path | None,
        typer.Option(help="Stage 2: the stage-1 checkpoint folder to start from (a fresh action expert)."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Dataloader processes (0: load in the training process). Any number gives the same batches."
        ),
    ] = 2,
    augment: Annotated[
        bool, typer.Option(help="Seeded image augmentation (crop, rotation, colour jitter) while training.")
    ] = True,
    eval_every: Annotated[int, typer.Option(help="Held-out loss on the val split every N steps.")] = 50,
    eval_batches: Annotated[int, typer.Option(help="Batches of val rows per evaluation (0: none).")] = 2,
    checkpoint_every: Annotated[
        int, typer.Option(help="Save a checkpoint every N steps (and at the end).")
    ] = 50,
    log_every: Annotated[int, typer.Option(help="Print a summary line every N steps.")] = 10,
    stop_at: Annotated[
        int | None,
        typer.Option(help="Stop after this step with a checkpoint (time-limited jobs); re-run to resume."),
    ] = None,
    tensorboard: Annotated[
        bool, typer.Option(help="Also write TensorBoard scalars to OUT/tensorboard (needs tensorboard).")
    ] = False,
    device: Annotated[
        str | None, typer.Option(help="cuda, cuda:1, cpu, ... (default: cuda when torch sees one).")
    ] = None,
    precision: Annotated[
        str, typer.Option(help="fp32, or bf16 (autocast; weights and optimizer stay fp32).")
    ] = "fp32",
    cache: Annotated[
        Path | None,
        typer.Option(
            help="Shard cache for layouts at URLs: shards are fetched whole, sha256-verified, read locally. "
            "Default $VLAMIX_CACHE/shards (~/.cache/vlamix/shards); one folder per layout inside."
        ),
    ] = None,
    cache_limit: Annotated[
        str | None,
        typer.Option(
            help="Most bytes the shard cache keeps, e.g. 20GB; least recently used shards go first."
        ),
    ] = None,
    shuffle_block: Annotated[
        int,
        typer.Option(
            help="Shards whose rows the sampler shuffles together (0: all of a dataset's rows at once). "
            "vlamix shards are random subsets of their dataset, so 1 loses nothing and needs the least cache."
        ),
    ] = 1,
    log_samples: Annotated[
        bool, typer.Option(help="Write each step's global sample keys to OUT/samples.jsonl.")
    ] = False,
    backbone: Annotated[
        Path | None,
        typer.Option(
            help="Start from a pretrained PaliGemma: a local Hugging Face snapshot folder (config.json, "
            "model.safetensors, tokenizer.json). The layouts must be built for it (vlamix ingest --backbone "
            "DIR). Default lr 5e-5. A resumed or --init run takes the model from its checkpoint."
        ),
    ] = None,
    expert_width: Annotated[
        int | None,
        typer.Option(
            help="With --backbone: the action expert's width (default half the backbone's: 1024 at 3B, "
            "pi0's 300M expert)."
        ),
    ] = None,
    checkpointing: Annotated[
        bool,
        typer.Option(
            help="Gradient checkpointing of the decoder layers (--backbone): recompute activations in "
            "the backward pass; less memory, ~30% more time."
        ),
    ] = False,
) -> None:
    """Train the bundled VLA on a mixture: stage 1 all-discrete, stage 2 with the flow-matching expert.

    Trains on the rows outside the `val` split, reports the held-out loss on the `val` rows, and resumes
    from the newest checkpoint in --out, bit for bit. Under torchrun (`torchrun --nproc_per_node=N -m
    vlamix train ...`) every process trains its share of each global batch (--batch-size is global); a
    run resumes at any number of processes."""
    from tqdm import tqdm

    from vlamix.config import ConfigError
    from vlamix.trainer.train import TrainOptions
    from vlamix.trainer.train import train as run_train

    opts = TrainOptions(
        stage=cast(Literal["pretrain", "posttrain"], stage),  # TrainOptions checks the value
        mixture=mixture,
        out=out,
        config=config,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup=warmup,
        seed=seed,
        init=init,
        checkpoint_every=checkpoint_every,
        eval_every=eval_every,
        eval_batches=eval_batches,
        workers=workers,
        augment=augment,
        log_every=log_every,
        stop_at=stop_at,
        tensorboard=tensorboard,
        device=device,
        precision=cast(Literal["fp32", "bf16"], precision),  # TrainOptions checks the value
        cache=cache,
        cache_limit=None if cache_limit is None else parse_size(cache_limit, "--cache-limit"),
        shuffle_block=shuffle_block,
        log_samples=log_samples,
        backbone=backbone,
        expert_width=expert_width,
        checkpointing=checkpointing,
    )
    main_rank = os.environ.get("RANK", "0") == "0"  # the others print nothing but their errors
    bars: list = []  # the bar starts with the first step, so a config error stays one line

    def progress(step: int, row: dict) -> None:
        if not bars:
            bars.append(tqdm(total=steps, desc=f"{stage}", dynamic_ncols=True))
        bar = bars[0]
        bar.n = step
        bar.set_postfix(loss=row["loss"], sps=row["samples_per_s"], wait=row["data_wait"], refresh=False)
        bar.refresh()

    try:
        row = run_train(opts, progress, echo=tqdm.write)
    except (ConfigError, ValueError, OSError, KeyError) as e:
        for bar in bars:
            bar.close()
        _fail(str(e).strip("'\""))
    for bar in bars:
        bar.close()
    if main_rank:
        typer.echo(
            f"{stage}: step {row.get('step', steps)}, loss {row.get('loss')}; checkpoints in {out}/checkpoints"
        )


def _read_state_arg(text: str) -> list[float]:
    path = Path(text)
    if path.suffix in (".npy", ".json", ".txt") and path.is_file():
        import numpy as np

        if path.suffix == ".npy":
            return [float(x) for x in np.load(path).reshape(-1)]
        if path.suffix == ".json":
            return [float(x) for x in json.loads(path.read_text())]
        text = path.read_text()
    try:
        return [float(x) for x in text.replace(",", " ").split()]
    except ValueError:
        _fail(f"--state {text[:60]!r}: give numbers (comma or space separated) or a .npy/.json/.txt file")
    return []


def predict(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint folder (RUN/checkpoints/step_NNNNNN).")],
    dataset: Annotated[
        str, typer.Option(help="The dataset whose robot, statistics and prompt format to use.")
    ],
    state: Annotated[
        str,
        typer.Option(
            help="The robot's native state: numbers (comma or space separated) or a .npy/.json file."
        ),
    ],
    task: Annotated[str, typer.Option(help="The task, in words.")],
    images: Annotated[
        list[str] | None,
        typer.Option(
            "--images",
            help="Camera images as SLOT=FILE or CAMERA=FILE (base_0, left_wrist, cam_high, ...), repeated; "
            "plain FILEs fill the embodiment's cameras in order. Cameras not given are absent.",
        ),
    ] = None,
    subtask: Annotated[
        str | None, typer.Option(help="Use this subtask instead of letting the model predict one.")
    ] = None,
    hierarchical: Annotated[
        bool, typer.Option(help="Predict a subtask first (pi0.5's high-level inference).")
    ] = True,
    mode: Annotated[
        str | None,
        typer.Option(
            help="flow (the action expert, stage 2) or fast (FAST token decoding). Default: flow for stage-2 checkpoints."
        ),
    ] = None,
    layout: Annotated[
        str | None,
        typer.Option(help="Read the layout here instead of where the checkpoint trained (a folder or URL)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the flow's starting noise.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    save: Annotated[
        Path | None, typer.Option("--save", help="Also write the chunk as .npy (native units).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the prediction as JSON.")] = False,
) -> None:
    """Hierarchical inference: a subtask, then an action chunk in the robot's native units.

    Exit code 3 when the model's FAST tokens do not decode to a chunk (reported, never zeroed)."""
    import numpy as np

    from vlamix.trainer.predict import Policy
    from vlamix.transforms.image import decode_jpeg

    try:
        policy = Policy.load(checkpoint, layout, device)
        assets, _ = policy.assets(dataset)
        named: dict[str, np.ndarray] = {}
        order = list(dict.fromkeys(s for s in assets.emb.cameras.values() if s is not None))  # slots, once
        for i, item in enumerate(images or []):
            name, _, file = item.rpartition("=")
            if not name:
                if i >= len(order):
                    _fail(f"--images {item}: {assets.emb.name} has only {len(order)} cameras ({order})")
                name = order[i]
            named[name] = decode_jpeg(Path(file).read_bytes())
        pred = policy.predict(
            dataset, named, np.asarray(_read_state_arg(state)), task, subtask, hierarchical, mode, seed
        )
    except (ValueError, OSError, KeyError) as e:
        _fail(str(e).strip("'\""))
    if save is not None and pred.actions is not None:
        np.save(save, pred.actions.astype(np.float32))
    if as_json:
        typer.echo(json.dumps(pred.to_json(), indent=2))
    else:
        for w in pred.warnings:
            typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
        typer.echo(f"prompt:  {pred.prompt!r}")
        typer.echo(f"subtask: {pred.subtask!r} ({pred.subtask_source})")
        if pred.actions is None:
            typer.secho(f"invalid: {pred.error}", fg=typer.colors.RED)
            typer.echo(f"FAST tokens: {pred.fast_tokens}")
        else:
            h = len(pred.actions)
            typer.echo(
                f"actions: {h} steps x {len(pred.dims)} dims at {pred.control_rate_hz:g} Hz ({pred.mode}), native units"
            )
            width = max(len(n) for n in pred.dims)
            for j, (n, u) in enumerate(zip(pred.dims, pred.units, strict=True)):
                first, last = pred.actions[0, j], pred.actions[-1, j]
                typer.echo(f"  {n:<{width}} [{u}]  step 0: {first: .4f}  step {h - 1}: {last: .4f}")
    if not pred.valid:
        raise typer.Exit(3)
