"""The Table 2 layout: mean ± std cells, best (by mean) in bold, second underlined, Improve = best over
second best, flagged when the two are within their spread."""
from experiments.table2 import table


def stats(r20, std=0.1):
    keys = ["recall@10", "precision@10", "ndcg@10", "recall@20", "precision@20", "ndcg@20", "ndcg_legacy@10",
            "ndcg_legacy@20"]
    return {k: (r20 * (1 + n / 10), std) for n, k in enumerate(keys)}


def test_table_marks_best_second_and_improvement():
    rows = table({"idsf": stats(10.0), "bpr": stats(4.0), "lightgcn": stats(8.0)}, "toy")
    assert rows[0] == ["Dataset", "Metric(x100%)", "bpr", "lightgcn", "idsf", "Improve"]
    r10 = next(r for r in rows if r[1] == "Recall@10")
    assert r10[2:] == ["4.000 ± 0.100", "<u>8.000 ± 0.100</u>", "**10.000 ± 0.100**", "25.0%"]
    assert [r[1] for r in rows[1:]][-2:] == ["NDCG-legacy@10", "NDCG-legacy@20"]


def test_improvement_within_the_spread_is_flagged():
    # 10.0 vs 9.9 with std 0.1 each: |diff| 0.1 <= 0.2, not a difference
    rows = table({"idsf": stats(10.0), "bpr": stats(9.9)}, "toy")
    r10 = next(r for r in rows if r[1] == "Recall@10")
    assert r10[-1] == "1.0% (within spread)"
    rows = table({"idsf": stats(10.0, std=0.01), "bpr": stats(9.9, std=0.01)}, "toy")
    assert next(r for r in rows if r[1] == "Recall@10")[-1] == "1.0%"
