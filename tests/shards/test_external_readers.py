"""The shards are readable by the ecosystem without vlamix: Hugging Face `datasets`
(`load_dataset("webdataset", ...)`) and `ray.data.read_webdataset` see the same samples, with the same
decoded fields, as a direct read of the tars. (Plain webdataset: tests/pipelines/test_ingest_end_to_end.py.)
Each reader runs in a subprocess that never imports vlamix (asserted)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow
DATASETS = ("widowx_sim", "web_coco")

READER = textwrap.dedent(
    """
    import hashlib, json, sys
    import numpy as np

    def digest(key, actions, prompt, image, meta):
        return key, {
            "actions": None if actions is None else hashlib.sha256(np.asarray(actions, np.float32).tobytes()).hexdigest(),
            "prompt": prompt,
            "image": hashlib.sha256(np.asarray(image, np.uint8).tobytes()).hexdigest(),
            "kind": meta["kind"],
        }

    files, which, cache = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    out = {}
    if which == "datasets":
        from datasets import load_dataset
        ds = load_dataset("webdataset", data_files={"train": files}, split="train", cache_dir=cache)
        for r in ds:
            k, v = digest(r["__key__"], r.get("actions.npy"), r["prompt.txt"], r["base_0.jpg"].convert("RGB"), r["meta.json"])
            out[k] = v
    else:
        import ray
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        for r in ray.data.read_webdataset(files).take_all():
            k, v = digest(r["__key__"], r.get("actions.npy"), r["prompt.txt"], r["base_0.jpg"], r["meta.json"])
            out[k] = v
    assert not any(m == "vlamix" or m.startswith("vlamix.") for m in sys.modules), "vlamix was imported"
    print(json.dumps(out))
    """
)


def _direct(files: list[str]) -> dict:
    """The same digests from the tars, read with tarfile, numpy and PIL."""
    out = {}
    for path in files:
        with tarfile.open(path) as tar:
            samples: dict[str, dict] = {}
            for m in tar.getmembers():
                key, ext = m.name.split(".", 1)
                samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
        for key, s in samples.items():
            actions = np.load(io.BytesIO(s["actions.npy"])) if "actions.npy" in s else None
            image = np.asarray(Image.open(io.BytesIO(s["base_0.jpg"])).convert("RGB"))
            out[key] = {
                "actions": None
                if actions is None
                else hashlib.sha256(actions.astype(np.float32).tobytes()).hexdigest(),
                "prompt": s["prompt.txt"].decode(),
                "image": hashlib.sha256(image.tobytes()).hexdigest(),
                "kind": json.loads(s["meta.json"])["kind"],
            }
    return out


# Ray's reader starts a Ray session per dataset (about 30 s each): nightly; `datasets` in `make test`
@pytest.mark.parametrize("reader", ["datasets", pytest.param("ray", marks=pytest.mark.nightly)])
def test_ecosystem_readers_see_the_same_samples(reader, bundled, tmp_path):
    manifest = json.loads((bundled / "manifest.json").read_text())
    (tmp_path / "read.py").write_text(READER)
    for name in DATASETS:
        files = [str(bundled / s["path"]) for s in manifest["datasets"][name]["shards"]]
        env = {
            **os.environ,
            "HF_DATASETS_OFFLINE": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "disabled",
        }
        done = subprocess.run(
            [sys.executable, str(tmp_path / "read.py"), json.dumps(files), reader, str(tmp_path / "cache")],
            capture_output=True,
            text=True,
            cwd=tmp_path,  # not the repo: nothing of vlamix is importable by accident
            env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        got = json.loads(done.stdout.strip().splitlines()[-1])
        want = _direct(files)
        assert len(got) == manifest["datasets"][name]["samples"] == len(want), name
        assert got == want, name
