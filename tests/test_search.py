"""Grid search: selection reads validation metrics only; runs are resumable."""
import csv
import json

import pytest

from experiments.search import combinations, main, parse_grid, select, train_args
from idsf_pyg.errors import ConfigError


def fake(val, test):
    return {"val": {"recall@20": val}, "test": {"recall@20": test}}


def test_select_uses_validation_never_test():
    runs = {"a": fake(0.10, 0.30), "b": fake(0.20, 0.05), "c": fake(0.15, 0.50)}
    assert select(runs) == "b"
    # ties go to the earlier run in grid order
    assert select({"x": fake(0.2, 0.1), "y": fake(0.2, 0.9)}) == "x"
    with pytest.raises(ValueError):
        select({})


def test_grid_parsing_and_arguments():
    grid = parse_grid(["lr=1e-3,1e-2", "reg_weight=1e-4", "contrast_scope=batch,all"])
    assert grid == [("lr", [0.001, 0.01]), ("reg_weight", [0.0001]), ("contrast_scope", ["batch", "all"])]
    combos = combinations(grid)
    assert len(combos) == 4 and combos[1] == {"lr": 0.001, "reg_weight": 0.0001, "contrast_scope": "all"}
    assert train_args(combos[0]) == ["--set", "lr=0.001", "--set", "reg_weight=0.0001", "--set",
                                     'contrast_scope="batch"']
    with pytest.raises(ConfigError, match="KEY=V1"):
        parse_grid(["lr"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["lr=1", "lr=2"])


def test_search_end_to_end_on_synthetic(tmp_path):
    out = tmp_path / "search"
    argv = ["--config", "experiments/configs/synthetic.yaml", "--model", "bpr", "--grid", "lr=0.0001,0.05",
            "--out", str(out), "--threads", "1", "--extra", "--epochs 3 --eval-every 1"]
    summary = main(argv)
    runs = {d.name: json.loads((d / "results.json").read_text()) for d in out.iterdir() if d.is_dir()}
    assert set(runs) == {"lr=0.0001", "lr=0.05"}
    assert runs["lr=0.05"]["config"]["train"]["lr"] == 0.05
    best = max(runs, key=lambda n: runs[n]["val"]["recall@20"])
    assert summary["selected"] == best
    assert summary["test"] == runs[best]["test"]
    rows = list(csv.DictReader(open(out / "search.csv")))
    for row in rows:
        assert (row["test_recall@20"] != "") == (row["run"] == best)
    # a second call reads the finished runs back instead of training again
    stamp = {n: (out / n / "results.json").stat().st_mtime_ns for n in runs}
    assert main(argv)["selected"] == best
    assert stamp == {n: (out / n / "results.json").stat().st_mtime_ns for n in runs}
