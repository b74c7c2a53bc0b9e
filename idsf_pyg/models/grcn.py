"""GRCN (Wei et al., ACM MM 2020): graph-refined convolutional network."""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import scatter, softmax

from ..losses import bpr_batch, l2_penalty
from ..nn.norm import symmetric_norm_csr
from .base import MultimodalRecommender
from ..options import PositiveInt


class GRCN(MultimodalRecommender):
    r"""GRCN refines the user–item graph before convolving ID embeddings on it:

    * per modality, item content :math:`\mathbf{c}_i^m` (normalized projection of the features) and a
      user preference :math:`\mathbf{p}_u^m` refined by ``routing`` rounds of neighbourhood routing,
      :math:`\mathbf{p}_u \leftarrow \mathrm{norm}(\mathbf{p}_u + \sum_{i} \mathrm{softmax}_i(\mathbf{p}_u^\top\mathbf{c}_i)\,\mathbf{c}_i)`;
    * each training edge gets the confidence :math:`\max_m \mathbf{p}_u^{m\top}\mathbf{c}_i^m`, and
      edges with negative confidence are pruned (ReLU);
    * ``num_layers`` graph convolutions of the ID embeddings over the refined, symmetric-normalized
      graph; final user/item = [ID representation ‖ :math:`\mathbf{p}_u^m` / :math:`\mathbf{c}_i^m` per modality].

    Defaults from the paper / MMRec: d = 64, 3 routing rounds, 2 layers, max-confidence, L2 1e-4, lr 1e-3.
    """

    def __init__(self, num_users: int, num_items: int, train_edge_index: Tensor, features: Dict[str, Tensor],
                 embedding_dim: PositiveInt = 64, routing: PositiveInt = 3, num_layers: int = 2, reg_weight: float = 1e-4):
        super().__init__(num_users, num_items, train_edge_index, features)
        self.embedding_dim, self.routing, self.num_layers, self.reg_weight = embedding_dim, routing, num_layers, reg_weight
        self.id_emb = nn.Embedding(num_users + num_items, embedding_dim)
        self.pref = nn.ParameterDict({m: nn.Parameter(torch.empty(num_users, embedding_dim)) for m in features})
        self.proj = nn.ModuleDict({m: nn.Linear(x.size(1), embedding_dim) for m, x in features.items()})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.id_emb.weight)
        for m in self.modalities:
            nn.init.xavier_uniform_(self.pref[m])
            nn.init.xavier_uniform_(self.proj[m].weight)
            nn.init.zeros_(self.proj[m].bias)

    def _modal(self, m: str) -> Tuple[Tensor, Tensor, Tensor]:
        users, items = self.train_edge_index
        c = F.normalize(F.leaky_relu(self.proj[m](self.feature(m))), dim=1)
        p = F.normalize(self.pref[m], dim=1)
        for _ in range(self.routing):
            a = softmax((p.index_select(0, users) * c.index_select(0, items)).sum(-1), users, num_nodes=self.num_users)
            msg = a.unsqueeze(-1) * c.index_select(0, items)
            p = F.normalize(p + scatter(msg, users, 0, dim_size=self.num_users), dim=1)
        return p, c, (p.index_select(0, users) * c.index_select(0, items)).sum(-1)

    def embed(self) -> Tuple[Tensor, Tensor]:
        prefs, contents, conf = [], [], []
        for m in self.modalities:
            p, c, s = self._modal(m)
            prefs.append(p)
            contents.append(c)
            conf.append(s)
        weight = F.relu(torch.stack(conf).max(0).values)   # pruning: negative confidence -> no edge
        users, items = self.train_edge_index
        items = items + self.num_users
        ei = torch.stack([torch.cat([users, items]), torch.cat([items, users])])
        n = self.num_users + self.num_items
        adj = symmetric_norm_csr(ei, n, n, torch.cat([weight, weight]) + 1e-12)
        x = self.id_emb.weight
        for _ in range(self.num_layers):
            x = F.leaky_relu(torch.sparse.mm(adj, x)) + x
        u = torch.cat([x[: self.num_users], *prefs], dim=1)
        i = torch.cat([x[self.num_users:], *contents], dim=1)
        return u, i

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        u_all, i_all = self.embed()
        bpr, u, _, _ = bpr_batch(u_all, i_all, users, pos, neg)
        ids = self.id_emb.weight
        batch = [ids.index_select(0, users), ids.index_select(0, self.num_users + pos),
                 ids.index_select(0, self.num_users + neg), *(self.pref[m].index_select(0, users) for m in self.modalities)]
        reg = self.reg_weight * l2_penalty(batch) / users.numel()
        return bpr + reg, {"bpr": bpr.detach(), "reg": reg.detach()}
