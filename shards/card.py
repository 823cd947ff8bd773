"""The dataset card (`README.md` beside the manifest): Hugging Face dataset-card front matter, then the
sources with their licences and citations, the counts, the sample members and how to load the shards
with vlamix, webdataset, Hugging Face `datasets` and Ray. Generated from the manifest alone."""

from __future__ import annotations

import yaml

from vlamix.schemas.sample import SAMPLE

__all__ = ["CARD", "dataset_card"]

CARD = "README.md"
KIND_NAMES = {
    "MM": "mobile manipulator",
    "ME": "static arm, many environments",
    "CE": "cross-embodiment lab data",
    "HL": "high-level subtask labels",
    "VI": "verbal instructions",
    "WD": "web data",
}


def _licence(datasets: dict) -> str:
    licences = {(d.get("license") or "").split(" ")[0] for d in datasets.values()}
    if len(licences) == 1 and (only := licences.pop()).lower() in (
        "apache-2.0",
        "mit",
        "cc-by-4.0",
        "cc0-1.0",
    ):
        return only.lower()
    return "other"  # several licences: each source's is listed in the card


def _front_matter(name: str, manifest: dict) -> str:
    datasets = manifest["datasets"]
    meta = {
        "pretty_name": name,
        "license": _licence(datasets),
        "task_categories": ["robotics"],
        "tags": ["vlamix", "webdataset", "vla", "pi0.5"],
        "size_categories": [_size_category(sum(d["samples"] for d in datasets.values()))],
        "configs": [
            {"config_name": n, "data_files": [{"split": "train", "path": f"shards/{n}/*.tar"}]}
            for n, d in datasets.items()
            if d["shards"]
        ],
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _size_category(n: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return label
    return "n>1M"


def _sources_table(datasets: dict) -> list[str]:
    lines = [
        "| dataset | kind | embodiment | samples | shards | read / written / quarantined / duplicates | licence |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for n, d in datasets.items():
        a = d["accounting"]
        lines.append(
            f"| `{n}` | {d['kind']} ({KIND_NAMES.get(d['kind'], '')}) | {d.get('embodiment') or '–'} | "
            f"{d['samples']:,} | {len(d['shards'])} | {a['read']} / {a['written']} / {a['quarantined']} / "
            f"{a['duplicates']} {a['unit']}s | {d.get('license') or 'not given'} |"
        )
    return lines


def _environments(datasets: dict) -> list[str]:
    """Where the robot episodes were recorded, per dataset (docs/design.md §24): a mixture can pick a
    number of environments or hold some out."""
    lines = [
        f"- `{n}`: "
        + ", ".join(f"{env} ({k} episode{'s' if k != 1 else ''})" for env, k in d["environments"].items())
        for n, d in datasets.items()
        if d.get("environments")
    ]
    if not lines:
        return []
    return ["### Environments", "", *lines, ""]


def _citations(datasets: dict) -> list[str]:
    out = [f"- `{n}`: {d['citation']}" for n, d in datasets.items() if d.get("citation")]
    return out or ["No source gave a citation."]


def _failed_and_overlaps(manifest: dict) -> list[str]:
    """Datasets the ingest could not read at all, and datasets that hold the same content: a user who
    mixes them should know."""
    lines = []
    for name, d in (manifest.get("failed") or {}).items():
        lines.append(f"- **{name}** ({d['kind']}) failed and is not in these shards: {d['reason']}")
    for o in manifest.get("cross_dataset_duplicates") or []:
        a, b = o["datasets"]
        lines.append(f"- {a} and {b} hold {o['count']} identical {o['unit']}(s) (reported, not dropped).")
    return [*lines, ""] if lines else []


def _backbone(tokenizer_set: dict) -> str:
    b = tokenizer_set.get("backbone")
    if not b:
        return ""
    return (
        f" Its token ids are a pretrained backbone's (vocabulary {b['vocab']:,}, tokenizer.json sha256 "
        f"`{b['tokenizer_sha256'][:16]}…`; FAST after it): train with `vlamix train --backbone` and that "
        "snapshot."
    )


def dataset_card(manifest: dict, name: str | None = None) -> str:
    """The card's text, from the manifest alone (the same manifest gives the same bytes, wherever the
    layout was written). The default title names the datasets."""
    datasets = manifest["datasets"]
    if name is None:
        names = list(datasets)
        name = (
            "vlamix shards: "
            + ", ".join(names[:4])
            + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        )
    first = next((n for n, d in datasets.items() if d["shards"]), None)
    members = [f.name for f in SAMPLE.fields]
    body = [
        f"# {name}",
        "",
        "Training shards for π0.5-style vision-language-action models, written by "
        "vlamix: robot episodes, subtask and instruction annotations "
        "and web data mapped onto one padded action layout, normalized per dataset and tokenized.",
        "",
        f"Format `{manifest['format']}` v{manifest['version']}; record schemas "
        + ", ".join(f"{k} v{v}" for k, v in manifest["schema_versions"].items())
        + f"; tokenizer set `{manifest['tokenizer_set']['sha256'][:16]}…` in `{manifest['tokenizer_set']['path']}/`."
        + _backbone(manifest["tokenizer_set"]),
        "",
        "## Sources",
        "",
        *_sources_table(datasets),
        "",
        f"In all {sum(d['samples'] for d in datasets.values()):,} samples in "
        f"{sum(len(d['shards']) for d in datasets.values())} shards. Every input is accounted for: "
        "read = written + quarantined + duplicates (`quarantine/<dataset>.jsonl` gives each rejected "
        "record's file, place and reason).",
        "",
        *_failed_and_overlaps(manifest),
        *_environments(datasets),
        "### Citations",
        "",
        *_citations(datasets),
        "",
        "## Layout",
        "",
        "```",
        "manifest.json                 versions, hashes, per-shard samples/bytes/sha256, accounting",
        "shards/<dataset>/*.tar        webdataset shards (one member per field below)",
        "index/<dataset>.parquet       one row per sample: shard, byte offset and length, filter fields",
        "stats/<dataset>.json          per-dim statistics used for normalization",
        "tokenizers/<sha256>/          FAST, text tokenizer and vocabulary layout",
        "embodiments/<name>.yaml       the robots' specs",
        "```",
        "",
        "Sample fields (webdataset members are `<field>.<ext>`: images `.jpg`, arrays `.npy`, text `.txt`, "
        "`turns.json`, and `meta.json` for the scalar fields): " + ", ".join(f"`{m}`" for m in members) + ".",
        "",
        "## Loading",
        "",
        "With vlamix (a mixture YAML names this layout's `manifest.json` by path or URL):",
        "",
        "```bash",
        "vlamix inspect URL/manifest.json --lint",
        "vlamix mixture stats my_mixture.yaml",
        "```",
    ]
    if first:
        body += [
            "",
            "With webdataset:",
            "",
            "```python",
            "import webdataset as wds",
            f'ds = wds.WebDataset("shards/{first}/{first}-000000.tar").decode("rgb8")',
            "```",
            "",
            "With Hugging Face `datasets` (each dataset is a config):",
            "",
            "```python",
            "from datasets import load_dataset",
            f'ds = load_dataset("webdataset", data_files={{"train": "shards/{first}/*.tar"}}, split="train")',
            "```",
            "",
            "With Ray Data:",
            "",
            "```python",
            "import ray",
            f'ds = ray.data.read_webdataset("shards/{first}/")',
            "```",
        ]
    return _front_matter(name, manifest) + "\n" + "\n".join(body) + "\n"
