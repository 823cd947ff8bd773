from __future__ import annotations

import pytest

from vlamix.config import ConfigError
from vlamix.sources.config import load_sources


def _write(tmp_path, write_sources, entry: str):
    (tmp_path / "eps").mkdir(exist_ok=True)
    return write_sources(tmp_path, f"datasets:\n  - {entry}\n")


@pytest.mark.parametrize(
    "entry, match",
    [
        (
            "{name: a, kind: MM, format: aloha_hfd5, path: eps, embodiment: aloha}",
            "unknown format 'aloha_hfd5'.*did you mean 'aloha_hdf5'",
        ),
        (
            "{name: a, kind: MM, format: aloha_hdf5, path: eps, embodiment: aloha, strid: 2}",
            "unknown key 'strid'.*did you mean 'stride'",
        ),
        (
            "{name: A-1, kind: MM, format: aloha_hdf5, path: eps, embodiment: aloha}",
            r"must match \[a-z0-9_\]\+",
        ),
        (
            "{name: a, kind: XX, format: aloha_hdf5, path: eps, embodiment: aloha}",
            "kind 'XX' is not supported",
        ),
        (
            "{name: a, kind: MM, format: aloha_hdf5, path: eps, embodiment: alooha}",
            "unknown embodiment 'alooha'",
        ),
        ("{name: w, kind: WD, images: eps}", "needs `images:` and `annotations:`"),
        (
            "{name: w, kind: WD, format: hf_parquet, path: x, columns: {picture: img}}",
            "unknown `columns:` keys",
        ),
    ],
)
def test_bad_entries_are_named_with_a_suggestion(tmp_path, write_sources, entry, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_sources(_write(tmp_path, write_sources, entry))
    assert "sources.yaml" in str(info.value)


def test_every_kind_loads_from_the_bundled_file():
    from conftest import SAMPLES

    sources = load_sources(SAMPLES / "sources.yaml")
    assert {s.kind for s in sources.datasets} == {"MM", "ME", "CE"}
    assert {a.kind for a in sources.annotations} == {"HL", "VI"}
    assert {w.format for w in sources.web} == {"coco", "hf_parquet", "llava_json"}
    assert {s.format for s in sources.datasets} == {"aloha_hdf5", "hdf5", "lerobot", "mcap", "rlds", "zarr"}


@pytest.mark.parametrize("cameras", ["{cam_high: base0}", "{cam_high: {slot: wrist}}"])
def test_a_mistyped_camera_slot_is_refused_not_dropped(tmp_path, cameras):
    """A slot no reader fills would drop its camera silently: a config error with the slots."""
    (tmp_path / "sources.yaml").write_text(
        "datasets:\n  - {name: a, kind: MM, format: aloha_hdf5, path: x, embodiment: aloha, task: t, "
        f"keys: {{cameras: {cameras}}}}}\n"
    )
    with pytest.raises(ConfigError, match="datasets\\[0\\] \\(a\\)"):
        load_sources(tmp_path / "sources.yaml")


def test_a_camera_slot_with_channel_order_loads(tmp_path):
    (tmp_path / "sources.yaml").write_text(
        "datasets:\n  - {name: a, kind: MM, format: aloha_hdf5, path: x, embodiment: aloha, task: t, "
        "keys: {cameras: {cam_high: {slot: base_0, channel_order: bgr}, cam_low: null}}}\n"
    )
    keys = load_sources(tmp_path / "sources.yaml").datasets[0].keys
    assert keys.cameras["cam_high"].slot == "base_0" and keys.cameras["cam_high"].channel_order == "bgr"
    assert keys.cameras["cam_low"] is None
