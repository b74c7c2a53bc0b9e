"""The interface every recommender of the package shares.

The trainer and the evaluator drive all models the same way:

* ``model = Cls.from_graph(data, **config)`` builds it from the graph schema;
* ``model.loss(users, pos, neg)`` returns ``(loss, parts)`` for a batch of BPR
  triples, ``parts`` a dict of floats for logging;
* ``model.embed()`` returns ``(user_emb, item_emb)`` and the score of a pair
  is their inner product, so full ranking is one matrix product per batch.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from ..data.graph import EDGE, ITEM, USER


class Recommender(nn.Module):
    """Base class: holds the training graph as a sparse CSR adjacency."""

    def __init__(self, num_users: int, num_items: int, train_edge_index: Tensor):
        super().__init__()
        self.num_users = num_users
        self.num_items = num_items
        users, items = train_edge_index
        # Registered as buffers so .to(device) moves them; built once.
        self.register_buffer("train_edge_index", train_edge_index.clone(), persistent=False)
        self.register_buffer("adj_ui", _csr(users, items, num_users, num_items), persistent=False)
        self.register_buffer("adj_iu", _csr(items, users, num_items, num_users), persistent=False)

    @staticmethod
    def graph_sizes(data: HeteroData) -> Tuple[int, int, Tensor]:
        return int(data[USER].num_nodes), int(data[ITEM].num_nodes), data[EDGE].edge_index

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tuple[Tensor, Dict[str, float]]:
        raise NotImplementedError

    def embed(self) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def score(self, users: Tensor) -> Tensor:
        """Scores ``[len(users), num_items]`` (convenience; the evaluator batches ``embed()``)."""
        u, i = self.embed()
        return u[users] @ i.t()


def _csr(rows: Tensor, cols: Tensor, n_rows: int, n_cols: int) -> Tensor:
    """Binary CSR adjacency ``[n_rows, n_cols]`` (repeated edges count once)."""
    idx = torch.stack([rows, cols])
    vals = torch.ones(idx.size(1))
    coo = torch.sparse_coo_tensor(idx, vals, (n_rows, n_cols), check_invariants=False).coalesce()
    return coo.to_sparse_csr()
