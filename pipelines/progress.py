"""Where a long ingest is: each step's units and frames done of the total, frames/s and the ETA, on the
terminal (stderr: `--json` keeps stdout for the result) and in `reports/ingest.json` as it goes, so a
monitor can read them. Whatever the engine, and on a cluster without a shared filesystem:

- every unit, when done, leaves a marker `work/progress/<step>/<unit>.json` holding the frames (or
  samples, or items) it did (`mark`, called by pipelines/work_units.py and the stats units);
- the driver's `Progress` lists the step's markers every few seconds, reads only the new ones (it keeps
  their names: memory grows with the list of names, never with the data) and updates the figures.

Markers are cleared when a step starts and when it ends well; a unit run twice (an engine's retry)
leaves one marker. A line is printed when a unit finishes, else once a minute (`HEARTBEAT`); `--no-progress`
(IngestOptions.progress) keeps stderr quiet, and the report is written either way."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from datetime import UTC, datetime

from vlamix.shards.layout import REPORTS_DIR
from vlamix.shards.store import Store, store_for
from vlamix.shards.workdir import WorkDir

__all__ = [
    "HEARTBEAT",
    "REPORT",
    "IngestReport",
    "Progress",
    "known_total",
    "mark",
    "report_for",
    "step_progress",
]

log = logging.getLogger("vlamix.ingest")
REPORT = f"{REPORTS_DIR}/ingest.json"
HEARTBEAT = 60.0  # seconds: a line is printed at least this often while a step runs, even with no unit done


def mark(
    out: str,
    step: str,
    name: str,
    frames: int,
    stages: dict[str, float] | None = None,
    seconds: float = 0.0,
    unit: bool = True,
) -> None:
    """A unit of `step` named `name` (unique within the step) is done, with `frames` frames (samples,
    items) to its name, the `seconds` it ran and those it spent per stage (vlamix/stage_clock.py).
    `unit=False`: a piece of the step's work that is not one of its units (a shard merge), counted for
    its time alone."""
    marker = {
        "frames": int(frames),
        "seconds": round(seconds, 6),
        "stages": {k: round(v, 6) for k, v in (stages or {}).items()},
    }
    store_for(out).write_text(
        WorkDir.progress(step, name), json.dumps(marker if unit else {**marker, "unit": False})
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class IngestReport:
    """`reports/ingest.json` while the ingest runs: each step's figures, rewritten at every update."""

    def __init__(self, store: Store):
        self.store = store
        self.steps: dict[str, dict] = {}
        self._lock = threading.Lock()

    def update(self, step: str, figures: dict) -> None:
        with self._lock:
            self.steps[step] = figures
            self.store.write_json(REPORT, {"running": True, "progress": self.steps})

    def failed(self, step: str, error: BaseException) -> None:
        """The ingest stopped at `step`: a monitor reads `running: false` and where it stopped (the
        exception's type alone: its message is on stderr)."""
        report = {"running": False, "failed_step": step, "error": type(error).__name__}
        try:
            with self._lock:
                self.store.write_json(REPORT, {**report, "progress": self.steps})
        except Exception as e:  # the layout itself unreachable: the ingest's own error is the one to see
            log.warning("progress: cannot write %s (%s)", REPORT, e)


_REPORTS: dict[str, IngestReport] = {}


def report_for(store: Store, fresh: bool = False) -> IngestReport:
    """The running ingest's report of the layout `store` holds (a new one with `fresh`)."""
    if fresh or store.url not in _REPORTS:
        _REPORTS[store.url] = IngestReport(store)
    return _REPORTS[store.url]


def step_progress(opts, step: str, units: int, frames_total: int | None = None) -> Progress:
    """The `Progress` of one step of the ingest `opts` describes (pipelines/options.py IngestOptions)."""
    return Progress(
        report_for(opts.store), step, units, frames_total, every=opts.progress_every, show=opts.progress
    )


def known_total(sizes) -> int | None:
    """The sum of the units' expected frames, or None when any unit's is unknown (None)."""
    total = 0
    for size in sizes:
        if size is None:
            return None
        total += size
    return total


class Progress:
    """`with Progress(report, step, units, frames_total):` around a step: polls the step's markers every
    `every` seconds on a thread, prints a line to `stream` (stderr) when a unit finished or `HEARTBEAT`
    passed (nothing with `show=False`), and keeps `report` current. Steps the driver runs alone pass
    `units=0`: they report start, end and duration."""

    def __init__(
        self,
        report: IngestReport,
        step: str,
        units: int,
        frames_total: int | None = None,
        every: float = 5.0,
        stream=None,
        show: bool = True,
    ):
        self.report, self.step, self.units_total, self.frames_total = report, step, units, frames_total
        self.every, self.stream = every, stream if stream is not None else sys.stderr
        self.seen: set[str] = set()
        self.units_done = 0
        self.frames = 0
        self.stages: dict[str, float] = {}
        self.work_seconds = 0.0
        self.started = time.monotonic()
        self.started_at = _now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress-{step}", daemon=True)
        self.show = show
        self._last_key: tuple | None = None
        self._last_print = 0.0

    def __enter__(self) -> Progress:
        self.report.store.rmtree(WorkDir.progress(self.step))
        self._publish(finished=False)
        if self.units_total:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.units_total:
            self._stop.set()
            self._thread.join()
            self.poll()
        self._publish(finished=exc[0] is None)
        if exc[0] is None and self.units_total:
            self.report.store.rmtree(WorkDir.progress(self.step))  # the figures are in the report now

    def _run(self) -> None:
        wait = self.every
        while not self._stop.wait(wait):
            t0 = time.monotonic()
            try:
                self.poll()
            except Exception as e:  # progress must never stop an ingest: say so and try again later
                log.warning("progress: cannot read the %s markers (%s)", self.step, e)
            self._publish(finished=False)
            wait = max(self.every, 10 * (time.monotonic() - t0))  # a slow listing is asked less often

    def poll(self) -> None:
        """Read the markers that appeared since the last poll."""
        store = self.report.store
        folder = WorkDir.progress(self.step)
        for rel in store.glob(f"{folder}/*.json"):
            if rel in self.seen:
                continue
            try:
                marker = json.loads(store.read_text(rel))
                frames = int(marker["frames"])
            except (FileNotFoundError, ValueError, KeyError):
                continue  # removed or half written under a listing: read at the next poll
            self.seen.add(rel)
            self.frames += frames
            self.units_done += bool(marker.get("unit", True))
            self.work_seconds += float(marker.get("seconds", 0.0))
            for name, seconds in (marker.get("stages") or {}).items():
                self.stages[name] = self.stages.get(name, 0.0) + float(seconds)

    def figures(self, finished: bool) -> dict:
        elapsed = time.monotonic() - self.started
        done = self.units_done
        rate = self.frames / elapsed if elapsed > 0 else 0.0
        eta = None
        if not finished and self.frames and self.frames_total:  # by frames where the total is known
            eta = round(elapsed / self.frames * max(self.frames_total - self.frames, 0), 1)
        elif not finished and done and self.units_total:  # else by the units' pace
            eta = round(elapsed / done * max(self.units_total - done, 0), 1)
        return {
            "units_done": done,
            "units_total": self.units_total,
            "frames_done": self.frames,
            "frames_total": self.frames_total,
            "frames_per_s": round(rate, 1),
            "elapsed_s": round(elapsed, 1),
            "eta_s": 0.0 if finished else eta,
            "started_at": self.started_at,
            "updated_at": _now(),
            "finished": finished,
            "work_s": round(self.work_seconds, 3),  # the units' own seconds, summed over the workers
            "stages_s": {k: round(v, 3) for k, v in sorted(self.stages.items())},
        }

    def _publish(self, finished: bool) -> None:
        f = self.figures(finished)
        self.report.update(self.step, f)
        if not self.units_total:
            line = f"{self.step}: {'done in ' + str(f['elapsed_s']) + ' s' if finished else 'running'}"
        else:
            of = f" of {f['frames_total']:,}" if f["frames_total"] else ""
            eta = "" if f["eta_s"] is None else f", ETA {_clock(f['eta_s'])}"
            line = (
                f"{self.step}: {f['units_done']}/{f['units_total']} units, {f['frames_done']:,}{of} frames, "
                f"{f['frames_per_s']:,.1f} frames/s, {_clock(f['elapsed_s'])} elapsed"
                + (" (done)" if finished else eta)
            )
        key = (f["units_done"], f["frames_done"], finished)
        now = time.monotonic()
        if self.show and (key != self._last_key or now - self._last_print >= HEARTBEAT):
            self._last_key, self._last_print = key, now
            print(f"progress: {line}", file=self.stream, flush=True)


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
