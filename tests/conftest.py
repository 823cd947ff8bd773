"""Shared fixtures: factories that write small real files (HDF5 episodes, sources files)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

# Tests leave nothing behind: every temp file of the session and of the processes it starts (pytest's
# tmp_path, Beam's and great_expectations' temp folders, multiprocessing's, Ray's sessions and address
# file) goes into one folder, removed when the session ends.
SANDBOX = Path(tempfile.mkdtemp(prefix="vlamix-tests-"))
os.environ["TMPDIR"] = str(SANDBOX)
os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(SANDBOX / "torchinductor")  # torch may make it on import
tempfile.tempdir = str(SANDBOX)


def pytest_unconfigure(config) -> None:
    import shutil

    shutil.rmtree(SANDBOX, ignore_errors=True)


REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VLAMIX_SHARED", REPO.parent / "shared"))
SAMPLES = REPO / "samples"


def ray_address_file() -> Path:
    """Where `ray start` records the cluster a plain `ray.init()` then joins (`/tmp/ray/ray_current_cluster`
    by default): Ray's own rule, without importing Ray (tests/pipelines/test_ray_session.py compares)."""
    if "RAY_TMPDIR" in os.environ:
        base = os.environ["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        base = os.environ["TMPDIR"]
    else:
        base = "/tmp" if sys.platform.startswith(("linux", "darwin")) else tempfile.gettempdir()
    return Path(base) / "ray" / "ray_current_cluster"


@contextlib.contextmanager
def ray_address_file_kept():
    """Put the Ray address file back as it was (absent, or its content): a test cluster started with
    `ray start` records its address there, and a plain `ray.init()` after it is gone would fail."""
    path = ray_address_file()
    before = path.read_bytes() if path.is_file() else None
    try:
        yield path
    finally:
        if (path.read_bytes() if path.is_file() else None) != before:
            if before is None:
                path.unlink(missing_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(before)


@pytest.fixture(autouse=True, scope="session")
def _ray_address_file_after_the_session():
    """For clusters held by module or session fixtures (torn down after every test)."""
    with ray_address_file_kept():
        yield


@pytest.fixture(autouse=True)
def _ray_address_file_after_each_test():
    with ray_address_file_kept():
        yield


def shared_path(*parts: str) -> Path:
    """A file of ../shared, or a skip with the reason when this checkout has none beside it."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"{path} is absent (../shared ships only with the project's workspace; set VLAMIX_SHARED)"
        )
    return path


def write_aloha_episode(
    path: Path,
    frames: int = 24,
    seed: int = 7,
    compress: bool = True,
    start: int = 200,
    mutate=None,
    size: tuple[int, int] = (48, 64),
) -> Path:
    """Write a short synthetic Mobile-ALOHA episode; `mutate(f)` may edit the open h5py file after."""
    import h5py

    from vlamix.sources.synthetic.mobile_aloha import SampleSpec, write_episode
    from vlamix.sources.synthetic.scenario import simulate

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
    write_episode(path, short, SampleSpec(compress=compress, height=size[0], width=size[1]))
    if mutate is not None:
        with h5py.File(path, "r+") as f:
            mutate(f)
    return path


@pytest.fixture
def make_aloha_episode() -> Callable[..., Path]:
    return write_aloha_episode


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


# The bundled samples ingested once per test session (Beam, 2 workers), shared by the end-to-end tests.
def ingest_cli(
    out: Path,
    workers: int,
    sources: Path = SAMPLES / "sources.yaml",
    env: dict | None = None,
    stderr_to: Path | None = None,
) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "vlamix.cli",
        "ingest",
        "--sources",
        str(sources),
        "--out",
        str(out),
        "--workers",
        str(workers),
        "--json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    if stderr_to is not None:
        stderr_to.write_text(done.stderr)
    return json.loads(done.stdout)  # --json: stdout is the summary alone


@pytest.fixture(scope="session")
def bundled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("layout") / "out"
    summary = ingest_cli(out, workers=2, stderr_to=out.parent / "ingest.stderr")
    assert summary["datasets"]["mobile_aloha_sim"]["written"] == 3
    return out


def first_sample(layout: Path, dataset: str) -> dict:
    manifest = json.loads((layout / "manifest.json").read_text())
    shard = layout / manifest["datasets"][dataset]["shards"][0]["path"]
    with tarfile.open(shard) as tar:
        members = {}
        for m in tar.getmembers():
            key, ext = m.name.split(".", 1)
            if members and key != members["__key__"]:
                break
            members["__key__"] = key
            members[ext] = tar.extractfile(m).read()
    return members


@pytest.fixture
def mixdir(bundled, tmp_path) -> Path:
    """The shipped mixtures beside an `out` that is the bundled layout (they point at ../out)."""
    import shutil

    shutil.copytree(
        REPO / "mixtures", tmp_path / "mixtures", ignore=shutil.ignore_patterns("*.py", "*.md", "__pycache__")
    )
    (tmp_path / "out").symlink_to(bundled)
    return tmp_path / "mixtures"


def as_written(rows) -> list[dict]:
    """A reader's frame rows as the extract step writes them: cameras resized and JPEG-encoded."""
    from vlamix.transforms.image import EncodeCameras

    encode = EncodeCameras()
    return [encode(r) for r in rows]


def items_as_written(records) -> list:
    """A web reader's items as the extract step writes them (image padded and encoded, boxes as location
    tokens); a BadRecord stays as it is."""
    from vlamix.schemas.quarantine import BadRecord
    from vlamix.transforms.web_item import PadItem

    pad = PadItem()
    return [r if isinstance(r, BadRecord) else pad(r) for r in records]


# ---- sources at URLs (issue 20) -----------------------------------------------------------------------

# distinctive credentials: a grep over everything an ingest writes must not find them
SECRET = {
    "AWS_ACCESS_KEY_ID": "AKIAVLAMIXTESTKEY0042",
    "AWS_SECRET_ACCESS_KEY": "vlamix-test-secret-3f9c1e77",
    "HF_TOKEN": "hf_vlamixtesttoken5521",
}


def url_sources(folder: Path, base: str, only: tuple[str, ...] = ()) -> Path:
    """The bundled sources file with every data path at `base` (the samples folder's URL); embodiment
    specs stay local files (they are configuration, not data). `only`: keep just these datasets."""
    import yaml

    doc = yaml.safe_load((SAMPLES / "sources.yaml").read_text())
    if only:
        doc["datasets"] = [d for d in doc["datasets"] if d["name"] in only]
    for d in doc["datasets"]:
        for key in ("path", "images"):
            if key in d:
                d[key] = f"{base}/{d[key]}"
        for a in d.get("annotations", []):
            for key in ("path", "questions", "answers"):
                if key in a:
                    a[key] = f"{base}/{a[key]}"
        if str(d.get("embodiment", "")).endswith(".yaml"):
            d["embodiment"] = str(SAMPLES / d["embodiment"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sources.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def files_of(manifest: dict) -> dict[str, str]:
    """Every shard, index and statistics file a manifest names, with its sha256."""
    out = {}
    for name, entry in manifest["datasets"].items():
        for shard in entry["shards"]:
            out[shard["path"]] = shard["sha256"]
        for part in ("index", "stats"):
            if part in entry:
                out[f"{name}:{part}"] = entry[part]["sha256"]
    return out


def assert_no_secret(files: dict[str, bytes], *logs: str) -> None:
    """None of SECRET's values in any of `files` (name -> bytes) or `logs`."""
    for name, data in files.items():
        for value in SECRET.values():
            assert value.encode() not in data, f"{value} written into {name}"
    for log in logs:
        for value in SECRET.values():
            assert value not in log
