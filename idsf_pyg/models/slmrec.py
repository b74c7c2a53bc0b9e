"""SLMRec (Tao et al., IEEE TMM 2022): self-supervised learning for multimedia recommendation."""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import bpr_batch, l2_penalty, mutual_information
from .base import MultimodalRecommender, layer_mean
from ..options import Probability, PositiveFloat, PositiveInt


class SLMRec(MultimodalRecommender):
    r"""SLMRec with its feature-dropout (FD) self-supervised task:

    * one graph per modality plus one for IDs: nodes start from [user embedding of that graph ;
      projected item features] (IDs: [user ID ; item ID]) and go through ``num_layers`` LightGCN
      propagations (layer mean); the final representation sums the graphs;
    * SSL: two views with dropout ``ssl_dropout`` on every graph's input, propagated; InfoNCE
      (``ssl_tau``) between the two views of the batch's users and items, weighted by ``ssl_weight``.

    Defaults from the paper's code: d = 64, 3 layers (2 here for cost), dropout 0.1, tau 0.2,
    ssl_weight 0.01, L2 1e-4, lr 1e-3.
    """

    def __init__(self, num_users: int, num_items: int, train_edge_index: Tensor, features: Dict[str, Tensor],
                 embedding_dim: PositiveInt = 64, num_layers: int = 2, ssl_dropout: Probability = 0.1,
                 ssl_tau: PositiveFloat = 0.2,
                 ssl_weight: float = 0.01, reg_weight: float = 1e-4):
        super().__init__(num_users, num_items, train_edge_index, features)
        self.embedding_dim, self.num_layers = embedding_dim, num_layers
        self.ssl_dropout, self.ssl_tau, self.ssl_weight, self.reg_weight = ssl_dropout, ssl_tau, ssl_weight, reg_weight
        self.user_emb = nn.ParameterDict({g: nn.Parameter(torch.empty(num_users, embedding_dim))
                                          for g in ["id", *self.modalities]})
        self.item_id = nn.Parameter(torch.empty(num_items, embedding_dim))
        self.proj = nn.ModuleDict({m: nn.Linear(x.size(1), embedding_dim) for m, x in features.items()})
        self.register_buffer("adj", self.normalized_adjacency(), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in [*self.user_emb.values(), self.item_id]:
            nn.init.xavier_uniform_(p)
        for lin in self.proj.values():
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _propagate(self, dropout: float) -> Tensor:
        total = None
        for g in ["id", *self.modalities]:
            items = self.item_id if g == "id" else self.proj[g](self.feature(g))
            x = F.dropout(torch.cat([self.user_emb[g], items]), dropout, self.training)
            rep = layer_mean(self.adj, x, self.num_layers)
            total = rep if total is None else total + rep
        return total

    def embed(self) -> Tuple[Tensor, Tensor]:
        rep = self._propagate(0.0)
        return rep[: self.num_users], rep[self.num_users:]

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        u_all, i_all = self.embed()
        bpr, u, p, n = bpr_batch(u_all, i_all, users, pos, neg)
        reg = self.reg_weight * l2_penalty([u, p, n]) / (2 * users.numel())
        total, logs = bpr + reg, {"bpr": bpr.detach(), "reg": reg.detach()}
        if self.ssl_weight > 0:
            v1, v2 = self._propagate(self.ssl_dropout), self._propagate(self.ssl_dropout)
            rows = torch.cat([torch.unique(users), self.num_users + torch.unique(pos)])
            ssl = -mutual_information(v1.index_select(0, rows), v2.index_select(0, rows), self.ssl_tau).mean()
            total = total + self.ssl_weight * ssl
            logs["ssl"] = ssl.detach()
        return total, logs
