"""Data-parallel training over ``torch.distributed`` processes (launched by ``torchrun``).

Every process (rank) holds the whole model and the whole graph (these are full-graph models: each step
propagates over all users and items), draws the **same** global BPR batch from the same seeded sampler,
and works on its share:

* **BPR**: rank ``r`` takes the ``r``-th contiguous slice of the global batch; its loss is weighted by
  ``slice size / batch size``, so that the ranks' losses add up to the global batch mean.
* **All-item contrastive loss** (IDSF, ``contrast_scope="all"``): rank ``r`` computes the rows
  ``r0:r1`` of every similarity matrix (:meth:`Shard.rows`), both directions of eq. (3)–(5); the column
  sums of the cross-similarities are all-reduced in the forward pass, and their gradient weights in the
  backward pass (:mod:`idsf_pyg.similarity_lse`). Per-rank time and memory shrink with the world size;
  the ranks' losses add up to the single-process value.
* Terms every rank computes whole (L2 on the parameters, the batch or sample contrastive scopes, other
  models' losses) are weighted like BPR, so that they are counted once.
* **Gradients**: summed over ranks with one all-reduce of a flat buffer after the backward pass (every
  rank then takes the same Adam step: the replicas stay identical).
* **Evaluation**: the evaluator's user chunks are dealt round-robin to the ranks and their metric sums
  all-reduced; the sums are then added in chunk order, as one process adds them.

Only rank 0 writes run files and logs. Collectives time out after ``IDSF_DIST_TIMEOUT`` seconds
(default 300): a rank that dies makes the others fail with a message instead of waiting forever.
"""
from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from typing import Iterable, Iterator, List, Optional

import torch
import torch.distributed as dist

from ..errors import ConfigError, TrainingError
from ..parallel import Shard

#: Seconds a collective may wait for the other ranks before the job fails.
DEFAULT_TIMEOUT_S = 300


def from_environment(device: torch.device) -> Optional[Shard]:
    """Joins the ``torchrun`` job this process belongs to (``WORLD_SIZE`` > 1 in the environment), with
    NCCL for CUDA devices and Gloo for the CPU; ``None`` outside such a job. Rank ``r`` uses its local
    GPU (``LOCAL_RANK``) when ``device`` is CUDA. A process group already initialized is used as it is.
    Prefer :func:`joined`, which also leaves the group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed", "WORLD_SIZE")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get("IDSF_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend, timeout=timeout)
    return Shard(dist.get_rank(), dist.get_world_size(), dist.get_backend())


@contextlib.contextmanager
def joined(device: torch.device) -> Iterator[Optional[Shard]]:
    """:func:`from_environment` for the length of a ``with`` block; the process group it initialized is
    destroyed when the block ends, however it ends. A process that exits with the group alive can abort
    in the interpreter's teardown (Gloo's threads are still joinable: ``terminate called without an
    active exception``, SIGABRT), which would replace the exit status, e.g. a user error's 2, with -6.
    A group the caller initialized is left to the caller."""
    ours = dist.is_available() and not dist.is_initialized()
    shard = from_environment(device)
    try:
        yield shard
    finally:
        if shard is not None and ours and dist.is_initialized():
            dist.destroy_process_group()


def local_device(device: torch.device, shard: Optional[Shard]) -> torch.device:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` inside a job."""
    if shard is not None and device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def all_reduce_gradients(params: Iterable[torch.nn.Parameter], shard: Shard) -> None:
    """Sums the gradients of ``params`` over the ranks (one flat all-reduce). A parameter without a
    gradient on this rank contributes zeros (another rank's share may have reached it)."""
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    shard.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        chunk = flat[offset:offset + n].view_as(p)
        if p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.copy_(chunk)
        offset += n


def broadcast_error(shard: Optional[Shard], error: Optional[BaseException]) -> None:
    """After a step only rank 0 does (e.g. preparing the run folder): every rank raises rank 0's error,
    so that no rank waits for the others at the next collective."""
    if shard is None:
        if error is not None:
            raise error
        return
    box: List[Optional[str]] = [None if error is None else f"{type(error).__name__}: {error}"]
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    if box[0] is not None:
        raise TrainingError(f"rank 0 stopped before training: {box[0]}")
