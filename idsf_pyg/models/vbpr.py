"""VBPR (He & McAuley, AAAI 2016): visual Bayesian personalized ranking."""
from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import Tensor, nn

from ..losses import bpr_batch, l2_penalty
from .base import MultimodalRecommender
from ..options import PositiveInt


class VBPR(MultimodalRecommender):
    r"""VBPR: :math:`\hat{y}_{ui} = \boldsymbol{\gamma}_u^\top\boldsymbol{\gamma}_i
    + \boldsymbol{\theta}_u^\top \mathbf{E}\mathbf{f}_i + \boldsymbol{\beta}'^\top\mathbf{f}_i`
    (eq. (2) of its paper; the item and global biases cancel in BPR and are dropped).

    :math:`\mathbf{f}_i` concatenates all item modalities of the graph (the original model had the
    visual one only; as in MMRec, every modality is used). Defaults: d = 64 split evenly between
    :math:`\boldsymbol{\gamma}` and :math:`\boldsymbol{\theta}`, L2 1e-4 on the batch's embeddings.
    """

    def __init__(self, num_users: int, num_items: int, train_edge_index: Tensor, features: Dict[str, Tensor],
                 embedding_dim: PositiveInt = 64, reg_weight: float = 1e-4):
        super().__init__(num_users, num_items, train_edge_index, features)
        self.register_buffer("features", torch.cat([self.feature(m) for m in self.modalities], dim=1),
                             persistent=False)
        half = embedding_dim // 2
        self.embedding_dim, self.reg_weight = embedding_dim, reg_weight
        self.user_gamma = nn.Embedding(num_users, half)
        self.user_theta = nn.Embedding(num_users, embedding_dim - half)
        self.item_gamma = nn.Embedding(num_items, half)
        self.proj = nn.Linear(self.features.size(1), embedding_dim - half, bias=False)   # E
        self.visual_bias = nn.Linear(self.features.size(1), 1, bias=False)             # β'
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in (self.user_gamma.weight, self.user_theta.weight, self.item_gamma.weight, self.proj.weight,
                  self.visual_bias.weight):
            nn.init.xavier_uniform_(w)

    def embed(self) -> Tuple[Tensor, Tensor]:
        ones = self.user_gamma.weight.new_ones(self.num_users, 1)
        users = torch.cat([self.user_gamma.weight, self.user_theta.weight, ones], dim=1)
        items = torch.cat([self.item_gamma.weight, self.proj(self.features), self.visual_bias(self.features)], 1)
        return users, items

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        u_all, i_all = self.embed()
        bpr, u, p, n = bpr_batch(u_all, i_all, users, pos, neg)
        reg = self.reg_weight * l2_penalty([u[:, :-1], p[:, :-1], n[:, :-1]]) / (2 * users.numel())
        return bpr + reg, {"bpr": bpr.detach(), "reg": reg.detach()}
