"""The π0.5 prompt: task text and the discretized state (256 bins over [-1, 1], real dims only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

__all__ = ["STATE_BINS", "StatePrompt", "clean_text", "state_bins"]

STATE_BINS = 256


def clean_text(text: str | None) -> str:
    """openpi's cleaning: strip, and turn underscores and newlines into spaces."""
    return (text or "").strip().replace("_", " ").replace("\n", " ")


def state_bins(state: np.ndarray) -> np.ndarray:
    """Normalized state -> clip to [-1, 1] -> bin index 0..255 (openpi's digitize over 256 equal bins)."""
    edges = np.linspace(-1.0, 1.0, STATE_BINS + 1)[:-1]
    return np.digitize(np.clip(np.asarray(state, dtype=np.float64), -1.0, 1.0), bins=edges) - 1


@dataclass(frozen=True)
class StatePrompt:
    """Writes `prompt` = `Task: {task}, Control: {mode}, State: {bins};\\nAction: ` from the normalized,
    unpadded `state`. The control mode tag (joint or ee) lets one model serve both kinds of robots."""

    control_mode: str
    writes: ClassVar[tuple[str, ...]] = ("prompt",)

    def features(self, fields: dict) -> dict:
        fields["state"], fields["task"]
        return {**fields, "prompt": ()}

    def __call__(self, sample: dict) -> dict:
        bins = " ".join(str(int(b)) for b in state_bins(sample["state"]))
        prompt = (
            f"Task: {clean_text(sample.get('task'))}, Control: {self.control_mode}, State: {bins};\nAction: "
        )
        return {**sample, "prompt": prompt}
