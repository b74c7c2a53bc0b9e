"""Metrics and the full-ranking evaluator against a per-user NumPy brute force and PyG's LinkPred*."""
import math

import numpy as np
import pytest
import torch
from torch_geometric.metrics import LinkPredMAP, LinkPredNDCG, LinkPredPrecision, LinkPredRecall

from idsf_pyg.eval import FullRankingEvaluator


def brute_force(scores, train, gt, k):
    """Per-user loops: rank all items but the user's training items."""
    out = {m: [] for m in ("recall", "precision", "ndcg", "hit", "map", "ndcg_legacy")}
    for u in range(scores.shape[0]):
        if not gt[u]:
            continue
        s = scores[u].copy()
        s[list(train[u])] = -np.inf
        top = list(np.argsort(-s, kind="stable")[:k])
        rel = [1 if i in gt[u] else 0 for i in top]
        n_hit = sum(rel)
        dcg = sum(r / math.log2(p + 2) for p, r in enumerate(rel))
        idcg = sum(1 / math.log2(p + 2) for p in range(min(len(gt[u]), k)))
        legacy_idcg = sum(1 / math.log2(p + 2) for p in range(n_hit))
        out["recall"].append(n_hit / len(gt[u]))
        out["precision"].append(n_hit / k)
        out["ndcg"].append(dcg / idcg)
        out["hit"].append(float(n_hit > 0))
        prec = [sum(rel[:p + 1]) / (p + 1) for p in range(k)]
        out["map"].append(sum(p * r for p, r in zip(prec, rel)) / min(len(gt[u]), k))
        out["ndcg_legacy"].append(dcg / legacy_idcg if n_hit else 0.0)
    return {m: float(np.mean(v)) for m, v in out.items()}


def random_problem(seed, n_users=40, n_items=60, d=8):
    rng = np.random.default_rng(seed)
    # Integer-valued scores with distinct values per user, so ties cannot make two rankings differ.
    scores = np.stack([rng.permutation(n_items).astype(np.float64) for _ in range(n_users)])
    train, gt = [], []
    for u in range(n_users):
        items = rng.permutation(n_items)
        n_tr, n_gt = rng.integers(1, 15), (0 if u % 7 == 0 else rng.integers(1, 12))
        train.append(set(items[:n_tr].tolist()))
        gt.append(set(items[n_tr:n_tr + n_gt].tolist()))
    return scores, train, gt


def edges(sets):
    pairs = [(u, i) for u, s in enumerate(sets) for i in sorted(s)]
    return torch.tensor(pairs, dtype=torch.long).t()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("batch_size", [7, 1024])
def test_evaluator_matches_brute_force(seed, batch_size):
    scores, train, gt = random_problem(seed)
    n_users, n_items = scores.shape
    ev = FullRankingEvaluator(n_users, n_items, edges(gt), [edges(train)], ks=[5, 20], batch_size=batch_size)
    # user_emb @ item_emb.T == scores with identity item embeddings.
    got = ev.evaluate(torch.tensor(scores), torch.eye(n_items, dtype=torch.float64))
    assert got["num_users"] == sum(1 for g in gt if g)
    for k in (5, 20):
        ref = brute_force(scores, train, gt, k)
        for m, v in ref.items():
            assert abs(got[f"{m}@{k}"] - v) < 1e-12, (m, k)


def test_evaluator_matches_pyg_linkpred_metrics():
    scores, train, gt = random_problem(3)
    n_users, n_items = scores.shape
    k = 10
    ev = FullRankingEvaluator(n_users, n_items, edges(gt), [edges(train)], ks=[k])
    got = ev.evaluate(torch.tensor(scores), torch.eye(n_items, dtype=torch.float64), return_topk=True)
    users = got["topk_users"]
    row_of = {int(u): r for r, u in enumerate(users)}
    label = torch.tensor([(row_of[u], i) for u in row_of for i in sorted(gt[u])]).t()
    for cls, name in ((LinkPredRecall, "recall"), (LinkPredPrecision, "precision"), (LinkPredNDCG, "ndcg"),
                      (LinkPredMAP, "map")):
        metric = cls(k)
        metric.update(got["topk"], label)
        assert abs(float(metric.compute()) - got[f"{name}@{k}"]) < 1e-6, name


def test_legacy_ndcg_is_never_below_standard():
    scores, train, gt = random_problem(4)
    ev = FullRankingEvaluator(*scores.shape, edges(gt), [edges(train)], ks=[10])
    got = ev.evaluate(torch.tensor(scores), torch.eye(scores.shape[1], dtype=torch.float64))
    assert got["ndcg_legacy@10"] >= got["ndcg@10"]


def test_masked_items_never_ranked():
    scores, train, gt = random_problem(5)
    ev = FullRankingEvaluator(*scores.shape, edges(gt), [edges(train)], ks=[20])
    got = ev.evaluate(torch.tensor(scores), torch.eye(scores.shape[1], dtype=torch.float64), return_topk=True)
    for u, row in zip(got["topk_users"].tolist(), got["topk"].tolist()):
        assert not set(row) & train[u]


def test_errors():
    with pytest.raises(ValueError, match="no edges"):
        FullRankingEvaluator(3, 3, torch.empty(2, 0, dtype=torch.long), [])
    with pytest.raises(ValueError, match="unknown metrics"):
        FullRankingEvaluator(3, 3, torch.tensor([[0], [1]]), [], metrics=["auc"])


def test_fewer_unmasked_items_than_k_never_fills_up_with_masked_ones():
    # 10 items; user 0 has 8 of them masked, so only items 8 and 9 can be recommended at K = 5. Its
    # ground truth holds item 8 and item 3 (masked: say a validation item also in test when
    # mask_val_in_test is on). Ranking masked items would score item 3 as a hit (recall 1.0).
    n_items = 10
    train = [set(range(8)), {0}]
    gt = [{8, 3}, {5}]
    scores = np.array([np.arange(n_items, 0, -1), np.arange(n_items)], dtype=np.float64)  # user 0 prefers item 0..
    ev = FullRankingEvaluator(2, n_items, edges(gt), [edges(train)], ks=[5])
    got = ev.evaluate(torch.tensor(scores), torch.eye(n_items, dtype=torch.float64), return_topk=True)
    assert got["topk"][0].tolist() == [8, 9, -1, -1, -1]
    # Hand-computed: user 0 hits item 8 at rank 1 of its 2 rankable items; user 1 ranks 9, 8, 7, 6, 5.
    assert got["recall@5"] == pytest.approx((1 / 2 + 1) / 2)
    assert got["precision@5"] == pytest.approx((1 / 5 + 1 / 5) / 2)
    idcg0 = 1 + 1 / math.log2(3)
    assert got["ndcg@5"] == pytest.approx((1 / idcg0 + (1 / math.log2(6)) / 1) / 2)


def test_nan_scores_are_an_error_not_a_ranking():
    from idsf_pyg.errors import TrainingError
    scores, train, gt = random_problem(6)
    scores[3, 4] = np.nan
    ev = FullRankingEvaluator(*scores.shape, edges(gt), [edges(train)], ks=[10])
    with pytest.raises(TrainingError, match="NaN"):
        ev.evaluate(torch.tensor(scores), torch.eye(scores.shape[1], dtype=torch.float64))
