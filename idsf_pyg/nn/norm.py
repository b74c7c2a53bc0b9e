r"""The one symmetric normalization every propagation of the package uses."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def inverse_sqrt_degree(degree: Tensor) -> Tensor:
    r""":math:`d^{-1/2}`, and 0 where :math:`d = 0` (a node without edges), with a finite gradient everywhere
    (``torch.where`` over ``rsqrt`` would send ``0 * inf = NaN`` back to a zero degree)."""
    isolated = degree == 0
    return degree.masked_fill(isolated, 1.0).rsqrt().masked_fill(isolated, 0.0)


def symmetric_norm(edge_index: Tensor, edge_weight: Optional[Tensor], num_rows: int, num_cols: int) -> Tensor:
    r"""Edge weights of :math:`D_r^{-1/2} A D_c^{-1/2}` for the ``[num_rows, num_cols]`` matrix :math:`A` with an
    entry :math:`w_e` at ``edge_index[:, e] = (r, c)``:

    .. math::
        \hat{w}_e = \frac{w_e}{\sqrt{d_r\, d_c}}, \qquad
        d_r = \sum_{e' : r_{e'} = r} w_{e'}, \quad d_c = \sum_{e' : c_{e'} = c} w_{e'}

    (a repeated edge counts once per occurrence). With :math:`w = 1` on the user–item graph this is the paper's
    :math:`1/\sqrt{|\mathcal{N}_u|\,|\mathcal{N}_i|}` of eq. (7)–(8), and on the symmetric (users + items) graph
    it is :func:`~torch_geometric.nn.conv.gcn_norm` without self loops. An edge at a node of degree 0 (only
    zero-weight edges) gets 0. The result is differentiable in ``edge_weight`` (GRCN learns its weights).

    Args:
        edge_index: ``[2, E]`` row and column of each entry.
        edge_weight: ``[E]`` non-negative weights, or ``None`` for ones (float32).
        num_rows, num_cols: the matrix's shape.

    Shapes:
        returns ``[E]`` in ``edge_weight``'s dtype.
    """
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), device=edge_index.device)
    rows, cols = edge_index[0], edge_index[1]
    deg_r = edge_weight.new_zeros(num_rows).index_add_(0, rows, edge_weight)
    deg_c = edge_weight.new_zeros(num_cols).index_add_(0, cols, edge_weight)
    # Applied per edge, so that the gradient into learned weights (GRCN) is summed after the rsqrt derivative.
    return edge_weight * inverse_sqrt_degree(deg_r[rows]) * inverse_sqrt_degree(deg_c[cols])


def symmetric_norm_csr(edge_index: Tensor, num_rows: int, num_cols: int,
                       edge_weight: Optional[Tensor] = None) -> Tensor:
    r"""Sparse CSR :math:`D_r^{-1/2} A D_c^{-1/2}` (:func:`symmetric_norm`), repeated entries summed."""
    values = symmetric_norm(edge_index, edge_weight, num_rows, num_cols)
    coo = torch.sparse_coo_tensor(edge_index, values, (num_rows, num_cols), check_invariants=False).coalesce()
    return coo.to_sparse_csr()
