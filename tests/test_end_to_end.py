"""The main command end to end on the synthetic default: IDSF vs an ID-only BPR-MF, files it writes."""
import csv
import json

import pytest

from experiments.train import main
from idsf_pyg.data import EDGE, load_dataset


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    idsf = main(["--no-progress", "--out", str(out / "idsf"), "--save-topk"])
    bpr = main(["--no-progress", "--model", "bpr", "--out", str(out / "bpr")])
    return out, idsf, bpr


def test_idsf_beats_id_only_bpr_on_planted_signal(runs):
    _, idsf, bpr = runs
    # The synthetic features are views of the latent item factors: IDSF can read them, BPR-MF cannot.
    # Observed: IDSF ~0.39 vs BPR-MF ~0.10 test recall@20; the margin asked here is far beyond seed noise.
    assert idsf["test"]["recall@20"] > bpr["test"]["recall@20"] + 0.15
    assert idsf["test"]["ndcg@20"] > 2 * bpr["test"]["ndcg@20"]


def test_results_file_records_provenance(runs):
    out, idsf, _ = runs
    res = json.loads((out / "idsf" / "results.json").read_text())
    for key in ("config", "seed", "data", "feature_sources", "software", "hardware", "seconds", "val_curve",
                "test", "val", "best_epoch"):
        assert key in res, key
    assert len(res["data"]["fingerprint"]) == 64
    assert set(res["feature_sources"]) == {"view_a", "view_b"}
    assert "recall@20" in res["test"] and "ndcg@20" in res["test"]
    # Model selection used validation only: the best epoch is the argmax of the validation curve.
    best = max(res["val_curve"], key=lambda c: c["val_recall@20"])
    assert best["epoch"] == res["best_epoch"]


def test_topk_file_reproduces_the_test_recall(runs):
    out, idsf, _ = runs
    data = load_dataset("synthetic")
    store = data[EDGE]
    train = {}
    for u, i in store.edge_index.t().tolist():
        train.setdefault(u, set()).add(i)
    gt = {}
    for u, i in store.test_edge_index.t().tolist():
        gt.setdefault(u, set()).add(i)
    with open(out / "idsf" / "topk.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(gt)
    recalls = []
    for row in rows:
        u, items = int(row["user_id"]), [int(x) for x in row["item_ids"].split()]
        assert len(items) == 20 and not set(items) & train.get(u, set())
        recalls.append(len(set(items) & gt[u]) / len(gt[u]))
    assert abs(sum(recalls) / len(recalls) - idsf["test"]["recall@20"]) < 1e-9
