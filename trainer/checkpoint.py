"""Checkpoint folders: `DIR/checkpoints/step_NNNNNN/` with the model's and the optimizer's tensors and
`state.json`, which says what the weights mean:

    stage, step, config (model size and token budget), model (the ModelConfig), tokenizer_set (sha256),
    stats ({dataset: sha256 of stats/<dataset>.json}), layouts ({layout URL: [datasets]}), mixture,
    options (the flags that decide the run's numbers) and data (seed, batch size, next batch).

A folder is written under a temporary name and renamed, so it exists whole or not at all. The learning
rate is a function of the step, and every random draw of the loop is seeded by the step, so model,
optimizer and state.json are all a resume needs to continue bit for bit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

__all__ = ["STATE", "latest_checkpoint", "read_state", "save_checkpoint"]

STATE = "state.json"
MODEL = "model.pt"
OPTIMIZER = "optimizer.pt"


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted(p for p in (out / "checkpoints").glob("step_*") if (p / STATE).is_file())
    return found[-1] if found else None


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


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(Path(folder) / MODEL, map_location="cpu", weights_only=True)


def load_optimizer(folder: Path) -> dict:
    return torch.load(Path(folder) / OPTIMIZER, map_location="cpu", weights_only=True)


def save_checkpoint(out: Path, step: int, model, optim, state: dict) -> Path:
    folder = out / "checkpoints" / f"step_{step:06d}"
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(model.state_dict(), tmp / MODEL)
    torch.save(optim.state_dict(), tmp / OPTIMIZER)
    (tmp / STATE).write_text(json.dumps({**state, "step": step}, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder
