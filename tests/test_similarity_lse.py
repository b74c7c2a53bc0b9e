"""The blockwise log-sum-exp kernel against dense references: values and gradients, several τ, block
sizes that do and do not divide N, with and without the diagonal, cross- and self-similarity."""
import math

import pytest
import torch
import torch.nn.functional as F

from idsf_pyg.losses import fusion_contrastive_loss, mutual_information, one_direction_contrastive_loss
from idsf_pyg.similarity_lse import auto_block_size, similarity_lse

# 0.01 is below the fixed-shift limit (online maxima); the others take the fixed shift 1/τ.
TAUS = [0.01, 0.1, 0.5, 1.0]


def unit(*shape, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def dense_lse(x, y, tau, skip_diagonal):
    s = x @ y.t() / tau
    if skip_diagonal:
        s = s.masked_fill(torch.eye(*s.shape, dtype=torch.bool), float("-inf"))
    return torch.logsumexp(s, 1), torch.logsumexp(s, 0)


def brute_lse(x, y, tau, skip_diagonal):
    """Loops over the entries, as the sums are written."""
    n, m = x.size(0), y.size(0)
    rows = [math.log(sum(math.exp(float(x[i] @ y[j]) / tau) for j in range(m) if not (skip_diagonal and i == j)))
            for i in range(n)]
    cols = [math.log(sum(math.exp(float(x[i] @ y[j]) / tau) for i in range(n) if not (skip_diagonal and i == j)))
            for j in range(m)]
    return torch.tensor(rows, dtype=torch.float64), torch.tensor(cols, dtype=torch.float64)


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("block", [1, 3, 4, 10, None])
@pytest.mark.parametrize("skip_diagonal", [False, True])
def test_cross_similarity_rows_and_columns_equal_brute_force(tau, block, skip_diagonal):
    x, y = unit(10, 4, seed=0), unit(10, 4, seed=1)
    rows, cols = similarity_lse(x, y, tau, skip_diagonal=skip_diagonal, columns=True, block_size=block)
    exp_rows, exp_cols = brute_lse(x, y, tau, skip_diagonal)
    torch.testing.assert_close(rows, exp_rows, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cols, exp_cols, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("block", [1, 3, 10])
def test_rectangular_and_self_similarity(tau, block):
    x, y = unit(10, 5, seed=2), unit(7, 5, seed=3)
    rows, cols = similarity_lse(x, y, tau, columns=True, block_size=block)
    exp_rows, exp_cols = dense_lse(x, y, tau, False)
    torch.testing.assert_close(rows, exp_rows)
    torch.testing.assert_close(cols, exp_cols)
    rows, none = similarity_lse(x, None, tau, skip_diagonal=True, block_size=block)
    assert none is None
    torch.testing.assert_close(rows, dense_lse(x, x, tau, True)[0])


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("block", [1, 4, None])
@pytest.mark.parametrize("case", ["cross", "cross_diag", "self"])
def test_gradients_equal_autograd_through_the_dense_matrix(tau, block, case):
    """Recomputed blocks in the backward pass, against autograd through the materialized matrix, with
    weights on rows and columns (as the loss puts them), and torch.autograd.gradcheck."""
    x = unit(9, 3, seed=4).requires_grad_()
    y = unit(9, 3, seed=5).requires_grad_()
    wr, wc = unit(9, 1, seed=6).squeeze(1), unit(9, 1, seed=7).squeeze(1)
    if case == "self":
        def ours(x, y):
            return similarity_lse(x, None, tau, skip_diagonal=True, block_size=block)[0] @ wr

        def ref(x, y):
            return dense_lse(x, x, tau, True)[0] @ wr
    else:
        skip = case == "cross_diag"

        def ours(x, y):
            rows, cols = similarity_lse(x, y, tau, skip_diagonal=skip, columns=True, block_size=block)
            return rows @ wr + cols @ wc

        def ref(x, y):
            rows, cols = dense_lse(x, y, tau, skip)
            return rows @ wr + cols @ wc
    got = torch.autograd.grad(ours(x, y), (x, y), allow_unused=True)
    expected = torch.autograd.grad(ref(x, y), (x, y), allow_unused=True)
    for a, b in zip(got, expected):
        if b is None:
            assert a is None or torch.count_nonzero(a) == 0
        else:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(ours, (x, y))


def test_rows_only_output_and_unused_columns_have_gradients():
    x, y = unit(6, 3, seed=8).requires_grad_(), unit(6, 3, seed=9).requires_grad_()
    rows, _ = similarity_lse(x, y, 0.5, columns=True, block_size=2)
    got = torch.autograd.grad(rows.sum(), (x, y))
    expected = torch.autograd.grad(dense_lse(x, y, 0.5, False)[0].sum(), (x, y))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_single_item_without_diagonal_gives_no_nan_gradient():
    x = unit(1, 3, seed=10).requires_grad_()
    rows, _ = similarity_lse(x, None, 0.5, skip_diagonal=True)
    assert rows.item() == float("-inf")
    (grad,) = torch.autograd.grad(rows.clamp(min=-1e9).sum(), (x,))
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("tau", [0.01, 0.2, 0.5])
@pytest.mark.parametrize("loss_fn", [fusion_contrastive_loss, one_direction_contrastive_loss])
def test_blockwise_loss_equals_dense_loss_and_its_gradients(tau, loss_fn):
    g = torch.Generator().manual_seed(11)
    leaves = [torch.randn(23, 6, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    dense = loss_fn(leaves[:2], leaves[2], tau, dense=True)
    dense_grads = torch.autograd.grad(dense, leaves)
    for block in (1, 5, 8, 23, None):
        value = loss_fn(leaves[:2], leaves[2], tau, block_size=block)
        torch.testing.assert_close(value, dense, rtol=1e-12, atol=1e-12)
        for a, b in zip(torch.autograd.grad(value, leaves), dense_grads):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # and eq. (4)-(5) row by row, through mutual_information
    if loss_fn is fusion_contrastive_loss:
        ref = -sum((mutual_information(m, leaves[2], tau) + mutual_information(leaves[2], m, tau)).mean()
                   for m in leaves[:2]) / 4
        torch.testing.assert_close(fusion_contrastive_loss(leaves[:2], leaves[2], tau, block_size=5), ref)


def test_float32_blocks_match_float64():
    g = torch.Generator().manual_seed(12)
    leaves = [torch.randn(300, 16, generator=g, dtype=torch.float64) for _ in range(3)]
    exact = fusion_contrastive_loss(leaves[:2], leaves[2], 0.5, dense=True)
    f32 = fusion_contrastive_loss([t.float() for t in leaves[:2]], leaves[2].float(), 0.5, block_size=64)
    assert abs(float(f32) - float(exact)) < 1e-5


def test_bfloat16_products_stay_close():
    """gemm_dtype / autocast: bf16 matrix products, float32 sums; close to float32, not equal."""
    g = torch.Generator().manual_seed(13)
    x = F.normalize(torch.randn(200, 32, generator=g), dim=-1)
    y = F.normalize(torch.randn(200, 32, generator=g), dim=-1)
    rows32, cols32 = similarity_lse(x, y, 0.5, columns=True, block_size=64)
    rows16, cols16 = similarity_lse(x, y, 0.5, columns=True, block_size=64, gemm_dtype=torch.bfloat16)
    assert rows16.dtype == torch.float32
    torch.testing.assert_close(rows16, rows32, rtol=0, atol=2e-2)
    torch.testing.assert_close(cols16, cols32, rtol=0, atol=2e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rows_ac, _ = similarity_lse(x, y, 0.5, columns=True, block_size=64)
    torch.testing.assert_close(rows_ac, rows16)
    # the self-similarity's triangular panels, values and gradients
    grads = {}
    for dtype in (None, torch.bfloat16):
        leaf = x.clone().requires_grad_()
        rows, _ = similarity_lse(leaf, None, 0.5, skip_diagonal=True, block_size=64, gemm_dtype=dtype)
        rows.sum().backward()
        grads[dtype] = (rows.detach(), leaf.grad)
    torch.testing.assert_close(grads[torch.bfloat16][0], grads[None][0], rtol=0, atol=2e-2)
    cos = F.cosine_similarity(grads[torch.bfloat16][1].flatten(), grads[None][1].flatten(), dim=0)
    assert cos > 0.99


def test_auto_block_size_is_bounded_and_a_multiple_of_64():
    cpu = torch.device("cpu")
    rows = auto_block_size(7050, 4, cpu)
    assert rows % 64 == 0 and rows * 7050 * 4 <= 8 * 2**20 < (rows + 64) * 7050 * 4
    assert auto_block_size(10**7, 4, cpu) == 64  # never below one block of 64 rows
    with pytest.raises(ValueError, match="block_size"):
        similarity_lse(unit(3, 2, seed=0), None, 0.5, block_size=0)
    with pytest.raises(ValueError, match="square"):
        similarity_lse(unit(4, 2, seed=0), unit(3, 2, seed=1), 0.5, skip_diagonal=True)
    with pytest.raises(ValueError, match="square"):
        similarity_lse(unit(3, 2, seed=0), unit(4, 2, seed=1), 0.5, skip_diagonal=True, row_offset=2)


@pytest.mark.parametrize("tau", [0.01, 0.5])
def test_row_shares_add_up_to_the_whole_matrix(tau):
    """Rows r0:r1 at row_offset r0 (one rank's share, without the column all-reduce): the row sums equal
    the whole matrix's rows, the diagonal left out at the right place."""
    x = unit(11, 3, seed=20)
    whole, _ = dense_lse(x, x, tau, True)
    for r0, r1 in ((0, 4), (4, 8), (8, 11)):
        rows, _ = similarity_lse(x[r0:r1], x, tau, skip_diagonal=True, row_offset=r0, block_size=2)
        torch.testing.assert_close(rows, whole[r0:r1])


def test_nothing_quadratic_is_kept_for_the_backward_pass():
    """What autograd keeps between the passes (saved-tensor hooks see every saved tensor): with blocks
    of 64 rows over 1,000 items, nothing of size N x N, and at most O(N·d) in all."""
    n, d = 1000, 8
    g = torch.Generator().manual_seed(14)
    leaves = [torch.randn(n, d, generator=g, requires_grad=True) for _ in range(3)]
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fusion_contrastive_loss(leaves[:2], leaves[2], 0.5, block_size=64)
    assert max(saved) <= n * d and sum(saved) < 40 * n * d
    loss.backward()
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fusion_contrastive_loss(leaves[:2], leaves[2], 0.5, dense=True)
    assert max(saved) >= n * n  # the reference path does keep the matrices
