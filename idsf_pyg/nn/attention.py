r"""The attention unit of eq. (1)–(2), shared by the content and structural modules."""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor, nn


class ModalityAttention(nn.Module):
    r"""Attention fusion of several representations of the same node, eq. (1)–(2):

    .. math::
        \alpha^m = \mathrm{softmax}_m\left(\mathbf{q}^\top
        \tanh(\mathbf{W}\mathbf{e}^m + \mathbf{b})\right), \qquad
        \mathbf{e}' = \sum_m \alpha^m \mathbf{e}^m

    Used as Text/Visual Attention (salient feature ⊕ modality ID), as VT
    Attention (fusing the enhanced modalities) and for eq. (9)–(10).

    Args:
        dim (int): Embedding size :math:`d` (:math:`\mathbf{W} \in \mathbb{R}^{d\times d}`,
            :math:`\mathbf{q}, \mathbf{b} \in \mathbb{R}^d`).

    Shapes:
        - **input:** a sequence of :math:`M` tensors :math:`(N, d)`
        - **output:** fused :math:`(N, d)` and weights :math:`(N, M)`
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.lin = nn.Linear(dim, dim)
        self.q = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)
        nn.init.xavier_uniform_(self.q.view(1, -1))

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
        if len(inputs) == 1:  # a single modality: weight 1, nothing to fuse
            return inputs[0], inputs[0].new_ones(inputs[0].size(0), 1)
        stacked = torch.stack(list(inputs), dim=1)              # [N, M, d]
        scores = torch.tanh(self.lin(stacked)) @ self.q         # [N, M]
        alpha = torch.softmax(scores, dim=1)
        return (alpha.unsqueeze(-1) * stacked).sum(dim=1), alpha

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.dim})"
