"""A tiny layout for the engine-free unit tests of the ingest core: one robot dataset (a good episode,
one the frame gate refuses, an exact duplicate), an HL dataset over it (two spans, a line pointing at
the refused episode, a line that is not JSON) and a web dataset (three photos, one undecodable, one
duplicate image). `run_in_process` runs every unit in this process, in order, the way an engine would."""

from __future__ import annotations

import io
import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
from conftest import write_aloha_episode
from PIL import Image

from vlamix.pipelines.datasets import kinds_of
from vlamix.pipelines.fit_tokenizers import step_tokenizers
from vlamix.pipelines.options import IngestOptions
from vlamix.pipelines.stats_step import step_stats
from vlamix.pipelines.work_units import spill_unit, write_spilled_group
from vlamix.sources.config import SourcesFile, load_sources

__all__ = ["FRAMES", "SPANS", "build_in_process", "extract_in_process", "write_tiny_sources"]

FRAMES = 24  # frames of each robot episode (50 Hz: 0.48 s)
SPANS = (("reach for the cube", 0.0, 0.2), ("lift the cube", 0.2, 0.4))

SOURCES = """\
datasets:
  - {name: mm, kind: MM, format: aloha_hdf5, path: eps, embodiment: mobile_aloha, task: stack the cubes}
  - {name: mm_hl, kind: HL, format: annotations_jsonl, path: hl.jsonl, dataset: mm}
  - name: photos
    kind: WD
    images: web/images
    annotations:
      - {format: coco_captions, path: web/captions.json}
"""


def _far_out(f) -> None:
    """Action row 2 of the first joint far outside the embodiment's range: the frame gate's to refuse."""
    data = f["action"][()]
    data[2, 0] = 1e6
    del f["action"]
    f.create_dataset("action", data=data, track_times=False)


def _photo(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (32, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_tiny_sources(root: Path) -> Path:
    eps = root / "eps"
    write_aloha_episode(eps / "episode_0.hdf5", frames=FRAMES)
    write_aloha_episode(eps / "episode_1.hdf5", frames=FRAMES, seed=3, mutate=_far_out)
    shutil.copy(eps / "episode_0.hdf5", eps / "episode_2.hdf5")  # the same episode under another name
    lines = [{"dataset": "mm", "episode": 0, "start": a, "end": b, "subtask": t} for t, a, b in SPANS]
    lines.append({"dataset": "mm", "episode": 1, "start": 0.0, "end": 0.2, "subtask": "on a refused episode"})
    (root / "hl.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + "{not json\n")
    images = root / "web" / "images"
    images.mkdir(parents=True)
    files = {
        "a.jpg": _photo(1),
        "b.jpg": _photo(2),
        "c.jpg": _photo(3),
        "broken.jpg": b"\xff\xd8 no",
        "a2.jpg": _photo(1),
    }
    for name, data in files.items():
        (images / name).write_bytes(data)
    coco = {
        "images": [{"id": k, "file_name": n, "width": 40, "height": 32} for k, n in enumerate(files)],
        "annotations": [{"id": k, "image_id": k, "caption": f"photo number {k}"} for k in range(len(files))],
    }
    (root / "web" / "captions.json").write_text(json.dumps(coco))
    path = root / "sources.yaml"
    path.write_text(SOURCES)
    return path


def extract_in_process(opts: IngestOptions) -> SourcesFile:
    """The extract step without an engine: every unit run here, outcomes written per dataset."""
    sources = load_sources(opts.sources)
    kinds = kinds_of(sources)
    results, quarantined = defaultdict(list), defaultdict(list)
    for kind in kinds:
        for unit in kind.extract_units(opts):
            extraction = unit.extract(opts.errors)
            results[unit.dataset] += extraction.results
            quarantined[unit.dataset] += extraction.quarantined
    work = opts.work
    for name in {*results, *quarantined}:
        work.write_outcomes("extracted", name, results[name])
        work.write_outcomes("quarantined", name, quarantined[name])
    for kind in kinds:
        kind.after_extract(opts)
    return sources


def build_in_process(opts: IngestOptions, sources: SourcesFile) -> None:
    """stats, tokenizers and the build's units, without an engine: spill every unit, then write every
    shard group."""
    step_stats(opts, sources, run=lambda _, units: [u.run() for u in units])  # in process, as an engine would
    step_tokenizers(opts, sources)
    groups = defaultdict(list)
    for kind in kinds_of(sources):
        for unit in kind.build_units(opts):
            for key, rel in spill_unit(opts.url, unit):
                groups[key].append(rel)
    for (dataset, shard), files in sorted(groups.items()):
        write_spilled_group(opts.url, dataset, shard, files)
