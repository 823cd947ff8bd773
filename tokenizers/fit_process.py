"""Fit FAST in a process of its own: the BPE trainer's memory grows with the fit sample (up to the
stats step's cap, about 1.5 GB on 20,000 varied chunks), and the ingest's driver should not keep that
peak for the rest of the job, nor grow with the dataset until the cap. The driver writes the normalized
chunks batch by batch to a temporary folder (it never holds them all), a lean child process (numpy,
scipy, tokenizers: ~60 MB before the data) fits and saves the tokenizer there, the driver loads it: the
same tokenizer, byte for byte, as a fit in the driver.

    python -m vlamix.tokenizers.fit_process FOLDER SCALE VOCAB_SIZE   (the child; not for users)
"""

from __future__ import annotations

import logging
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from vlamix.tokenizers.fast import FastTokenizer

__all__ = ["fit_fast_apart"]

log = logging.getLogger("vlamix.ingest")
_REFUSED = 3  # the child's exit status for a fit refused with a ValueError (its message on stderr)


def fit_fast_apart(batches: Iterable[np.ndarray], scale: float, vocab_size: int) -> tuple[FastTokenizer, int]:
    """(FAST fitted on `batches` of chunks [B, H, D] in a child process, chunks fitted on). Raises
    ValueError as `FastTokenizer.fit` does (no chunks, a range wider than the vocabulary)."""
    with tempfile.TemporaryDirectory(prefix="vlamix-fast-fit-") as tmp:
        folder, chunks, files = Path(tmp), 0, 0
        for batch in batches:
            if len(batch):
                np.save(folder / f"chunks-{files:06d}.npy", np.ascontiguousarray(batch))
                chunks, files = chunks + len(batch), files + 1
        if not chunks:
            raise ValueError("no robot chunks to fit FAST on: give --tokenizers DIR to reuse a set")
        cmd = [
            sys.executable,
            "-m",
            "vlamix.tokenizers.fit_process",
            tmp,
            repr(float(scale)),
            str(vocab_size),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode == _REFUSED:
            raise ValueError(done.stderr.strip().splitlines()[-1])
        if done.returncode != 0:
            raise RuntimeError(
                f"the FAST fit process failed (exit status {done.returncode}): {done.stderr.strip()[-2000:]}"
            )
        peak = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "?"
        log.info("tokenizers: FAST fitted on %d chunks in its own process (peak RSS %s MiB)", chunks, peak)
        return FastTokenizer.load(folder / "fast"), chunks


def _main(folder: Path, scale: float, vocab_size: int) -> int:
    batches = [np.load(p) for p in sorted(folder.glob("chunks-*.npy"))]
    try:
        fast = FastTokenizer.fit(batches, scale=scale, vocab_size=vocab_size)
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return _REFUSED
    fast.save(folder / "fast")
    print(_peak_mib())
    return 0


def _peak_mib() -> str:
    """This process's peak RSS in MiB: /proc's VmHWM where there is one (getrusage's ru_maxrss would
    report the driver's size at the fork before exec), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return f"{int(line.split()[1]) / 1024:.0f}"
    except OSError:
        pass
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"


if __name__ == "__main__":
    sys.exit(_main(Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])))
