"""`vlamix mixture stats`: what a mixture means in draws: shares per dataset and kind after filters and
nesting, samples and epochs per dataset at N steps, tokens per example, action dims per embodiment, the
non-MM share, the environments drawn from (share of the draws, episodes, samples; docs/design.md §24);
and `--report DIR`, an HTML page with plots. From manifests, indexes and stats only."""

from __future__ import annotations

import base64
import io
from dataclasses import asdict
from html import escape
from pathlib import Path

import numpy as np

from vlamix.mixtures.resolve import Entry, Resolved
from vlamix.shards.store import Store

__all__ = ["format_stats", "mixture_stats", "png_base64", "write_report"]


def _entry_environments(e: Entry) -> dict[str, dict]:
    """environment -> {share, samples, episodes} of one entry's rows (rows without one are left out)."""
    if e.rows is None or not e.samples:
        return {}
    pairs = e.rows.select(["environment", "episode"]).group_by(["environment", "episode"])
    counts = pairs.aggregate([([], "count_all")]).to_pydict()
    out: dict[str, dict] = {}
    for env, n in zip(counts["environment"], counts["count_all"], strict=True):
        if env is not None:
            d = out.setdefault(env, {"share": 0.0, "samples": 0, "episodes": 0})
            d["samples"] += n
            d["episodes"] += 1
    for d in out.values():
        d["share"] = round(e.share * d["samples"] / e.samples, 6)
    return dict(sorted(out.items()))


def _environments(res: Resolved) -> dict[str, dict]:
    """environment -> {share, samples, episodes, datasets} over the mixture. An HL / VI entry's episodes
    are its robot dataset's, so a robot episode and the spans over it count once."""
    out: dict[str, dict] = {}
    episodes: dict[str, set[tuple[str, int]]] = {}
    for e in res.entries:
        if e.rows is None or not e.samples:
            continue
        robot = res.manifests[e.layout]["datasets"][e.dataset].get("annotates") or e.dataset
        table = e.rows.select(["environment", "episode"]).to_pydict()
        for env, episode in zip(table["environment"], table["episode"], strict=True):
            if env is not None:
                episodes.setdefault(env, set()).add((robot, episode))
        for env, d in _entry_environments(e).items():
            top = out.setdefault(env, {"share": 0.0, "samples": 0, "episodes": 0, "datasets": []})
            top["share"] += e.share * d["samples"] / e.samples
            top["samples"] += d["samples"]
            top["datasets"].append(e.dataset)
    for env, d in out.items():
        d["share"] = round(d["share"], 6)
        d["episodes"] = len(episodes[env])
        d["datasets"] = sorted(set(d["datasets"]))
    return dict(sorted(out.items(), key=lambda kv: (-kv[1]["share"], kv[0])))


def mixture_stats(res: Resolved, steps: int, batch_size: int) -> dict:
    draws = steps * batch_size
    datasets = []
    kinds: dict[str, float] = {}
    for e in res.entries:
        tokens = np.asarray(e.rows.column("input_tokens").to_pylist(), float) if e.samples else np.zeros(1)
        expected = e.share * draws
        datasets.append(
            {
                "dataset": e.dataset,
                "label": e.label,
                "kind": e.kind,
                "share": round(e.share, 6),
                "samples": e.samples,
                "draws": round(expected, 1),
                "epochs": round(expected / e.samples, 3) if e.samples else None,
                "fully_seen": expected >= e.samples,
                "tokens_mean": round(float(tokens.mean()), 1),
                "tokens_p95": float(np.percentile(tokens, 95)),
                "environments": _entry_environments(e),
            }
        )
        kinds[e.kind] = kinds.get(e.kind, 0.0) + e.share
    embodiments: dict[str, dict] = {}
    for e in res.entries:
        d = res.manifests[e.layout]["datasets"][e.dataset]
        if d.get("embodiment"):
            emb = embodiments.setdefault(d["embodiment"], {"datasets": [], "share": 0.0})
            emb["datasets"].append(e.dataset)
            emb["share"] = round(emb["share"] + e.share, 6)
            if d.get("stats"):
                st = Store(e.layout).read_json(d["stats"]["path"])
                emb["action_dims"] = len(st["actions"]["names"])
                emb["state_dims"] = len(st["state"]["names"])
    environments = _environments(res)
    return {
        "mixture": res.spec.name,
        "stage": res.spec.stage,
        "steps": steps,
        "batch_size": batch_size,
        "draws": draws,
        "datasets": datasets,
        "kinds": {k: round(v, 6) for k, v in sorted(kinds.items())},
        "non_mm_share": round(1.0 - kinds.get("MM", 0.0), 6),
        "embodiments": embodiments,
        "environments": environments,
        "environment_count": len(environments),
        "no_environment_share": round(1.0 - sum(d["share"] for d in environments.values()), 6),
        "chosen": [asdict(c) for c in res.choices],
        "problems": res.problems,
        "warnings": res.warnings,
    }


def format_stats(s: dict) -> str:
    lines = [
        f"mixture {s['mixture']} ({s['stage']}): {s['steps']} steps x {s['batch_size']} = {s['draws']} draws",
        f"  non-MM share: {s['non_mm_share']:.1%}   by kind: "
        + ", ".join(f"{k} {v:.1%}" for k, v in s["kinds"].items()),
        f"  {'dataset':<42} {'kind':<4} {'share':>7} {'samples':>8} {'epochs':>8} {'tokens':>7}",
    ]
    for d in s["datasets"]:
        epochs = "-" if d["epochs"] is None else f"{d['epochs']:.2f}"
        note = "" if d["fully_seen"] else "  (not fully seen)"
        lines.append(
            f"  {d['label'][:42]:<42} {d['kind']:<4} {d['share']:>7.2%} {d['samples']:>8} {epochs:>8} {d['tokens_mean']:>7.1f}{note}"
        )
    lines += _format_environments(s)
    lines += [f"  warning: {w}" for w in s["warnings"]]
    lines += [f"  problem: {p}" for p in s["problems"]]
    return "\n".join(lines)


def _format_environments(s: dict) -> list[str]:
    if not s["environments"]:
        return ["  environments: none recorded (sources without `environment:`, or web data only)"]
    lines = [
        f"  environments: {s['environment_count']} (no environment: {s['no_environment_share']:.1%} of the draws)",
        f"  {'environment':<30} {'share':>7} {'episodes':>8} {'samples':>8}  datasets",
    ]
    for env, d in s["environments"].items():
        lines.append(
            f"  {env[:30]:<30} {d['share']:>7.2%} {d['episodes']:>8} {d['samples']:>8}  {', '.join(d['datasets'])}"
        )
    for c in s["chosen"]:
        lines.append(
            f"  chosen: {c['count']} of {len(c['pool'])} environments (seed {c['seed']}) for "
            f"{c['component'].rsplit(': ', 1)[-1]}: {', '.join(c['environments'])}"
        )
    return lines


def png_base64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def write_report(res: Resolved, s: dict, out: Path) -> Path:
    """One self-contained HTML page (plots embedded as PNG) in `out/index.html`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    figs = []
    labels = [d["label"] for d in s["datasets"]]
    fig, ax = plt.subplots(1, 2, figsize=(12, max(3, 0.35 * len(labels))))
    ax[0].barh(labels, [d["share"] for d in s["datasets"]], color="tab:blue")
    ax[0].set_title("share of draws per dataset")
    ax[0].invert_yaxis()
    ax[1].barh(labels, [d["epochs"] or 0 for d in s["datasets"]], color="tab:orange")
    ax[1].axvline(1.0, color="k", lw=0.8, ls="--")
    ax[1].set_title(f"epochs at {s['steps']} steps x {s['batch_size']}")
    ax[1].invert_yaxis()
    ax[1].set_yticklabels([])
    figs.append(("Shares and epochs", png_base64(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.pie(list(s["kinds"].values()), labels=list(s["kinds"]), autopct="%1.1f%%")
    ax.set_title(f"by kind (non-MM {s['non_mm_share']:.1%})")
    figs.append(("Source kinds", png_base64(fig)))
    plt.close(fig)

    if s["environments"]:
        envs = list(s["environments"])
        fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(envs))))
        ax.barh(envs, [d["share"] for d in s["environments"].values()], color="tab:green")
        ax.set_title(f"share of draws per environment ({len(envs)} environments)")
        ax.invert_yaxis()
        figs.append(("Environments", png_base64(fig)))
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for e in res.entries:
        ax.hist(e.rows.column("input_tokens").to_pylist(), bins=40, histtype="step", label=e.label[:30])
    ax.set_xlabel("tokens per example (prompt + targets)")
    ax.legend(fontsize=6)
    figs.append(("Token lengths", png_base64(fig)))
    plt.close(fig)

    for e in res.entries:
        d = res.manifests[e.layout]["datasets"][e.dataset]
        if not d.get("stats"):
            continue
        st = Store(e.layout).read_json(d["stats"]["path"])["actions"]
        hists = st.get("histograms") or st.get("histogram")
        if not hists:
            continue
        n = len(st["names"])
        cols = min(6, n)
        rows = -(-n // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 1.6 * rows), squeeze=False)
        for i, a in enumerate(axes.flat):
            if i >= n:
                a.axis("off")
                continue
            h = hists[i]
            edges, counts = np.asarray(h["edges"]), np.asarray(h["counts"])
            a.stairs(counts, edges, fill=True)
            a.set_title(st["names"][i], fontsize=7)
            a.tick_params(labelsize=5)
        fig.suptitle(f"{e.dataset}: action distributions (native units, from stats)", fontsize=8)
        figs.append((f"Actions of {e.dataset}", png_base64(fig)))
        plt.close(fig)

    def row(d: dict) -> str:
        epochs = "-" if d["epochs"] is None else f"{d['epochs']:.2f}"
        return (
            f"<tr><td>{d['label']}</td><td>{d['kind']}</td><td>{d['share']:.2%}</td><td>{d['samples']}</td>"
            f"<td>{epochs}</td><td>{d['tokens_mean']:.1f}</td></tr>"
        )

    rows_html = "".join(row(d) for d in s["datasets"])
    env_rows = "".join(
        f"<tr><td>{escape(env)}</td><td>{d['share']:.2%}</td><td>{d['episodes']}</td><td>{d['samples']}</td>"
        f"<td>{escape(', '.join(d['datasets']))}</td></tr>"
        for env, d in s["environments"].items()
    )
    chosen = "".join(
        f"<li>{c['count']} of {len(c['pool'])} (seed {c['seed']}) for {escape(c['component'].rsplit(': ', 1)[-1])}: "
        f"{escape(', '.join(c['environments']))}</li>"
        for c in s["chosen"]
    )
    env_html = (
        f"<h2>Environments ({s['environment_count']})</h2><table><tr><th>environment</th><th>share</th>"
        f"<th>episodes</th><th>samples</th><th>datasets</th></tr>{env_rows}</table>"
        f"<p>No environment: {s['no_environment_share']:.1%} of the draws.</p>"
        + (f"<ul>{chosen}</ul>" if chosen else "")
    )
    body = "".join(f"<h2>{title}</h2><img src='data:image/png;base64,{b64}'/>" for title, b64 in figs)
    html = f"""<!doctype html><html><head><meta charset="utf-8"><title>mixture {s["mixture"]}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px}}</style>
</head><body><h1>Mixture {s["mixture"]} ({s["stage"]})</h1>
<p>{s["steps"]} steps x batch {s["batch_size"]} = {s["draws"]} draws. Non-MM share: <b>{s["non_mm_share"]:.1%}</b>.</p>
<table><tr><th>dataset</th><th>kind</th><th>share</th><th>samples</th><th>epochs</th><th>tokens</th></tr>{rows_html}</table>
{env_html}
{body}
<p>{"<br>".join("warning: " + w for w in s["warnings"])}</p></body></html>
"""
    page = out / "index.html"
    page.write_text(html)
    return page
