r"""Losses: BPR (eq. 12), the IDSF contrastive loss (eq. 3–6) and L2 regularization (eq. 13)."""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def bpr_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    r"""Bayesian personalized ranking, eq. (12):
    :math:`-\ln\sigma(\hat{y}_{ui} - \hat{y}_{uj})`, averaged over the batch
    (the paper writes a sum; the mean keeps :math:`\beta` and :math:`\lambda`
    independent of the batch size, as in every official implementation)."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def mutual_information(a: Tensor, b: Tensor, tau: float) -> Tensor:
    r"""Per-row :math:`I(\mathbf{a}_i, \mathbf{b}_i)` of eq. (4)–(5):

    .. math::
        I(\mathbf{a}_i, \mathbf{b}_i) = \log \frac{e^{f(\mathbf{a}_i,\mathbf{b}_i)/\tau}}
        {e^{f(\mathbf{a}_i,\mathbf{b}_i)/\tau} + \sum_{j \neq i}
        \left(e^{f(\mathbf{a}_i,\mathbf{b}_j)/\tau} + e^{f(\mathbf{a}_i,\mathbf{a}_j)/\tau}\right)}

    with :math:`f` the cosine similarity. (Eq. (5) prints ``exp(f)/τ``; the
    temperature belongs inside the exponent, as in every InfoNCE loss.)
    Computed as a log-softmax over ``[a_i·B ; a_i·A without a_i·a_i]``.

    Shapes: ``a``, ``b``: ``[N, d]`` -> ``[N]``.
    """
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    inter = a @ b.t() / tau                      # f(a_i, b_j)
    intra = a @ a.t() / tau                      # f(a_i, a_j), the j == i term excluded
    intra = intra.masked_fill(torch.eye(a.size(0), dtype=torch.bool, device=a.device), float("-inf"))
    log_denom = torch.logsumexp(torch.cat([inter, intra], dim=1), dim=1)
    return inter.diagonal() - log_denom


def _masked_self_similarity(x_hat: Tensor, x_scaled: Tensor) -> Tensor:
    """``f(x_i, x_j)/τ`` with the ``j == i`` terms set to ``-inf`` (``x_scaled = x_hat / τ``)."""
    s = x_scaled @ x_hat.t()
    s.diagonal().fill_(float("-inf"))  # in place is safe: mm's backward needs its inputs only
    return s


def fusion_contrastive_loss(parts: Sequence[Tensor], fused: Tensor, tau: float) -> Tensor:
    r""":math:`\tilde{\mathcal{L}}_C` of eq. (3) for representations ``parts``
    (e.g. :math:`\mathbf{e}^t, \mathbf{e}^{tid}`) and their fusion
    (:math:`\mathbf{e}^{t'}`), both directions:

    .. math::
        -\frac{1}{2|P|\,|I|}\sum_{i \in I}\sum_{m \in P}
        I(\mathbf{e}_i^m, \mathbf{e}_i') + I(\mathbf{e}_i', \mathbf{e}_i^m)

    which is eq. (3)'s :math:`-\frac{1}{4|I|}` for two parts. Equal to summing
    :func:`mutual_information` both ways, but each similarity matrix is built
    once (``f(e^m, e')`` serves both directions).
    """
    f_hat = F.normalize(fused, dim=-1)
    lse_ff = torch.logsumexp(_masked_self_similarity(f_hat, f_hat / tau), dim=1)
    total = fused.new_zeros(())
    for p in parts:
        p_hat = F.normalize(p, dim=-1)
        p_scaled = p_hat / tau  # 1/τ applied to [N, d], not to the [N, N] similarities
        s_pf = p_scaled @ f_hat.t()
        pos = s_pf.diagonal()
        lse_pp = torch.logsumexp(_masked_self_similarity(p_hat, p_scaled), dim=1)
        mi_pf = pos - torch.logaddexp(torch.logsumexp(s_pf, dim=1), lse_pp)   # I(e^m, e')
        mi_fp = pos - torch.logaddexp(torch.logsumexp(s_pf, dim=0), lse_ff)   # I(e', e^m)
        total = total + (mi_pf + mi_fp).mean()
    return -total / (2 * len(parts))


def one_direction_contrastive_loss(parts: Sequence[Tensor], fused: Tensor, tau: float) -> Tensor:
    r"""The official code's variant: :math:`I(\mathbf{e}^m, \mathbf{e}')` only,
    one direction per pair (six pairs for two modalities)."""
    return -torch.stack([mutual_information(p, fused, tau) for p in parts]).sum(0).mean() / len(parts)


def l2_penalty(tensors: Iterable[Tensor]) -> Tensor:
    r""":math:`\|\Theta\|_2^2` of eq. (13): the sum of squares of ``tensors``."""
    total = None
    for t in tensors:
        s = t.pow(2).sum()
        total = s if total is None else total + s
    if total is None:
        raise ValueError("l2_penalty needs at least one tensor")
    return total
