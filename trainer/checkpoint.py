"""Checkpoint folders: `DIR/checkpoints/step_NNNNNN/` with the model's and the optimizer's tensors and
`state.json`, which says what the weights mean:

    stage, step, config (model size and token budget), model (the ModelConfig), tokenizer_set (sha256),
    stats ({dataset: sha256 of stats/<dataset>.json}), layouts ({layout URL: [datasets]}), mixture,
    options (the flags that decide the run's numbers) and data (seed, batch size, next batch).

A folder is written under a temporary name and renamed, so it exists whole or not at all; a run killed
while saving leaves a `.step_NNNNNN.tmp` folder, which the next run removes (`remove_partial`). The learning
rate is a function of the step, and every random draw of the loop is seeded by the step, so model,
optimizer and state.json are all a resume needs to continue bit for bit."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import torch

__all__ = ["STATE", "latest_checkpoint", "read_state", "remove_partial", "save_checkpoint"]

STATE = "state.json"
MODEL = "model.pt"
OPTIMIZER = "optimizer.pt"


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted(
        p
        for p in (out / "checkpoints").glob("step_*")
        if all((p / n).is_file() for n in (STATE, MODEL, OPTIMIZER))
    )
    return found[-1] if found else None


def remove_partial(out: Path) -> list[Path]:
    """Remove what a run killed while saving left behind (`.step_*.tmp`, `.step_*.old`); returns it."""
    partial = sorted((out / "checkpoints").glob(".step_*.tmp")) + sorted(
        (out / "checkpoints").glob(".step_*.old")
    )
    for p in partial:
        shutil.rmtree(p, ignore_errors=True)
    return partial


def read_state(folder: Path) -> dict:
    """state.json of a checkpoint folder, with a clear error when the folder is not one."""
    folder = Path(folder)
    if not (folder / STATE).is_file() or not (folder / MODEL).is_file():
        hint = ""
        if (folder / "checkpoints").is_dir():
            newest = latest_checkpoint(folder)
            hint = f" (a run folder: its newest checkpoint is {newest})" if newest else ""
        raise FileNotFoundError(f"{folder}: not a checkpoint folder ({STATE} and {MODEL} expected){hint}")
    return json.loads((folder / STATE).read_text())


def _load_tensors(path: Path) -> dict:
    """torch.load with weights_only=True: tensors and plain containers only, never code from the file; a
    pickle that asks for anything else is refused naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: refused: not a plain tensor file ({first})") from e


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    return _load_tensors(Path(folder) / MODEL)


def load_optimizer(folder: Path) -> dict:
    return _load_tensors(Path(folder) / OPTIMIZER)


def save_checkpoint(out: Path, step: int, model, optim, state: dict) -> Path:
    folder = out / "checkpoints" / f"step_{step:06d}"
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(model.state_dict(), tmp / MODEL)
    torch.save(optim.state_dict(), tmp / OPTIMIZER)
    (tmp / STATE).write_text(json.dumps({**state, "step": step}, indent=2, sort_keys=True) + "\n")
    if folder.exists():  # the same step saved again: the old folder leaves in one rename, never half-deleted
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(folder)
    return folder
