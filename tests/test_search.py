"""Grid search: selection reads validation metrics only; runs are resumable."""
import csv
import json
from pathlib import Path

import pytest

from experiments.search import combinations, main, parse_grid, select
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
    with pytest.raises(ConfigError, match="KEY=V1"):
        parse_grid(["lr"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["lr=1", "lr=2"])


def test_search_end_to_end_on_synthetic(tmp_path):
    out, store = tmp_path / "search", tmp_path / "store"
    argv = ["--config", "experiments/configs/synthetic.yaml", "--model", "bpr", "--grid", "lr=0.0001,0.05",
            "--out", str(out), "--store", str(store), "--threads", "1", "--extra", "--epochs 3 --eval-every 1"]
    summary = main(argv)
    rows = list(csv.DictReader(open(out / "search.csv")))
    folders = {row["run"]: Path(row["folder"]) for row in rows}
    assert set(folders) == {"lr=0.0001", "lr=0.05"} and all(f.parent.parent == store for f in folders.values())
    runs = {n: json.loads((f / "results.json").read_text()) for n, f in folders.items()}
    assert runs["lr=0.05"]["config"]["train"]["lr"] == 0.05
    best = max(runs, key=lambda n: runs[n]["val"]["recall@20"])
    assert summary["selected"] == best
    assert summary["test"] == runs[best]["test"]
    for row in rows:
        assert (row["test_recall@20"] != "") == (row["run"] == best)
    # a second call reads the finished runs back instead of training again
    stamp = {n: (f / "results.json").stat().st_mtime_ns for n, f in folders.items()}
    assert main(argv)["selected"] == best
    assert stamp == {n: (f / "results.json").stat().st_mtime_ns for n, f in folders.items()}
    # One store: table2 finds the search's run of the same configuration and trains nothing.
    from experiments import table2
    assert table2.main(["--dataset", "synthetic", "--models", "bpr", "--seeds", "0", "--store", str(store),
                        "--out", str(tmp_path / "t2"), "--threads", "1",
                        "--extra", "--epochs 3 --eval-every 1 --set lr=0.05"]) is not None
    assert stamp["lr=0.05"] == (folders["lr=0.05"] / "results.json").stat().st_mtime_ns
    assert len([d for d in (store / "synthetic").iterdir() if d.is_dir()]) == 2
