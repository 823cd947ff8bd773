"""Hierarchical inference with a trained checkpoint (pi0.5): from camera images, the robot's native state
and a task, first the subtask, then an action chunk in the robot's native units.

1. The observation becomes what a shard sample of that dataset holds: images resized with padding to
   224x224 (and JPEG-coded, as build does), the state through the chain's own state transforms
   (`observation_chain`: closed-gripper sense, the dataset's normalization, 256 bins) into the prompt.
2. Subtask: greedy decoding of text after the prompt's `<sep>`, up to the next `<sep>`; a model that
   answers `<action>` at once predicts no subtask. `subtask=` skips this and uses the given text.
3. Actions, one of two ways:
   - `flow` (stage-2 checkpoints): the action expert integrates the flow from noise at t = 1 to t = 0 in
     10 Euler steps, seeing the prefix and the subtask text;
   - `fast` (any checkpoint): greedy decoding of FAST tokens after `<action>` up to `<end_of_action>`,
     restricted to FAST ids, then the FAST tokenizer's decoder. A sequence that does not decode to
     exactly horizon x dims coefficients is reported as invalid, with the tokens: never a zero chunk.
4. The normalized chunk goes back to native absolute actions through the chain's inverses
   (`transforms/native.py`), with the given state for delta dims.

The layout the checkpoint trained on gives the tokenizer set, the embodiment spec and the statistics;
their hashes must be those in the checkpoint's state.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vlamix.schemas.embodiment import CAMERA_SLOTS, MAX_DIMS, MODEL_HORIZON, Embodiment
from vlamix.shards.assets import embodiment_of, tokenizer_dir
from vlamix.shards.manifest import read_manifest
from vlamix.shards.store import Store
from vlamix.tokenizers.tokenizer_set import TokenizerSet, load_tokenizer_set
from vlamix.trainer.checkpoint import load_weights, read_state
from vlamix.trainer.model import VLA, sample_actions
from vlamix.trainer.models import model_from_state
from vlamix.transforms.chain import apply, build_chain, observation_chain
from vlamix.transforms.image import IMAGE_SIZE, ResizeWithPad, decode_jpeg, encode_jpeg
from vlamix.transforms.native import native_chunk
from vlamix.transforms.rotation_groups import LoggedRotations, TrainedRotations
from vlamix.transforms.stats import DimStats

__all__ = ["EULER_STEPS", "Policy", "Prediction"]

EULER_STEPS = 10
MAX_SUBTASK_TOKENS = 48


@dataclass
class Prediction:
    dataset: str
    embodiment: str
    task: str
    prompt: str
    subtask: str | None  # None: the model predicted no subtask (or none was asked for)
    subtask_source: str  # "model", "given" or "none"
    mode: str  # "flow" or "fast"
    valid: bool
    actions: np.ndarray | None  # [H, Da] native absolute actions; None when invalid
    dims: list[str]
    units: list[str]
    control_rate_hz: float
    fast_tokens: list[int] | None = None  # FAST mode: the generated tokens (FAST-local ids)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {k: v for k, v in vars(self).items() if k != "actions"}
        out["actions"] = None if self.actions is None else np.round(self.actions, 6).tolist()
        out["horizon"] = None if self.actions is None else len(self.actions)
        return out


@dataclass(frozen=True)
class _DatasetAssets:
    emb: Embodiment
    state_stats: DimStats
    action_stats: DimStats
    normalization: str


class Policy:
    """A checkpoint ready to act: the model, its tokenizer set and the layout it trained on."""

    def __init__(
        self, model: VLA, state: dict, tok: TokenizerSet, stores: dict[str, Store], checkpoint: Path
    ):
        self.model, self.state, self.tok, self.stores = model.eval(), state, tok, stores
        self.checkpoint = checkpoint
        self.device = next(model.parameters()).device
        self._assets: dict[str, tuple[_DatasetAssets, list[str]]] = {}
        self.manifests = {url: read_manifest(s) for url, s in stores.items()}

    @classmethod
    def load(cls, checkpoint: str | Path, layout: str | None = None, device: str = "cpu") -> Policy:
        """`layout` (a folder or URL) replaces the layouts recorded in the checkpoint (moved or mirrored)."""
        checkpoint = Path(checkpoint)
        state = read_state(checkpoint)
        urls = [layout] if layout is not None else list(state["layouts"])
        stores = {Store(u).url: Store(u) for u in urls}
        (url, store), *_ = stores.items()
        manifest = read_manifest(store)
        if manifest["tokenizer_set"]["sha256"] != state["tokenizer_set"]:
            raise ValueError(
                f"{url}: its tokenizer set {manifest['tokenizer_set']['sha256'][:12]}... is not the "
                f"checkpoint's {state['tokenizer_set'][:12]}...: token ids would mean other things"
            )
        tok = load_tokenizer_set(tokenizer_dir(store, manifest))
        model = model_from_state(state["model"], with_expert=state["stage"] == "posttrain")
        model.load_state_dict(load_weights(checkpoint))
        return cls(model.to(device), state, tok, stores, checkpoint)

    # --- the observation ---
    def assets(self, dataset: str) -> tuple[_DatasetAssets, list[str]]:
        """A dataset's embodiment, statistics and normalization (read once), and warnings about them."""
        if dataset not in self._assets:
            self._assets[dataset] = self._read_assets(dataset)
        assets, warnings = self._assets[dataset]
        return assets, list(warnings)

    def _read_assets(self, dataset: str) -> tuple[_DatasetAssets, list[str]]:
        for url, m in self.manifests.items():
            if dataset in m["datasets"]:
                store, entry = self.stores[url], m["datasets"][dataset]
                break
        else:
            known = sorted(d for m in self.manifests.values() for d in m["datasets"])
            raise KeyError(f"no dataset {dataset!r} in {sorted(self.manifests)}; they have {known}")
        emb = embodiment_of(store, entry)
        if emb is None or not entry.get("stats"):
            raise ValueError(f"{dataset}: a {entry['kind']} dataset has no robot actions to predict")
        warnings = []
        trained = self.state["stats"].get(dataset)
        if trained is None:
            warnings.append(
                f"{dataset} was not in the training mixture: its embodiment may be unknown to the model"
            )
        elif trained != entry["stats"]["sha256"]:
            raise ValueError(
                f"{dataset}: {store.url_of(entry['stats']['path'])} is not the statistics the checkpoint "
                "trained with (sha256 differs): predicted actions would be unnormalized wrongly"
            )
        stats = store.read_json(entry["stats"]["path"])
        assets = _DatasetAssets(
            emb,
            DimStats.from_json(stats["state"]),
            DimStats.from_json(stats["actions"]),
            stats["normalization"],
        )
        return assets, warnings

    def observation(
        self, a: _DatasetAssets, images: dict[str, np.ndarray], state: np.ndarray, task: str
    ) -> tuple[dict, str]:
        """Model inputs of one observation (batch of 1) and its prompt text."""
        state = np.asarray(state, np.float32).reshape(-1)
        if len(state) != a.emb.state_dim:
            names = ", ".join(d.name for d in a.emb.state)
            raise ValueError(f"state has {len(state)} values, {a.emb.name} has {a.emb.state_dim}: {names}")
        slots = {s for s in a.emb.cameras.values() if s is not None}
        pixels = np.zeros((len(CAMERA_SLOTS), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        present = np.zeros(len(CAMERA_SLOTS), bool)
        for name, image in images.items():
            slot = a.emb.cameras.get(name, name)
            if slot not in slots:
                raise ValueError(
                    f"camera {name!r}: {a.emb.name} has the slots {sorted(slots)} (native names "
                    f"{sorted(a.emb.cameras)})"
                )
            if image.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):  # as build stores it: resized with pad, JPEG
                image = decode_jpeg(encode_jpeg(ResizeWithPad(IMAGE_SIZE)(image)))
            i = CAMERA_SLOTS.index(slot)
            pixels[i], present[i] = image, True
        sample = apply(
            observation_chain(a.emb, a.state_stats, a.normalization), {"state": state, "task": task}
        )
        ids = [self.tok.special("<bos>"), *self.tok.text_ids(sample["prompt"])]
        ids = ids[: self.state["config"]["max_prompt"]]
        inputs = {
            "images": torch.from_numpy(pixels[None]),  # uint8, as the loader's batches: the model scales
            "image_mask": torch.from_numpy(present[None]),
            "prompt_ids": torch.tensor([ids]),
            "prompt_valid": torch.ones(1, len(ids), dtype=torch.bool),
        }
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        return inputs, sample["prompt"]

    # --- decoding ---
    @torch.no_grad()
    def _greedy(
        self, inputs: dict, stream: list[int], allowed: torch.Tensor, stop: set[int], limit: int
    ) -> list[int]:
        """Extend `stream` one argmax token at a time (only `allowed` ids) until a `stop` id or `limit`."""
        out: list[int] = []
        for _ in range(limit):
            logits, _ = self.model(**inputs, target_ids=torch.tensor([stream + out], device=self.device))
            scores = logits[0, -1].masked_fill(~allowed, float("-inf"))
            out.append(int(scores.argmax()))
            if out[-1] in stop:
                break
        return out

    def _ids(self, *ranges: str, specials: tuple[str, ...] = ()) -> torch.Tensor:
        allowed = torch.zeros(self.model.cfg.vocab_size, dtype=torch.bool, device=self.device)
        for name in ranges:
            lo, hi = self.tok.ranges[name]
            allowed[lo:hi] = True
        target = self.tok.layout.backbone
        if "text" in ranges and target is not None:  # a backbone's table also holds its specials, its
            allowed[self.tok.layout.text : target.vocab] = False  # locations, rows past its tokenizer
            allowed[slice(*self.tok.ranges["loc"])] = False
            allowed[list(target.specials.values())] = False
        for s in specials:
            allowed[self.tok.special(s)] = True
        return allowed

    def _flow(self, inputs: dict, stream: list[int], seed: int) -> np.ndarray:
        """The expert's chunk [50, 32] (normalized): Euler steps from noise, seeing prompt and subtask."""
        cfg = self.model.cfg
        noise = torch.randn(1, cfg.horizon, cfg.action_dim, generator=torch.Generator().manual_seed(seed))
        target = torch.tensor([stream], device=self.device)
        context = torch.ones_like(target, dtype=torch.bool)
        inputs = {**inputs, "target_ids": target, "expert_context": context}
        return sample_actions(self.model, inputs, noise.to(self.device), EULER_STEPS)[0].cpu().numpy()

    def predict(
        self,
        dataset: str,
        images: dict[str, np.ndarray],
        state: np.ndarray,
        task: str,
        subtask: str | None = None,
        hierarchical: bool = True,
        mode: str | None = None,
        seed: int = 0,
    ) -> Prediction:
        """`images`: {slot or native camera name: HxWx3 uint8}; `state`: native [Ds]. `mode` defaults to
        flow for stage-2 checkpoints and fast otherwise."""
        a, warnings = self.assets(dataset)
        mode = mode or ("flow" if self.model.with_expert else "fast")
        if mode == "flow" and not self.model.with_expert:
            raise ValueError(
                f"{self.checkpoint}: a {self.state['stage']} checkpoint has no action expert; use fast"
            )
        if mode not in ("flow", "fast"):
            raise ValueError(f"mode {mode!r}: flow or fast")
        state = _trained_state(a.emb, state)
        inputs, prompt = self.observation(a, images, state, task)
        inputs["image_tokens"] = self.model.vit(inputs["images"])
        sep, act = self.tok.special("<sep>"), self.tok.special("<action>")
        stream, source = [sep], "none"
        if subtask is not None:
            stream, source = [sep, *self.tok.text_ids(subtask), sep], "given"
        elif hierarchical:
            allowed = self._ids("text", specials=("<sep>", "<action>"))
            said = self._greedy(inputs, stream, allowed, {sep, act}, MAX_SUBTASK_TOKENS)
            if said and said[-1] == sep and len(said) > 1:
                stream, source = [sep, *said], "model"
                subtask = self.tok.text.decode([i - self.tok.ranges["text"][0] for i in said[:-1]])
            elif said and said[-1] != act:
                warnings.append(f"no subtask: the model wrote {len(said)} tokens without closing them")
        h, d = a.emb.chunk_horizon, a.emb.action_dim
        padded = np.zeros((MODEL_HORIZON, MAX_DIMS), np.float32)
        fast_local, error = None, None
        if mode == "flow":
            padded[:] = self._flow(inputs, stream, seed)
        else:
            start = self.tok.ranges["fast"][0]
            end = self.tok.special("<end_of_action>")
            limit = max(1, self.state["config"]["max_targets"] - len(stream) - 1)
            said = self._greedy(
                inputs, [*stream, act], self._ids("fast", specials=("<end_of_action>",)), {end}, limit
            )
            closed = bool(said) and said[-1] == end
            fast_local = [i - start for i in said if i != end]
            decoded, ok = self.tok.fast.decode([fast_local], h, d)
            if ok[0]:
                padded[:h, :d] = decoded[0]
            else:
                error = (
                    f"the {len(fast_local)} FAST tokens the model wrote do not decode to a {h} x {d} chunk"
                    + ("" if closed else f" (no <end_of_action> within {limit} tokens)")
                )
        actions = None
        if error is None:
            is_pad = np.arange(MODEL_HORIZON) >= h
            chain = build_chain(a.emb, a.state_stats, a.action_stats, a.normalization)
            actions = native_chunk(chain, a.emb, padded, state, is_pad)
            actions = LoggedRotations("actions", tuple(a.emb.spans("action")))({"actions": actions})[
                "actions"
            ]
        logged = a.emb.as_logged()  # rotation groups back in the source's representation
        return Prediction(
            dataset=dataset,
            embodiment=a.emb.name,
            task=task,
            prompt=prompt,
            subtask=subtask,
            subtask_source=source,
            mode=mode,
            valid=error is None,
            actions=actions,
            dims=[x.name for x in logged.action],
            units=[x.unit for x in logged.action],
            control_rate_hz=a.emb.control_rate_hz,
            fast_tokens=fast_local,
            error=error,
            warnings=warnings,
        )


def _trained_state(emb: Embodiment, state: np.ndarray) -> np.ndarray:
    """The robot's state as its source logs it ([logged width]: rotation groups in the source's
    representation) -> the spec's trained dims. A spec without rotation groups takes it as it is."""
    if not emb.groups:
        return state
    state = np.asarray(state, np.float32).reshape(-1)
    logged = emb.as_logged()
    if len(state) != logged.state_dim:
        names = ", ".join(d.name for d in logged.state)
        raise ValueError(f"state has {len(state)} values, {emb.name} logs {logged.state_dim}: {names}")
    return TrainedRotations("state", tuple(emb.spans("state")))({"state": state})["state"]
