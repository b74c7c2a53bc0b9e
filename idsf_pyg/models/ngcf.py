"""NGCF (Wang et al., SIGIR 2019): neural graph collaborative filtering."""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import spmm

from ..losses import bpr_batch, l2_penalty
from .base import Recommender
from ..options import PositiveInt, Probability


class NGCF(Recommender):
    r"""NGCF propagation, eq. (7) of its paper, in matrix form:

    .. math::
        \mathbf{E}^{(l)} = \mathrm{LeakyReLU}\left((\mathcal{L}+\mathbf{I})\mathbf{E}^{(l-1)}\mathbf{W}_1^{(l)}
        + (\mathcal{L}\mathbf{E}^{(l-1)}) \odot \mathbf{E}^{(l-1)}\mathbf{W}_2^{(l)}\right)

    with :math:`\mathcal{L}` the symmetric-normalized adjacency (no self loops), message dropout
    after each layer, each layer's output L2-normalized and all layers concatenated.
    Defaults of the official code: d = 64, layers [64, 64, 64], message dropout 0.1, node dropout
    0.1 (edges dropped at each step), L2 1e-5 on the batch embeddings; lr 1e-4 in the config.
    """

    def __init__(self, num_users: int, num_items: int, train_edge_index: Tensor, embedding_dim: PositiveInt = 64,
                 layer_sizes: Sequence[PositiveInt] = (64, 64, 64), message_dropout: Probability = 0.1,
                 node_dropout: Probability = 0.1, reg_weight: float = 1e-5):
        super().__init__(num_users, num_items, train_edge_index)
        self.embedding_dim, self.reg_weight = embedding_dim, reg_weight
        self.message_dropout, self.node_dropout = message_dropout, node_dropout
        self.embedding = nn.Embedding(num_users + num_items, embedding_dim)
        dims = [embedding_dim, *layer_sizes]
        self.w1 = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.w2 = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.register_buffer("adj", self.normalized_adjacency(), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.embedding.weight)
        for lin in [*self.w1, *self.w2]:
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _dropped_adjacency(self) -> Tensor:
        if not self.training or self.node_dropout <= 0:
            return self.adj
        # The official code's "node dropout" drops entries of the sparse matrix and rescales the rest.
        coo = self.adj.to_sparse_coo()
        keep = torch.rand(coo.values().numel(), device=coo.device) >= self.node_dropout
        vals = coo.values()[keep] / (1 - self.node_dropout)
        return torch.sparse_coo_tensor(coo.indices()[:, keep], vals, coo.shape,
                                       check_invariants=False).coalesce().to_sparse_csr()

    def embed(self) -> Tuple[Tensor, Tensor]:
        adj = self._dropped_adjacency()
        x = self.embedding.weight
        outs = [x]
        for w1, w2 in zip(self.w1, self.w2):
            side = spmm(adj, x)
            x = F.leaky_relu(w1(side + x) + w2(side * x), negative_slope=0.2)
            x = F.dropout(x, self.message_dropout, self.training)
            outs.append(F.normalize(x, p=2, dim=1))
        out = torch.cat(outs, dim=1)
        return out[: self.num_users], out[self.num_users:]

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        u_all, i_all = self.embed()
        bpr, u, p, n = bpr_batch(u_all, i_all, users, pos, neg)
        reg = self.reg_weight * l2_penalty([u, p, n]) / (2 * users.numel())
        return bpr + reg, {"bpr": bpr.detach(), "reg": reg.detach()}
