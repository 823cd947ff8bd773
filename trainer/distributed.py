"""The processes of one training run: torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) read once,
the process group (gloo on CPU, NCCL on CUDA), and the few collectives the loop needs. One process
without torchrun is world 1 and touches no process group.

    torchrun --standalone --nproc_per_node=N -m vlamix train ...                    one machine
    torchrun --nnodes=M --nproc_per_node=N --rdzv_backend=c10d \\
             --rdzv_endpoint=HOST:29400 --rdzv_id=RUN -m vlamix train ...           M machines

Rank 0 decides (which checkpoint to resume, with what weights) and every other rank receives its
decision (`shared`), so no rank needs to see rank 0's files: a run folder on one machine's disk resumes
a multi-machine run."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

__all__ = ["World", "world_from_env"]

T = TypeVar("T")
TIMEOUT = timedelta(minutes=30)  # a collective a dead peer never joins fails then (torchrun is sooner)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError as e:
        raise ValueError(f"${name}={text!r}: not a number (set by torchrun)") from e


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def started(self) -> bool:
        return self.size > 1 and dist.is_available() and dist.is_initialized()

    def device(self, asked: str | None) -> torch.device:
        """cuda:LOCAL_RANK under torchrun with CUDA (unless --device says otherwise), else --device's or
        the default."""
        if asked is None:
            if torch.cuda.is_available():
                return torch.device("cuda", self.local_rank % torch.cuda.device_count())
            return torch.device("cpu")
        device = torch.device(asked)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {asked}: torch sees no CUDA device here (use cpu)")
        return device

    def start(self, device: torch.device) -> None:
        if self.size == 1 or self.started:
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)

    def stop(self) -> None:
        if self.started:
            dist.destroy_process_group()

    def shared(self, decide: Callable[[], T]) -> T:
        """`decide()` run on rank 0 and its result (any picklable value, tensors included) on every rank."""
        if self.size == 1:
            return decide()
        box = [decide() if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Each value summed over the ranks (float64)."""
        if self.size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order, on every rank."""
        if self.size == 1:
            return [obj]
        out: list = [None] * self.size
        dist.all_gather_object(out, obj)
        return out


def world_from_env() -> World:
    """The world torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK), or one process."""
    size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"RANK={rank}, WORLD_SIZE={size}: not a torchrun world")
    return World(rank, size, _env_int("LOCAL_RANK", rank))
