"""MMGCN (Wei et al., ACM MM 2019): multi-modal graph convolution network."""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import spmm

from ..losses import bpr_batch, l2_penalty
from .base import MultimodalRecommender
from ..options import PositiveInt


class _ModalGCN(nn.Module):
    """One modality's graph: user preferences and projected item features, ``num_layers`` layers of
    aggregation (mean over neighbours) + combination with the node's own transformed representation
    and the shared ID embedding, eq. (2)-(6) of the MMGCN paper ("add" combination)."""

    def __init__(self, num_users: int, feat_dim: int, dim: int, num_layers: int):
        super().__init__()
        self.pref = nn.Parameter(torch.empty(num_users, dim))
        self.mlp = nn.Linear(feat_dim, dim)
        self.conv = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(num_layers))
        self.lin = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_layers))
        self.comb = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_layers))
        for w in [self.pref, self.mlp.weight, *(m.weight for m in [*self.conv, *self.lin, *self.comb])]:
            nn.init.xavier_uniform_(w)

    def forward(self, features: Tensor, adj: Tensor, id_emb: Tensor) -> Tensor:
        x = F.normalize(torch.cat([self.pref, F.leaky_relu(self.mlp(features))]), dim=1)
        for conv, lin, comb in zip(self.conv, self.lin, self.comb):
            h = F.leaky_relu(spmm(adj, conv(x)))             # aggregation
            x_hat = F.leaky_relu(lin(x)) + id_emb             # the node's own representation + ID
            x = F.leaky_relu(comb(h + x_hat))                 # combination
        return x


class MMGCN(MultimodalRecommender):
    r"""MMGCN: a graph per modality over users and items; each user has a preference vector per
    modality, each item its projected features; the final representation sums the modalities.

    Defaults from the paper / MMRec: d = 64, 2 layers, L2 1e-4 on the batch's ID and preference
    embeddings, lr 1e-3 in the config.
    """

    def __init__(self, num_users: int, num_items: int, train_edge_index: Tensor, features: Dict[str, Tensor],
                 embedding_dim: PositiveInt = 64, num_layers: int = 2, reg_weight: float = 1e-4):
        super().__init__(num_users, num_items, train_edge_index, features)
        self.embedding_dim, self.reg_weight = embedding_dim, reg_weight
        self.id_emb = nn.Embedding(num_users + num_items, embedding_dim)
        nn.init.xavier_uniform_(self.id_emb.weight)
        self.gcn = nn.ModuleDict({m: _ModalGCN(num_users, x.size(1), embedding_dim, num_layers)
                                  for m, x in features.items()})
        # Mean aggregation over neighbours (MMRec's aggr_mode='mean'): D^-1 A, built once.
        n = num_users + num_items
        ei = self.homogeneous_edge_index()
        deg = torch.bincount(ei[0], minlength=n).clamp(min=1).float()
        adj = torch.sparse_coo_tensor(ei, 1.0 / deg[ei[0]], (n, n), check_invariants=False).coalesce()
        adj = adj.to_sparse_csr()
        self.register_buffer("adj", adj, persistent=False)

    def embed(self) -> Tuple[Tensor, Tensor]:
        rep = sum(self.gcn[m](self.feature(m), self.adj, self.id_emb.weight) for m in self.modalities)
        return rep[: self.num_users], rep[self.num_users:]

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        u_all, i_all = self.embed()
        bpr, u, _, _ = bpr_batch(u_all, i_all, users, pos, neg)
        ids = self.id_emb.weight
        prefs = [self.gcn[m].pref.index_select(0, users) for m in self.modalities]
        reg = self.reg_weight * l2_penalty([ids.index_select(0, users), ids.index_select(0, self.num_users + pos),
                                            ids.index_select(0, self.num_users + neg),
                                            *prefs]) / users.numel()
        return bpr + reg, {"bpr": bpr.detach(), "reg": reg.detach()}
