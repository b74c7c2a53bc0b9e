r"""Losses: BPR (eq. 12), the IDSF contrastive loss (eq. 3–6) and L2 regularization (eq. 13)."""
from __future__ import annotations

from typing import Iterable, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .similarity_lse import MIN_TAU_FIXED_SHIFT, similarity_lse


def bpr_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    r"""Bayesian personalized ranking, eq. (12):
    :math:`-\ln\sigma(\hat{y}_{ui} - \hat{y}_{uj})`, averaged over the batch
    (the paper writes a sum; the mean keeps :math:`\beta` and :math:`\lambda`
    independent of the batch size, as in every official implementation)."""
    # float32 even under autocast (bf16 scores): the loss is accumulated at full precision.
    dtype = torch.promote_types(pos_scores.dtype, torch.float32)
    return -F.logsigmoid(pos_scores.to(dtype) - neg_scores.to(dtype)).mean()


class BPRBatch(NamedTuple):
    """:func:`bpr_batch`'s result: the loss and the batch's embeddings (for regularizers on them)."""

    loss: Tensor
    user: Tensor   #: ``[B, d]``
    pos: Tensor    #: ``[B, d]``
    neg: Tensor    #: ``[B, d]``


def bpr_batch(user_emb: Tensor, item_emb: Tensor, users: Tensor, pos: Tensor, neg: Tensor) -> BPRBatch:
    r"""Eq. (12) for a batch of triples, scores as inner products :math:`\hat{y}_{ui} = \mathbf{e}_u^\top\mathbf{e}_i`
    of the rows of ``user_emb`` ``[U, d]`` and ``item_emb`` ``[I, d]``. Rows are taken with ``index_select``: the
    backward of advanced indexing (``index_put_`` with accumulation) is not bit-reproducible on the CPU with more
    than one thread."""
    u = user_emb.index_select(0, users)
    p, n = item_emb.index_select(0, pos), item_emb.index_select(0, neg)
    return BPRBatch(bpr_loss((u * p).sum(-1), (u * n).sum(-1)), u, p, n)


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


def _dense_similarity_lse(x_hat: Tensor, y_hat: Optional[Tensor], tau: float, skip_diagonal: bool = False,
                          columns: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    """The reference path (``dense=True``): the whole [N, M] matrix through ``torch.logsumexp`` and
    autograd, O(N·M) memory kept for the backward pass."""
    y = x_hat if y_hat is None else y_hat
    s = (x_hat / tau) @ y.t()
    if skip_diagonal:
        s = s.masked_fill(torch.eye(s.size(0), s.size(1), dtype=torch.bool, device=s.device), float("-inf"))
    return torch.logsumexp(s, dim=1), (torch.logsumexp(s, dim=0) if columns else None)


class _RowShare:
    """The rows of the [N, N] similarity matrices this process computes: all of them, or one rank's share
    in data-parallel training (``shard``, a :class:`~idsf_pyg.parallel.Shard`), whose losses
    add up over the ranks to the one-process loss."""

    def __init__(self, n: int, dense: bool, block_size: Optional[int], shard):
        if shard is not None and dense:
            raise ValueError("the dense reference kernel does not split rows across ranks: use the blockwise one")
        self.n, self.dense, self.block_size, self.shard = n, dense, block_size, shard
        self.start, self.stop = (0, n) if shard is None else shard.rows(n)

    def own(self, t: Tensor) -> Tensor:
        return t if self.shard is None else t[self.start:self.stop]

    def _lse(self, x: Tensor, y: Optional[Tensor], tau: float, **kw):
        if self.dense:
            return _dense_similarity_lse(x, y, tau, **kw)
        return similarity_lse(x, y, tau, block_size=self.block_size, **kw)

    def self_rows(self, x_hat: Tensor, tau: float) -> Tensor:
        r"""Row log-sum-exp of :math:`\hat{X}\hat{X}^\top/\tau`, diagonal left out, for the own rows."""
        if self.shard is None:
            return self._lse(x_hat, None, tau, skip_diagonal=True)[0]
        if tau >= MIN_TAU_FIXED_SHIFT:  # triangular panels dealt to the ranks, row sums all-reduced
            return self.own(self._lse(x_hat, None, tau, skip_diagonal=True, shard=self.shard)[0])
        return self._lse(self.own(x_hat), x_hat, tau, skip_diagonal=True, row_offset=self.start)[0]

    def cross(self, x_hat: Tensor, y_hat: Tensor, tau: float, columns: bool = False):
        r"""Row (own rows) and column (own columns, summed over every rank's rows) log-sum-exp of
        :math:`\hat{X}\hat{Y}^\top/\tau`."""
        if self.shard is None:
            return self._lse(x_hat, y_hat, tau, columns=columns)
        rows, cols = self._lse(self.own(x_hat), y_hat, tau, columns=columns, shard=self.shard)
        return rows, (None if cols is None else self.own(cols))

    def mean(self, v: Tensor) -> Tensor:
        """The mean over all N items of a per-item term of which this process holds its own rows."""
        return v.mean() if self.shard is None else v.sum() / self.n


def fusion_contrastive_loss(parts: Sequence[Tensor], fused: Tensor, tau: float, *,
                            block_size: Optional[int] = None, dense: bool = False, shard=None) -> Tensor:
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

    The all-item sums are exact and computed block by block (:func:`~idsf_pyg.similarity_lse.similarity_lse`):
    memory :math:`O(N \cdot \text{block})`, no :math:`[N, N]` matrix kept for the backward pass.
    ``block_size`` overrides the automatic rows per block; ``dense=True`` takes the reference path that
    materializes every matrix (same value and gradients, :math:`O(N^2)` memory). With ``shard`` (a
    :class:`~idsf_pyg.parallel.Shard`), this process computes its rank's rows of every matrix and
    returns its part of the loss: the parts of all ranks add up to the loss, and their gradients to its
    gradient.
    """
    rows = _RowShare(fused.size(0), dense, block_size, shard)
    f_hat = F.normalize(fused, dim=-1)
    lse_ff = rows.self_rows(f_hat, tau)
    total = fused.new_zeros(())
    for p in parts:
        p_hat = F.normalize(p, dim=-1)
        pos = (rows.own(p_hat) * rows.own(f_hat)).sum(-1) / tau  # f(e^m_i, e'_i)/τ, no [N, N] diagonal
        lse_pf_rows, lse_pf_cols = rows.cross(p_hat, f_hat, tau, columns=True)
        lse_pp = rows.self_rows(p_hat, tau)
        mi_pf = pos - torch.logaddexp(lse_pf_rows, lse_pp)   # I(e^m, e')
        mi_fp = pos - torch.logaddexp(lse_pf_cols, lse_ff)   # I(e', e^m)
        total = total + rows.mean(mi_pf + mi_fp)
    return -total / (2 * len(parts))


def one_direction_contrastive_loss(parts: Sequence[Tensor], fused: Tensor, tau: float, *,
                                   block_size: Optional[int] = None, dense: bool = False, shard=None) -> Tensor:
    r"""The official code's variant (``batched_contrastive_loss`` of its ``models.py``):
    :math:`-\sum_{m \in P} \frac{1}{|I|}\sum_i I(\mathbf{e}_i^m, \mathbf{e}_i')`, one direction per
    pair, the pairs' terms **summed** as the official code sums its six terms (two modalities: text,
    text ID, image, image ID against their enhanced forms, both enhanced forms against the fusion).
    Same value as :func:`mutual_information` per pair, through the blockwise log-sum-exp of
    :func:`fusion_contrastive_loss` (same ``block_size``, ``dense`` and ``shard`` arguments)."""
    rows = _RowShare(fused.size(0), dense, block_size, shard)
    f_hat = F.normalize(fused, dim=-1)
    total = fused.new_zeros(())
    for p in parts:
        p_hat = F.normalize(p, dim=-1)
        pos = (rows.own(p_hat) * rows.own(f_hat)).sum(-1) / tau
        lse_pf, _ = rows.cross(p_hat, f_hat, tau)
        lse_pp = rows.self_rows(p_hat, tau)
        total = total + rows.mean(pos - torch.logaddexp(lse_pf, lse_pp))
    return -total


def l2_penalty(tensors: Iterable[Tensor]) -> Tensor:
    r""":math:`\|\Theta\|_2^2` of eq. (13): the sum of squares of ``tensors``."""
    total = None
    for t in tensors:
        s = t.to(torch.promote_types(t.dtype, torch.float32)).pow(2).sum()
        total = s if total is None else total + s
    if total is None:
        raise ValueError("l2_penalty needs at least one tensor")
    return total
