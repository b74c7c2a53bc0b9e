import torch

from idsf_pyg.train import BPRSampler


def test_each_edge_once_per_epoch_and_negatives_are_unobserved():
    g = torch.Generator().manual_seed(0)
    users = torch.randint(0, 20, (300,), generator=g)
    items = torch.randint(0, 15, (300,), generator=g)
    pairs = torch.unique(torch.stack([users, items]), dim=1)
    sampler = BPRSampler(pairs, 15, batch_size=32, generator=torch.Generator().manual_seed(1))
    seen, positives = [], set(map(tuple, pairs.t().tolist()))
    for u, i, j in sampler:
        seen += list(zip(u.tolist(), i.tolist()))
        assert not any((a, b) in positives for a, b in zip(u.tolist(), j.tolist()))
    assert sorted(seen) == sorted(positives)
    assert len(sampler) == (pairs.size(1) + 31) // 32


def test_negatives_are_uniform_over_unobserved_items():
    # User 0 has items 0..4 of 10: negatives must be uniform over 5..9.
    ei = torch.tensor([[0] * 5, list(range(5))])
    sampler = BPRSampler(ei, 10, generator=torch.Generator().manual_seed(0))
    neg = sampler.negatives(torch.zeros(20000, dtype=torch.long))
    counts = torch.bincount(neg, minlength=10)
    assert counts[:5].sum() == 0
    assert (counts[5:].float() / 20000 - 0.2).abs().max() < 0.02
