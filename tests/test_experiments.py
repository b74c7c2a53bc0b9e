"""The paper-experiment commands (Tables 2–4, the γ/β sweeps, the ID-embedding analysis) end to end on the
synthetic graph in seconds, and the pieces under them against independent references: the shared run store
(equal configurations are one run), mean ± std and the spread rule by hand, γ = 0 and β = 0 reproducing the
"structure w/o ID" and "content w/o contrast" ablations exactly (so the store keeps one run for each pair), the
analysis measures by brute force."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments import id_analysis, sweep, table2, table3, table4
from experiments.grid import (Cell, cell_config, comparability, comparison, config_digest, differs, mean_std,
                              store_folder)
from experiments.train import CONFIG_DIR
from idsf_pyg.cli import run_cli
from idsf_pyg.train import run
from idsf_pyg.trained import load_run
from tests.killed_commands import ENDLESS, assert_sigterm_ends_workers, needs_proc_children
from tests.test_plots import read_image

SYNTHETIC = CONFIG_DIR / "synthetic.yaml"
EXTRA = "--epochs 2 --eval-every 1"


def common(tmp_path: Path, out: str, seeds: str = "0,1") -> list:
    return ["--dataset", "synthetic", "--seeds", seeds, "--store", str(tmp_path / "store"), "--out",
            str(tmp_path / out), "--device", "cpu", "--threads", "1", "--extra", EXTRA]


def read_csv(path: Path) -> list:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def runs_by_label(path: Path) -> dict:
    out: dict = {}
    for row in read_csv(path)[1:]:
        out.setdefault(row[1], []).append(row)
    return out


# ------------------------------------------------------------------------------------ summaries and store
def test_mean_std_and_spread_rule_by_hand():
    mean, std = mean_std([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3) and std == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
    assert np.isnan(mean_std([3.0])[1])
    assert differs((10.0, 0.1), (9.7, 0.1)) and not differs((10.0, 0.1), (9.9, 0.1))
    assert not differs((10.0, float("nan")), (1.0, float("nan")))   # one seed: never called a difference
    assert comparison((10.0, float("nan")), (1.0, float("nan"))) == "one seed: no spread"    # nor "within spread"
    assert comparison((10.0, 0.1), (9.7, 0.1)) == "higher" and comparison((9.9, 0.1), (10.0, 0.1)) == "within spread"


def test_equal_configurations_share_one_store_folder(tmp_path):
    base = cell_config(SYNTHETIC, Cell("a"), 0, "")
    same = cell_config(SYNTHETIC, Cell("b", {"gamma": 0.3, "model": "idsf"}), 0, "")  # the config's own
    speed = cell_config(SYNTHETIC, Cell("c", {"contrast.kernel": "dense"}), 0, "")   # not part of the key
    assert config_digest(base) == config_digest(same) == config_digest(speed)
    for other in (cell_config(SYNTHETIC, Cell("d"), 1, ""), cell_config(SYNTHETIC, Cell("e"), 0, "--epochs 3"),
                  cell_config(SYNTHETIC, Cell("f", {"structure.gamma": 0.5}), 0, ""),
                  cell_config(SYNTHETIC, Cell("g", {"modalities": ["view_a"]}), 0, "")):
        assert config_digest(other) != config_digest(base)
    assert store_folder(tmp_path, base).name.startswith("idsf-seed0-")


def test_zero_weight_ablations_equal_their_zero_weights(tmp_path):
    """The ablation switches of earlier versions are their zero weights: "structure w/o ID" is γ = 0 and "content
    w/o contrast" β = 0, one configuration and one store folder whichever way it is asked for (the store of
    earlier versions keyed them so too); each still changes the model."""
    def trained(name: str, **overrides) -> dict:
        cfg = cell_config(SYNTHETIC, Cell(name, overrides), 0, EXTRA)
        return run(cfg, tmp_path / name, device="cpu", threads=1, progress=False)

    full = trained("full")
    for switch, weight in (({"structure_no_id": True}, {"gamma": 0}), ({"no_contrast": True}, {"beta": 0.0})):
        by_switch = cell_config(SYNTHETIC, Cell("switch", switch), 0, EXTRA)
        by_weight = cell_config(SYNTHETIC, Cell("weight", weight), 0, EXTRA)
        assert by_switch.model_args == by_weight.model_args
        assert config_digest(by_switch) == config_digest(by_weight)
        assert trained(f"zero-{next(iter(weight))}", **weight)["test"] != full["test"]   # it does change the model
    # The zero weights and the other ablation switch are runs of their own, apart from the full model.
    base = cell_config(SYNTHETIC, Cell("idsf"), 0, EXTRA)
    for overrides in ({"structure.gamma": 0.0}, {"beta": 0}, {"content_no_id": True}, {"content.enhance": False},
                      {"item_score": "structure"}):
        assert config_digest(cell_config(SYNTHETIC, Cell("other", overrides), 0, EXTRA)) != config_digest(base)
    assert config_digest(cell_config(SYNTHETIC, Cell("a", {"content_no_id": True}), 0, EXTRA)) == \
        config_digest(cell_config(SYNTHETIC, Cell("b", {"content.enhance": False}), 0, EXTRA))


def test_comparability_names_random_features_and_epoch_caps():
    run = {"config": {"dataset": "amazon2014/baby", "train": {"epochs": 10}}, "stopped": "max epochs",
           "feature_sources": {"random_image": "random:4096 (seed 0)"}}
    text = comparability([run])
    assert "NOT comparable" in text and "1 of 1 runs stopped at the epoch cap (10 epochs)" in text
    real = dict(run, feature_sources={"image": "/data/baby/image_feat.npy"}, stopped="early stopping: ...",
                config={"dataset": "amazon2014/baby", "train": {"epochs": 1000}})
    assert "comparable with the paper" in comparability([real]) and "epoch cap" not in comparability([real])
    assert "not in the paper" in comparability([dict(real, config={"dataset": "ml-100k", "train": {"epochs": 1000}})])


# ------------------------------------------------------------------------------------- commands end to end
def test_table3_table4_and_sweeps_share_runs_and_summarize_them(tmp_path):
    assert run_cli(table3.main, common(tmp_path, "t3")) == 0
    rows = read_csv(tmp_path / "t3" / "table3.csv")
    assert [r[0] for r in rows[1:]] == ["w/o content", "content w/o contrast", "content w/o ID", "structure w/o ID",
                                        "IDSF"]
    assert rows[0][1:7] == ["R@10", "P@10", "N@10", "R@20", "P@20", "N@20"]
    # Each cell is the mean ± sample std of its runs' test metric, recomputed here from the runs' own files.
    runs = runs_by_label(tmp_path / "t3" / "table3_runs.csv")
    for row in rows[1:]:
        values = [100 * json.loads((Path(r[3]) / "results.json").read_text())["test"]["recall@20"]
                  for r in runs[row[0]]]
        assert len(values) == 2
        assert row[4] == f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"
    md = (tmp_path / "t3" / "table3.md").read_text()
    assert "not in the paper" in md and "stopped at the epoch cap (2 epochs)" in md and "seeds [0, 1]" in md

    idsf_folders = [Path(r[3]) for r in runs["IDSF"]]
    stamps = [(f / "results.json").stat().st_mtime_ns for f in idsf_folders]
    assert run_cli(table4.main, common(tmp_path, "t4")) == 0
    rows4 = read_csv(tmp_path / "t4" / "table4.csv")
    assert [r[0] for r in rows4[1:]] == ["original view_a", "original view_b", "original fused", "enhanced view_a",
                                         "enhanced view_b", "enhanced fused"]
    runs4 = runs_by_label(tmp_path / "t4" / "table4_runs.csv")
    # "enhanced fused" is Table 3's IDSF: the same runs, read back, not retrained.
    assert [Path(r[3]) for r in runs4["enhanced fused"]] == idsf_folders
    assert [(f / "results.json").stat().st_mtime_ns for f in idsf_folders] == stamps
    assert rows4[1][-1] == "—" and rows4[4][-1] in ("higher", "lower", "within spread")
    single = json.loads((Path(runs4["original view_a"][0][3]) / "results.json").read_text())
    assert single["config"]["model_args"]["modalities"] == ["view_a"]
    assert single["config"]["model_args"]["content"]["enhance"] is False
    assert single["config"]["model_args"]["structure"]["gamma"] == 0.0

    # gamma = 0 is "structure w/o ID" and beta = 0 "content w/o contrast" (one function, see
    # test_zero_weight_ablations_equal_their_zero_weights): the sweeps read Table 3's runs back.
    ablation_folders = [Path(r[3]) for label in ("structure w/o ID", "content w/o contrast") for r in runs[label]]
    ablation_stamps = [(f / "results.json").stat().st_mtime_ns for f in ablation_folders]
    assert run_cli(sweep.main, ["--param", "gamma", "--values", "0,0.3"] + common(tmp_path, "sw")) == 0
    assert run_cli(sweep.main, ["--param", "beta", "--values", "0,0.3"] + common(tmp_path, "sw")) == 0
    assert [(f / "results.json").stat().st_mtime_ns for f in ablation_folders] == ablation_stamps
    for param, ablation in (("gamma", "structure w/o ID"), ("beta", "content w/o contrast")):
        swept = runs_by_label(tmp_path / "sw" / f"{param}_runs.csv")
        assert [Path(r[3]) for r in swept[f"{param}=0"]] == [Path(r[3]) for r in runs[ablation]]
        assert [Path(r[3]) for r in swept[f"{param}=0.3"]] == idsf_folders   # the config's value: the same runs
        table = read_csv(tmp_path / "sw" / f"{param}.csv")
        assert [r[0] for r in table[1:]] == ["0", "0.3"] and table[2][-1] == "(config value)"
        for metric in ("recall20", "ndcg20"):
            assert read_image(tmp_path / "sw" / f"{param}_synthetic_{metric}.png").shape[0] > 100

    # Table 2 over seeds: IDSF's column is the same runs again.
    assert run_cli(table2.main, ["--models", "bpr,idsf"] + common(tmp_path, "t2")) == 0
    runs2 = runs_by_label(tmp_path / "t2" / "table2_runs.csv")
    assert [Path(r[3]) for r in runs2["idsf"]] == idsf_folders
    assert "± " in read_csv(tmp_path / "t2" / "table2.csv")[4][2]


def test_finished_only_reads_the_store_and_trains_nothing(tmp_path, capsys):
    store = tmp_path / "store"

    def finished_runs() -> int:
        return len(list(store.rglob("results.json")))

    # An empty store: every cell "not finished" and named with its count, nothing trained or started.
    assert run_cli(table3.main, common(tmp_path, "t3") + ["--finished-only"]) == 0
    rows = read_csv(tmp_path / "t3" / "table3.csv")
    assert len(rows) == 6 and all(c == "not finished" for r in rows[1:] for c in r[1:7])
    assert all(r[7] == "—" for r in rows[1:])
    assert finished_runs() == 0 and not list(store.rglob("checkpoint.pt"))
    assert "synthetic IDSF: 0 of 2 seeds finished" in (tmp_path / "t3" / "table3.md").read_text()

    # BPR-MF finished for both seeds, LightGCN for one: BPR-MF's column is the training command's, to the
    # digit; LightGCN's is left out (no mean over one seed of two) and named.
    assert run_cli(table2.main, ["--models", "bpr"] + common(tmp_path, "full")) == 0
    assert run_cli(table2.main, ["--models", "lightgcn"] + common(tmp_path, "one", seeds="0")) == 0
    assert finished_runs() == 3
    assert run_cli(table2.main, ["--models", "bpr,lightgcn", "--finished-only"] + common(tmp_path, "part")) == 0
    full, part = (read_csv(tmp_path / d / "table2.csv") for d in ("full", "part"))
    assert part[0] == full[0] == ["Dataset", "Metric(x100%)", "bpr", "Improve"]
    assert part == full
    assert "synthetic lightgcn: 1 of 2 seeds finished" in (tmp_path / "part" / "table2.md").read_text()

    # A sweep with one value finished: its row as trained, the other "not finished", a plot of what finished.
    assert run_cli(sweep.main, ["--param", "gamma", "--values", "0.3"] + common(tmp_path, "sw")) == 0
    trained = read_csv(tmp_path / "sw" / "gamma.csv")
    assert run_cli(sweep.main, ["--param", "gamma", "--values", "0,0.3", "--finished-only"]
                   + common(tmp_path, "swp")) == 0
    swept = read_csv(tmp_path / "swp" / "gamma.csv")
    assert swept[1][:7] == ["0"] + ["not finished"] * 6 and swept[2] == trained[1]
    assert (tmp_path / "swp" / "gamma_synthetic_recall20.png").is_file()
    assert finished_runs() == 5

    # A finished run under another run key (here: a forged key) is refused by name, never read as this one.
    results = Path(read_csv(tmp_path / "full" / "table2_runs.csv")[1][3]) / "results.json"
    record = json.loads(results.read_text())
    results.write_text(json.dumps({**record, "run_key": "another"}))
    capsys.readouterr()
    assert run_cli(table2.main, ["--models", "bpr", "--finished-only"] + common(tmp_path, "part")) == 2
    assert str(results) in capsys.readouterr().err


def test_parallel_jobs_give_the_numbers_of_one_process(tmp_path):
    one = common(tmp_path, "a", seeds="0,1")
    one[one.index("--store") + 1] = str(tmp_path / "s1")
    two = common(tmp_path, "b", seeds="0,1") + ["--jobs", "2"]
    two[two.index("--store") + 1] = str(tmp_path / "s2")
    assert run_cli(table2.main, ["--models", "bpr,lightgcn"] + one) == 0
    assert run_cli(table2.main, ["--models", "bpr,lightgcn"] + two) == 0
    a, b = (read_csv(tmp_path / d / "table2_runs.csv") for d in ("a", "b"))
    assert [r[:3] + r[8:] for r in a] == [r[:3] + r[8:] for r in b]


@needs_proc_children
def test_killed_command_takes_its_workers_with_it(tmp_path):
    # Two endless runs on two workers; SIGTERM to the command alone must end the workers too.
    argv = [sys.executable, "-m", "experiments.table2", "--dataset", "synthetic", "--models", "bpr,lightgcn",
            "--seeds", "0", "--jobs", "2", "--threads", "1", "--device", "cpu", "--store", str(tmp_path / "store"),
            "--out", str(tmp_path / "out"), "--extra", ENDLESS]
    assert_sigterm_ends_workers(argv, tmp_path / "store")


@pytest.mark.parametrize("command, argv, words", [
    (table3.main, ["--seeds", "0,x"], ["--seeds", "integers"]),
    (table3.main, ["--seeds", "1,1"], ["--seeds", "distinct"]),
    (table3.main, ["--jobs", "0"], ["--jobs", ">= 1"]),
    (table3.main, ["--dataset", "nope"], ["--dataset", "no dataset config"]),
    (sweep.main, ["--param", "nonsense", "--values", "1,2"], ["--param", "nonsense"]),
    (sweep.main, ["--param", "gamma", "--values", "0.1,a"], ["--values", "numbers"]),
    (table4.main, ["--extra", "--modalities view_a"], ["two modalities"]),
])
def test_bad_options_are_named(tmp_path, capsys, command, argv, words):
    base = common(tmp_path, "x")
    for k in range(0, len(argv), 2):               # replace or add each option
        if argv[k] in base:
            base[base.index(argv[k]) + 1] = argv[k + 1]
        else:
            base += argv[k:k + 2]
    assert run_cli(command, base) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert not (tmp_path / "store").exists()       # nothing trained before the error


# -------------------------------------------------------------------------------------- the ID analysis
def test_sample_users_are_disjoint_and_within_bounds():
    # user 0: {0, 1}; 1: {1, 2, 3} (too many); 2: {4, 5}; 3: {6, 7}; 4: {8} (too few); 5: {0, 9} (shares 0 with user 0)
    users = [0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 5, 5]
    items = [0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 9]
    edges = torch.tensor([users, items])
    for seed in range(5):
        sample = id_analysis.sample_users(edges, 6, users=3, max_items=2, seed=seed)
        chosen = {u for u, _ in sample}
        taken = [i for _, its in sample for i in its]
        assert len(chosen) == 3 and len(taken) == len(set(taken)) and not chosen & {1, 4}
        assert not {0, 5} <= chosen
    with pytest.raises(Exception, match="only 3 users"):
        id_analysis.sample_users(edges, 6, users=4, max_items=2, seed=0)
    # shared="first": user 1 ({1, 2, 3}) now fits beside user 0, keeping {2, 3}; the groups still partition
    for seed in range(5):
        sample = id_analysis.sample_users(edges, 6, users=4, max_items=3, seed=seed, shared="first")
        taken = [i for _, its in sample for i in its]
        assert len(sample) == 4 and len(taken) == len(set(taken)) and all(len(its) >= 2 for _, its in sample)
        groups = dict(sample)
        if 0 in groups and 1 in groups:   # user 0 came first (after user 1, it would keep {0} only: skipped)
            assert groups[0] == [0, 1] and groups[1] == [2, 3]
    assert any(set(dict(id_analysis.sample_users(edges, 6, 4, 3, seed, shared="first"))) >= {0, 1}
               for seed in range(20))    # the case above happens


def test_analysis_measures_against_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5))
    groups = np.repeat(np.arange(6), 5)
    rate, chance = id_analysis.same_user_rate(x, groups)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    hits = 0
    for i in range(30):
        others = sorted((j for j in range(30) if j != i), key=lambda j: -unit[i] @ unit[j])[:10]
        hits += sum(groups[j] == groups[i] for j in others)
    assert rate == pytest.approx(hits / 300) and chance == pytest.approx(4 / 29)

    users = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3])
    items = torch.tensor([0, 1, 2, 0, 1, 3, 4, 5, 0, 0, 1])
    co = id_analysis.co_interaction(torch.stack([users, items]), 4, 6, k=1)
    baskets = [{0, 1, 2}, {0, 1, 3}, {4, 5, 0}, {0, 1}]
    count = np.array([[0 if i == j else sum(i in b and j in b for b in baskets) for j in range(6)] for i in range(6)])
    expected = np.zeros((6, 6), dtype=bool)
    for i in range(6):               # the most co-interacted items of i (ties kept), at least one user in common
        best = count[i].max()
        expected[i] = (count[i] == best) & (best > 0)
    assert expected[0, 1] and not expected[0, 2] and expected[2, 0] and expected[2, 1]   # ties: 2 has {0, 1}
    assert np.array_equal(co.numpy(), expected)
    feats = rng.normal(size=(6, 3))
    rate, chance = id_analysis.catalog_neighbour_rate(feats, co, k=2, block=4)   # blocks smaller than the catalog
    fu = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    hits = sum(bool(expected[i, j]) for i in range(6)
               for j in sorted((j for j in range(6) if j != i), key=lambda j: -fu[i] @ fu[j])[:2])
    assert rate == pytest.approx(hits / 12) and chance == pytest.approx(expected.sum() / 30)


def test_topk_heat_keeps_each_rows_top_values():
    x = np.random.default_rng(1).normal(size=(12, 4))
    m = id_analysis.topk_heat(x, k=3)
    assert ((m > 0).sum(1) <= 3).all() and m.max() == pytest.approx(1.0) and m.min() == 0.0
    sim = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
    for i in range(12):
        assert set(np.nonzero(m[i])[0]) <= set(np.argsort(-sim[i])[:3])


@pytest.mark.parametrize("method", ["umap", "tsne"])
def test_2d_maps_keep_separated_clusters_apart(method):
    pytest.importorskip("umap" if method == "umap" else "sklearn")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 5
    x = np.concatenate([c + rng.normal(scale=0.3, size=(10, 16)) for c in centres])
    y = id_analysis.embed_2d(x, method, seed=0)
    assert y.shape == (30, 2)
    groups = np.repeat(np.arange(3), 10)
    d = ((y[:, None] - y[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (groups[d.argmin(1)] == groups).all()          # every point's 2-D nearest neighbour is of its cluster
    assert np.array_equal(y, id_analysis.embed_2d(x, method, seed=0))   # same seed, same map


def test_id_analysis_end_to_end(tmp_path):
    assert run_cli(table3.main, common(tmp_path, "t3", seeds="0,1")) == 0
    folders = [r[3] for r in runs_by_label(tmp_path / "t3" / "table3_runs.csv")["IDSF"]]
    out = tmp_path / "ida"
    argv = [a for f in folders for a in ("--run", f)] + ["--out", str(out), "--users", "6", "--max-items", "8"]
    assert run_cli(id_analysis.main, argv) == 0
    rows = read_csv(out / "id_analysis.csv")
    names = [r[0] for r in rows[1:]]
    assert names[:4] == ["id:view_a", "raw:view_a", "content:view_a", "enhanced:view_a"] and names[-1] == "item"
    saved = json.loads((out / "id_analysis.json").read_text())
    assert len(saved["per_run"]) == 2 and len(saved["sample"]) == 6
    assert saved["per_run"][0]["raw:view_a"] == saved["per_run"][1]["raw:view_a"]   # fixed features: seed-free
    for png in ("fig2_id_view_a.png", "fig2_enhanced_view_b.png", "fig3_id_view_a.png", "fig4_raw_view_b.png"):
        assert read_image(out / png).shape[0] > 100
    # The attention weights, against eq. (2) computed by hand from each run's attention parameters.
    for folder, weights in zip(folders, saved["attention_weights"]):
        model = load_run(folder).model
        with torch.no_grad():
            def eq2(att, inputs):
                scores = torch.stack([torch.tanh(e @ att.lin.weight.T + att.lin.bias) @ att.q for e in inputs], 1)
                return torch.softmax(scores, dim=1)
            enhanced = []
            for m in ("view_a", "view_b"):
                e_m, e_id = model.content.proj[m](model.raw_feature(m)), model.content.item_id[m].weight
                alpha = eq2(model.content.enhance_att[m], [e_m, e_id])
                assert weights[f"id weight:{m}"] == pytest.approx(alpha[:, 1].mean().item(), abs=1e-6)
                assert weights[f"id majority:{m}"] == pytest.approx((alpha[:, 1] > 0.5).double().mean().item())
                enhanced.append(alpha[:, :1] * e_m + alpha[:, 1:] * e_id)
            fuse = eq2(model.content.fuse_att, enhanced)
            for j, m in enumerate(("view_a", "view_b")):
                assert weights[f"fusion weight:{m}"] == pytest.approx(fuse[:, j].mean().item(), abs=1e-6)
    table = read_csv(out / "id_analysis_attention.csv")
    assert [r[0] for r in table[1:]] == list(saved["attention_weights"][0])
    assert "attention weight (eq. 2)" in (out / "id_analysis.md").read_text()
    assert run_cli(id_analysis.main, ["--run", str(tmp_path / "nothing"), "--out", str(out)]) == 2


def test_the_newcomers_example_trains_idsf_from_its_parts(capsys):
    """experiments/idsf_example.py, the short entry point: it builds IDSF from its three parts, trains, validates
    every epoch and reads the test split once."""
    from experiments import idsf_example
    idsf_example.main(["--epochs", "2", "--dim", "16"])
    out = capsys.readouterr().out
    assert "IDSFStructure(" in out and "IDSFContent(" in out and "IDSFContrast(" in out
    recalls = [float(line.split()[-1]) for line in out.splitlines() if line.startswith("epoch")]
    assert len(recalls) == 2 and all(0 < r <= 1 for r in recalls)
    assert "best validation epoch" in out and "test recall@20" in out
