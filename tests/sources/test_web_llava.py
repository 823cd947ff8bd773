"""LLaVA-style conversations (`format: llava_json`): one item per image, a turn per human/gpt pair in order,
entries on one image merged; broken conversations and text-only items quarantined naming the file and the
entry."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from conftest import SAMPLES, items_as_written

from vlamix.config import ConfigError
from vlamix.schemas.item import ITEM
from vlamix.schemas.quarantine import BadRecord
from vlamix.sources.config import load_sources
from vlamix.sources.synthetic.wd_samples import LLAVA_ITEMS, generate_llava
from vlamix.sources.web import list_items, read_items

ENTRY = "{name: llava, kind: WD, format: llava_json, path: web/conversations.json, images: web/images}"


def _read(sources_path) -> tuple[list[dict], list]:
    sources = load_sources(sources_path)
    got = []
    for batch in list_items(sources, sources.web[0], "/unused"):
        got += items_as_written(read_items(batch))
    return [g for g in got if not isinstance(g, BadRecord)], [
        g.record for g in got if isinstance(g, BadRecord)
    ]


def _copy_sample(tmp_path, write_sources, entries=None):
    shutil.copytree(SAMPLES / "web_llava", tmp_path / "web")
    if entries is not None:
        (tmp_path / "web" / "conversations.json").write_text(json.dumps(entries))
    return write_sources(tmp_path, f"datasets:\n  - {ENTRY}\n")


def _pair(human: str, gpt: str) -> list[dict]:
    return [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]


def test_the_sample_reads_one_item_per_image_turns_in_order(tmp_path, write_sources):
    generate_llava(tmp_path / "gen")  # the generator writes the bundled bytes
    for path in sorted(p for p in (tmp_path / "gen").rglob("*") if p.is_file()):
        assert path.read_bytes() == (SAMPLES / path.relative_to(tmp_path / "gen")).read_bytes(), path
    good, bad = _read(_copy_sample(tmp_path, write_sources))
    assert not bad and len(good) == 3  # four entries, two on coffee.jpg
    ITEM.table(good)
    assert [(i["item"], i["image_id"], i["source_file"]) for i in good] == [
        (0, "astronaut.jpg", "web/images/astronaut.jpg"),
        (1, "chelsea.jpg", "web/images/chelsea.jpg"),
        (2, "coffee.jpg", "web/images/coffee.jpg"),
    ]
    want = {}  # image -> the entries' pairs in file order, the placeholder and its newline taken out
    for _, image, pairs in LLAVA_ITEMS:
        want.setdefault(image.replace(".png", ".jpg"), []).extend(
            (h.replace("<image>\n", "").replace("\n<image>", ""), g) for h, g in pairs
        )
    for item in good:
        assert [(t["kind"], t["prompt"], t["target"], t["boxes"]) for t in item["turns"]] == [
            ("conversation", h, g, None) for h, g in want[item["image_id"]]
        ]
    assert good[0]["turns"][0]["prompt"] == "What is the person wearing?"  # multi-turn, in order
    assert good[1]["turns"][0]["prompt"] == "What animal is this?"  # a trailing placeholder too


def test_placeholder_and_whitespace_are_taken_out_of_the_human_text(tmp_path, write_sources):
    entries = [
        {
            "id": "a",
            "image": "chelsea.jpg",
            "conversations": _pair("  <image>\n\nWhat is this?  ", " A cat.\n"),
        },
        {
            "id": "b",
            "image": "coffee.jpg",
            "conversations": _pair("Describe\n<image>\nit.", "Line one.\nLine two."),
        },
    ]
    good, bad = _read(_copy_sample(tmp_path, write_sources, entries))
    assert not bad
    assert [(t["prompt"], t["target"]) for i in good for t in i["turns"]] == [
        ("What is this?", "A cat."),
        ("Describe it.", "Line one.\nLine two."),  # newlines of the answer kept as written
    ]


BAD = [
    # (conversations, what the reason says after "<file> item <id> (entry <k>)")
    ([{"from": "human", "value": "<image>\nWhat is this?"}], "has no gpt turn: nothing to train on"),
    (
        [{"from": "gpt", "value": "A cat."}, *_pair("Q?", "A.")],
        r"conversations\[0\] is a gpt message with no human",
    ),
    (
        [{"from": "human", "value": "<image>\nQ1?"}, *_pair("Q2?", "A.")],
        r"conversations\[1\] is a second human message in a row: conversations\[0\] has no gpt answer",
    ),
    (
        [*_pair("<image>\nQ?", "A."), {"from": "human", "value": "Q2?"}],
        r"conversations\[2\] is a human message with no gpt",
    ),
    ([{"from": "system", "value": "be nice"}, *_pair("Q?", "A.")], r"conversations\[0\] is from 'system'"),
    (_pair("<image>\nHow many?", 3), r"conversations\[1\] \(gpt\) value is int 3, not text"),
    (
        _pair("<image>", "A cat."),
        r"conversations\[0\] \(human\) holds no text once the <image> placeholder is out",
    ),
    (_pair("<image>\n<image>\nCompare.", "Same."), "holds 2 <image> placeholders for its one image"),
    ("hello", "conversations is 'hello', not a non-empty list"),
]


@pytest.mark.parametrize(("conversations", "reason"), BAD)
def test_a_broken_conversation_quarantines_its_item(tmp_path, write_sources, conversations, reason):
    entries = [
        {"id": "good", "image": "chelsea.jpg", "conversations": _pair("<image>\nQ?", "A.")},
        {"id": 7, "image": "coffee.jpg", "conversations": conversations},
    ]
    good, bad = _read(_copy_sample(tmp_path, write_sources, entries))
    assert [i["image_id"] for i in good] == ["chelsea.jpg"] and len(bad) == 1
    assert bad[0].source_file == "web/images/coffee.jpg" and bad[0].item == 1 and bad[0].field == "turns"
    assert bad[0].reason.startswith("web/conversations.json item 7 (entry 1) ")
    assert re.search(reason, bad[0].reason), bad[0].reason


def test_text_only_missing_and_odd_images_are_quarantined_one_by_one(tmp_path, write_sources):
    entries = [
        {"id": "text", "conversations": _pair("What is 2+2?", "4")},  # text-only: no image
        {"id": "gone", "image": "nowhere.jpg", "conversations": _pair("<image>\nQ?", "A.")},
        {"id": "many", "image": ["a.jpg", "b.jpg"], "conversations": _pair("<image>\nQ?", "A.")},
        {"id": "out", "image": "../secret.jpg", "conversations": _pair("<image>\nQ?", "A.")},
        ["not", "an", "object"],
        {"id": "ok", "image": "chelsea.jpg", "conversations": _pair("<image>\nQ?", "A.")},
        {"id": "ok2", "image": "./chelsea.jpg", "conversations": _pair("Q2?", "A2.")},  # the same image
    ]
    good, bad = _read(_copy_sample(tmp_path, write_sources, entries))
    assert len(good) == 1 and len(good[0]["turns"]) == 2 and good[0]["item"] == 5
    reasons = {b.item: (b.source_file, b.field, b.reason) for b in bad}
    assert sorted(reasons) == [0, 1, 2, 3, 4]  # every entry ends written or quarantined
    json_file = "web/conversations.json"
    assert (
        reasons[0][:2] == (json_file, "image")
        and "item 'text' (entry 0) has no `image`: a text-only" in reasons[0][2]
    )
    assert reasons[1] == ("web/images/nowhere.jpg", "image", "image file web/images/nowhere.jpg is missing")
    assert "item 'many' (entry 2) image is list ['a.jpg', 'b.jpg'], not one file name" in reasons[2][2]
    assert (
        "item 'out' (entry 3) image '../secret.jpg' is not a file inside the images folder" in reasons[3][2]
    )
    assert (
        reasons[4][0] == json_file
        and "entry 4 is list ['not', 'an', 'object'], not an object" in reasons[4][2]
    )


def test_text_that_is_not_utf8_quarantines_its_item(tmp_path, write_sources):
    _copy_sample(tmp_path, write_sources)
    raw = json.dumps([{"id": "x", "image": "chelsea.jpg", "conversations": _pair("<image>\nQ?", "@@")}])
    (tmp_path / "web" / "conversations.json").write_bytes(raw.encode().replace(b"@@", b"a \xff cat"))
    good, bad = _read(tmp_path / "sources.yaml")
    assert not good and "is not UTF-8 (byte 0xff)" in bad[0].reason and bad[0].field == "text"


@pytest.mark.parametrize(
    ("body", "match"),
    [(b'{"id": 1}', "expected a JSON list of LLaVA items"), (b"[{", "cannot read conversations")],
)
def test_a_file_that_is_not_a_list_of_items_fails_the_dataset(tmp_path, write_sources, body, match):
    path = _copy_sample(tmp_path, write_sources)
    (tmp_path / "web" / "conversations.json").write_bytes(body)
    sources = load_sources(path)
    with pytest.raises(ConfigError, match=match):
        list_items(sources, sources.web[0], "/unused")


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ("{name: l, kind: WD, format: llava_json, path: c.json}", "needs `path:` .* and `images:`"),
        (
            "{name: l, kind: WD, format: llava_json, path: c.json, images: i, columns: {caption: c}}",
            "format llava_json reads `path:` \\+ `images:`",
        ),
    ],
)
def test_llava_entries_are_checked_at_load(tmp_path, write_sources, entry, match):
    with pytest.raises(ConfigError, match=match):
        load_sources(write_sources(tmp_path, f"datasets:\n  - {entry}\n"))


# nightly: the bundled ingest (`make test`) reads this sample end to end, from S3, over HTTP and on Ray;
# this run adds a broken unit to the accounting
@pytest.mark.nightly
def test_llava_and_pointing_samples_ingest_and_add_up(tmp_path, write_sources):
    from conftest import ingest_cli

    sources = write_sources(
        tmp_path,
        f"""
        datasets:
          - {{name: widowx_sim, kind: CE, format: rlds, path: {SAMPLES}/widowx_sim, embodiment: widowx_bridge}}
          - {{name: web_llava, kind: WD, format: llava_json, path: {SAMPLES}/web_llava/conversations.json,
              images: {SAMPLES}/web_llava/images}}
          - {{name: web_points, kind: WD, format: hf_parquet, path: {SAMPLES}/web_points,
              columns: {{image: image, points: points, label: label}}}}
        """,
    )
    ingest_cli(tmp_path / "out", workers=1, sources=sources)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    got = {
        name: {
            k: d["accounting"][k] for k in ("read", "written", "quarantined", "turns_read", "turns_written")
        }
        | {"samples": d["samples"]}
        for name, d in manifest["datasets"].items()
        if d["kind"] == "WD"  # widowx_sim: robot chunks to fit the FAST tokenizer on
    }
    assert got == {
        "web_llava": {
            "read": 3,
            "written": 3,
            "quarantined": 0,
            "turns_read": 5,
            "turns_written": 5,
            "samples": 3,
        },
        "web_points": {
            "read": 3,
            "written": 3,
            "quarantined": 0,
            "turns_read": 3,
            "turns_written": 3,
            "samples": 3,
        },
    }
