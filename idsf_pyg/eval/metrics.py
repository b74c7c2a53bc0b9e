r"""Top-K ranking metrics from a hit matrix, vectorized over users.

All functions take ``hits`` ``[B, K_max]`` (bool: the item at rank ``r`` is a
ground-truth item) and ``num_gt`` ``[B]`` (the user's number of ground-truth
items) and return per-user values ``[B]`` for cut-off ``k``:

* ``recall``     :math:`|\mathrm{hits@k}| / |GT|`
* ``precision``  :math:`|\mathrm{hits@k}| / k`
* ``ndcg``       standard NDCG: :math:`\mathrm{DCG@k}/\mathrm{IDCG@k}` with the
  ideal list of :math:`\min(|GT|, k)` hits
* ``hit``        1 if any hit in the top k
* ``map``        :math:`\frac{1}{\min(|GT|,k)}\sum_{r \le k} P@r \cdot \mathrm{rel}_r`
* ``ndcg_legacy`` the NDCG of the NGCF / LATTICE / MICRO / IDSF code, whose
  ideal DCG is that of the *retrieved* hits sorted first (so it only measures
  the order of the hits and is >= the standard NDCG). Reported for comparison
  with published tables, never under the name ``ndcg``.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch
from torch import Tensor


def _discounts(k: int, device) -> Tensor:
    return 1.0 / torch.log2(torch.arange(2, k + 2, device=device, dtype=torch.float64))


def recall(hits: Tensor, num_gt: Tensor, k: int) -> Tensor:
    return hits[:, :k].sum(1).double() / num_gt.double()


def precision(hits: Tensor, num_gt: Tensor, k: int) -> Tensor:
    return hits[:, :k].sum(1).double() / k


def hit_rate(hits: Tensor, num_gt: Tensor, k: int) -> Tensor:
    return hits[:, :k].any(1).double()


def ndcg(hits: Tensor, num_gt: Tensor, k: int) -> Tensor:
    disc = _discounts(k, hits.device)
    dcg = (hits[:, :k].double() * disc).sum(1)
    ideal_len = num_gt.clamp(max=k)
    idcg = torch.cumsum(disc, 0)[ideal_len - 1]
    return dcg / idcg


def ndcg_legacy(hits: Tensor, num_gt: Tensor, k: int) -> Tensor:
    disc = _discounts(k, hits.device)
    h = hits[:, :k].double()
    dcg = (h * disc).sum(1)
    n_hits = h.sum(1).long()
    idcg = torch.cat([disc.new_zeros(1), torch.cumsum(disc, 0)])[n_hits]
    return torch.where(n_hits > 0, dcg / idcg.clamp(min=1e-12), torch.zeros_like(dcg))


def average_precision(hits: Tensor, num_gt: Tensor, k: int) -> Tensor:
    h = hits[:, :k].double()
    prec_at_r = torch.cumsum(h, 1) / torch.arange(1, k + 1, device=h.device, dtype=torch.float64)
    return (prec_at_r * h).sum(1) / num_gt.clamp(max=k).double()


METRICS: Dict[str, Callable[[Tensor, Tensor, int], Tensor]] = {
    "recall": recall,
    "precision": precision,
    "ndcg": ndcg,
    "hit": hit_rate,
    "map": average_precision,
    "ndcg_legacy": ndcg_legacy,
}
