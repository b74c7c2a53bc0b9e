"""BPR-MF: the ID-only matrix factorization baseline (Rendle et al., UAI 2009)."""
from __future__ import annotations

from typing import Dict, Tuple

from torch import Tensor, nn

from ..losses import bpr_loss, l2_penalty
from .base import Recommender
from ..options import PositiveInt


class BPRMF(Recommender):
    r"""Matrix factorization trained with BPR: :math:`\hat{y}_{ui} = \mathbf{p}_u^\top \mathbf{q}_i`.

    Args:
        embedding_dim: :math:`d`.
        reg_weight: :math:`\lambda` of the L2 penalty on the batch's embeddings
            (divided by the batch size, as in LightGCN's and MMRec's code).
    """

    def __init__(self, num_users: int, num_items: int, train_edge_index: Tensor, embedding_dim: PositiveInt = 128,
                 reg_weight: float = 1e-4):
        super().__init__(num_users, num_items, train_edge_index)
        self.embedding_dim = embedding_dim
        self.reg_weight = reg_weight
        self.user_emb = nn.Embedding(num_users, embedding_dim)
        self.item_emb = nn.Embedding(num_items, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)

    def embed(self) -> Tuple[Tensor, Tensor]:
        return self.user_emb.weight, self.item_emb.weight

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        u, p, n = self.user_emb(users), self.item_emb(pos), self.item_emb(neg)
        bpr = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        reg = self.reg_weight * l2_penalty([u, p, n]) / (2 * users.numel())
        return bpr + reg, {"bpr": bpr.detach(), "reg": reg.detach()}
