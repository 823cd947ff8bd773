"""The mixture sampler the trainer reads with: exact, deterministic, rank- and worker-aware, resumable.

One global stream of draws g = 0, 1, 2, ... is the same for every reader:
- the dataset of draw g comes from a seeded categorical over the mixture's shares (drawn in fixed blocks,
  so any reader can compute any draw);
- if draw g is the c-th draw of dataset d, it takes row c mod n_d of the epoch-(c div n_d) permutation of
  d's filtered index rows (a seeded permutation per dataset and epoch);
- reader r of R (R = ranks x workers, r = rank * workers + worker) serves the draws with g mod R == r.
So across all readers every sample of a dataset is read exactly once per epoch of that dataset, whatever
its shard count, and a reader resumes from a small state dict to exactly the draws it would have made.

With `stratified=B`, the datasets of each block of about B global draws are allotted, not drawn at
random: entry i is owed round(k * B * share_i) draws before block k, so every block is within one draw
of its shares per entry and the long-run shares are exact; the block's draws come in a seeded order.
The row rule is unchanged, so the once-per-epoch guarantee holds as well.

Shard-aware order (`shard_block=S`, default 1): each epoch's permutation of a dataset's rows visits its
shards in a seeded order, S shards at a time, with the rows of those S shards in a seeded order; the
next block starts when they are used up. A reader that fetches whole shards (the trainer's shard cache)
thus needs only the current block of each dataset, not every shard at once. vlamix places each sample in
a shard by a seeded hash of its key, so every shard is a uniform random subset of its dataset and a
block's rows are as random a sample as any; a layout whose shards are not (written in episode order by
another tool) wants a larger S. `shard_block=0` is a permutation of all rows at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vlamix.mixtures.resolve import Resolved

__all__ = ["Draw", "MixtureSampler"]

BLOCK = 4096  # draws whose datasets are chosen together
SHARD_BLOCK = 1  # shards whose rows are shuffled together (0: the whole dataset)


@dataclass(frozen=True)
class Draw:
    step: int  # the global draw index
    dataset: str
    label: str  # the entry (dataset and filter)
    layout: str
    key: str
    shard: str
    offset: int
    length: int
    epoch: int  # which pass over the dataset this draw belongs to
    crc32: int | None = None  # of the sample's bytes, from the index (None: an older layout without it)
    environment: str | None = None  # where the sample's episode was recorded (None: not recorded, web data)


def _stable(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _shard_blocked(codes: np.ndarray, shard_block: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of rows 0..n-1 (row j in shard codes[j]) that takes the shards in a random order,
    `shard_block` at a time, and the rows of each block in a random order."""
    order = rng.permutation(int(codes.max()) + 1 if len(codes) else 0)
    block = order[codes] // shard_block  # the block of each row's shard
    return np.lexsort((rng.random(len(codes)), block))


class MixtureSampler:
    def __init__(
        self,
        res: Resolved,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        worker: int = 0,
        workers: int = 1,
        stratified: int | None = None,
        shard_block: int = SHARD_BLOCK,
    ):
        if not res.entries:
            raise ValueError(f"mixture {res.spec.name!r} has no dataset to draw from: {res.problems}")
        if not (0 <= rank < world and 0 <= worker < workers):
            raise ValueError(f"rank {rank} of {world}, worker {worker} of {workers}: out of range")
        if stratified is not None and stratified < 1:
            raise ValueError(f"stratified={stratified}: give the number of draws per stratified block")
        if shard_block < 0:
            raise ValueError(f"shard_block={shard_block}: give shards per shuffle block (0: all at once)")
        self.shard_block = shard_block
        self.entries = res.entries
        self.seed = seed
        self.stratified = stratified  # None: i.i.d. draws; B: every B global draws allotted by share
        self.block = stratified or BLOCK  # draws per block of choices
        self.readers = world * workers
        self.reader = rank * workers + worker
        self.shares = np.asarray([e.share for e in self.entries], float)
        self.cum = np.cumsum(self.shares / self.shares.sum())
        self.next = self.reader  # the next global draw this reader serves
        self.counts = np.zeros(len(self.entries), np.int64)  # draws of each entry before `scanned`
        self.scanned = 0  # global draws whose datasets have been counted
        self._perms: dict[tuple[int, int], np.ndarray] = {}
        self._block_choices: tuple[int, np.ndarray] | None = None  # the last block's, reused by its draws
        self._codes: dict[int, np.ndarray] = {}

    # --- state ---
    def state_dict(self) -> dict:
        return {
            "seed": self.seed,
            "reader": self.reader,
            "readers": self.readers,
            "stratified": self.stratified,
            "shard_block": self.shard_block,
            "next": int(self.next),
        }

    def load_state_dict(self, state: dict) -> None:
        mine = (self.seed, self.reader, self.readers, self.stratified, self.shard_block)
        theirs = (state["seed"], state["reader"], state["readers"], state.get("stratified"))
        if (*theirs, state.get("shard_block", 0)) != mine:
            raise ValueError(f"sampler state of another run: {state}")
        self.next = int(state["next"])
        self.counts[:] = 0
        self.scanned = 0  # counts are recomputed by replaying the choices (cheap: integers only)

    def seek(self, g: int) -> None:
        """Serve global draw g next (one of this reader's: g = reader mod readers). Moving backwards
        recounts the earlier choices."""
        if g % self.readers != self.reader:
            raise ValueError(f"draw {g} is not one of reader {self.reader} of {self.readers}")
        if g < self.scanned:
            self.counts[:] = 0
            self.scanned = 0
        self.next = g

    # --- draws ---
    def _owed(self, k: int) -> np.ndarray:
        """Stratified: draws each entry is owed before block k, round(k * B * share): never decreasing,
        so each block's allotment is >= 0 and within one of B * share."""
        return np.floor(k * self.block * self.shares / self.shares.sum() + 0.5).astype(np.int64)

    def _stratified_block(self, g: int) -> int:
        """The block holding global draw g (blocks hold B +- a few draws: their sizes follow the quotas)."""
        lo, hi = 0, g // self.block + len(self.entries) + 2
        while lo < hi:  # the largest k with sum(owed(k)) <= g
            mid = (lo + hi + 1) // 2
            if int(self._owed(mid).sum()) <= g:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _choices(self, block: int) -> np.ndarray:
        """The entry of each draw of `block` (a pure function of the seed and the block; the last block's
        are kept, as consecutive draws of a reader mostly fall in the same block)."""
        if self._block_choices is not None and self._block_choices[0] == block:
            return self._block_choices[1]
        rng = np.random.default_rng([self.seed, 0x6D6978, block])
        if self.stratified is None:
            u = rng.random(BLOCK)
            choices = np.minimum(np.searchsorted(self.cum, u, side="right"), len(self.entries) - 1)
        else:
            counts = self._owed(block + 1) - self._owed(block)
            choices = rng.permutation(np.repeat(np.arange(len(self.entries)), counts))
        self._block_choices = (block, choices)
        return choices

    def _perm(self, i: int, epoch: int) -> np.ndarray:
        key = (i, epoch)
        if key not in self._perms:
            if len(self._perms) > 64:
                self._perms.clear()
            seed = [self.seed, _stable(self.entries[i].label), epoch]
            rng = np.random.default_rng(seed)
            if self.shard_block == 0:
                self._perms[key] = rng.permutation(self.entries[i].samples)
            else:
                self._perms[key] = _shard_blocked(self._shard_codes(i), self.shard_block, rng)
        return self._perms[key]

    def _shard_codes(self, i: int) -> np.ndarray:
        """The shard of each of entry i's rows, as a number (the rank of its name)."""
        if i not in self._codes:
            shards = self.entries[i].rows.column("shard").to_numpy(zero_copy_only=False)
            self._codes[i] = np.unique(shards, return_inverse=True)[1].astype(np.int64)
        return self._codes[i]

    def _draw(self, g: int) -> Draw:
        if self.stratified is not None:
            block = self._stratified_block(g)
            pos = g - int(self._owed(block).sum())
            choices = self._choices(block)
            before = self._owed(block) + np.bincount(choices[:pos], minlength=len(self.entries))
        else:
            block, pos = divmod(g, BLOCK)
            choices = self._choices(block)
            while self.scanned < block * BLOCK:  # count every earlier draw's dataset
                self.counts += np.bincount(self._choices(self.scanned // BLOCK), minlength=len(self.entries))
                self.scanned += BLOCK
            before = self.counts + np.bincount(choices[:pos], minlength=len(self.entries))
        i = int(choices[pos])
        e = self.entries[i]
        epoch, c = divmod(int(before[i]), e.samples)
        row = int(self._perm(i, epoch)[c])
        r = e.rows.slice(row, 1).to_pylist()[0]
        return Draw(
            g,
            e.dataset,
            e.label,
            e.layout,
            r["key"],
            r["shard"],
            r["offset"],
            r["length"],
            epoch,
            r.get("crc32"),
            r.get("environment"),
        )

    def __iter__(self) -> Iterator[Draw]:
        while True:
            d = self._draw(self.next)
            self.next += self.readers
            yield d

    def take(self, n: int) -> list[Draw]:
        it = iter(self)
        return [next(it) for _ in range(n)]
