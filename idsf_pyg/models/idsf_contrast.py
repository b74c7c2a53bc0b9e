r"""IDSF's contrastive loss :math:`\mathcal{L}_C`, eq. (3)–(6) of the paper, as a module with its options."""
from __future__ import annotations

from typing import Dict, Literal, Optional

import torch
from torch import Tensor, nn

from ..losses import fusion_contrastive_loss, one_direction_contrastive_loss
from ..options import NonNegativeInt, PositiveFloat, PositiveInt
from ..parallel import Shard
from .idsf_content import Content

CONTRAST_PAIRS = ("paper", "one_direction")
CONTRAST_SCOPES = ("all", "batch", "sample")
CONTRAST_KERNELS = ("blockwise", "dense")


class IDSFContrast(nn.Module):
    r""":math:`\mathcal{L}_C` of eq. (6): per modality :math:`\tilde{\mathcal{L}}_C(\mathbf{e}^m, \mathbf{e}^{mid};
    \mathbf{e}^{m'})` (eq. (3)–(5)), plus :math:`\tilde{\mathcal{L}}_C` of the enhanced modalities against the
    fusion :math:`\mathbf{e}^c` when there are several. No parameters.

    Args:
        tau: Temperature :math:`\tau` of eq. (5).
        pairs: ``"paper"`` (eq. (3), both directions, :func:`~idsf_pyg.losses.fusion_contrastive_loss`) or
            ``"one_direction"`` (the official code: :math:`I(\mathbf{e}^m, \mathbf{e}')` only, the terms summed,
            :func:`~idsf_pyg.losses.one_direction_contrastive_loss`).
        scope: The items of :math:`I` in eq. (3): ``"all"`` (the paper), ``"batch"`` (the batch's positive and
            negative items) or ``"sample"`` (``sample_size`` items drawn uniformly per step).
        sample_size: Items per step with ``scope="sample"``.
        kernel: How the :math:`[N, N]` similarity sums are computed: ``"blockwise"`` (exact, block by block,
            recomputed in the backward pass, memory :math:`O(N \cdot \text{block})`; see
            :mod:`idsf_pyg.similarity_lse`) or ``"dense"`` (the reference: every matrix kept, :math:`O(N^2)`).
            Memory and speed only: not part of a run's key.
        block_size: Rows per block of the blockwise kernel; 0 chooses from the device. Not part of the key.
    """

    #: Arguments that change memory or speed, not the function computed (equal up to float rounding, as a change
    #: of device is): left out of a run's key.
    non_key_arguments = ("kernel", "block_size")

    def __init__(self, tau: PositiveFloat = 0.5, pairs: Literal["paper", "one_direction"] = "paper",
                 scope: Literal["all", "batch", "sample"] = "all", sample_size: PositiveInt = 2048,
                 kernel: Literal["blockwise", "dense"] = "blockwise", block_size: NonNegativeInt = 0):
        super().__init__()
        for name, value, allowed in (("contrast_pairs", pairs, CONTRAST_PAIRS),
                                     ("contrast_scope", scope, CONTRAST_SCOPES),
                                     ("contrast_kernel", kernel, CONTRAST_KERNELS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if block_size < 0:
            raise ValueError(f"contrast_block_size must be >= 0 (0: automatic), got {block_size}")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau, self.pairs, self.scope, self.sample_size = tau, pairs, scope, sample_size
        self.kernel, self.block_size = kernel, block_size

    def rows(self, pos: Tensor, neg: Tensor, num_items: int) -> Optional[Tensor]:
        """The items of this step's loss for a batch's positives and negatives (``None``: all)."""
        if self.scope == "all":
            return None
        if self.scope == "batch":
            return torch.unique(torch.cat([pos, neg]))
        return torch.randperm(num_items, device=pos.device)[:min(self.sample_size, num_items)]

    def forward(self, content: Content, rows: Optional[Tensor] = None, shard: Optional[Shard] = None,
                id_pairs: bool = True) -> Tensor:
        """:math:`\\mathcal{L}_C` over the items ``rows`` (all if ``None``); with ``shard``, this rank's part of the
        all-item loss (see :func:`~idsf_pyg.losses.fusion_contrastive_loss`). ``id_pairs=False`` leaves out the
        per-modality terms (content without ID enhancement has no :math:`\\mathbf{e}^{m'}` to contrast)."""
        # float32 inputs even under autocast: normalization and sums at full precision; the similarity
        # products follow autocast's dtype inside the kernel.
        def take(t: Tensor) -> Tensor:
            t = t if rows is None else t.index_select(0, rows)
            return t.to(torch.promote_types(t.dtype, torch.float32))

        loss_fn = fusion_contrastive_loss if self.pairs == "paper" else one_direction_contrastive_loss
        options = {"dense": self.kernel == "dense", "block_size": self.block_size or None, "shard": shard}
        total = content.fused.new_zeros(())
        parts = content.modalities
        if id_pairs:
            for part in parts.values():
                total = total + loss_fn([take(part.projected), take(part.id)], take(part.enhanced), self.tau, **options)
        if len(parts) > 1:
            total = total + loss_fn([take(p.enhanced) for p in parts.values()], take(content.fused), self.tau, **options)
        return total

    def gemm_flops(self, n: int, d: int, modalities: int, id_pairs: bool,
                   device: torch.device | str = "cpu") -> Dict[str, float]:
        r"""Floating-point work of the similarity products of eq. (3)–(5) in one step over ``n`` items of ``d``
        dimensions.

        ``"floor"``: the products no implementation avoids: per cross-similarity :math:`\hat{X}\hat{Y}^\top`,
        one forward and two backward (:math:`G\hat{Y}`, :math:`G^\top\hat{X}`), :math:`3 \cdot 2n^2d`; per
        self-similarity :math:`\hat{X}\hat{X}^\top`, its upper triangle forward and :math:`(G + G^\top)\hat{X}`
        backward, :math:`3n^2d`. ``"executed"``: what the kernel runs with this block size on ``device`` (its
        backward pass recomputes the scores: see :func:`~idsf_pyg.similarity_lse.similarity_gemm_flops`).
        ``"matrices"``: how many [n, n] similarity matrices a step has."""
        from ..similarity_lse import MIN_TAU_FIXED_SHIFT, default_block_size, similarity_gemm_flops
        groups = [2] * modalities if id_pairs else []
        if modalities > 1:
            groups.append(modalities)
        cross = sum(groups)                                                     # e^m against the fusion
        selfs = sum(groups) + (len(groups) if self.pairs == "paper" else 0)    # e^m e^m (+ e'e')
        block = self.block_size or default_block_size(n, n, 4, torch.device(device))
        fixed = self.tau >= MIN_TAU_FIXED_SHIFT
        executed = (cross * similarity_gemm_flops(n, n, d, block, symmetric=False, fixed=fixed)
                    + selfs * similarity_gemm_flops(n, n, d, block, symmetric=True, fixed=fixed))
        return {"floor": cross * 6.0 * n * n * d + selfs * 3.0 * n * n * d, "executed": executed,
                "matrices": cross + selfs, "block": block}

    def extra_repr(self) -> str:
        return f"tau={self.tau}, pairs='{self.pairs}', scope='{self.scope}', kernel='{self.kernel}'"
