"""FREEDOM (Zhou & Shen, ACM MM 2023): freezing and denoising graph structures."""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.utils import spmm

from ..losses import bpr_batch, bpr_loss
from ..nn.norm import symmetric_norm_csr
from .base import MultimodalRecommender, knn_graph_from_features, layer_mean
from ..options import PositiveInt, Probability


class FREEDOM(MultimodalRecommender):
    r"""FREEDOM:

    * a **frozen** item–item graph: per modality the kNN graph (``knn_k``) of the raw features,
      symmetric-normalized, mixed with ``modality_weights``; built once;
    * a **denoised** user–item graph: at every epoch (here: every step) a fraction ``dropout`` of the
      training edges is pruned, each edge kept with probability proportional to
      :math:`1/\sqrt{d_u d_i}` (degree-sensitive pruning); evaluation uses the full graph;
    * item ID embeddings propagated ``n_mm_layers`` times on the item–item graph, added to the
      LightGCN (``n_ui_layers``) output of the ID embeddings;
    * loss: BPR on the final embeddings plus ``reg_weight`` times BPR between users and each
      modality's projected features.

    Defaults from the paper / MMRec config: d = 64, knn_k = 10, n_mm_layers = 1, n_ui_layers = 2,
    dropout 0.8, reg_weight 1e-4 (grid 0-1e-3), lr 1e-3; modality weights equal unless given
    (the paper's image 0.1 / text 0.9 for modalities named ``image`` and ``text``).
    """

    def __init__(self, num_users: int, num_items: int, train_edge_index: Tensor, features: Dict[str, Tensor],
                 embedding_dim: PositiveInt = 64, knn_k: PositiveInt = 10, n_mm_layers: int = 1, n_ui_layers: int = 2,
                 dropout: Probability = 0.8, reg_weight: float = 1e-4,
                 modality_weights: Optional[Mapping[str, float]] = None):
        super().__init__(num_users, num_items, train_edge_index, features)
        self.embedding_dim, self.n_mm_layers, self.n_ui_layers = embedding_dim, n_mm_layers, n_ui_layers
        self.dropout, self.reg_weight = dropout, reg_weight
        if modality_weights is None:
            if set(self.modalities) == {"image", "text"}:
                modality_weights = {"image": 0.1, "text": 0.9}
            else:
                modality_weights = {m: 1.0 / len(self.modalities) for m in self.modalities}
        self.user_emb = nn.Embedding(num_users, embedding_dim)
        self.item_emb = nn.Embedding(num_items, embedding_dim)
        self.proj = nn.ModuleDict({m: nn.Linear(x.size(1), embedding_dim) for m, x in features.items()})
        # The frozen item-item graph: built once from the raw features.
        # Weighted sum of the modalities' kNN graphs, kept sparse (|I| x |I| dense would not fit Clothing).
        parts = []
        for m, x in features.items():
            a = symmetric_norm_csr(knn_graph_from_features(x, knn_k), num_items, num_items).to_sparse_coo().coalesce()
            parts.append((a.indices(), modality_weights[m] * a.values()))
        adj = torch.sparse_coo_tensor(torch.cat([i for i, _ in parts], 1), torch.cat([v for _, v in parts]),
                                      (num_items, num_items),
                                      check_invariants=False).coalesce()  # coalesce sums shared edges
        self.register_buffer("item_adj", adj.to_sparse_csr(), persistent=False)
        self.register_buffer("ui_adj", self._ui_adj(self.train_edge_index), persistent=False)
        users, items = self.train_edge_index
        deg_u = torch.bincount(users, minlength=num_users).float()
        deg_i = torch.bincount(items, minlength=num_items).float()
        self.register_buffer("keep_prob", (deg_u[users] * deg_i[items]).rsqrt(), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        for lin in self.proj.values():
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _ui_adj(self, edge_index: Tensor) -> Tensor:
        users, items = edge_index
        items = items + self.num_users
        both = torch.stack([torch.cat([users, items]), torch.cat([items, users])])
        n = self.num_users + self.num_items
        return symmetric_norm_csr(both, n, n)

    def _pruned_adj(self) -> Tensor:
        keep = int(round(self.train_edge_index.size(1) * (1.0 - self.dropout)))
        idx = torch.multinomial(self.keep_prob, keep, replacement=False)
        return self._ui_adj(self.train_edge_index[:, idx])

    def embed(self) -> Tuple[Tensor, Tensor]:
        adj = self._pruned_adj() if self.training and self.dropout > 0 else self.ui_adj
        h = self.item_emb.weight
        for _ in range(self.n_mm_layers):
            h = spmm(self.item_adj, h)
        total = layer_mean(adj, torch.cat([self.user_emb.weight, self.item_emb.weight]), self.n_ui_layers)
        return total[: self.num_users], total[self.num_users:] + h

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        u_all, i_all = self.embed()
        bpr, u, _, _ = bpr_batch(u_all, i_all, users, pos, neg)
        modal = u.new_zeros(())
        for m in self.modalities:
            f = self.proj[m](self.feature(m))
            modal = modal + bpr_loss((u * f.index_select(0, pos)).sum(-1), (u * f.index_select(0, neg)).sum(-1))
        total = bpr + self.reg_weight * modal
        return total, {"bpr": bpr.detach(), "modal_bpr": modal.detach()}
