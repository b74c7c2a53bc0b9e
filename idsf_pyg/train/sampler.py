"""BPR triples: training edges with negatives drawn uniformly from non-interacted items."""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import torch
from torch import Tensor


class BPRSampler:
    """Shuffles the training edges each epoch and pairs each with a negative.

    A negative ``j`` of user ``u`` is uniform over the items ``u`` has no
    training edge with (rejection sampling, vectorized: collisions are redrawn
    until none is left).

    Args:
        edge_index: ``[2, E]`` training edges (user, item).
        num_items: Number of items.
        batch_size: Triples per batch (1024 in the paper).
        generator: A seeded :class:`torch.Generator` for reproducibility.
    """

    def __init__(self, edge_index: Tensor, num_items: int, batch_size: int = 1024,
                 generator: Optional[torch.Generator] = None):
        self.users, self.items = edge_index[0].cpu(), edge_index[1].cpu()
        self.num_items = num_items
        self.batch_size = batch_size
        self.generator = generator or torch.Generator().manual_seed(0)
        keys = self.users * num_items + self.items
        self.keys = torch.unique(keys)  # sorted
        degree = torch.bincount(self.users)
        if (degree >= num_items).any():
            raise ValueError("a user interacted with every item: no negative can be drawn")

    def __len__(self) -> int:
        return (self.users.numel() + self.batch_size - 1) // self.batch_size

    def _is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        keys = users * self.num_items + items
        pos = torch.searchsorted(self.keys, keys).clamp(max=self.keys.numel() - 1)
        return self.keys[pos] == keys

    def negatives(self, users: Tensor) -> Tensor:
        neg = torch.randint(self.num_items, (users.numel(),), generator=self.generator)
        bad = self._is_positive(users, neg)
        while bad.any():
            neg[bad] = torch.randint(self.num_items, (int(bad.sum()),), generator=self.generator)
            bad = self._is_positive(users, neg)
        return neg

    def __iter__(self) -> Iterator[Tuple[Tensor, Tensor, Tensor]]:
        perm = torch.randperm(self.users.numel(), generator=self.generator)
        for start in range(0, perm.numel(), self.batch_size):
            idx = perm[start:start + self.batch_size]
            u, i = self.users[idx], self.items[idx]
            yield u, i, self.negatives(u)
