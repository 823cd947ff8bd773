"""The `vlamix` command: every verb has --help; machine-readable output with --json where a script reads it."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from vlamix.cli_common import DEBUG_ENV, debugging, fail, one_line, parse_size, rank_tag
from vlamix.cli_export import export_app
from vlamix.cli_mixture import mixture_app
from vlamix.cli_training import predict, train
from vlamix.cli_view import view

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="vlamix turns robot (MM, ME, CE), annotation and web sources into pi0.5 training shards.",
    pretty_exceptions_enable=False,
)
fast_app = typer.Typer(no_args_is_help=True, help="The FAST action tokenizer of a layout.")
samples_app = typer.Typer(no_args_is_help=True, help="Generate the bundled, realistic sample datasets.")
schemas_app = typer.Typer(no_args_is_help=True, help="The frame, item and sample record schemas.")
app.add_typer(samples_app, name="samples")
app.add_typer(fast_app, name="fast")
app.add_typer(schemas_app, name="schemas")
app.add_typer(mixture_app, name="mixture")
app.add_typer(export_app, name="export")
app.command()(train)
app.command()(predict)
app.command()(view)


@app.callback()
def _root(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Show tracebacks. Without it every error is one line naming the file and record, and a "
            "reader's unexpected exception quarantines its episode instead of failing the job (also "
            f"{DEBUG_ENV}=1; the flag may stand anywhere on the line).",
        ),
    ] = False,
) -> None:
    """vlamix turns robot (MM, ME, CE), annotation and web sources into pi0.5 training shards."""


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s: %(message)s"
    )
    logging.getLogger("vlamix").setLevel(logging.INFO)
    if not verbose:  # Beam's driver forwards its workers' start-up warnings; they are noise here
        logging.getLogger("apache_beam").setLevel(logging.ERROR)


_fail = fail


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ingest(
    ctx: typer.Context,
    sources: Annotated[Path, typer.Option(help="Sources file (YAML) listing the datasets to ingest.")] = Path(
        "samples/sources.yaml"
    ),
    out: Annotated[
        str,
        typer.Option(
            help="Layout to write (manifest.json, shards/, index/, stats/ ...): a folder, or a URL every "
            "worker reaches, e.g. s3://bucket/prefix (endpoint and keys from the AWS_* variables)."
        ),
    ] = "out",
    engine: Annotated[
        str, typer.Option(help="Engine that runs the steps: beam (default) or ray (Ray Data).")
    ] = "beam",
    ray_address: Annotated[
        str | None,
        typer.Option(help="With --engine ray: the address of a running Ray cluster (local Ray when unset)."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes of the local runner (Beam DirectRunner multi-processing when > 1)."
        ),
    ] = 2,
    seed: Annotated[int, typer.Option(help="Seed of every random choice (shard placement, subsamples).")] = 0,
    shard_samples: Annotated[
        int, typer.Option(help="Samples per shard (shards of a dataset hold about this many).")
    ] = 1000,
    shard_bytes: Annotated[
        str | None,
        typer.Option(
            help="Target shard size instead of --shard-samples, e.g. 256MB or 1GiB: samples per shard are "
            "measured per dataset on a few built samples."
        ),
    ] = None,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Clear the layout first (everything an ingest writes, also a layout made from another "
            "sources file, which is refused otherwise) and rebuild it all; with --only build, rebuild every "
            "shard. By default a re-run after an interrupted one keeps the shards it finished when their "
            "inputs are unchanged.",
        ),
    ] = False,
    stats_max_frames: Annotated[
        int | None,
        typer.Option(
            help="Per dataset, opt-in: above this many frames, statistics use a seeded subsample of frames "
            "(by default they are exact over every frame, at any size)."
        ),
    ] = None,
    fast_fit_chunks: Annotated[
        int,
        typer.Option(
            help="In all: above this many chunks, FAST is fitted on a seeded subsample of at most this many."
        ),
    ] = 20_000,
    max_bad_share: Annotated[
        float,
        typer.Option(
            help="Per dataset: the share of episodes or items that may fail the quality gates before the job "
            "fails (the manifest is written either way; failing rows are quarantined)."
        ),
    ] = 0.1,
    only: Annotated[
        str | None, typer.Option(help="Run one step: extract, stats, tokenizers, build or index.")
    ] = None,
    tokenizers: Annotated[
        Path | None,
        typer.Option(
            help="Reuse this tokenizer set (a tokenizers/<sha256>/ folder of another layout) instead of fitting one."
        ),
    ] = None,
    text_tokenizer: Annotated[
        Path | None,
        typer.Option(
            help="Use this Hugging Face tokenizer.json (or a folder holding one) as the text tokenizer instead of training one."
        ),
    ] = None,
    backbone: Annotated[
        Path | None,
        typer.Option(
            help="A pretrained backbone's snapshot folder (PaliGemma's, with tokenizer.json): the tokenizer "
            "set targets its vocabulary (its text ids and <loc> tokens; FAST ids after its vocabulary). "
            "Train on the layout with `vlamix train --backbone` and the same folder."
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the manifest's per-dataset summary as JSON (stdout holds it alone)."
        ),
    ] = False,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress/--no-progress",
            help="Print each step's progress to stderr (units and frames done of the total, frames/s, ETA). "
            "reports/ingest.json gets the same figures either way.",
        ),
    ] = True,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also show the engine's own log lines.")
    ] = False,
) -> None:
    """Build training shards from raw sources: extract -> stats -> tokenizers -> build -> index.

    Unknown options pass through to the Beam runner, e.g. `--runner DataflowRunner --project P --region R
    --temp_location gs://...`, or `--runner FlinkRunner --flink_master host:8081`.
    """
    from vlamix.config import ConfigError
    from vlamix.pipelines.ingest import IngestOptions, run_ingest

    _logging(verbose)
    if engine not in ("beam", "ray"):
        _fail(f"--engine {engine!r}: engines are beam and ray")
    opts = IngestOptions(
        sources=sources,
        out=out if "://" in out else Path(out).resolve(),
        engine=engine,
        workers=workers,
        seed=seed,
        samples_per_shard=shard_samples,
        shard_bytes=parse_size(shard_bytes, "--shard-bytes") if shard_bytes is not None else None,
        fresh=fresh,
        stats_max_frames=stats_max_frames,
        fast_fit_chunks=fast_fit_chunks,
        max_bad_share=max_bad_share,
        only=only,
        runner_args=list(ctx.args),
        tokenizers=tokenizers,
        text_tokenizer=text_tokenizer,
        backbone=backbone,
        ray_address=ray_address,
        progress=progress,
        errors="raise" if debugging() else "quarantine",  # `--debug`: a reader's exception with its traceback
    )
    from vlamix.pipelines.failed import DatasetsFailed
    from vlamix.pipelines.quality import QualityGateFailed

    try:
        manifest = run_ingest(opts)
    except (QualityGateFailed, DatasetsFailed) as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except (ConfigError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    if not manifest:
        typer.echo(f"step {only} done in {out}")
        return
    summary = {
        name: {
            "samples": d["samples"],
            "shards": len(d["shards"]),
            "unit": d["accounting"]["unit"],
            **{k: d["accounting"][k] for k in ("read", "written", "quarantined", "duplicates")},
        }
        for name, d in manifest["datasets"].items()
    }
    if as_json:
        typer.echo(json.dumps({"out": str(out), "datasets": summary}, indent=2))
        return
    typer.echo(f"wrote {out}/manifest.json")
    for name, s in summary.items():
        typer.echo(
            f"  {name}: {s['samples']} samples in {s['shards']} shards; {s['unit']}s read {s['read']}, written {s['written']}, "
            f"quarantined {s['quarantined']}, duplicates {s['duplicates']}"
        )


@app.command()
def inspect(
    layout: Annotated[
        str,
        typer.Argument(
            help="A layout folder, its manifest.json, or a URL of either: file://, http(s)://, s3://, hf://datasets/ORG/NAME."
        ),
    ] = "out",
    lint: Annotated[
        bool,
        typer.Option(
            "--lint",
            help="Check the manifest against the tars (counts, sha256), the index against the tars, and the stats and tokenizer files.",
        ),
    ] = False,
    preview: Annotated[
        str | None,
        typer.Option(
            help="Decode the first samples of this dataset: camera PNG strips, tokens back to text, and the "
            "action chunk plotted in native units beside its FAST reconstruction."
        ),
    ] = None,
    n: Annotated[int, typer.Option("-n", help="How many samples --preview decodes.")] = 4,
    preview_dir: Annotated[Path, typer.Option(help="Where --preview writes its PNG files.")] = Path(
        "preview"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON.")] = False,
) -> None:
    """Summarize a published layout: datasets, samples, bytes, versions, hashes and accounting."""
    from vlamix.shards.inspect import lint_layout, summarize_layout
    from vlamix.shards.preview import preview_samples
    from vlamix.shards.store import Store

    try:
        store = Store(layout)
        report: dict = summarize_layout(store)
        if lint:
            report["problems"] = lint_layout(store)
        if preview:
            report["preview"] = preview_samples(store, preview, n, preview_dir)
    except (OSError, ValueError, KeyError) as e:
        _fail(str(e))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(
            f"{report['root']}: {report['format']} v{report['version']}, {report['samples']} samples, {report['bytes'] / 1e6:.1f} MB, tokenizer set {report['tokenizer_set']['sha256'][:12]}"
        )
        for name, d in report["datasets"].items():
            acc = d["accounting"]
            typer.echo(
                f"  {name:<20} {d['kind']:<3} {d['samples']:>7} samples {d['shards']:>3} shards  {acc['unit']}s read {acc['read']}, written {acc['written']}, quarantined {acc['quarantined']}, duplicates {acc['duplicates']}"
            )
        for name, d in report.get("failed", {}).items():
            typer.echo(f"  {name:<20} {d['kind']:<3} FAILED: {d['reason']}")
        for o in report.get("cross_dataset_duplicates", []):
            typer.echo(f"  {' and '.join(o['datasets'])} hold {o['count']} identical {o['unit']}(s)")
        for item in report.get("preview", []):
            typer.echo(f"  {item['key']}: {item['image']}")
            if "decoded_prompt" in item:
                typer.echo(f"    prompt : {item['decoded_prompt']!r}")
                typer.echo(f"    targets: {item['decoded_targets']!r}")
            if "actions_plot" in item:
                typer.echo(
                    f"    actions: {item['actions_plot']} ({item['chunk_steps']} steps in native units)"
                )
        if lint:
            typer.echo(
                "lint: ok"
                if not report["problems"]
                else "lint problems:\n" + "\n".join(f"  - {p}" for p in report["problems"])
            )
    if lint and report["problems"]:
        raise typer.Exit(1)


@app.command()
def publish(
    layout: Annotated[Path, typer.Argument(help="The layout folder `vlamix ingest` wrote.")] = Path("out"),
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Destination: a folder, file://, s3://bucket/prefix (endpoint and keys from the AWS_* "
            "variables), any fsspec URL, or hf://datasets/ORG/NAME.",
        ),
    ] = "",
    verify: Annotated[
        bool, typer.Option(help="Read every uploaded file back and compare its sha256.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Copy a layout (manifest last, without work/) to a URL. Re-running resumes: files already there
    with the same sha256 are skipped."""
    from tqdm import tqdm

    from vlamix.shards.publish import publish as run_publish

    if not to:
        _fail("give the destination with --to URL (e.g. s3://bucket/layouts/v1)")
    bar = tqdm(unit="file", disable=as_json, desc=f"publish to {to}")

    def progress(f, status: str) -> None:
        bar.update(1)
        bar.set_postfix_str(f"{f.rel} ({status})", refresh=False)

    try:
        report = run_publish(layout, to, verify=verify, progress=progress)
    except (OSError, ValueError) as e:
        _fail(str(e))
    finally:
        bar.close()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(
            f"published {layout} to {report['url']}: {report['files']} files, {report['sent']} sent "
            f"({report.get('bytes_sent', 0) / 1e6:.1f} MB), {report['skipped']} already there"
        )


@fast_app.command("report")
def fast_report_cmd(
    layout: Annotated[
        Path, typer.Argument(help="A layout folder written by `vlamix ingest` (with its work/ folder).")
    ] = Path("out"),
    max_chunks: Annotated[
        int, typer.Option(help="Chunks per dataset to measure (a seeded subsample).")
    ] = 2000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Tokens per chunk (mean, p50, p95), compression vs H*D and reconstruction error per dataset, beside the
    FAST paper's Table I (tokens per 1-second chunk at similar dims and rates)."""
    from vlamix.pipelines.fast_report import fast_report, format_report

    try:
        report = fast_report(layout, max_chunks)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    typer.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@samples_app.command("generate")
def samples_generate(
    out: Annotated[Path, typer.Option(help="Folder that receives the sample datasets.")] = Path("samples"),
    episodes: Annotated[int, typer.Option(help="Number of Mobile-ALOHA (MM) episodes.")] = 3,
    seed: Annotated[int, typer.Option(help="Base seed; every episode derives its own seed from it.")] = 0,
) -> None:
    """Write the synthetic samples: Mobile-ALOHA HDF5 episodes (MM: a kinematic two-arm robot on a moving
    base, rendered cameras), two RLDS datasets of single arms logged differently (CE), and LeRobot v2.1 and
    v3.0 datasets of a static arm in different rooms (ME), and HL subtask / VI verbal-instruction
    annotations over those episodes, web data (WD) over real photographs from scikit-image's wheel (COCO,
    parquet captions and points, LLaVA conversations), and one sample per recorded format: a robomimic-style
    HDF5, ROS 2 bags in MCAP, a UMI-style Zarr replay buffer and a LeRobot dataset with GR00T's
    modality.json."""
    from tqdm import tqdm

    from vlamix.sources.synthetic.annotation_samples import generate_annotations
    from vlamix.sources.synthetic.ce_samples import generate_ce
    from vlamix.sources.synthetic.gr00t_samples import generate_gr00t
    from vlamix.sources.synthetic.hdf5_samples import generate_hdf5
    from vlamix.sources.synthetic.mcap_samples import generate_mcap
    from vlamix.sources.synthetic.me_samples import generate_me
    from vlamix.sources.synthetic.mobile_aloha import SampleSpec, generate
    from vlamix.sources.synthetic.wd_samples import generate_llava, generate_pointing, generate_wd
    from vlamix.sources.synthetic.zarr_samples import generate_zarr

    spec = SampleSpec(episodes=episodes, seed=seed)
    for path in tqdm(
        generate(out / "mobile_aloha", spec), total=episodes, desc="MM mobile_aloha episodes", file=sys.stderr
    ):
        tqdm.write(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    for path in generate_ce(out, seed):
        typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", err=True)
    for path in generate_me(out, seed):
        typer.echo(f"wrote {path}/ (LeRobot {'v2.1' if 'v21' in path.name else 'v3.0'})", err=True)
    for path in generate_annotations(out):  # derived from the episodes written above
        typer.echo(f"wrote {path}", err=True)
    for path in generate_wd(out):
        typer.echo(f"wrote {path}/ (web data)", err=True)
    # the formats labs record and download (issue 24): each written by its own format's library
    for path in [
        *generate_hdf5(out),
        *generate_mcap(out, seed),
        *generate_zarr(out),
        *generate_gr00t(out, seed),
    ]:
        typer.echo(f"wrote {path}", err=True)
    for path in [*generate_llava(out), *generate_pointing(out)]:
        typer.echo(f"wrote {path} (web data)", err=True)


@schemas_app.command("doc")
def schemas_doc(
    out: Annotated[Path | None, typer.Option(help="Write the Markdown here instead of printing it.")] = None,
) -> None:
    """The schema reference page, generated from schemas/ (docs/schemas.md is this output)."""
    from vlamix.schemas.doc import render_schema_doc

    text = render_schema_doc()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"wrote {out}")


@schemas_app.command("show")
def schemas_show(record: Annotated[str, typer.Argument(help="frame, item or sample.")]) -> None:
    """Print one record's Arrow schema with its version."""
    from vlamix.schemas import RECORDS

    by_name = {r.name: r for r in RECORDS}
    if record not in by_name:
        _fail(f"unknown record {record!r}; records are {sorted(by_name)}")
    r = by_name[record]
    typer.echo(f"{r.name} v{r.version}\n{r.arrow.remove_metadata()}")


def _peer_left(e: BaseException) -> bool:
    """A collective that failed because another process of the torchrun world stopped."""
    text = str(e)
    return type(e).__name__ in ("DistBackendError", "DistNetworkError") or (
        isinstance(e, RuntimeError) and ("gloo" in text or "NCCL" in text or "closed by peer" in text)
    )


def main(argv: list[str] | None = None) -> None:
    """The `vlamix` entry point: `--debug` anywhere on the line turns tracebacks on (it is taken out
    before the verbs parse, so `ingest` never hands it to the Beam runner)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:
        args = [a for a in args if a != "--debug"]
        os.environ[DEBUG_ENV] = "1"  # the engines' worker processes inherit it
    try:
        app(args=args, prog_name="vlamix")
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.RED, err=True)
        sys.exit(130)
    except Exception as e:  # anything no verb turned into its own message: one line, unless --debug
        if debugging():
            raise
        if rank_tag() and _peer_left(e):  # another process failed: its own line says why
            typer.secho(f"stopped: {rank_tag()}{one_line(str(e), 160)}", err=True)
            sys.exit(1)
        typer.secho(
            f"error: {rank_tag()}{type(e).__name__}: {one_line(str(e))} (re-run with --debug for the traceback)",
            fg=typer.colors.RED,
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
