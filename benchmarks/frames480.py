"""The ingest benchmark's camera-size data: the bundled sample renders upscaled to 480x640 (what Mobile
ALOHA's and ALOHA's cameras give) in each raw format, built once into `.bench/frames480/` (never in git)
by the sample generators themselves, and a sources file naming them like samples/sources.yaml does.

    python -m benchmarks.frames480 [--work .bench]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import yaml

from vlamix.sources.synthetic.ce_samples import generate_arm6
from vlamix.sources.synthetic.me_samples import generate_me
from vlamix.sources.synthetic.mobile_aloha import SampleSpec, generate

__all__ = ["SIZE", "build"]

REPO = Path(__file__).resolve().parents[1]
SIZE = (480, 640)  # height, width
# LeRobot and RLDS episodes are shorter than Mobile-ALOHA's: more of them give each format ~1,850-1,970
# frames (3 Mobile-ALOHA episodes have 1,967), so that per-frame costs, not the job's fixed start, decide
ME_EPISODES, CE_EPISODES = 8, 16
VERSION = 3  # bump when what build() writes changes: a stale folder is rebuilt


def build(work: Path) -> Path:
    """`work/frames480/` with mobile_aloha, lerobot_v21, lerobot_v30 and arm6_sim at 480x640, and its
    sources.yaml (the bundled entries, paths pointing here); built once, then reused."""
    root = work / "frames480"
    stamp = root / "built.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == {"version": VERSION, "size": list(SIZE)}:
        return root / "sources.yaml"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    t0 = time.perf_counter()
    list(generate(root / "mobile_aloha", SampleSpec(upscale=SIZE)))
    generate_me(root, upscale=SIZE, episodes=ME_EPISODES)
    generate_arm6(root, episodes=CE_EPISODES, upscale=SIZE)
    samples = REPO / "samples"
    spec = yaml.safe_load((samples / "sources.yaml").read_text())
    entries = []
    for entry in spec["datasets"]:
        if entry["name"] not in ("mobile_aloha_sim", "lerobot_v21_sim", "lerobot_v30_sim", "arm6_sim"):
            continue
        if entry["embodiment"].endswith((".yaml", ".yml")):  # else the name of a shipped spec
            entry["embodiment"] = str(samples / entry["embodiment"])
        entries.append(entry)  # the relative path names the folder just written beside sources.yaml
    (root / "sources.yaml").write_text(yaml.safe_dump({"datasets": entries}, sort_keys=False))
    stamp.write_text(json.dumps({"version": VERSION, "size": list(SIZE)}))
    print(f"built {root} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return root / "sources.yaml"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path(".bench"))
    print(build(p.parse_args().work.resolve()))
