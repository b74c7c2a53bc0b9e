"""Full-ranking evaluation over all items, batched over users on the model's device."""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import TrainingError
from .metrics import METRICS

DEFAULT_KS = (10, 20)
DEFAULT_METRICS = ("recall", "precision", "ndcg", "hit", "map", "ndcg_legacy")


def deterministic_topk(scores: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """``torch.topk`` along rows with ties broken by the lower item id, always.

    ``torch.topk`` leaves the order of equal scores (and which of them make the cut at rank ``k``)
    to the kernel. Rows where that matters — equal values inside the top ``k`` or at its boundary,
    e.g. ``-inf`` masked items when fewer than ``k`` are left — are redone with a stable sort.
    Returns ``(values, indices)``, both ``[rows, k]``.
    """
    vals, idx = torch.topk(scores, k, dim=1)
    if k == 0:
        return vals, idx
    ties = (scores >= vals[:, -1:]).sum(1) > k
    if k > 1:
        ties |= (vals[:, 1:] == vals[:, :-1]).any(1)
    if ties.any():
        rows = ties.nonzero().view(-1)
        order = torch.sort(scores[rows], dim=1, descending=True, stable=True).indices[:, :k]
        idx[rows] = order
        vals[rows] = scores[rows].gather(1, order)
    return vals, idx


def user_item_lists(edge_index: Tensor, num_users: int) -> Tuple[Tensor, Tensor]:
    """``(ptr, items)``: every user's items, CSR-style (users in order, items sorted)."""
    users, items = edge_index
    order = torch.argsort(users * (int(items.max()) + 1 if items.numel() else 1) + items)
    users, items = users[order], items[order]
    ptr = torch.zeros(num_users + 1, dtype=torch.long, device=users.device)
    ptr[1:] = torch.cumsum(torch.bincount(users, minlength=num_users), 0)
    return ptr, items


def batch_rows(ptr: Tensor, items: Tensor, users: Tensor) -> Tuple[Tensor, Tensor]:
    """Row (0..B-1) and item index of every entry of ``users``' lists (a user may appear twice)."""
    starts, ends = ptr[users], ptr[users + 1]
    lens = ends - starts
    rows = torch.repeat_interleave(torch.arange(users.numel(), device=ptr.device), lens)
    offsets = (torch.arange(int(lens.sum()), device=ptr.device)
               - torch.repeat_interleave(torch.cumsum(lens, 0) - lens, lens))
    return rows, items[starts.repeat_interleave(lens) + offsets]


class FullRankingEvaluator:
    r"""Ranks all items for every user with ground truth in a held-out split.

    Items of ``exclude`` (the training edges, plus the validation edges when
    testing with ``mask_val_in_test``) are removed from the ranking; metrics
    are averaged over users with at least one ground-truth item.

    Args:
        num_users, num_items: Graph size.
        ground_truth: ``[2, E]`` held-out edges (user, item).
        exclude: Edge sets whose items are masked for their user.
        ks: Cut-offs (default 10, 20).
        metrics: Names from :data:`~idsf_pyg.eval.metrics.METRICS`.
        batch_size: Users per score matrix ``[batch, num_items]``.
    """

    def __init__(self, num_users: int, num_items: int, ground_truth: Tensor, exclude: Sequence[Tensor],
                 ks: Iterable[int] = DEFAULT_KS, metrics: Iterable[str] = DEFAULT_METRICS,
                 batch_size: int = 1024):
        self.num_users, self.num_items = num_users, num_items
        self.ks = sorted(set(int(k) for k in ks))
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {sorted(METRICS)}")
        self.metrics = list(metrics)
        self.batch_size = batch_size
        if ground_truth.numel() == 0:
            raise ValueError("the evaluation split has no edges")
        self.gt_ptr, self.gt_items = user_item_lists(ground_truth.cpu(), num_users)
        excl = torch.cat([e.cpu() for e in exclude], dim=1) if exclude else torch.empty(2, 0, dtype=torch.long)
        self.ex_ptr, self.ex_items = user_item_lists(excl, num_users)
        counts = self.gt_ptr[1:] - self.gt_ptr[:-1]
        self.users = torch.nonzero(counts > 0).view(-1)

    @torch.no_grad()
    def evaluate(self, user_emb: Tensor, item_emb: Tensor, return_topk: bool = False,
                 shard=None) -> Dict[str, object]:
        """Metrics ``{"recall@20": ..., ...}`` (and ``topk`` ``[n_users, K_max]`` on request).

        Masked items are never ranked: when a user has fewer than ``K`` unmasked items, the missing
        ranks are misses and ``topk`` holds ``-1`` there. Scores, top-k and metric sums stay on the
        embeddings' device, chunk by chunk, and are read once at the end. With ``shard`` (a
        :class:`~idsf_pyg.parallel.Shard`), the user chunks are dealt round-robin to the ranks and
        their sums all-reduced; every rank returns the metrics of all users, added in chunk order as one
        process adds them.
        """
        device = item_emb.device
        kmax = max(self.ks)
        keys = [f"{m}@{k}" for m in self.metrics for k in self.ks]
        starts = list(range(0, self.users.numel(), self.batch_size))
        # one row per chunk: the metric sums and a NaN flag; rows of other ranks' chunks stay zero
        sums = torch.zeros(len(starts), len(keys) + 1, dtype=torch.float64, device=device)
        topk_all: List[Tuple[int, Tensor]] = []
        for c, start in enumerate(starts):
            if shard is not None and c % shard.world != shard.rank:
                continue
            users = self.users[start:start + self.batch_size]
            scores = user_emb[users.to(device)] @ item_emb.t()
            sums[c, -1] = torch.isnan(scores).any()
            r, col = batch_rows(self.ex_ptr, self.ex_items, users)
            scores[r.to(device), col.to(device)] = float("-inf")
            vals, top = deterministic_topk(scores, min(kmax, self.num_items))  # NaN: an error below
            # With fewer than K unmasked items, topk fills up with masked (-inf) ones: those are never
            # recommended, so they count as misses and leave the list as -1 (as Recommender.recommend).
            ranked = ~torch.isneginf(vals)
            gt = torch.zeros(users.numel(), self.num_items, dtype=torch.bool, device=device)
            r, col = batch_rows(self.gt_ptr, self.gt_items, users)
            gt[r.to(device), col.to(device)] = True
            hits = gt.gather(1, top) & ranked
            top = top.masked_fill(~ranked, -1)
            if hits.size(1) < kmax:  # fewer items than the cut-off: the missing ranks are misses
                hits = torch.cat([hits, hits.new_zeros(hits.size(0), kmax - hits.size(1))], dim=1)
            num_gt = (self.gt_ptr[users + 1] - self.gt_ptr[users]).to(device)
            sums[c, :-1] = torch.stack([METRICS[m](hits, num_gt, k).sum() for m in self.metrics for k in self.ks])
            if return_topk:
                topk_all.append((c, top.cpu()))
        if shard is not None:
            shard.all_reduce(sums)
        sums = sums.cpu()
        if sums[:, -1].any():
            raise TrainingError("the model's scores contain NaN (its embeddings are not finite): "
                                "lower the learning rate or check the features")
        totals = {key: 0.0 for key in keys}
        for row in sums.tolist():  # in chunk order, as float64 (whatever the world size)
            for key, value in zip(keys, row):
                totals[key] += value
        n = self.users.numel()
        out: Dict[str, object] = {key: val / n for key, val in totals.items()}
        out["num_users"] = n
        if return_topk:
            if shard is not None:
                import torch.distributed as dist
                gathered: List[Optional[List[Tuple[int, Tensor]]]] = [None] * shard.world
                dist.all_gather_object(gathered, topk_all)
                topk_all = sorted((item for part in gathered for item in part), key=lambda t: t[0])
            out["topk"] = torch.cat([t for _, t in topk_all])
            out["topk_users"] = self.users.clone()
        return out


def evaluator_for(data, split: str, mask_val_in_test: bool = False, **kwargs) -> FullRankingEvaluator:
    """The evaluator of the ``"val"`` or ``"test"`` split of a graph (training items masked)."""
    from ..data.graph import EDGE, ITEM, USER
    store = data[EDGE]
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    gt = store.val_edge_index if split == "val" else store.test_edge_index
    exclude = [store.edge_index]
    if split == "test" and mask_val_in_test:
        exclude.append(store.val_edge_index)
    return FullRankingEvaluator(int(data[USER].num_nodes), int(data[ITEM].num_nodes), gt, exclude, **kwargs)


def topk_to_rows(result: Dict[str, object]) -> List[Tuple[int, str]]:
    """``(user_id, "i1 i2 ...")`` rows of an ``evaluate(..., return_topk=True)`` result."""
    users = result["topk_users"].tolist()
    tops = result["topk"].numpy()
    return [(u, " ".join(map(str, np.asarray(t)))) for u, t in zip(users, tops)]
