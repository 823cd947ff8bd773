"""What the viewer tests share: one view per dataset kind of the bundled layout (a recording and a web page
each, written once per test session by `built_views`; each module's `views` fixture asks for them), and
readers that take them apart with Rerun's own tools and the shards' plain tar members.

(No tests/viewer/conftest.py on purpose: a second module named `conftest` would shadow tests/conftest.py
for the modules that import from it.)"""

from __future__ import annotations

import io
import json
import tarfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

# kind -> (dataset, episodes shown); CE shows two episodes, so its recordings are joined by `rrd merge`
KINDS = {
    "MM": ("mobile_aloha_sim", [1]),
    "ME": ("gr00t_sim", [0]),
    "CE": ("widowx_sim", [2, 4]),
    "HL": ("mm_subtasks", [1]),
    "VI": ("mm_verbal", [1]),
    "WD": ("web_coco", []),
}


@dataclass(frozen=True)
class View:
    dataset: str
    episodes: list[int]
    rrd: Path
    html: Path
    summary: dict


_BUILT: dict[str, dict[str, View]] = {}


def built_views(bundled: Path, tmp_path_factory) -> dict[str, View]:
    """The views of `bundled`, written on the first call of the session (into a session temp folder)."""
    from vlamix.viewer.run import run_view

    if str(bundled) not in _BUILT:
        root = tmp_path_factory.mktemp("views")
        out = {}
        for kind, (dataset, episodes) in KINDS.items():
            rrd, html = root / f"{dataset}.rrd", root / dataset
            summary = run_view(str(bundled), dataset, episodes, rrd=rrd, html=html)
            out[kind] = View(dataset, episodes, rrd, html, summary)
        _BUILT[str(bundled)] = out
    return _BUILT[str(bundled)]


def shard_samples(layout: Path, dataset: str) -> dict[str, dict[str, bytes]]:
    """Every sample of a dataset, read from its tars with `tarfile` alone: key -> {member: bytes}."""
    manifest = json.loads((layout / "manifest.json").read_text())
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    for shard in manifest["datasets"][dataset]["shards"]:
        with tarfile.open(layout / shard["path"]) as tar:
            for m in tar.getmembers():
                key, ext = m.name.split(".", 1)
                samples[key][ext] = tar.extractfile(m).read()  # type: ignore[union-attr]
    return dict(samples)


def episode_samples(layout: Path, dataset: str, episode: int) -> list[tuple[int, dict[str, bytes]]]:
    """(frame, members) of one episode's samples in frame order, each read with `tarfile` from the byte
    range its index row gives."""
    out = []
    for row in index_rows(layout, dataset):
        if row["episode"] != episode:
            continue
        with open(layout / row["shard"], "rb") as f:
            f.seek(row["offset"])
            chunk = f.read(row["length"])
        with tarfile.open(fileobj=io.BytesIO(chunk)) as tar:
            members = {m.name.split(".", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
        out.append((json.loads(members["meta.json"])["frame"], members))
    return sorted(out, key=lambda fm: fm[0])


def npy(members: dict[str, bytes], name: str) -> np.ndarray:
    return np.load(io.BytesIO(members[name]))


def index_rows(layout: Path, dataset: str) -> list[dict]:
    return pq.read_table(layout / "index" / f"{dataset}.parquet").to_pylist()


class Recording:
    """One recording of an .rrd file, read with rerun's own reader (`rerun.chunk.RrdReader`): per entity
    its temporal rows, sorted by the `frame` timeline, and its static rows."""

    def __init__(self, chunks) -> None:
        self.rows: dict[str, list[dict]] = defaultdict(list)
        self.static: dict[str, list[dict]] = defaultdict(list)
        for chunk in chunks:
            batch = chunk.to_record_batch().to_pylist()
            (self.static if chunk.is_static else self.rows)[chunk.entity_path].extend(batch)
        for rows in self.rows.values():
            rows.sort(key=lambda r: r["frame"])

    def scalars(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self.rows[path]
        frames = np.array([r["frame"] for r in rows])
        return frames, np.array([r["Scalars:scalars"][0] for r in rows], dtype=np.float64)

    def texts(self, path: str) -> dict[int, str]:
        return {r["frame"]: r["TextDocument:text"][0] for r in self.rows[path]}


def recordings(rrd: Path) -> dict[str, Recording]:
    from rerun.chunk import RrdReader

    reader = RrdReader(rrd)
    return {s.recording_id: Recording(reader.stream(store=s)) for s in reader.recordings()}


def page_data(page_dir: Path) -> dict:
    """The JSON a page's script reads (`#view-data`)."""
    text = (page_dir / "index.html").read_text()
    tag = '<script id="view-data" type="application/json">'
    start = text.index(tag) + len(tag)
    return json.loads(text[start : text.index("</script>", start)].replace("<\\/", "</"))
