"""LightGCN (He et al., SIGIR 2020) on PyG's ``LGConv``."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

from torch import Tensor, nn
from torch_geometric.nn import LGConv

from ..losses import bpr_batch, l2_penalty
from .base import Recommender
from ..options import PositiveInt


class LightGCN(Recommender):
    r"""LightGCN: :math:`\mathbf{E}^{(k+1)} = \hat{D}^{-1/2}\hat{A}\hat{D}^{-1/2}\mathbf{E}^{(k)}` on the
    user–item graph, final embedding :math:`\frac{1}{K+1}\sum_k \mathbf{E}^{(k)}`, inner-product score,
    BPR with :math:`\lambda/2` L2 on the batch's layer-0 embeddings (divided by the batch size).

    Defaults from the paper: d = 64, K = 3, :math:`\lambda` = 1e-4 (lr 1e-3 in the config).
    Propagation is PyG's :class:`~torch_geometric.nn.conv.LGConv` over a normalized CSR adjacency
    computed once, so each layer is one sparse–dense product. ``use_edge_weight`` weights it by the
    training edges' weights (``data['user', 'interacts', 'item'].edge_weight``) with weighted degrees,
    as ``gcn_norm`` does; off by default (the paper).
    """

    def __init__(self, num_users: int, num_items: int, train_edge_index: Tensor, embedding_dim: PositiveInt = 64,
                 num_layers: int = 3, reg_weight: float = 1e-4, use_edge_weight: bool = False,
                 train_edge_weight: Optional[Tensor] = None):
        super().__init__(num_users, num_items, train_edge_index, train_edge_weight)
        if use_edge_weight and train_edge_weight is None:
            raise ValueError("use_edge_weight=true needs the training edges' weights (train_edge_weight)")
        self.embedding_dim, self.num_layers, self.reg_weight = embedding_dim, num_layers, reg_weight
        self.embedding = nn.Embedding(num_users + num_items, embedding_dim)
        self.conv = LGConv(normalize=False)  # the adjacency below is already normalized
        self.register_buffer("adj", self.normalized_adjacency(weighted=use_edge_weight), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.embedding.weight)

    def propagate_all(self) -> Tensor:
        x = self.embedding.weight
        out = x
        for _ in range(self.num_layers):
            x = self.conv(x, self.adj)
            out = out + x
        return out / (self.num_layers + 1)

    def embed(self) -> Tuple[Tensor, Tensor]:
        out = self.propagate_all()
        return out[: self.num_users], out[self.num_users:]

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        u_all, i_all = self.embed()
        bpr, u, p, n = bpr_batch(u_all, i_all, users, pos, neg)
        ego = self.embedding.weight
        reg = self.reg_weight * l2_penalty([ego.index_select(0, users), ego.index_select(0, self.num_users + pos),
                                                  ego.index_select(0, self.num_users + neg)])
        reg = reg / (2 * users.numel())
        return bpr + reg, {"bpr": bpr.detach(), "reg": reg.detach()}
