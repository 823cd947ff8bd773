"""What `vlamix ingest` is asked to do: the options, checked once, and the error policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vlamix.shards.store import Store, store_for
from vlamix.shards.workdir import WorkDir

__all__ = [
    "FAST_FIT_CHUNKS",
    "STATS_MAX_FRAMES",
    "STEPS",
    "ErrorPolicy",
    "IngestOptions",
    "unexpected_reason",
]

STEPS = ("extract", "stats", "tokenizers", "build", "index")
# Statistics are exact over every frame by default (merged partial summaries: docs/design.md §16); with
# `--stats-max-frames N`, above N frames a dataset's statistics use a seeded subsample of frames.
STATS_MAX_FRAMES: int | None = None
# Above this many chunks in all, FAST is fitted on a seeded subsample (every dataset sampled at the same
# rate). The BPE trainer takes ~120 kB per 50x16 chunk, so 20,000 chunks bound the step near 2.5 GB.
FAST_FIT_CHUNKS = 20_000

# What an exception other than a reader's BadRecord does inside one episode or item: "quarantine" it with
# the exception named (one bad file never costs a run), or "raise" it with its traceback (`vlamix --debug`).
ErrorPolicy = Literal["quarantine", "raise"]


def unexpected_reason(e: Exception) -> str:
    """The quarantine reason of an exception nobody foresaw (a reader bug, an input nobody imagined)."""
    message = " ".join(str(e).split())
    return f"unexpected {type(e).__name__}: {message} (a reader bug? re-run with --debug for the traceback)"


@dataclass(frozen=True)
class IngestOptions:
    sources: Path
    out: Path | str  # a folder, or a URL (s3://bucket/prefix, ...) that every worker can reach
    engine: Literal["beam", "ray"] = "beam"
    workers: int = 1
    seed: int = 0
    samples_per_shard: int = 1000
    shard_bytes: int | None = None  # when set, samples per shard follow from this target shard size
    # from extract: clear the layout first (also one made from other sources); with a later --only step:
    # rebuild every shard, even those an interrupted run with the same inputs finished
    fresh: bool = False
    progress_every: float = 5.0  # seconds between progress updates (stderr, reports/ingest.json)
    progress: bool = True  # print the progress lines to stderr (`--no-progress`: the report alone)
    stats_max_frames: int | None = STATS_MAX_FRAMES  # per dataset, opt-in: above it a seeded subsample
    fast_fit_chunks: int = FAST_FIT_CHUNKS  # in all; above it FAST is fitted on a seeded subsample
    max_bad_share: float = 0.1  # per dataset: above this share of rows failing the quality gates, fail
    only: str | None = None
    runner_args: list[str] = field(default_factory=list)
    tokenizers: Path | None = None  # reuse this tokenizer set instead of fitting one
    text_tokenizer: Path | None = None  # a Hugging Face tokenizer.json to use instead of training one
    backbone: Path | None = None  # a backbone's snapshot folder: the set targets its vocabulary (§20)
    ray_address: str | None = None  # join this Ray cluster (engine ray); local when unset
    errors: ErrorPolicy = "quarantine"  # the CLI sets "raise" under --debug

    @property
    def url(self) -> str:
        """The layout's location as the workers are handed it."""
        return self.store.url

    @property
    def store(self) -> Store:
        return store_for(str(self.out))

    @property
    def work(self) -> WorkDir:
        return WorkDir(self.store)

    def check(self) -> None:
        if self.only is not None and self.only not in STEPS:
            raise ValueError(f"--only {self.only!r}: steps are {', '.join(STEPS)}")
        if self.engine not in ("beam", "ray"):
            raise ValueError(f"--engine {self.engine!r}: engines are beam and ray")
        if self.errors not in ("quarantine", "raise"):
            raise ValueError(f"errors={self.errors!r}: the error policies are quarantine and raise")
        if self.samples_per_shard < 1:
            raise ValueError("--shard-samples must be at least 1")
        if not 0.0 <= self.max_bad_share <= 1.0:
            raise ValueError(f"--max-bad-share {self.max_bad_share}: give a share between 0 and 1")
        if (self.stats_max_frames is not None and self.stats_max_frames < 1) or self.fast_fit_chunks < 1:
            raise ValueError("--stats-max-frames and --fast-fit-chunks must be at least 1")
        if self.backbone is not None and (self.text_tokenizer is not None or self.tokenizers is not None):
            given = "--text-tokenizer" if self.text_tokenizer is not None else "--tokenizers"
            raise ValueError(
                f"--backbone and {given}: the backbone's tokenizer.json is the text tokenizer; give one of them"
            )
        if self.shard_bytes is not None and self.shard_bytes < 4096:
            raise ValueError(f"--shard-bytes {self.shard_bytes}: a shard needs at least 4096 bytes")
