"""The Table 2 layout: best in bold, second underlined, Improve = best over second best."""
from experiments.table2 import table


def fake(r20, p20=0.001):
    return {"test": {"recall@10": r20 / 2, "precision@10": p20 * 2, "ndcg@10": r20 / 4, "recall@20": r20,
                     "precision@20": p20, "ndcg@20": r20 / 3, "ndcg_legacy@10": r20, "ndcg_legacy@20": r20}}


def test_table_marks_best_second_and_improvement():
    rows = table({"idsf": fake(0.10), "bpr": fake(0.04), "lightgcn": fake(0.08)}, "toy")
    assert rows[0] == ["Dataset", "Metric(x100%)", "bpr", "lightgcn", "idsf", "Improve"]
    r20 = next(r for r in rows if r[1] == "Recall@20")
    assert r20[2:] == ["4.000", "<u>8.000</u>", "**10.000**", "25.0%"]
    assert [r[1] for r in rows[1:]][-2:] == ["NDCG-legacy@10", "NDCG-legacy@20"]
