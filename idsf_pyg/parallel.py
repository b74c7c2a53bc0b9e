"""A process's share of data-parallel work, below the models: the losses split their rows and batches by it,
and :mod:`idsf_pyg.train.distributed` creates it when ``torchrun`` launches the job."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch.distributed as dist
from torch import Tensor

from .errors import TrainingError


@dataclass(frozen=True)
class Shard:
    """This process's place in the job: ``rank`` of ``world`` processes."""

    rank: int
    world: int
    backend: str = "gloo"

    def rows(self, n: int) -> Tuple[int, int]:
        """This rank's contiguous share ``[start, stop)`` of ``n`` rows (sizes differ by at most one)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def all_reduce(self, tensor: Tensor, op: str = "sum") -> Tensor:
        """In place, over all ranks; a peer that stopped becomes a :class:`TrainingError`."""
        red = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op]
        try:
            dist.all_reduce(tensor, op=red)
        except (RuntimeError, dist.DistError) as e:  # Gloo/NCCL report a lost peer as RuntimeError
            raise TrainingError(f"rank {self.rank} of {self.world}: a collective failed, another process of "
                                f"the job probably stopped ({type(e).__name__}: {str(e).splitlines()[0]})") from e
        return tensor


def batch_share(n: int, shard: Optional[Shard]) -> Tuple[slice, float]:
    """This rank's slice of a global batch of ``n`` triples and its loss weight (slice size / ``n``)."""
    if shard is None:
        return slice(0, n), 1.0
    start, stop = shard.rows(n)
    return slice(start, stop), (stop - start) / n
