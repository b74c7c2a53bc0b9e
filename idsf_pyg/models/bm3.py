"""BM3 (Zhou et al., WWW 2023): bootstrap latent representations for multimodal recommendation."""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import MultimodalRecommender, layer_mean
from ..options import PositiveInt, Probability


def _neg_cos(a: Tensor, b: Tensor) -> Tensor:
    return 1.0 - F.cosine_similarity(a, b, dim=-1)


class BM3(MultimodalRecommender):
    r"""BM3: LightGCN over ID embeddings gives the online user/item representations; targets are
    dropout-perturbed, stop-gradient copies (no negative sampling). A shared predictor maps online
    representations; the loss aligns predicted users with target items and vice versa, and each
    modality's projected features with the target items (inter-modality) and with their own targets
    (intra-modality), weighted by ``cl_weight``; plus ``reg_weight`` times the Frobenius norms of all
    online embeddings over the item count (the official code's ``EmbLoss``). The online items are the
    LightGCN layer mean plus the item ID embedding (a residual, as in the official code). Scores use the
    predictor's outputs. Unlike the official code, the raw features stay fixed (not fine-tuned).

    Defaults from the paper / MMRec config: d = 64, n_layers 1, dropout 0.5, cl_weight 2.0,
    reg_weight 0.1, lr 1e-3. The negatives of the BPR sampler are ignored.
    """

    def __init__(self, num_users: int, num_items: int, train_edge_index: Tensor, features: Dict[str, Tensor],
                 embedding_dim: PositiveInt = 64, n_layers: int = 1, dropout: Probability = 0.5, cl_weight: float = 2.0,
                 reg_weight: float = 0.1):
        super().__init__(num_users, num_items, train_edge_index, features)
        self.embedding_dim, self.n_layers = embedding_dim, n_layers
        self.dropout, self.cl_weight, self.reg_weight = dropout, cl_weight, reg_weight
        self.user_emb = nn.Embedding(num_users, embedding_dim)
        self.item_emb = nn.Embedding(num_items, embedding_dim)
        self.proj = nn.ModuleDict({m: nn.Linear(x.size(1), embedding_dim) for m, x in features.items()})
        self.predictor = nn.Linear(embedding_dim, embedding_dim)
        self.register_buffer("adj", self.normalized_adjacency(), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in (self.user_emb.weight, self.item_emb.weight, self.predictor.weight):
            nn.init.xavier_uniform_(w)
        nn.init.zeros_(self.predictor.bias)
        for lin in self.proj.values():
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def online(self) -> Tuple[Tensor, Tensor]:
        total = layer_mean(self.adj, torch.cat([self.user_emb.weight, self.item_emb.weight]), self.n_layers)
        # Items keep a residual of their ID embedding on top of the layer mean (as BM3's code does);
        # without it the bootstrap targets drift and validation recall falls after a few epochs.
        return total[: self.num_users], total[self.num_users:] + self.item_emb.weight

    def embed(self) -> Tuple[Tensor, Tensor]:
        u, i = self.online()
        return self.predictor(u), self.predictor(i)

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        u_on, i_on = self.online()
        with torch.no_grad():
            u_tg = F.dropout(u_on.index_select(0, users), self.dropout)
            i_tg = F.dropout(i_on.index_select(0, pos), self.dropout)
        u_p, i_p = self.predictor(u_on.index_select(0, users)), self.predictor(i_on.index_select(0, pos))
        align = (_neg_cos(u_p, i_tg) + _neg_cos(i_p, u_tg)).mean()
        modal = u_on.new_zeros(())
        for m in self.modalities:
            f_on = self.proj[m](self.feature(m)[pos])
            with torch.no_grad():
                f_tg = F.dropout(f_on.detach(), self.dropout)
            f_p = self.predictor(f_on)
            modal = modal + (_neg_cos(f_p, i_tg) + _neg_cos(f_p, f_tg)).mean()
        # BM3's code: Frobenius norms (not squared) of all online embeddings, divided by the item count.
        reg = self.reg_weight * (u_on.norm() + i_on.norm()) / self.num_items
        total = align + self.cl_weight * modal + reg
        return total, {"align": align.detach(), "modal": modal.detach(), "reg": reg.detach()}
