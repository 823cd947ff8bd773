"""The environment-scaling study as files (docs/design.md §24): `vlamix mixture sweep BASE --environments
1,2,4 --out DIR` writes one mixture per count, and `vlamix mixture stats` over several mixtures adds a
sweep summary: the environments each one draws from, and how many.

A sweep's base is a mixture whose components ask for `filter: {environments: {count: N, seed: S}}`; each
written mixture is the base with every such N set to one count, named `<base>_envs_<N>` (a base named
`..._envs_<M>` drops its own suffix, so a sweep of one of its outputs writes the same files again). The
seeded order is nested, so the rooms of a smaller count are always within a larger one's. Relative paths
(layouts, nested mixtures, `heldout_of`) are rewritten to reach the same files from DIR. The files carry
the base's leading comment and a line naming the command that wrote them.
"""

from __future__ import annotations

import copy
import os
import re
from html import escape
from pathlib import Path

import yaml

from vlamix.config import ConfigError, parse_yaml
from vlamix.mixtures.environments import counted
from vlamix.mixtures.spec import load_mixture
from vlamix.shards.store import is_url

__all__ = ["sweep_summary", "write_sweep", "write_sweep_report"]

_SUFFIX = re.compile(r"_envs_\d+$")
_WRITTEN_BY = "# Written by `vlamix mixture sweep"


def _rebase(path: str, base_dir: Path, out_dir: Path) -> str:
    if is_url(path) or Path(path).is_absolute():
        return path
    return Path(os.path.relpath(os.path.normpath(base_dir / path), out_dir)).as_posix()


def _header(text: str) -> list[str]:
    """The base's leading comment lines, less an earlier sweep's provenance line."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith(_WRITTEN_BY):
            lines.append(line)
    return lines


def _dump(doc: dict) -> str:
    """Top-level keys in block style, one component per line in flow style."""
    wide = 1 << 16

    def flow(value: object) -> str:
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=wide).strip()

    lines = []
    for key, value in doc.items():
        if key == "components" and isinstance(value, list):
            lines += ["components:", *(f"  - {flow(c)}" for c in value)]
        elif isinstance(value, list | dict):
            lines.append(f"{key}: {flow(value)}")
        else:  # a scalar alone in flow style would be a document (`x\n...`): dump it as a mapping
            lines.append(yaml.safe_dump({key: value}, default_flow_style=False, width=wide).strip())
    return "\n".join(lines) + "\n"


def write_sweep(base: Path, counts: list[int], out: Path) -> list[Path]:
    """One mixture per environment count in `out` (created); ConfigError for a base with schema problems
    or without a `{count, seed}` filter to vary."""
    spec = load_mixture(base)
    if not counted(spec.components):
        raise ConfigError(
            f"{base}: no component has `filter: {{environments: {{count: N, seed: S}}}}`: add it to each "
            "component whose environments the sweep varies"
        )
    text = base.read_text(encoding="utf-8")
    data = parse_yaml(text, str(base))
    stem = _SUFFIX.sub("", spec.name)
    out.mkdir(parents=True, exist_ok=True)
    base_dir, out_dir = base.resolve().parent, out.resolve()
    written = []
    for n in counts:
        doc = copy.deepcopy(data)
        doc["name"] = f"{stem}_envs_{n}"
        if doc.get("layouts"):
            doc["layouts"] = [_rebase(p, base_dir, out_dir) for p in doc["layouts"]]
        if doc.get("heldout_of"):
            doc["heldout_of"] = _rebase(doc["heldout_of"], base_dir, out_dir)
        for c in doc["components"]:
            if c.get("mixture"):
                c["mixture"] = _rebase(c["mixture"], base_dir, out_dir)
            environments = (c.get("filter") or {}).get("environments")
            if isinstance(environments, dict):
                environments["count"] = n
        provenance = f"{_WRITTEN_BY} {base.name} --environments {','.join(map(str, counts))}` (count {n})."
        path = out / f"{doc['name']}.yaml"
        path.write_text("\n".join([*_header(text), provenance]) + "\n" + _dump(doc), encoding="utf-8")
        written.append(path)
    return written


def sweep_summary(stats: list[dict]) -> list[dict]:
    """Per mixture (in the order given): the environments it draws from, their count, and the rooms its
    `{count, seed}` filters chose."""
    return [
        {
            "mixture": s["mixture"],
            "environment_count": s["environment_count"],
            "environments": list(s["environments"]),
            "chosen": list(dict.fromkeys(env for c in s["chosen"] for env in c["environments"])),
            "samples": sum(d["samples"] for d in s["datasets"]),
        }
        for s in stats
    ]


def format_sweep(rows: list[dict]) -> str:
    lines = [
        f"sweep: {len(rows)} mixtures",
        f"  {'mixture':<36} {'environments':>12} {'chosen':>6} {'samples':>8}  rooms chosen",
    ]
    for r in rows:
        lines.append(
            f"  {r['mixture'][:36]:<36} {r['environment_count']:>12} {len(r['chosen']):>6} {r['samples']:>8}  "
            + ", ".join(r["chosen"])
        )
    return "\n".join(lines)


def write_sweep_report(rows: list[dict], pages: dict[str, Path], out: Path) -> Path:
    """`out/index.html`: the sweep's table and its plot (environments per mixture), linking each
    mixture's own page (`pages`: mixture name -> its index.html)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vlamix.mixtures.stats import png_base64

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [r["mixture"] for r in rows]
    ax.plot(names, [r["environment_count"] for r in rows], "o-", label="environments drawn from")
    ax.plot(names, [len(r["chosen"]) for r in rows], "s--", label="chosen by the count")
    ax.set_ylabel("environments")
    ax.tick_params(axis="x", labelrotation=20, labelsize=7)
    ax.legend(fontsize=7)
    plot = png_base64(fig)
    plt.close(fig)
    body = "".join(
        f"<tr><td><a href='{escape(os.path.relpath(pages[r['mixture']], out))}'>{escape(r['mixture'])}"
        f"</a></td><td>{r['environment_count']}</td><td>{len(r['chosen'])}</td><td>{r['samples']}</td>"
        f"<td>{escape(', '.join(r['chosen']))}</td></tr>"
        for r in rows
    )
    page = out / "index.html"
    page.write_text(
        f"""<!doctype html><html><head><meta charset="utf-8"><title>mixture sweep</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px}}</style>
</head><body><h1>Environment sweep ({len(rows)} mixtures)</h1>
<table><tr><th>mixture</th><th>environments</th><th>chosen</th><th>samples</th><th>rooms chosen</th></tr>{body}</table>
<img src='data:image/png;base64,{plot}'/></body></html>
"""
    )
    return page
