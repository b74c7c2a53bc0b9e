"""BPR triples: training edges with negatives drawn uniformly from non-interacted items."""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import torch
from torch import Tensor


class BPRSampler:
    """BPR triples ``(u, i, j)`` for one epoch, in one of two ways.

    * ``mode="edges"``: the training edges, shuffled, each once per epoch; users with many
      interactions get as many triples (on ML-100k the top 10 % of users get 32 % of them).
    * ``mode="users"`` (the official IDSF / LATTICE ``Data.sample``): each batch draws
      ``batch_size`` distinct users uniformly among those with training edges (with replacement
      only when the batch is larger than that), then one positive uniformly among each user's
      training items; ``E // batch_size + 1`` batches per epoch.

    A negative ``j`` of user ``u`` is uniform over the items ``u`` has no
    training edge with (rejection sampling, vectorized: collisions are redrawn
    until none is left).

    Args:
        edge_index: ``[2, E]`` training edges (user, item).
        num_items: Number of items.
        batch_size: Triples per batch (1024 in the paper).
        generator: A seeded :class:`torch.Generator` for reproducibility.
        mode: ``"edges"`` (default) or ``"users"``.
    """

    def __init__(self, edge_index: Tensor, num_items: int, batch_size: int = 1024,
                 generator: Optional[torch.Generator] = None, mode: str = "edges"):
        if mode not in ("edges", "users"):
            raise ValueError(f"mode must be 'edges' or 'users', got {mode!r}")
        self.mode = mode
        self.users, self.items = edge_index[0].cpu(), edge_index[1].cpu()
        self.num_items = num_items
        self.batch_size = batch_size
        self.generator = generator or torch.Generator().manual_seed(0)
        keys = self.users * num_items + self.items
        self.keys = torch.unique(keys)  # sorted
        degree = torch.bincount(self.keys // num_items)  # distinct training items per user
        if (degree >= num_items).any():
            raise ValueError("a user interacted with every item: no negative can be drawn")
        # Each user's training items, contiguous: the sorted keys are grouped by user (for mode="users").
        self.user_items = self.keys % num_items
        self.degree = degree
        self.ptr = torch.cat([degree.new_zeros(1), torch.cumsum(degree, 0)])
        self.active_users = torch.nonzero(degree > 0).view(-1)

    def __len__(self) -> int:
        if self.mode == "users":
            return self.users.numel() // self.batch_size + 1
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

    def sample_users(self) -> Tuple[Tensor, Tensor]:
        """One batch of mode ``"users"``: uniform users, one uniform training item each."""
        n = self.active_users.numel()
        if self.batch_size <= n:
            users = self.active_users[torch.randperm(n, generator=self.generator)[:self.batch_size]]
        else:
            users = self.active_users[torch.randint(n, (self.batch_size,), generator=self.generator)]
        offset = (torch.rand(users.numel(), generator=self.generator) * self.degree[users]).long()
        offset = torch.minimum(offset, self.degree[users] - 1)
        return users, self.user_items[self.ptr[users] + offset]

    def __iter__(self) -> Iterator[Tuple[Tensor, Tensor, Tensor]]:
        if self.mode == "users":
            for _ in range(len(self)):
                u, i = self.sample_users()
                yield u, i, self.negatives(u)
            return
        perm = torch.randperm(self.users.numel(), generator=self.generator)
        for start in range(0, perm.numel(), self.batch_size):
            idx = perm[start:start + self.batch_size]
            u, i = self.users[idx], self.items[idx]
            yield u, i, self.negatives(u)
