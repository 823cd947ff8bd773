"""Write RLDS / TFDS datasets (features.json, dataset_info.json, TFRecord shards) without TensorFlow.

Each episode is one `tf.train.Example` whose step features are flattened over the steps, exactly as TFDS
stores an RLDS `steps` sequence. Used for the bundled CE samples and the tests' small fixtures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlamix.sources.tf_example import encode_example
from vlamix.sources.tfrecord import write_records

__all__ = ["RldsFeature", "write_rlds"]

_CLASSES = {
    "Tensor": "tensorflow_datasets.core.features.tensor_feature.Tensor",
    "Scalar": "tensorflow_datasets.core.features.scalar.Scalar",
    "Image": "tensorflow_datasets.core.features.image_feature.Image",
    "Text": "tensorflow_datasets.core.features.text_feature.Text",
}
_DICT = "tensorflow_datasets.core.features.features_dict.FeaturesDict"
_SEQ = "tensorflow_datasets.core.features.dataset_feature.Dataset"


@dataclass(frozen=True)
class RldsFeature:
    """A feature under `steps/` or `episode_metadata/`, e.g. RldsFeature("steps/observation/state", "Tensor", "float32", (7,))."""

    name: str
    kind: str  # Tensor, Scalar, Image, Text
    dtype: str = "float32"
    shape: tuple[int, ...] = ()
    description: str = ""

    def spec(self) -> dict:
        node: dict = {"pythonClassName": _CLASSES[self.kind]}
        dims = {"dimensions": [str(d) for d in self.shape]} if self.shape else {}
        if self.kind == "Image":
            node["image"] = {"shape": dims, "dtype": "uint8", "encodingFormat": "jpeg"}
        elif self.kind == "Text":
            node["text"] = {}
        else:
            node["tensor"] = {"shape": dims, "dtype": self.dtype, "encoding": "none"}
        if self.description:
            node["description"] = self.description
        return node


def _features_json(features: list[RldsFeature]) -> dict:
    steps: dict = {}
    meta: dict = {}
    for f in features:
        top, *rest = f.name.split("/")
        target = steps if top == "steps" else meta
        for part in rest[:-1]:
            target = target.setdefault(part, {"pythonClassName": _DICT, "featuresDict": {"features": {}}})[
                "featuresDict"
            ]["features"]
        target[rest[-1]] = f.spec()
    root = {
        "steps": {
            "pythonClassName": _SEQ,
            "sequence": {
                "feature": {"pythonClassName": _DICT, "featuresDict": {"features": steps}},
                "length": "-1",
            },
        },
    }
    if meta:
        root["episode_metadata"] = {"pythonClassName": _DICT, "featuresDict": {"features": meta}}
    return {"pythonClassName": _DICT, "featuresDict": {"features": root}}


def write_rlds(
    folder: Path, name: str, features: list[RldsFeature], splits: dict[str, list[dict]]
) -> list[Path]:
    """Write `splits` ({split: [episode]}) where an episode maps every feature name to its values (an
    array [T, ...] or a list of bytes for steps; one value for episode metadata). One shard per split."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "features.json").write_text(
        json.dumps(_features_json(features), indent=4, sort_keys=True) + "\n"
    )
    info = {
        "name": name,
        "fileFormat": "tfrecord",
        "version": "1.0.0",
        "splits": [
            {
                "name": split,
                "filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
                "shardLengths": [str(len(eps))],
            }
            for split, eps in splits.items()
        ],
    }
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    paths = []
    for split, episodes in splits.items():
        records = []
        for ep in episodes:
            flat: dict[str, list[bytes] | np.ndarray] = {}
            for f in features:
                value = ep[f.name]
                if f.kind in ("Image", "Text"):
                    flat[f.name] = [
                        v.encode() if isinstance(v, str) else v
                        for v in (value if isinstance(value, list) else [value])
                    ]
                else:
                    flat[f.name] = np.asarray(value).ravel()
            records.append(encode_example(flat))
        path = folder / f"{name}-{split}.tfrecord-00000-of-00001"
        write_records(path, records)
        paths.append(path)
    return paths
