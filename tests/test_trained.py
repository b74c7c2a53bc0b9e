"""Using a trained model: load_run, recommend (seen items excluded, ties by id, original ids), export, the
commands' outputs and errors, and a package that installs only the library."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments import export, recommend, train
from idsf_pyg import load_run
from idsf_pyg.cli import run_cli
from idsf_pyg.data import EDGE, make_synthetic
from idsf_pyg.errors import ConfigError, RunFolderError
from idsf_pyg.models import MODELS
from tests.forge import forge_manifest
from tests.time_limits import hang_guard

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def idsf_run(tmp_path_factory):
    """IDSF on the synthetic default, a few epochs, with the test users' top-20 saved."""
    out = tmp_path_factory.mktemp("run") / "idsf"
    assert run_cli(train.main, ["--no-progress", "--threads", "1", "--epochs", "3", "--out", str(out),
                                "--save-topk"]) == 0
    return out


def test_recommend_reproduces_the_saved_test_top_k(idsf_run, capsys):
    with open(idsf_run / "topk.csv") as f:
        saved = {row["user_id"]: [int(i) for i in row["item_ids"].split()] for row in csv.DictReader(f)}
    capsys.readouterr()
    assert run_cli(recommend.main, ["--run", str(idsf_run), "--users", ",".join(saved), "--k", "10", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert set(got) == set(saved)
    for user, items in got.items():
        assert items == saved[user][:10], user


def test_recommendations_exclude_seen_items_and_match_a_brute_force(idsf_run):
    run = load_run(idsf_run)
    data = run.data
    users = list(range(0, run.model.num_users, 7))
    recs = run.recommend(users, k=15)
    with_val = run.recommend(users, k=15, exclude_val=True)
    with_seen = run.recommend(users, k=15, exclude_seen=False)
    scores = run.model.score(torch.tensor(users)).numpy()
    train_items, val_items = {}, {}
    for u, i in data[EDGE].edge_index.t().tolist():
        train_items.setdefault(u, set()).add(i)
    for u, i in data[EDGE].val_edge_index.t().tolist():
        val_items.setdefault(u, set()).add(i)
    for row, u in enumerate(users):
        # Brute force: every item ranked by (-score, id), masked items left out.
        order = sorted(range(run.model.num_items), key=lambda i: (-scores[row, i], i))
        assert recs[u] == [i for i in order if i not in train_items.get(u, set())][:15]
        assert with_seen[u] == order[:15]
        blocked = train_items.get(u, set()) | val_items.get(u, set())
        assert with_val[u] == [i for i in order if i not in blocked][:15]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_recommends_through_the_shared_interface(name):
    data = make_synthetic(num_users=40, num_items=30, min_per_user=3, max_per_user=8, seed=3)
    torch.manual_seed(0)
    model = MODELS[name].from_graph(data)
    users = torch.tensor([0, 5, 5, 39])  # a repeated user gets the same list twice
    items, scores = model.recommend(users, k=5)
    assert items.shape == (4, 5) and torch.equal(items[1], items[2])
    seen = {}
    for u, i in data[EDGE].edge_index.t().tolist():
        seen.setdefault(u, set()).add(i)
    for u, row, s in zip(users.tolist(), items.tolist(), scores):
        assert not set(row) & seen.get(u, set())
        assert (s[:-1] >= s[1:]).all()


def test_ties_go_to_the_lower_item_id_and_short_lists_are_padded():
    data = make_synthetic(num_users=10, num_items=12, min_per_user=3, max_per_user=10, seed=0)
    model = MODELS["bpr"].from_graph(data, embedding_dim=4)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # every score equal
    items, scores = model.recommend(torch.arange(10), k=12)
    seen = {}
    for u, i in data[EDGE].edge_index.t().tolist():
        seen.setdefault(u, set()).add(i)
    for u in range(10):
        left = [i for i in range(12) if i not in seen.get(u, set())]
        assert items[u].tolist() == left + [-1] * (12 - len(left))
    with pytest.raises(ValueError, match="between 1 and the number of items"):
        model.recommend(torch.tensor([0]), k=13)
    with pytest.raises(ValueError, match="not a user"):
        model.recommend(torch.tensor([10]), k=1)


def test_export_writes_embeddings_that_rank_like_recommend(idsf_run, tmp_path):
    out = tmp_path / "export"
    assert run_cli(export.main, ["--run", str(idsf_run), "--out", str(out)]) == 0
    users, items = np.load(out / "user_embeddings.npy"), np.load(out / "item_embeddings.npy")
    run = load_run(idsf_run)
    u, i = run.model.embed()
    np.testing.assert_array_equal(users, u.detach().numpy())
    np.testing.assert_array_equal(items, i.detach().numpy())
    assert (out / "item_ids.txt").read_text().splitlines() == [str(k) for k in range(items.shape[0])]
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["run_key"] == run.results["run_key"] and manifest["dim"] == users.shape[1]
    # A second export does not silently replace the first.
    assert run_cli(export.main, ["--run", str(idsf_run), "--out", str(out)]) == 2


def test_original_ids_in_and_out(tmp_path, capsys):
    # A LATTICE dataset with id maps, as preprocessing.interactions writes it.
    data = tmp_path / "data"
    (data / "5-core").mkdir(parents=True)
    n_users, n_items = 12, 15
    tr, va, te = {}, {}, {}
    for u in range(n_users):
        items = [(u + 2 * j) % n_items for j in range(6)]
        tr[str(u)], va[str(u)], te[str(u)] = items[:4], items[4:5], items[5:]
    for name, obj in (("train", tr), ("val", va), ("test", te)):
        (data / "5-core" / f"{name}.json").write_text(json.dumps(obj))
    (data / "user_list.txt").write_text("".join(f"USER{u:03d}\t{u}\n" for u in range(n_users)))
    (data / "item_list.txt").write_text("".join(f"B{i:05d}X\t{i}\n" for i in range(n_items)))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"dataset": str(data), "model": "bpr", "model_args": {"embedding_dim": 8},
                               "train": {"epochs": 2, "batch_size": 16, "lr": 0.01}}))
    out = tmp_path / "run"
    assert run_cli(train.main, ["--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert run_cli(recommend.main, ["--run", str(out), "--users", "USER003,USER007", "--k", "4", "--original-ids",
                                    "--json"]) == 0
    by_asin = json.loads(capsys.readouterr().out)
    internal = load_run(out).recommend([3, 7], k=4)
    assert by_asin == {"USER003": [f"B{i:05d}X" for i in internal[3]], "USER007": [f"B{i:05d}X" for i in internal[7]]}
    assert run_cli(recommend.main, ["--run", str(out), "--users", "NOBODY", "--original-ids"]) == 2
    assert "unknown user 'NOBODY'" in capsys.readouterr().err


def test_bad_requests_are_clear_messages(idsf_run, tmp_path, capsys):
    def fails(argv, *words):
        assert run_cli(recommend.main, argv) == 2
        err = capsys.readouterr().err
        for w in words:
            assert w in err, err

    fails(["--run", str(idsf_run), "--users", "0,100000"], "unknown user 100000")
    fails(["--run", str(idsf_run), "--users", "0", "--k", "0"], "between 1 and the number of items")
    fails(["--run", str(idsf_run), "--users", "0", "--k", "100000"], "between 1 and the number of items")
    fails(["--run", str(idsf_run), "--users", "0", "--original-ids"], "no item id map")
    fails(["--run", str(tmp_path / "nothing"), "--users", "0"], "no such run folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    fails(["--run", str(empty), "--users", "0"], "no trained model")
    # A model file of another version (another format, or weights that do not fit the model).
    other = tmp_path / "other"
    other.mkdir()
    for f in ("config.yaml", "results.json", "manifest.json"):
        (other / f).write_text((idsf_run / f).read_text())
    best = torch.load(idsf_run / "best.pt", weights_only=True)
    torch.save({**best, "format": 99}, other / "best.pt")
    fails(["--run", str(other), "--users", "0"], "best.pt: differs from what the run wrote")
    forge_manifest(other)  # past the digests: the format check itself
    fails(["--run", str(other), "--users", "0"], "not a model file of this idsf-pyg version")
    state = dict(best["state_dict"])
    state["renamed.weight"] = state.pop(next(iter(state)))
    torch.save({**best, "state_dict": state}, other / "best.pt")
    forge_manifest(other)
    fails(["--run", str(other), "--users", "0"], "does not fit the 'idsf' model")
    with pytest.raises(RunFolderError):
        load_run(other)
    with pytest.raises(ConfigError, match="not an internal id"):
        load_run(idsf_run).recommend(["abc"], k=3)


def test_the_package_installs_only_the_library(tmp_path):
    """The wheel holds idsf_pyg and nothing named experiments/preprocessing; dependencies are ranges."""
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=hang_guard(300))
    if proc.returncode != 0 and "No module named" in proc.stderr:
        pytest.skip(f"cannot build a wheel offline here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("idsf_pyg-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "idsf_pyg" in tops and all(t == "idsf_pyg" or t.endswith(".dist-info") for t in tops), tops
    assert "idsf_pyg/trained.py" in names and not any(n.startswith(("experiments/", "preprocessing/")) for n in names)
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert requires and not any("==" in r.split(";")[0] for r in requires), requires  # ranges, no pins
    assert any("sentence-transformers" in r and "extra == \"preprocessing\"" in r for r in requires)
    assert not any("sentence-transformers" in r and "extra" not in r for r in requires)
