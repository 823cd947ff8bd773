"""Write synthetic episodes in the Mobile-ALOHA HDF5 layout (the layout `aloha_hdf5` reads).

Layout, as Mobile-ALOHA's recorder writes it: `/observations/{qpos,qvel,effort}` (T, 14),
`/observations/images/<camera>` (T, L) uint8 JPEG bytes zero-padded to the longest frame when the root
attribute `compress` is true (else raw (T, H, W, 3) uint8), `/compress_len` (cameras, T), `/action`
(T, 14) and `/base_action` (T, 2). Image datasets are gzip-chunked per frame (the padding compresses
away; readers see plain arrays). Files are written with `track_times=False`, so the same seed gives
the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from vlamix.sources.synthetic.kinematics import portable
from vlamix.sources.synthetic.scenario import EpisodeState, simulate
from vlamix.sources.synthetic.scene import CAMERAS, render_frame
from vlamix.sources.synthetic.upscale import Size, upscaled

__all__ = ["SampleSpec", "episode_seed", "generate", "write_episode"]

JPEG_QUALITY = 50  # what Mobile-ALOHA's recorder uses


@dataclass(frozen=True)
class SampleSpec:
    episodes: int = 3
    seed: int = 0
    height: int = 120
    width: int = 160
    compress: bool = True
    fps: int = 50
    upscale: Size | None = None  # (height, width): frames rendered at height x width, then resized


def episode_seed(seed: int, index: int) -> int:
    """Each episode has its own seed, so one episode can be regenerated alone."""
    return seed * 1_000_003 + index


def _jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue()


def _dataset(group: h5py.Group, name: str, data: np.ndarray, **kw) -> None:
    group.create_dataset(name, data=data, track_times=False, **kw)


def write_episode(path: Path, state: EpisodeState, spec: SampleSpec) -> None:
    """Render every camera of every step and write one HDF5 episode file."""
    frames = [
        {
            cam: upscaled(image, spec.upscale)
            for cam, image in render_frame(state, i, spec.width, spec.height).items()
        }
        for i in range(len(state.action))
    ]
    with h5py.File(path, "w", track_order=False) as f:
        f.attrs["sim"] = False
        f.attrs["compress"] = spec.compress
        f.attrs["task"] = (
            state.task
        )  # not in Mobile-ALOHA's recorder; the sources file points `instruction` here
        obs = f.create_group("observations", track_order=False)
        qpos, action = portable(state.qpos), portable(state.action)
        _dataset(obs, "qpos", qpos)
        _dataset(obs, "qvel", portable(state.qvel))
        effort = 8.0 * (action - qpos)  # servo error as a stand-in for motor current
        _dataset(obs, "effort", portable(effort))
        images = obs.create_group("images", track_order=False)
        if spec.compress:
            lengths = np.zeros((len(CAMERAS), len(frames)), dtype=np.int64)
            for c, cam in enumerate(CAMERAS):
                encoded = [_jpeg(fr[cam]) for fr in frames]
                lengths[c] = [len(e) for e in encoded]
                padded = np.zeros((len(frames), int(lengths[c].max())), dtype=np.uint8)
                for i, e in enumerate(encoded):
                    padded[i, : len(e)] = np.frombuffer(e, dtype=np.uint8)
                _dataset(
                    images, cam, padded, chunks=(1, padded.shape[1]), compression="gzip", compression_opts=4
                )
            _dataset(f, "compress_len", lengths)
        else:
            for cam in CAMERAS:
                stack = np.stack([fr[cam] for fr in frames])
                _dataset(
                    images, cam, stack, chunks=(1, *stack.shape[1:]), compression="gzip", compression_opts=4
                )
        _dataset(f, "action", action)
        _dataset(f, "base_action", portable(state.base_action))


def generate(out_dir: Path, spec: SampleSpec = SampleSpec(), only: list[int] | None = None) -> Iterator[Path]:
    """Write episodes `episode_<i>.hdf5` into `out_dir`, yielding each path as it is done. `only` picks a
    subset of indices (each episode is determined by its own seed, so a subset matches the full set)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for i in only if only is not None else range(spec.episodes):
        state = simulate(episode_seed(spec.seed, i), spec.fps)
        path = out_dir / f"episode_{i}.hdf5"
        write_episode(path, state, spec)
        yield path
