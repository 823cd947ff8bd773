"""`vlamix inspect --preview`: look at samples the way the trainer will see them. Per sample: the camera
slots as one PNG strip, the token sequence decoded back to text (prompt, then targets), and for robot
samples the action chunk in the robot's native units, beside its FAST reconstruction, as a PNG plot."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from vlamix.schemas.embodiment import CAMERA_SLOTS, Embodiment
from vlamix.shards.assets import embodiment_of, tokenizer_dir
from vlamix.shards.manifest import read_manifest
from vlamix.shards.store import Store
from vlamix.tokenizers.tokenizer_set import load_tokenizer_set
from vlamix.transforms.chain import build_chain
from vlamix.transforms.native import native_chunk, native_state
from vlamix.transforms.stats import DimStats
from vlamix.transforms.tokenize import FastDecode

__all__ = ["preview_samples"]

TILE = 224


def _samples(store: Store, shards: list[dict]):
    """(key, {member: bytes}) in shard order, streamed (a remote shard is read once, front to back)."""
    for s in shards:
        with store.open(s["path"], stream=True) as f, tarfile.open(fileobj=f, mode="r|") as tar:
            key, members = None, {}
            for member in tar:
                k, ext = member.name.split(".", 1)
                if key is not None and k != key:
                    yield key, members
                    members = {}
                key = k
                members[ext] = tar.extractfile(member).read()
            if key is not None:
                yield key, members


def _npy(sample: dict, name: str) -> np.ndarray | None:
    return np.load(io.BytesIO(sample[name])) if name in sample else None


def _image_strip(sample: dict, path: Path) -> None:
    from PIL import Image

    strip = Image.new("RGB", (TILE * len(CAMERA_SLOTS), TILE))
    for i, slot in enumerate(CAMERA_SLOTS):
        strip.paste(Image.open(io.BytesIO(sample[f"{slot}.jpg"])).convert("RGB"), (TILE * i, 0))
    strip.save(path)


def _plot_chunk(emb: Embodiment, chunk: np.ndarray, fast: np.ndarray | None, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = emb.action_dim
    cols = min(4, dims)
    rows = -(-dims // cols)
    t = np.arange(len(chunk)) / emb.control_rate_hz
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.2 * rows), squeeze=False, sharex=True)
    for i, ax in enumerate(axes.flat):
        if i >= dims:
            ax.axis("off")
            continue
        d = emb.action[i]
        ax.plot(t, chunk[:, i], lw=1.6, label="sample")
        if fast is not None:
            ax.plot(t, fast[: len(t), i], lw=1.0, ls="--", label="FAST decoded")
        ax.set_title(f"{d.name} [{d.unit}]", fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=6)
    fig.supxlabel("seconds into the chunk", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


class _Dataset:
    """What turning one dataset's samples back into native units needs: embodiment, stats, tokenizer set."""

    def __init__(self, store: Store, manifest: dict, name: str):
        d = manifest["datasets"][name]
        self.emb = embodiment_of(store, d)
        self.stats = store.read_json(d["stats"]["path"]) if d.get("stats") else None
        self.tokset = load_tokenizer_set(tokenizer_dir(store, manifest))

    def native(self, sample: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
        """(native state, native chunk, FAST-decoded native chunk or None) of a robot sample."""
        actions = _npy(sample, "actions.npy")
        if actions is None or self.emb is None or self.stats is None:
            return None
        mode = self.stats["normalization"]
        state_stats, action_stats = (
            DimStats.from_json(self.stats["state"]),
            DimStats.from_json(self.stats["actions"]),
        )
        chain = build_chain(self.emb, state_stats, action_stats, mode)
        state = native_state(chain, self.emb, _npy(sample, "state.npy"))
        is_pad = _npy(sample, "action_is_pad.npy")
        chunk = native_chunk(chain, self.emb, actions, state, is_pad)
        fast = None
        if "fast_ids.npy" in sample:
            decoded = FastDecode(self.tokset, self.emb.chunk_horizon, self.emb.action_dim)(
                {"fast_ids": _npy(sample, "fast_ids.npy")}
            )
            if decoded["fast_valid"]:
                fast = native_chunk(chain, self.emb, decoded["actions"], state)
        return state, chunk, fast


def preview_samples(store: Store, dataset: str, n: int, out: Path) -> list[dict]:
    """Decode the first `n` samples of `dataset` into `out` (PNG files) and return what each shows."""
    m = read_manifest(store)
    if dataset not in m["datasets"]:
        raise KeyError(f"no dataset {dataset!r} in {store.url}; it has {sorted(m['datasets'])}")
    out.mkdir(parents=True, exist_ok=True)
    ds = _Dataset(store, m, dataset)
    tok = ds.tokset
    previews: list[dict] = []
    for key, sample in _samples(store, m["datasets"][dataset]["shards"]):
        if len(previews) >= n:
            break
        stem = key.replace("/", "_")
        item = {
            "key": key,
            "prompt": sample.get("prompt.txt", b"").decode(),
            "target": sample.get("target.txt", b"").decode() or None,
            "image": str(out / f"{stem}.png"),
        }
        _image_strip(sample, out / f"{stem}.png")
        ids, mask = _npy(sample, "input_ids.npy"), _npy(sample, "loss_mask.npy")
        if ids is not None:
            item["tokens"] = len(ids)
            item["decoded_prompt"] = tok.decode([int(i) for i in ids[~mask]])
            item["decoded_targets"] = tok.decode([int(i) for i in ids[mask]])
        native = ds.native(sample)
        if native is not None:
            state, chunk, fast = native
            item["actions_shape"] = list(_npy(sample, "actions.npy").shape)
            item["real_dims"] = ds.emb.action_dim
            item["native_state"] = [round(float(x), 5) for x in state]
            item["chunk_steps"] = len(chunk)
            item["fast_max_error"] = None if fast is None else float(np.abs(fast[: len(chunk)] - chunk).max())
            item["actions_plot"] = str(out / f"{stem}_actions.png")
            _plot_chunk(
                ds.emb, chunk, fast, f"{key}: action chunk in native units", out / f"{stem}_actions.png"
            )
        previews.append(item)
    return previews
