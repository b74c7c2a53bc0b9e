"""MICRO (Zhang et al., IEEE TKDE 2022): latent item–item structures with contrastive modality fusion."""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import spmm

from ..losses import bpr_batch, l2_penalty, mutual_information
from ..nn import ModalityAttention
from ..nn.norm import symmetric_norm_csr
from .base import MultimodalRecommender, knn_graph_from_features, layer_mean
from ..options import PositiveFloat, PositiveInt


def _knn_weights(x: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """Differentiable kNN graph of ``x``: (neighbour index [N, k], symmetric-normalized weight [N, k])."""
    xn = F.normalize(x, dim=1)
    sim = xn @ xn.t()
    val, idx = torch.topk(sim, k, dim=1)
    val = val.clamp(min=0)
    deg = torch.zeros(x.size(0), device=x.device, dtype=x.dtype).index_add_(0, idx.reshape(-1), val.reshape(-1))
    row_deg = val.sum(1)
    w = val * row_deg.clamp(min=1e-12).rsqrt().unsqueeze(1) * deg[idx].clamp(min=1e-12).rsqrt()
    return idx, w


class MICRO(MultimodalRecommender):
    r"""MICRO (the extension of LATTICE the IDSF paper compares with):

    * per modality an item–item graph :math:`S_m = \lambda S_m^{(0)} + (1-\lambda)\tilde{S}_m`, where
      :math:`S_m^{(0)}` is the frozen kNN graph of the raw features and :math:`\tilde{S}_m` the kNN
      graph of learned projections of them (recomputed at every step, differentiable in its weights);
    * modality-specific item representations :math:`\mathbf{h}_i^m` = ``n_item_layers`` propagations
      of the item ID embeddings on :math:`S_m`; attention fusion into :math:`\mathbf{h}_i`;
    * a contrastive loss between each :math:`\mathbf{h}^m` and :math:`\mathbf{h}` (InfoNCE, ``tau``),
      weighted by ``cl_weight``;
    * LightGCN over the user–item graph; item = LightGCN item + normalized :math:`\mathbf{h}_i`.

    Defaults from the official code: d = 64, k = 10, lambda 0.9, 1 item–item layer, 2 user–item
    layers, tau 0.5, cl_weight 0.03, L2 1e-4 (batch embeddings), lr 5e-4.
    """

    def __init__(self, num_users: int, num_items: int, train_edge_index: Tensor, features: Dict[str, Tensor],
                 embedding_dim: PositiveInt = 64, knn_k: PositiveInt = 10, lambda_coeff: float = 0.9, n_item_layers: int = 1,
                 n_ui_layers: int = 2, tau: PositiveFloat = 0.5, cl_weight: float = 0.03, reg_weight: float = 1e-4):
        super().__init__(num_users, num_items, train_edge_index, features)
        self.embedding_dim, self.knn_k, self.lambda_coeff = embedding_dim, knn_k, lambda_coeff
        self.n_item_layers, self.n_ui_layers = n_item_layers, n_ui_layers
        self.tau, self.cl_weight, self.reg_weight = tau, cl_weight, reg_weight
        self.user_emb = nn.Embedding(num_users, embedding_dim)
        self.item_emb = nn.Embedding(num_items, embedding_dim)
        self.trs = nn.ModuleDict({m: nn.Linear(x.size(1), embedding_dim) for m, x in features.items()})
        self.fusion = ModalityAttention(embedding_dim)
        for m, x in features.items():  # the frozen kNN graphs of the raw features
            self.register_buffer(f"adj0_{m}", symmetric_norm_csr(knn_graph_from_features(x, knn_k), num_items, num_items),
                                 persistent=False)
        self.register_buffer("adj", self.normalized_adjacency(), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        for lin in self.trs.values():
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.fusion.reset_parameters()

    def item_views(self) -> Tuple[Tensor, Dict[str, Tensor]]:
        views = {}
        for m in self.modalities:
            idx, w = _knn_weights(self.trs[m](self.feature(m)), self.knn_k)
            h = self.item_emb.weight
            for _ in range(self.n_item_layers):
                learned = (w.unsqueeze(-1) * h.index_select(0, idx.view(-1)).view(*idx.shape, -1)).sum(1)
                h = self.lambda_coeff * spmm(getattr(self, f"adj0_{m}"), h) + (1 - self.lambda_coeff) * learned
            views[m] = h
        fused, _ = self.fusion(list(views.values()))
        return fused, views

    def _forward(self) -> Tuple[Tensor, Tensor, Tensor, Dict[str, Tensor]]:
        fused, views = self.item_views()
        total = layer_mean(self.adj, torch.cat([self.user_emb.weight, self.item_emb.weight]), self.n_ui_layers)
        items = total[self.num_users:] + F.normalize(fused, dim=1)
        return total[: self.num_users], items, fused, views

    def embed(self) -> Tuple[Tensor, Tensor]:
        u, i, _, _ = self._forward()
        return u, i

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        u_all, i_all, fused, views = self._forward()
        bpr, u, p, n = bpr_batch(u_all, i_all, users, pos, neg)
        reg = self.reg_weight * l2_penalty([u, p, n]) / (2 * users.numel())
        rows = torch.unique(pos)
        fused_rows = fused.index_select(0, rows)
        cl = -torch.stack([mutual_information(v.index_select(0, rows), fused_rows, self.tau).mean()
                           for v in views.values()]).mean()
        total = bpr + reg + self.cl_weight * cl
        return total, {"bpr": bpr.detach(), "contrast": cl.detach(), "reg": reg.detach()}
