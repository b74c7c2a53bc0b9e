"""The losses against brute-force evaluations of eq. (3)–(5) and (12)."""
import math

import pytest
import torch

from idsf_pyg.losses import (bpr_loss, fusion_contrastive_loss, l2_penalty, mutual_information,
                             one_direction_contrastive_loss)


def cos(a, b):
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def brute_mi(a, b, i, tau):
    """Eq. (4)-(5) for row i, written as loops."""
    n = a.size(0)
    i_ii = math.exp(cos(a[i], b[i]) / tau)
    i_ij = sum(math.exp(cos(a[i], b[j]) / tau) + math.exp(cos(a[i], a[j]) / tau) for j in range(n) if j != i)
    return math.log(i_ii / (i_ii + i_ij))


def test_mutual_information_matches_loops():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    got = mutual_information(a, b, 0.5)
    expected = torch.tensor([brute_mi(a, b, i, 0.5) for i in range(6)], dtype=torch.float64)
    torch.testing.assert_close(got, expected)


# 0.01 is below the fixed-shift limit and takes the torch.logsumexp path.
@pytest.mark.parametrize("tau", [0.01, 0.2, 0.5, 1.0])
def test_fusion_contrastive_loss_is_eq3(tau):
    g = torch.Generator().manual_seed(1)
    t, tid, fused = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(3))
    n = t.size(0)
    # Eq. (3): -1/(4|I|) sum_i sum_{m in {t, tid}} I(e^m, e') + I(e', e^m)
    total = sum(brute_mi(m, fused, i, tau) + brute_mi(fused, m, i, tau) for i in range(n) for m in (t, tid))
    expected = -total / (4 * n)
    got = fusion_contrastive_loss([t, tid], fused, tau)
    assert abs(float(got) - expected) < 1e-10
    # The official code's batched_contrastive_loss(z1, z2), summed over the pairs:
    # -mean_i log(between_ii / (sum_j refl_ij + sum_j between_ij - refl_ii)), refl/between = exp(cos/tau).
    def official(z1, z2):
        z1n, z2n = torch.nn.functional.normalize(z1), torch.nn.functional.normalize(z2)
        refl, between = torch.exp(z1n @ z1n.t() / tau), torch.exp(z1n @ z2n.t() / tau)
        return float(-torch.log(between.diag() / (refl.sum(1) + between.sum(1) - refl.diag())).mean())
    one_way = -sum(brute_mi(m, fused, i, tau) for i in range(n) for m in (t, tid)) / n
    if tau >= 0.2:  # the official formula exponentiates without a shift: exp(-1/0.01) terms underflow
        assert abs(official(t, fused) + official(tid, fused) - one_way) < 1e-9
    assert abs(float(one_direction_contrastive_loss([t, tid], fused, tau)) - one_way) < 1e-10


@pytest.mark.parametrize("tau", [0.01, 0.5])
def test_fusion_contrastive_gradient_matches_autograd_reference(tau):
    """The hand-written backward of the fused log-sum-exp against autograd through eq. (4)-(5)."""
    g = torch.Generator().manual_seed(3)
    leaves = [torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    t, tid, fused = leaves
    got = torch.autograd.grad(fusion_contrastive_loss([t, tid], fused, tau), leaves)
    ref_loss = -sum((mutual_information(m, fused, tau) + mutual_information(fused, m, tau)).mean()
                    for m in (t, tid)) / 4
    expected = torch.autograd.grad(ref_loss, leaves)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert torch.autograd.gradcheck(lambda *x: fusion_contrastive_loss([x[0], x[1]], x[2], tau), leaves)


def test_contrastive_loss_rewards_agreement():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(32, 8, generator=g)
    aligned = fusion_contrastive_loss([x, x + 0.01 * torch.randn(32, 8, generator=g)], x, 0.5)
    random = fusion_contrastive_loss([torch.randn(32, 8, generator=g), torch.randn(32, 8, generator=g)], x, 0.5)
    assert aligned < random


def test_bpr_and_l2():
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    expected = -(math.log(1 / (1 + math.exp(-1.0))) + math.log(1 / (1 + math.exp(1.0)))) / 2
    assert abs(float(bpr_loss(pos, neg)) - expected) < 1e-6
    assert float(l2_penalty([torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])])) == 14.0
