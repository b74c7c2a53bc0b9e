r"""Losses: BPR (eq. 12), the IDSF contrastive loss (eq. 3–6) and L2 regularization (eq. 13)."""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

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


# Below this temperature exp(f/τ - 1/τ) can underflow float32 for a whole row; use torch.logsumexp.
_MIN_TAU_FIXED_SHIFT = 2.0 / 80.0


class _ShiftedLogSumExp(torch.autograd.Function):
    r"""Row-wise (and optionally column-wise) :math:`\log\sum\exp` of ``s`` with a
    fixed shift ``c ≥ max(s)``, optionally leaving out the diagonal.

    ``torch.logsumexp`` subtracts a fresh maximum per call and keeps several
    ``[N, N]`` temporaries per direction; here one ``exp(s - c)`` buffer serves
    rows and columns and is the only thing saved for the backward pass, which
    costs one more ``[N, N]`` buffer: :math:`\partial/\partial s_{ij} =
    e_{ij}\,(g^r_i / R_i + g^c_j / C_j)`. This is where most of the
    contrastive loss's time and memory went.
    """

    @staticmethod
    def forward(ctx, s: Tensor, shift: float, skip_diagonal: bool, columns: bool):
        e = s.sub(shift).exp_()
        if skip_diagonal:
            e.diagonal().zero_()
        row_sum = e.sum(1)
        col_sum = e.sum(0) if columns else row_sum.new_empty(0)
        ctx.save_for_backward(e, row_sum, col_sum)
        ctx.columns = columns
        return row_sum.log() + shift, (col_sum.log() + shift if columns else col_sum)

    @staticmethod
    def backward(ctx, grad_rows: Optional[Tensor], grad_cols: Optional[Tensor]):
        e, row_sum, col_sum = ctx.saved_tensors
        grad = torch.zeros_like(e) if grad_rows is None else e * (grad_rows / row_sum).unsqueeze(1)
        if ctx.columns and grad_cols is not None:
            grad.addcmul_(e, (grad_cols / col_sum).unsqueeze(0))
        return grad, None, None, None


def _similarity_lse(x_scaled: Tensor, y_hat: Tensor, tau: float, skip_diagonal: bool = False,
                    columns: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    r""":math:`\log\sum_j e^{f(x_i, y_j)/\tau}` for every row ``i`` (and, with ``columns``,
    :math:`\log\sum_i e^{f(x_i, y_j)/\tau}` for every column ``j``) of the cosine similarity
    matrix of unit rows ``x_hat`` (passed as ``x_scaled = x_hat / τ``) and ``y_hat``;
    ``skip_diagonal`` leaves out the ``j == i`` terms."""
    s = x_scaled @ y_hat.t()
    if tau >= _MIN_TAU_FIXED_SHIFT:
        # Cosines are at most 1, so 1/τ bounds every entry: no overflow, and no row can underflow
        # entirely, since entries are at least -1/τ and exp(-2/τ) stays far above float32's minimum.
        rows, cols = _ShiftedLogSumExp.apply(s, 1.0 / tau, skip_diagonal, columns)
        return rows, (cols if columns else None)
    if skip_diagonal:
        s = s.masked_fill(torch.eye(s.size(0), dtype=torch.bool, device=s.device), float("-inf"))
    return torch.logsumexp(s, dim=1), (torch.logsumexp(s, dim=0) if columns else None)


def fusion_contrastive_loss(parts: Sequence[Tensor], fused: Tensor, tau: float) -> Tensor:
    r""":math:`\tilde{\mathcal{L}}_C` of eq. (3) for representations ``parts``
    (e.g. :math:`\mathbf{e}^t, \mathbf{e}^{tid}`) and their fusion
    (:math:`\mathbf{e}^{t'}`), both directions:

    .. math::
        -\frac{1}{2|P|\,|I|}\sum_{i \in I}\sum_{m \in P}
        I(\mathbf{e}_i^m, \mathbf{e}_i') + I(\mathbf{e}_i', \mathbf{e}_i^m)

    which is eq. (3)'s :math:`-\frac{1}{4|I|}` for two parts. Equal to summing
    :func:`mutual_information` both ways, but each similarity matrix is built
    once (``f(e^m, e')`` serves both directions: its rows for
    :math:`I(\mathbf{e}^m, \mathbf{e}')`, its columns for
    :math:`I(\mathbf{e}', \mathbf{e}^m)`).
    """
    f_hat = F.normalize(fused, dim=-1)
    lse_ff, _ = _similarity_lse(f_hat / tau, f_hat, tau, skip_diagonal=True)
    total = fused.new_zeros(())
    for p in parts:
        p_hat = F.normalize(p, dim=-1)
        p_scaled = p_hat / tau  # 1/τ applied to [N, d], not to the [N, N] similarities
        pos = (p_scaled * f_hat).sum(-1)  # f(e^m_i, e'_i)/τ without touching an [N, N] diagonal
        lse_pf_rows, lse_pf_cols = _similarity_lse(p_scaled, f_hat, tau, columns=True)
        lse_pp, _ = _similarity_lse(p_scaled, p_hat, tau, skip_diagonal=True)
        mi_pf = pos - torch.logaddexp(lse_pf_rows, lse_pp)   # I(e^m, e')
        mi_fp = pos - torch.logaddexp(lse_pf_cols, lse_ff)   # I(e', e^m)
        total = total + (mi_pf + mi_fp).mean()
    return -total / (2 * len(parts))


def one_direction_contrastive_loss(parts: Sequence[Tensor], fused: Tensor, tau: float) -> Tensor:
    r"""The official code's variant (``batched_contrastive_loss`` of its ``models.py``):
    :math:`-\sum_{m \in P} \frac{1}{|I|}\sum_i I(\mathbf{e}_i^m, \mathbf{e}_i')`, one direction per
    pair, the pairs' terms **summed** as the official code sums its six terms (two modalities: text,
    text ID, image, image ID against their enhanced forms, both enhanced forms against the fusion).
    Same value as :func:`mutual_information` per pair, through the fixed-shift log-sum-exp of
    :func:`fusion_contrastive_loss` (no mask, no concatenation of [N, N] matrices)."""
    f_hat = F.normalize(fused, dim=-1)
    total = fused.new_zeros(())
    for p in parts:
        p_hat = F.normalize(p, dim=-1)
        p_scaled = p_hat / tau
        pos = (p_scaled * f_hat).sum(-1)
        lse_pf, _ = _similarity_lse(p_scaled, f_hat, tau)
        lse_pp, _ = _similarity_lse(p_scaled, p_hat, tau, skip_diagonal=True)
        total = total + (pos - torch.logaddexp(lse_pf, lse_pp)).mean()
    return -total


def l2_penalty(tensors: Iterable[Tensor]) -> Tensor:
    r""":math:`\|\Theta\|_2^2` of eq. (13): the sum of squares of ``tensors``."""
    total = None
    for t in tensors:
        s = t.pow(2).sum()
        total = s if total is None else total + s
    if total is None:
        raise ValueError("l2_penalty needs at least one tensor")
    return total
