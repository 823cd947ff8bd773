"""Batches for the training loop, built in dataloader worker processes, the same whatever their number.

Batch k holds the global draws k*B .. k*B + B - 1 of the mixture sampler (mixtures/sampler.py), read
through a SampleSource (in place, or from the shard cache for a layout at a URL), decoded, padded and
augmented with the draws of batch k. With R processes (torchrun ranks), rank r builds rows r*B/R ..
(r+1)*B/R - 1 of every global batch, so the samples of global step k are the same at any world size.
A reader of a remote layout asks for the shards of its next LOOKAHEAD batches ahead of time, so
background threads fetch them while it works on this one. Worker w of W builds the batches
k = w, w + W, ...; torch's DataLoader hands an IterableDataset's items out round-robin over the workers,
so the loop receives batches 0, 1, 2, ... in order. The batch stream thus depends on (mixture, seed, B)
only: 0, 1 or 2 workers give the same bytes, and resuming at step s means starting at batch s, with no
state beyond the step. Each batch comes with its number, which the loop checks.

A sample that cannot be read ends the stream: in a worker process the error is sent on in the batch's
place (`LoadFailed`, its one-line message) and raised again by `batches` in the loop's process, where
torch would otherwise wrap it in a multi-line traceback. No sample is ever skipped or replaced."""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vlamix.mixtures.resolve import Resolved
from vlamix.mixtures.sampler import SHARD_BLOCK, MixtureSampler
from vlamix.shards.random_access import SampleReadError
from vlamix.trainer.augment import AugmentImages
from vlamix.trainer.data import ACTION, Batch, collate
from vlamix.trainer.sample_source import SampleSource

__all__ = ["LOOKAHEAD", "BatchStream", "LoadFailed", "batches"]

LOOKAHEAD = 4  # batches of each reader whose shards are fetched ahead (remote layouts)


@dataclass(frozen=True)
class LoadFailed:
    """A worker's batch that could not be built: the error's message, raised again in the loop."""

    message: str


@dataclass
class BatchStream(IterableDataset):
    res: Resolved
    seed: int
    batch_size: int
    start: int = 0  # the first batch number
    max_prompt: int = 96
    max_targets: int = 128
    augment: AugmentImages | None = None
    source: SampleSource | None = None  # default: every layout read in place / by byte range
    rank: int = 0
    world: int = 1
    shard_block: int = SHARD_BLOCK
    lookahead: int = LOOKAHEAD
    end: int | None = None  # the batch to stop before (None: no end); nothing past it is read or fetched
    action: int = ACTION  # the id of <action> in the layouts' tokenizer set

    def __post_init__(self) -> None:
        super().__init__()
        if self.batch_size % self.world:
            raise ValueError(
                f"--batch-size {self.batch_size} is the global batch: it must divide evenly over the "
                f"{self.world} processes"
            )
        if self.source is None:
            self.source = SampleSource(self.res.manifests)

    @property
    def rows(self) -> tuple[int, int]:
        """(first row, rows) of each global batch that this rank builds."""
        b = self.batch_size // self.world
        return self.rank * b, b

    def __iter__(self) -> Iterator[tuple[int, Batch]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        if info is not None:
            torch.set_num_threads(1)  # the training process keeps the cores for the model
        first, b = self.rows
        source = self.source
        assert source is not None
        sampler = MixtureSampler(self.res, seed=self.seed, shard_block=self.shard_block)
        ahead = (
            MixtureSampler(self.res, seed=self.seed, shard_block=self.shard_block) if source.remote else None
        )
        asked = self.start + worker  # the next batch whose shards are asked for ahead
        end = self.end if self.end is not None else float("inf")
        try:
            for k in itertools.count(self.start + worker, workers):
                if k >= end:
                    return
                while ahead is not None and asked <= k + workers * self.lookahead and asked < end:
                    ahead.seek(asked * self.batch_size + first)
                    source.prefetch(ahead.take(b))
                    asked += workers
                sampler.seek(k * self.batch_size + first)
                try:
                    batch = collate(sampler.take(b), self.max_prompt, self.max_targets, source, self.action)
                except OSError as e:
                    if info is None:
                        raise
                    yield k, LoadFailed(str(e))  # the loop raises it when batch k is due; this worker stops
                    return
                batch.input = source.take_counters()
                if self.augment is not None:
                    batch = self.augment(batch, k, first, self.batch_size)
                yield k, batch
        finally:
            source.close()


def batches(stream: BatchStream, workers: int) -> Iterator[tuple[int, Batch]]:
    """The stream through a DataLoader with `workers` processes (0: in this process). Nothing here
    touches torch's global random state, so the loop's own draws are the same with or without workers."""
    if workers == 0:
        return iter(stream)
    loader = DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        prefetch_factor=2,
        generator=torch.Generator().manual_seed(stream.seed),
    )
    return _raising(_received(iter(loader)))


PREFETCH = 4  # batches received ahead by the loader's thread


class _End(NamedTuple):
    error: BaseException  # StopIteration at the end of the stream


def _received(it: Iterator, depth: int = PREFETCH) -> Iterator:
    """The DataLoader's items, received by a thread of this process: taking a batch from the workers
    (a shared-memory file per tensor, mapped here) costs milliseconds that would otherwise stall every
    step; the thread does it while the step computes (torch releases the GIL). Order and errors are
    the loader's; closing this generator stops the thread before the workers are let go."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def pull() -> None:
        try:
            while not stop.is_set():
                item = next(it)
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # the end, or the loader's own error: raised in the consumer
            items.put(_End(e))

    thread = threading.Thread(target=pull, name="vlamix-loader", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if isinstance(item, _End):
                if isinstance(item.error, StopIteration):
                    return
                raise item.error
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # a pull blocked on a full queue sees `stop` within 0.1 s
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(0.1)


def _raising(it: Iterator) -> Iterator[tuple[int, Batch]]:
    """The loader's batches; a worker's LoadFailed raised here as the SampleReadError it was."""
    while True:
        try:
            k, batch = next(it)
        except StopIteration:
            return
        if isinstance(batch, LoadFailed):
            del it  # the last reference: the workers stop now, not when the error's traceback is freed
            raise SampleReadError(batch.message)
        yield k, batch
