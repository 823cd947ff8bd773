"""Shared fixtures: factories that write small real files (HDF5 episodes, sources files)."""

from __future__ import annotations

import dataclasses
import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VLAMIX_SHARED", REPO.parent / "shared"))
SAMPLES = REPO / "samples"


def shared_path(*parts: str) -> Path:
    """A file of ../shared, or a skip with the reason when this checkout has none beside it."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"{path} is absent (../shared ships only with the project's workspace; set VLAMIX_SHARED)"
        )
    return path


@pytest.fixture
def make_aloha_episode() -> Callable[..., Path]:
    """Write a short synthetic Mobile-ALOHA episode; `mutate(f)` may edit the open h5py file after."""
    import h5py

    from vlamix.sources.synthetic.mobile_aloha import SampleSpec, write_episode
    from vlamix.sources.synthetic.scenario import simulate

    def make(
        path: Path, frames: int = 24, seed: int = 7, compress: bool = True, start: int = 200, mutate=None
    ) -> Path:
        state = simulate(seed)
        cut = slice(start, start + frames)
        short = dataclasses.replace(
            state,
            action=state.action[cut],
            qpos=state.qpos[cut],
            qvel=state.qvel[cut],
            base_action=state.base_action[cut],
            base_pose=state.base_pose[cut],
            cubes=state.cubes[cut],
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_episode(path, short, SampleSpec(compress=compress, height=48, width=64))
        if mutate is not None:
            with h5py.File(path, "r+") as f:
                mutate(f)
        return path

    return make


@pytest.fixture
def write_sources() -> Callable[..., Path]:
    def write(folder: Path, body: str) -> Path:
        path = folder / "sources.yaml"
        path.write_text(textwrap.dedent(body))
        return path

    return write


def nan_at(dataset: str, row: int, col: int = 0):
    def mutate(f) -> None:
        data = f[dataset][()]
        data[row, col] = np.nan
        del f[dataset]
        f.create_dataset(dataset, data=data, track_times=False)

    return mutate
