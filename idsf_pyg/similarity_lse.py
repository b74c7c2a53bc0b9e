r"""Exact log-sum-exp over the rows (and columns) of a cosine-similarity matrix, computed block by block.

The contrastive loss of eq. (3)–(5) needs, for unit rows :math:`\hat{\mathbf{x}}_i` and
:math:`\hat{\mathbf{y}}_j`, the log-partition sums

.. math::
    r_i = \log\sum_j e^{\hat{\mathbf{x}}_i^\top\hat{\mathbf{y}}_j/\tau}, \qquad
    c_j = \log\sum_i e^{\hat{\mathbf{x}}_i^\top\hat{\mathbf{y}}_j/\tau}

over **all** items. Materializing :math:`S = \hat{X}\hat{Y}^\top/\tau` costs :math:`O(|I|^2)` memory per
matrix, kept for the backward pass. Here :math:`S` is formed one block of rows at a time: each block holds
complete rows, so :math:`r_i` is exact per block; the column sums are accumulated across blocks. Nothing
of size :math:`|I|^2` is kept: the backward pass recomputes each block (as memory-efficient attention
does) and applies

.. math::
    \frac{\partial L}{\partial S_{ij}} = g^r_i\,e^{S_{ij}-r_i} + g^c_j\,e^{S_{ij}-c_j},

followed by :math:`\partial L/\partial\hat{X} = G\hat{Y}/\tau` and :math:`\partial L/\partial\hat{Y} =
G^\top\hat{X}/\tau`. For the self-similarity :math:`\hat{X}\hat{X}^\top` (rows only) the two products
collapse into one, :math:`(G + G^\top)\hat{X}/\tau` with :math:`(G+G^\top)_{ij} = e^{S_{ij}}(g_i/R_i +
g_j/R_j)` (where :math:`R_i = e^{r_i}`), so that case costs one matrix product per block in each pass
plus the recomputation.

Since cosines lie in :math:`[-1, 1]`, :math:`1/\tau` bounds every entry, and for :math:`\tau \ge 0.025`
a fixed shift of :math:`1/\tau` keeps every :math:`e^{S_{ij} - 1/\tau}` in float32's range: one
exponential per entry and pass, and block sums that add without rescaling. Below that temperature the
kernel takes exact per-row maxima and a running column maximum (online log-sum-exp).

Matrices small enough (:data:`SAVE_BELOW_BYTES`, e.g. the batch scope's) are done in one block whose
exponentials are kept for the backward pass instead of recomputed.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import torch
from torch import Tensor

#: Below this temperature ``exp(S - 1/τ)`` could underflow float32 for a whole row: online maxima instead.
MIN_TAU_FIXED_SHIFT = 2.0 / 80.0
#: A matrix of at most this many bytes is done in one block and its exponentials kept for the backward
#: pass (no recomputation); larger ones are recomputed block by block.
SAVE_BELOW_BYTES = 32 * 2**20
#: Bytes of one [block, M] buffer (a block keeps about three). On the CPU, cache-sized (a few blocks fit in
#: the last-level cache; measurements: experiments/RESULTS.md, "Measurements behind the defaults"). On a GPU,
#: large: a fraction of the device's *total* memory (not the momentary free memory, so that the block size,
#: and with it every rounding, repeats from run to run), capped.
_CPU_BUFFER_BYTES = 8 * 2**20
_GPU_BUFFER_FRACTION, _GPU_BUFFER_CAP = 1 / 256, 256 * 2**20
_BLOCK_ROW_MULTIPLE = 64


def device_memory_bytes(device: torch.device) -> int:
    """Total memory of ``device`` (a GPU's memory, or the machine's RAM for the CPU)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def auto_block_size(num_cols: int, element_size: int, device: torch.device) -> int:
    """Rows per block for a similarity matrix with ``num_cols`` columns, in multiples of 64: one
    [block, ``num_cols``] buffer takes about 8 MiB on the CPU, and ``min(total / 256, 256 MiB)`` on a
    GPU. Depends only on the problem's shape and the device's total memory, so the same run on the same
    machine always uses the same blocks (and gives the same numbers)."""
    if device.type == "cuda":
        budget = min(int(device_memory_bytes(device) * _GPU_BUFFER_FRACTION), _GPU_BUFFER_CAP)
    else:
        budget = _CPU_BUFFER_BYTES
    rows = budget // max(1, num_cols * element_size)
    return max(_BLOCK_ROW_MULTIPLE, rows // _BLOCK_ROW_MULTIPLE * _BLOCK_ROW_MULTIPLE)


def default_block_size(num_rows: int, num_cols: int, element_size: int, device: torch.device) -> int:
    """Rows per block when none is given: all rows (one block, kept for the backward pass) for a matrix of
    at most :data:`SAVE_BELOW_BYTES`, else :func:`auto_block_size`."""
    if num_rows * num_cols * element_size <= SAVE_BELOW_BYTES:
        return num_rows
    return auto_block_size(num_cols, element_size, device)


class _ScoreBlocks:
    """Writes ``S[r0:r1] - shift = xs[r0:r1] @ y^T - shift`` into one buffer reused for every block
    (allocating a fresh [block, M] tensor per block costs more than the product itself, in page faults),
    with the products in ``gemm_dtype`` when given and the result in the inputs' dtype."""

    def __init__(self, xs: Tensor, y: Tensor, block: int, gemm_dtype: Optional[torch.dtype], shift: float):
        self.xs, self.shift = xs, shift
        self.buf = xs.new_empty(block, y.size(0))
        self.lowp = gemm_dtype is not None
        if self.lowp:
            self.xs_low, self.yt = xs.to(gemm_dtype), y.to(gemm_dtype).t()
            self.buf_low = self.buf.new_empty(self.buf.shape, dtype=gemm_dtype)
        else:
            self.yt = y.t()
            self.bias = xs.new_full((1,), -shift)

    def __call__(self, r0: int, r1: int, c0: int = 0) -> Tensor:
        """Rows ``r0:r1``, columns ``c0:`` (a contiguous [r1 - r0, M - c0] view of the buffer)."""
        shape = (r1 - r0, self.buf.size(1) - c0)
        out = self.buf.view(-1)[:shape[0] * shape[1]].view(shape)
        yt = self.yt[:, c0:]
        if self.lowp:
            low = self.buf_low.view(-1)[:shape[0] * shape[1]].view(shape)
            torch.mm(self.xs_low[r0:r1], yt, out=low)
            return out.copy_(low).sub_(self.shift) if self.shift else out.copy_(low)
        if self.shift:
            return torch.addmm(self.bias, self.xs[r0:r1], yt, out=out)
        return torch.mm(self.xs[r0:r1], yt, out=out)


def _triangular_panels(scores: "_ScoreBlocks", n: int, block: int, skip_diagonal: bool, shard):
    """``(r0, r1, exp(S[r0:r1, r0:] - 1/τ))`` for the upper-triangular panels of a self-similarity (diagonal
    zeroed with ``skip_diagonal``), each in the reused buffer. With ``shard``, this rank's panels only: dealt in
    snake order (0, 1, .., W-1, W-1, .., 0, ..), since the panels narrow from the first to the last, so that
    the ranks get about equal areas."""
    for k, r0 in enumerate(range(0, n, block)):
        if shard is not None:
            turn = k % (2 * shard.world)
            if (turn if turn < shard.world else 2 * shard.world - 1 - turn) != shard.rank:
                continue
        r1 = min(n, r0 + block)
        e = scores(r0, r1, r0).exp_()
        if skip_diagonal:
            _zero_diagonal(e, 0, 0.0)
        yield r0, r1, e


def _finite_or_zero(t: Tensor) -> Tensor:
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


def _zero_diagonal(block: Tensor, r0: int, value: float) -> None:
    n = min(block.size(0), block.size(1) - r0)
    if n > 0:
        block[:, r0:r0 + n].diagonal().fill_(value)


class _BlockwiseSimilarityLSE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, y: Optional[Tensor], scale: float, skip_diagonal: bool, columns: bool,
                block: int, gemm_dtype: Optional[torch.dtype], offset: int, reduce):
        symmetric = y is None
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            xs = x * scale                   # 1/τ applied to [N, d], not to the [N, M] scores
            yy = x if symmetric else y
            n, m = x.size(0), yy.size(0)
            fixed = scale <= 1.0 / MIN_TAU_FIXED_SHIFT
            block = max(1, min(block, n))
            save = fixed and block == n and n * m * x.element_size() <= SAVE_BELOW_BYTES and reduce is None
            scores = _ScoreBlocks(xs, yy, block, gemm_dtype, scale if fixed else 0.0)
            row_lse = x.new_empty(n)
            col_acc = x.new_zeros(m) if columns else None
            col_max = x.new_full((m,), float("-inf")) if columns and not fixed else None
            triangular = symmetric and fixed and not save
            if triangular:
                # S is symmetric: panel r holds rows r0:r1 and columns r0: only (half the products and
                # exponentials); the part right of the diagonal block also gives, transposed, the sums of
                # rows r1: over columns r0:r1.
                row_acc = x.new_zeros(n)
                for r0, r1, e in _triangular_panels(scores, n, block, skip_diagonal, reduce):
                    row_acc[r0:r1] += e.sum(1)
                    if r1 < n:
                        row_acc[r1:] += e[:, r1 - r0:].sum(0)
                if reduce is not None:  # this rank's panels only: add the other ranks' row sums
                    reduce.all_reduce(row_acc)
                row_lse.copy_(row_acc.log_().add_(scale))
            for r0 in range(0, 0 if triangular else n, block):
                r1 = min(n, r0 + block)
                s = scores(r0, r1)
                if fixed:
                    e = s.exp_()             # exp(S - 1/τ)
                    if skip_diagonal:
                        _zero_diagonal(e, offset + r0, 0.0)
                    row_lse[r0:r1] = e.sum(1).log_().add_(scale)
                    if columns:
                        col_acc += e.sum(0)
                else:
                    if skip_diagonal:
                        _zero_diagonal(s, offset + r0, float("-inf"))
                    row_lse[r0:r1] = torch.logsumexp(s, dim=1)
                    if columns:  # online log-sum-exp over the row blocks
                        new_max = torch.maximum(col_max, s.max(0).values)
                        safe = _finite_or_zero(new_max)
                        col_acc.mul_((col_max - safe).exp_()).add_((s - safe).exp_().sum(0))
                        col_max = new_max
            if columns and reduce is not None:  # this rank's rows only: add the other ranks' column sums
                if not fixed:
                    local_max = col_max.clone()
                    reduce.all_reduce(col_max, "max")
                    col_acc.mul_((local_max - _finite_or_zero(col_max)).exp_())
                reduce.all_reduce(col_acc)
            if columns:
                col_lse = col_acc.log_().add_(scale if fixed else _finite_or_zero(col_max))
            else:
                col_lse = x.new_empty(0)
            kept = scores.buf if save else x.new_empty(0)   # one block: its exponentials serve the backward
        ctx.save_for_backward(x, y if not symmetric else None, row_lse, col_lse, kept)
        ctx.args = (symmetric, scale, skip_diagonal, columns, block, gemm_dtype, fixed, save, offset, reduce)
        return row_lse, col_lse

    @staticmethod
    def backward(ctx, g_rows: Optional[Tensor], g_cols: Optional[Tensor]):
        x, y, row_lse, col_lse, kept = ctx.saved_tensors
        symmetric, scale, skip_diagonal, columns, block, gemm_dtype, fixed, has_kept, offset, reduce = ctx.args
        n = x.size(0)
        yy = x if symmetric else y
        if g_rows is None:
            g_rows = row_lse.new_zeros(n)
        use_cols = columns and g_cols is not None

        # With the fixed shift, exp(S - r_i) = e_ij / R_i and exp(S - c_j) = e_ij / C_j, e = exp(S - 1/τ).
        # A row or column whose sum is 0 (one item, diagonal left out) has no entry to pass a gradient to.
        def weights(g: Tensor, lse: Tensor) -> Tensor:
            w = g * (scale - lse).exp() if fixed else g
            return torch.where(torch.isfinite(lse), w, torch.zeros_like(w))
        a = weights(g_rows, row_lse)
        if symmetric and reduce is not None:  # every rank's panels reach every row: all ranks' row weights
            a = reduce.all_reduce(a.contiguous())
        b = weights(g_cols, col_lse) if use_cols else (a if symmetric else None)
        if columns and reduce is not None:
            # every rank's rows reach every column: the column weights of all ranks' losses, summed
            b = reduce.all_reduce(b if b is not None else torch.zeros_like(col_lse))
            use_cols = True
        safe_rows = _finite_or_zero(row_lse)
        safe_cols = safe_rows if symmetric else (_finite_or_zero(col_lse) if use_cols else None)
        want_y = not symmetric and ctx.needs_input_grad[1]
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            xs = x * scale
            grad_x = torch.empty_like(x)
            grad_y = torch.zeros_like(y) if want_y else None
            scores = None if has_kept else _ScoreBlocks(xs, yy, block, gemm_dtype, scale if fixed else 0.0)
            weight_buf = x.new_empty(block, yy.size(0)) if b is not None else None
            low = gemm_dtype is not None
            if low:
                y_low, xs_low = yy.to(gemm_dtype), xs.to(gemm_dtype)
                g_low_buf = x.new_empty((block, yy.size(0)), dtype=gemm_dtype)
            if symmetric and fixed and not has_kept:
                # Triangular panels as in the forward pass: W = e (a_i + a_j) is symmetric, so panel r's
                # W[r0:r1, r0:] serves the rows r0:r1 and, transposed, the rows r1: (columns r0:r1).
                grad_x.zero_()
                for r0, r1, e in _triangular_panels(scores, n, block, skip_diagonal, reduce):
                    w = weight_buf.view(-1)[:e.numel()].view(e.shape)
                    e.mul_(torch.add(a[r0:r1].unsqueeze(1), a[r0:].unsqueeze(0), out=w))
                    rows, rest = grad_x[r0:r1], grad_x[r1:]
                    if low:
                        e = g_low_buf.view(-1)[:e.numel()].view(e.shape).copy_(e)
                        rows += e @ y_low[r0:]
                        if r1 < n:
                            rest += e[:, r1 - r0:].t() @ y_low[r0:r1]
                    else:
                        torch.addmm(rows, e, x[r0:], out=rows)
                        if r1 < n:
                            torch.addmm(rest, e[:, r1 - r0:].t(), x[r0:r1], out=rest)
                grad_x.mul_(scale)
                return grad_x, None, None, None, None, None, None, None, None
            for r0 in range(0, n, block):
                r1 = min(n, r0 + block)
                if fixed:
                    if has_kept:
                        e = kept.clone()     # kept intact: a retained graph may go backward again
                    else:
                        e = scores(r0, r1).exp_()
                        if skip_diagonal:
                            _zero_diagonal(e, offset + r0, 0.0)
                    if b is None:
                        grad_s = e.mul_(a[r0:r1].unsqueeze(1))
                    else:            # e_ij (a_i + b_j), in place through one reused buffer
                        grad_s = e.mul_(torch.add(a[r0:r1].unsqueeze(1), b.unsqueeze(0),
                                                  out=weight_buf[:r1 - r0]))
                else:
                    s = scores(r0, r1)
                    if skip_diagonal:
                        _zero_diagonal(s, offset + r0, float("-inf"))
                    grad_s = (s - safe_rows[r0:r1].unsqueeze(1)).exp_().mul_(a[r0:r1].unsqueeze(1))
                    if b is not None:
                        grad_s.add_((s - safe_cols.unsqueeze(0)).exp_().mul_(b.unsqueeze(0)))
                if low:
                    g = g_low_buf[:r1 - r0].copy_(grad_s)
                    grad_x[r0:r1] = g @ y_low
                    if want_y:
                        grad_y += g.t() @ xs_low[r0:r1]
                else:
                    torch.mm(grad_s, yy, out=grad_x[r0:r1])
                    if want_y:
                        torch.addmm(grad_y, grad_s.t(), xs[r0:r1], out=grad_y)  # counted by FlopCounterMode
            grad_x.mul_(scale)
        return grad_x, grad_y, None, None, None, None, None, None, None


def similarity_gemm_flops(n: int, m: int, d: int, block: int, symmetric: bool, fixed: bool = True,
                          grad_y: bool = True) -> float:
    """Floating-point work of the matrix products :func:`similarity_lse` runs, forward and backward, for
    ``n`` x ``m`` scores of width ``d`` in blocks of ``block`` rows (``symmetric``: the self-similarity,
    ``m == n``; ``fixed``: τ >= :data:`MIN_TAU_FIXED_SHIFT`; ``grad_y``: the right operand needs a gradient)."""
    block = max(1, min(block, n))
    saved = fixed and block == n and n * m * 4 <= SAVE_BELOW_BYTES
    if symmetric and fixed and not saved:
        total = 0.0
        for r0 in range(0, n, block):
            b, width = min(block, n - r0), n - r0
            total += 3 * 2.0 * b * width * d + 2.0 * b * (width - b) * d
        return total
    product = 2.0 * n * m * d
    backward = 1 if symmetric else (2 if grad_y else 1)
    return product * (1 + (0 if saved else 1) + backward)


def similarity_lse(x_hat: Tensor, y_hat: Optional[Tensor], tau: float, *, skip_diagonal: bool = False,
                   columns: bool = False, block_size: Optional[int] = None,
                   gemm_dtype: Optional[torch.dtype] = None, row_offset: int = 0,
                   shard=None) -> Tuple[Tensor, Optional[Tensor]]:
    r"""Row (and with ``columns``, column) log-sum-exp of :math:`\hat{X}\hat{Y}^\top/\tau`, exactly, in
    :math:`O((N + M)\,d + \text{block}\cdot M)` memory.

    Args:
        x_hat: Unit rows :math:`\hat{X}` (``F.normalize`` output), ``[N, d]``.
        y_hat: Unit rows :math:`\hat{Y}`, ``[M, d]``; ``None`` for the self-similarity
            :math:`\hat{X}\hat{X}^\top` (one matrix product per block and pass instead of two).
        tau: Temperature :math:`\tau`.
        skip_diagonal: Leave out the :math:`j = i` terms (:math:`j = \text{row\_offset} + i`).
        columns: Also return the column sums :math:`c_j` (cross-similarity only).
        block_size: Rows per block; ``None`` chooses from the device's memory (:func:`auto_block_size`).
        gemm_dtype: Dtype of the matrix products (e.g. ``torch.bfloat16``); exponentials and sums stay in
            the inputs' dtype. ``None``: the inputs' dtype; under :func:`torch.autocast`, its dtype.
        row_offset: ``x_hat`` holds rows ``row_offset:row_offset + N`` of a square matrix (one rank's share
            in data-parallel training): the skipped diagonal is :math:`j = \text{row\_offset} + i`.
        shard: A :class:`~idsf_pyg.parallel.Shard`: the work is split with the other ranks. For a
            cross-similarity, ``x_hat`` holds this rank's rows (at ``row_offset``) and the column sums are
            all-reduced (forward), and so are their gradient weights (backward). For a self-similarity
            (``y_hat=None``, τ >= :data:`MIN_TAU_FIXED_SHIFT`), ``x_hat`` holds all rows, the triangular
            panels are dealt to the ranks and the row sums all-reduced. Either way every rank gets the exact
            all-row sums, and the ranks' gradients add up to the one-process gradient.

    Shapes: ``[N]`` and ``[M]`` (``None`` without ``columns``).
    """
    if y_hat is None and columns:
        raise ValueError("columns of a self-similarity equal its rows: pass columns=False")
    if skip_diagonal and y_hat is not None and row_offset + x_hat.size(0) > y_hat.size(0):
        raise ValueError(f"skip_diagonal needs rows of a square matrix: {x_hat.size(0)} rows at offset {row_offset} "
                         f"of a matrix with {y_hat.size(0)} columns")
    if row_offset and y_hat is None:
        raise ValueError("row_offset needs y_hat (a share of rows of a self-similarity: pass the whole "
                         "matrix's rows as y_hat)")
    if shard is not None and y_hat is None and tau < MIN_TAU_FIXED_SHIFT:
        raise ValueError(f"a self-similarity split over ranks needs tau >= {MIN_TAU_FIXED_SHIFT} (fixed shift): "
                         "below, pass this rank's rows with y_hat and row_offset")
    if gemm_dtype is None and torch.is_autocast_enabled(x_hat.device.type):
        gemm_dtype = torch.get_autocast_dtype(x_hat.device.type)
    # Exponentials and sums in float32 at least, whatever autocast handed over.
    acc = torch.promote_types(x_hat.dtype, torch.float32)
    x_hat = x_hat.to(acc)
    y_hat = None if y_hat is None else y_hat.to(acc)
    if gemm_dtype == acc:
        gemm_dtype = None
    m = x_hat.size(0) if y_hat is None else y_hat.size(0)
    if block_size is None:
        block_size = default_block_size(x_hat.size(0), m, x_hat.element_size(), x_hat.device)
    elif block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if shard is not None and y_hat is None:  # the ranks deal panels: they must cut the same ones
        agreed = torch.tensor([float(block_size)], device=x_hat.device)
        shard.all_reduce(agreed, "min")
        block_size = int(agreed.item())
    rows, cols = _BlockwiseSimilarityLSE.apply(x_hat, y_hat, 1.0 / tau, skip_diagonal, columns, block_size,
                                               gemm_dtype, row_offset, shard)
    return rows, (cols if columns else None)
