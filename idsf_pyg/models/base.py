"""The interface every recommender of the package shares.

The trainer and the evaluator drive all models the same way:

* ``model = Cls.from_graph(data, **config)`` builds it from the graph schema;
* ``model.loss(users, pos, neg)`` returns ``(loss, parts)`` for a batch of BPR
  triples, ``parts`` a dict of floats for logging;
* ``model.embed()`` returns ``(user_emb, item_emb)`` and the score of a pair
  is their inner product, so full ranking is one matrix product per batch.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.utils import add_remaining_self_loops, spmm

from ..data.graph import EDGE, FEATURE_PREFIX, ITEM, USER, modality_names
from ..nn.norm import symmetric_norm_csr
from ..options import options_of


class Recommender(nn.Module):
    """Base class: holds the training edges (and their weights) as buffers."""

    #: Whether training under bf16 autocast (``--amp bf16``) is implemented: dense products in bf16,
    #: sparse propagation and losses in float32.
    supports_amp: bool = False
    #: Whether :meth:`loss` takes ``shard=`` (data-parallel training): the trainer then hands it the whole global
    #: batch and the model splits its own loss; otherwise the trainer gives each rank its slice of the batch.
    supports_shard: bool = False

    def __init__(self, num_users: int, num_items: int, train_edge_index: Tensor,
                 train_edge_weight: Optional[Tensor] = None):
        super().__init__()
        self.num_users = num_users
        self.num_items = num_items
        if train_edge_weight is not None and train_edge_weight.shape != (train_edge_index.size(1),):
            raise ValueError(f"train_edge_weight must have one weight per training edge "
                             f"({train_edge_index.size(1)}), got shape {tuple(train_edge_weight.shape)}")
        # Registered as buffers so .to(device) moves them; built once.
        self.register_buffer("train_edge_index", train_edge_index.clone(), persistent=False)
        self.register_buffer("train_edge_weight", None if train_edge_weight is None else train_edge_weight.float(),
                             persistent=False)

    @classmethod
    def from_graph(cls, data: HeteroData, **config) -> "Recommender":
        """Builds the model from the graph schema (ID-only models need only its training edges)."""
        return cls(*cls.graph_sizes(data), **cls.graph_edge_weight(data, config), **config)

    @staticmethod
    def graph_edge_weight(data: HeteroData, config: Dict) -> Dict[str, Tensor]:
        """``{"train_edge_weight": w}`` when ``config`` asks for ``use_edge_weight`` (else nothing)."""
        if not config.get("use_edge_weight"):
            return {}
        w = getattr(data[EDGE], "edge_weight", None)
        if w is None:
            raise ValueError("use_edge_weight=true, but the graph has no edge weights: load it with an edge-weight "
                             "spec (--edge-weight rating, or recency:<half-life days>) from a .inter file with "
                             "ratings / timestamps")
        return {"train_edge_weight": w}

    #: Constructor arguments that come from the graph, not from a config.
    graph_arguments = ("num_users", "num_items", "train_edge_index", "train_edge_weight", "features")

    @classmethod
    def option_schema(cls) -> Dict[str, Any]:
        """The configurable arguments (:class:`~idsf_pyg.options.Option` by name), read from the constructor's
        signature: type annotations give types, choices and ranges."""
        return options_of(cls.__init__, skip=cls.graph_arguments)

    @classmethod
    def canonical_options(cls, options: Mapping[str, Any], source: str = "options") -> Dict[str, Any]:
        """``options`` in the form the model takes (a composed model nests them by part; here: as given)."""
        return dict(options)

    @classmethod
    def option_path(cls, name: str) -> Tuple[str, ...]:
        """Where option ``name`` lives in the canonical options."""
        return (name,)

    @classmethod
    def key_options(cls, options: Mapping[str, Any]) -> Dict[str, Any]:
        """The run key's form of a full canonical option set (here: as given)."""
        return dict(options)

    @classmethod
    def upgrade_state_dict(cls, state: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """A state dict written by an earlier version of this model, with today's names (here: unchanged)."""
        return state

    def homogeneous_edge_index(self) -> Tensor:
        """Training edges of the (users + items) graph in both directions; items offset by ``num_users``."""
        users, items = self.train_edge_index
        items = items + self.num_users
        return torch.stack([torch.cat([users, items]), torch.cat([items, users])])

    def normalized_adjacency(self, add_self_loops: bool = False, weighted: bool = False) -> Tensor:
        r"""CSR :math:`\hat{D}^{-1/2}\hat{A}\hat{D}^{-1/2}` of the (users + items) graph, as PyG's ``gcn_norm``
        gives it (with or without self loops of weight 1; with ``weighted``, the training edges' weights in both
        directions and weighted degrees), by the package's one :func:`~idsf_pyg.nn.norm.symmetric_norm`."""
        n = self.num_users + self.num_items
        w = None
        if weighted:
            w = torch.cat([self.train_edge_weight, self.train_edge_weight])
        ei = self.homogeneous_edge_index()
        if add_self_loops:
            w = torch.ones(ei.size(1), device=ei.device) if w is None else w
            ei, w = add_remaining_self_loops(ei, w, fill_value=1.0, num_nodes=n)
        return symmetric_norm_csr(ei, n, n, w)

    @staticmethod
    def graph_features(data: HeteroData, modalities: Optional[Sequence[str]] = None) -> Dict[str, Tensor]:
        """Item features by modality (all of the graph's, or the named subset), in the graph's order."""
        names = modality_names(data)
        chosen = list(modalities) if modalities else names
        unknown = [m for m in chosen if m not in names]
        if unknown:
            raise ValueError(f"modalities {unknown} are not in the graph (it has {names})")
        return {m: data[ITEM][FEATURE_PREFIX + m] for m in chosen}

    @staticmethod
    def graph_sizes(data: HeteroData) -> Tuple[int, int, Tensor]:
        return int(data[USER].num_nodes), int(data[ITEM].num_nodes), data[EDGE].edge_index

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        """The training objective of one BPR batch and its parts for the log, as detached 0-d tensors (the
        trainer sums them on the device and reads them once per epoch: no host-device synchronization
        per step)."""
        raise NotImplementedError

    def embed(self) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def score(self, users: Tensor) -> Tensor:
        """Scores ``[len(users), num_items]`` (convenience; the evaluator batches ``embed()``)."""
        u, i = self.embed()
        return u[users] @ i.t()

    @torch.no_grad()
    def recommend(self, users: Tensor, k: int, exclude_seen: bool = True, exclude: Optional[Tensor] = None,
                  batch_size: int = 1024) -> Tuple[Tensor, Tensor]:
        r"""The top-``k`` items of each user, as PyG's ``LightGCN.recommend`` plus seen-item exclusion.

        Args:
            users: ``[N]`` user indices.
            k: Items per user (``1 <= k <= num_items``).
            exclude_seen: Leave out each user's training items (default).
            exclude: More ``[2, E]`` (user, item) pairs to leave out, e.g. the validation edges.
            batch_size: Users scored at once (``[batch_size, num_items]`` on the model's device).

        Returns:
            ``(items, scores)``, both ``[N, k]``, best first; ties go to the lower item id. A user
            with fewer than ``k`` items left gets ``-1`` (score ``-inf``) in the remaining places.
        """
        if not 1 <= int(k) <= self.num_items:
            raise ValueError(f"k must be between 1 and the number of items ({self.num_items}), got {k}")
        users = torch.as_tensor(users, dtype=torch.long).view(-1)
        if users.numel() and (int(users.min()) < 0 or int(users.max()) >= self.num_users):
            bad = users[(users < 0) | (users >= self.num_users)][0]
            raise ValueError(f"user {int(bad)} is not a user of this model (0..{self.num_users - 1})")
        from ..eval.evaluator import batch_rows, deterministic_topk, user_item_lists
        was_training = self.training
        self.eval()
        u_emb, i_emb = self.embed()
        device = i_emb.device
        masks = [self.train_edge_index.cpu()] if exclude_seen else []
        if exclude is not None:
            masks.append(exclude.cpu())
        ptr, lists = user_item_lists(torch.cat(masks, dim=1), self.num_users) if masks else (None, None)
        items_out, scores_out = [], []
        for start in range(0, users.numel(), batch_size):
            chunk = users[start:start + batch_size]
            scores = u_emb[chunk.to(device)] @ i_emb.t()
            if ptr is not None:
                rows, cols = batch_rows(ptr, lists, chunk)
                scores[rows.to(device), cols.to(device)] = float("-inf")
            vals, top = deterministic_topk(scores, int(k))
            top = top.masked_fill(torch.isneginf(vals), -1)
            items_out.append(top.cpu())
            scores_out.append(vals.cpu())
        self.train(was_training)
        if not items_out:
            return torch.empty(0, int(k), dtype=torch.long), torch.empty(0, int(k))
        return torch.cat(items_out), torch.cat(scores_out)


class MultimodalRecommender(Recommender):
    """A recommender that reads item features: keeps them as buffers ``feat_<modality>``."""

    def __init__(self, num_users: int, num_items: int, train_edge_index: Tensor, features: Dict[str, Tensor]):
        super().__init__(num_users, num_items, train_edge_index)
        if not features:
            raise ValueError(f"{type(self).__name__} needs at least one item modality (data['item'].x_<name>); "
                             "the graph has none")
        self.modalities = list(features)
        for m, x in features.items():
            self.register_buffer(f"feat_{m}", x.float(), persistent=False)

    def feature(self, modality: str) -> Tensor:
        return getattr(self, f"feat_{modality}")

    @classmethod
    def from_graph(cls, data: HeteroData, modalities: Optional[Sequence[str]] = None, **config):
        """Builds the model from the graph; ``modalities`` selects a subset (default: all)."""
        return cls(*cls.graph_sizes(data), features=cls.graph_features(data, modalities),
                   **cls.graph_edge_weight(data, config), **config)


def layer_mean(adj: Tensor, x: Tensor, num_layers: int) -> Tensor:
    r"""LightGCN-style :math:`\frac{1}{K+1}\sum_{k=0}^{K} A^k x` with ``K = num_layers``."""
    total = x
    for _ in range(num_layers):
        x = spmm(adj, x)
        total = total + x
    return total / (num_layers + 1)


def knn_graph_from_features(x: Tensor, k: int, chunk: int = 2048) -> Tensor:
    """Edges ``[2, N*k]`` from each item to its ``k`` most cosine-similar items (itself included,
    as in LATTICE/FREEDOM), computed in row chunks."""
    x = torch.nn.functional.normalize(x.float(), dim=1)
    rows, cols = [], []
    for start in range(0, x.size(0), chunk):
        sim = x[start:start + chunk] @ x.t()
        top = torch.topk(sim, min(k, x.size(0)), dim=1).indices
        rows.append(torch.arange(start, start + top.size(0), device=x.device).repeat_interleave(top.size(1)))
        cols.append(top.reshape(-1))
    return torch.stack([torch.cat(rows), torch.cat(cols)])
