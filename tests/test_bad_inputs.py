"""A corpus of bad inputs through the real entry points: each ends with exit status 2 and a message that
names the file, line, field, key or option, never a traceback, and nothing is trained on it.

Every case writes its files at test time and runs the command's ``main`` through ``idsf_pyg.cli.run_cli``,
exactly what ``python -m <command>`` does (one case runs a real subprocess to prove that).
"""
from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
import pytest

from experiments import search, table2, train
from idsf_pyg.cli import run_cli
from preprocessing import download, image_features, interactions, text_features
from tests.time_limits import hang_guard

REPO = Path(__file__).resolve().parents[1]
NUM_USERS, NUM_ITEMS = 20, 30


def interactions_of(u: int) -> List[int]:
    return [(u + 3 * j) % NUM_ITEMS for j in range(8)]


def write_split(folder: Path, train_: Dict, val: Dict, test: Dict) -> Path:
    core = folder / "5-core"
    core.mkdir(parents=True, exist_ok=True)
    for name, obj in (("train", train_), ("val", val), ("test", test)):
        (core / f"{name}.json").write_text(json.dumps(obj))
    return folder


def good_split() -> Tuple[Dict, Dict, Dict]:
    tr, va, te = {}, {}, {}
    for u in range(NUM_USERS):
        items = interactions_of(u)
        tr[str(u)], va[str(u)], te[str(u)] = items[:6], items[6:7], items[7:]
    return tr, va, te


def write_config(folder: Path, text: str = None, **sections) -> Path:
    cfg = {"dataset": str(folder / "data"), "model": "bpr", "model_args": {"embedding_dim": 8},
           "train": {"epochs": 2, "batch_size": 64, "lr": 0.01}}
    for k, v in sections.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    path = folder / "config.yaml"
    path.write_text(text if text is not None else json.dumps(cfg))  # JSON is YAML
    return path


@pytest.fixture()
def ws(tmp_path):
    """A workspace with a valid dataset (tmp/data) and config (tmp/config.yaml)."""
    write_split(tmp_path / "data", *good_split())
    write_config(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished run folder of the workspace's config (seed 0)."""
    root = tmp_path_factory.mktemp("finished")
    write_split(root / "data", *good_split())
    cfg = write_config(root)
    assert run_cli(train.main, ["--config", str(cfg), "--out", str(root / "run"), "--no-progress"]) == 0
    return root


# ------------------------------------------------------------------ the cases
# Each: (id, setup(ws) -> (main, argv), words the message must contain)
Case = Tuple[str, Callable, List[str]]


def _train(*argv):
    return lambda ws: (train.main, ["--config", str(ws / "config.yaml"), "--no-progress", *argv])


def _cfg(text=None, **sections):
    def setup(ws):
        write_config(ws, text, **sections)
        return train.main, ["--config", str(ws / "config.yaml"), "--no-progress"]
    return setup


def _data(mutate):
    """Mutates the workspace's dataset, then trains on it."""
    def setup(ws):
        mutate(ws / "data")
        return train.main, ["--config", str(ws / "config.yaml"), "--no-progress"]
    return setup


def _json(name, obj):
    return lambda d: (d / "5-core" / f"{name}.json").write_text(json.dumps(obj) if not isinstance(obj, str) else obj)


def _split_with(**changes):
    tr, va, te = good_split()
    splits = {"train": tr, "val": va, "test": te}
    for name, obj in changes.items():
        splits[name] = obj
    return lambda d: write_split(d, splits["train"], splits["val"], splits["test"])


def _feature(arr_fn, name="image_feat.npy", item_list=True):
    def mutate(d):
        if item_list:
            (d / "item_list.txt").write_text("".join(f"a{i}\t{i}\n" for i in range(NUM_ITEMS)))
        np.save(d / name, arr_fn(), allow_pickle=True)
    return mutate


def _inter(text):
    def setup(ws):
        (ws / "data.inter").write_text(text)
        return train.main, ["--config", str(ws / "config.yaml"), "--dataset", str(ws / "data.inter"), "--no-progress"]
    return setup


def _in_finished(*argv):
    def setup(ws):
        return train.main, ["--config", str(ws / "config.yaml"), "--no-progress", "--out", str(ws / "run"), *argv]
    return setup


def _reviews(lines, *argv):
    def setup(ws):
        f = ws / "reviews.json.gz"
        with gzip.open(f, "wt") as h:
            h.write("\n".join(lines) + "\n")
        return interactions.main, ["--reviews", str(f), "--out", str(ws / "pre"), *argv]
    return setup


def _meta(line, *argv, item_list=True):
    def setup(ws):
        pre = ws / "pre"
        pre.mkdir()
        if item_list:
            (pre / "item_list.txt").write_text("A1\t0\n")
        (ws / "meta.json").write_text(line + "\n")
        return text_features.main, ["--meta", str(ws / "meta.json"), "--data", str(pre), *argv]
    return setup


def _image(setup_files, *argv):
    def setup(ws):
        pre = ws / "pre"
        pre.mkdir()
        (pre / "item_list.txt").write_text("A1\t0\n")
        return image_features.main, [*setup_files(ws), "--data", str(pre), *argv]
    return setup


REVIEW = '{"reviewerID": "U%d", "asin": "A%d", "unixReviewTime": 1}'
OK_REVIEWS = [REVIEW % (u, i) for u in range(6) for i in range(6)]

CASES: List[Case] = [
    # --- config files
    ("unknown top-level key", _cfg(trian={"epochs": 3}), ["config.yaml", "trian", "did you mean 'train'"]),
    ("config is a YAML list", _cfg(text="- dataset: x\n- model: bpr\n"), ["config.yaml", "YAML mapping"]),
    ("config is not YAML", _cfg(text="dataset: [unclosed\n"), ["config.yaml", "not valid YAML", "line"]),
    ("config file missing", lambda ws: (train.main, ["--config", str(ws / "nope.yaml")]), ["nope.yaml", "cannot read"]),
    ("unknown train setting", _cfg(train={"lrr": 0.1}), ["train.lrr", "did you mean 'lr'"]),
    ("unknown model argument", _cfg(model_args={"embeding_dim": 8}), ["embeding_dim", "embedding_dim"]),
    ("model argument of wrong type", _cfg(model_args={"embedding_dim": "big"}), ["model_args.embedding_dim", "integer"]),
    ("model argument out of range", _cfg(model_args={"embedding_dim": 0}), ["model_args.embedding_dim", ">= 1"]),
    ("train section not a mapping", _cfg(train=[1, 2]), ["train", "mapping"]),
    ("unknown model", _cfg(model="bprr"), ["model", "bprr", "did you mean 'bpr'"]),
    ("select metric not evaluated", _cfg(train={"select_metric": "recall@50"}), ["select_metric", "recall@50"]),
    ("empty cut-off list", _cfg(train={"ks": []}), ["ks", "non-empty"]),
    ("boolean given as string", _cfg(train={"mask_val_in_test": "yes"}), ["mask_val_in_test", "true or false"]),
    # --- command-line options
    ("epochs 0", _train("--epochs", "0"), ["epochs", ">= 1"]),
    ("batch size 0", _train("--batch-size", "0"), ["batch_size", ">= 1"]),
    ("negative patience", _train("--patience", "-1"), ["patience", ">= 0"]),
    ("eval every 0", _train("--eval-every", "0"), ["eval_every", ">= 1"]),
    ("zero threads", _train("--threads", "0"), ["--threads", ">= 1"]),
    ("negative learning rate", _train("--lr", "-0.1"), ["lr", "> 0"]),
    ("NaN learning rate", _train("--lr", "nan"), ["lr", "finite"]),
    ("--set with a non-number", _train("--set", "lr=fast"), ["lr", "number"]),
    ("--set of an unknown key", _train("--set", "nosuchkey=1"), ["nosuchkey", "has no argument"]),
    ("--set without a value", _train("--set", "gamma"), ["--set", "KEY=VALUE"]),
    ("IDSF option value not allowed", _train("--model", "idsf", "--dataset", "synthetic", "--set",
                                             "contrast_scope=everything"), ["contrast.scope", "everything"]),
    ("modality not in the graph", _train("--model", "idsf", "--dataset", "synthetic", "--modalities", "nothere"),
     ["nothere", "not in the graph"]),
    ("unknown device", _train("--device", "tpu"), ["--device", "tpu"]),
    ("top-k without --out", _train("--save-topk"), ["--save-topk", "--out"]),
    ("checkpoint every 0", _train("--out", "RUN", "--checkpoint-every", "0"), ["--checkpoint-every", ">= 1"]),
    ("--out is a file", lambda ws: ((ws / "f.txt").write_text("x"), _train("--out", str(ws / "f.txt"))(ws))[1],
     ["f.txt", "not a folder"]),
    ("--out cannot be created", lambda ws: ((ws / "f.txt").write_text("x"),
                                            _train("--out", str(ws / "f.txt" / "sub"))(ws))[1],
     ["f.txt", "cannot write"]),
    ("--out holds this finished run", _in_finished(), ["results.json", "finished already", "--overwrite"]),
    ("--out holds another configuration", _in_finished("--seed", "7"),
     ["results.json", "another configuration", "train.seed: 0 -> 7"]),
    ("random features under a real name", _train("--feature", "text=random:8"), ["text", "must start with 'random'"]),
    ("malformed random spec", _train("--feature", "random1=random:big"), ["random:big", "random[:dim[:std]]"]),
    ("feature file missing", _train("--feature", "img=/nonexistent/img.npy"), ["/nonexistent/img.npy", "cannot read"]),
    ("dataset missing", _train("--dataset", "/nonexistent/data"), ["/nonexistent/data", "no such file"]),
    ("malformed edge-weight spec", _train("--edge-weight", "stars"), ["edge_weight", "recency:<half-life"]),
    ("edge weights asked of a split without ratings", _train("--model", "lightgcn", "--set", "use_edge_weight=true",
                                                             "--edge-weight", "rating"),
     ["5-core", "no ratings or timestamps"]),
    ("edge weights used but not loaded", _train("--model", "lightgcn", "--set", "use_edge_weight=true"),
     ["use_edge_weight", "no edge weights"]),
    # --- interaction files
    ("train.json not JSON", _data(_json("train", '{"0": [1, 2],\n "1": [3,, 4]}')),
     ["train.json", "line 2", "not valid JSON"]),
    ("negative item id", _data(_json("val", {"0": [-3]})), ["val.json", "negative"]),
    ("non-integer item id", _data(_json("test", {"0": ["abc"]})), ["test.json", "item id", "not an integer"]),
    ("absurd item id", _data(_json("test", {"0": [10**12]})), ["test.json", "beyond the supported range"]),
    ("ids that are not indices", _data(_json("test", {"0": [5_000_000]})), ["item id 5000000", "not 0-based indices"]),
    ("test pair also a training pair", _data(_split_with(test={"0": [interactions_of(0)[0]]})),
     ["'train' and the 'test' split", "user 0"]),
    ("val identical to test", _data(_split_with(val={"0": [interactions_of(0)[7]]}, test={"0": [interactions_of(0)[7]]})),
     ["'val' and 'test' splits hold the same pairs"]),
    ("empty validation split", _data(_split_with(val={})), ["'val' split is empty"]),
    ("missing test.json", _data(lambda d: (d / "5-core" / "test.json").unlink()), ["test.json", "missing split file"]),
    ("duplicate id in item_list", _data(lambda d: (d / "item_list.txt").write_text("a\t0\nb\t0\n")),
     ["item_list.txt", "line 2", "appears twice"]),
    (".inter with a bad x_label", _inter("userID\titemID\tx_label\n0\t1\t0\n0\t2\t7\n"), ["data.inter", "line 3", "x_label"]),
    (".inter with a missing column", _inter("userID\titemID\tx_label\n0\t1\n"), ["data.inter", "line 2", "columns"]),
    # --- feature matrices
    ("complex features", _data(_feature(lambda: np.ones((NUM_ITEMS, 4), dtype=np.complex64))), ["image_feat.npy", "complex"]),
    ("features without columns", _data(_feature(lambda: np.ones((NUM_ITEMS, 0), dtype=np.float32))),
     ["image_feat.npy", "no columns"]),
    ("object features, no item_list", _data(_feature(lambda: np.array([[1], ["x"]], dtype=object), item_list=False)),
     ["image_feat.npy", "Python objects"]),
    ("features overflowing float32", _data(_feature(lambda: np.full((NUM_ITEMS, 3), 1e300))),
     ["image_feat.npy", "overflows float32", "row 0"]),
    ("NaN features", _data(_feature(lambda: np.where(np.eye(NUM_ITEMS, 4) > 0, np.nan, 1.0).astype(np.float32))),
     ["image_feat.npy", "NaN", "row 0"]),
    ("features with too many rows", _data(_feature(lambda: np.ones((NUM_ITEMS + 5, 4), dtype=np.float32))),
     ["image_feat.npy", f"{NUM_ITEMS + 5} rows", f"{NUM_ITEMS} items"]),
    ("1-D features", _data(_feature(lambda: np.ones(NUM_ITEMS, dtype=np.float32))), ["image_feat.npy", "2-D"]),
    ("features not a .npy", _data(lambda d: (d / "text_feat.npy").write_bytes(b"hello")), ["text_feat.npy", "not a .npy"]),
    # --- table2 and search: every run's config checked before the first one trains
    ("table2 unknown dataset config", lambda ws: (table2.main, ["--dataset", "nope"]), ["--dataset", "no dataset config"]),
    ("table2 unknown model", lambda ws: (table2.main, ["--dataset", "synthetic", "--models", "bpr,foo", "--out",
                                                       str(ws / "t2")]), ["--models", "foo"]),
    ("table2 bad --extra value", lambda ws: (table2.main, ["--dataset", "synthetic", "--models", "bpr", "--out",
                                                           str(ws / "t2"), "--extra", "--set lr=-1"]), ["lr", "> 0"]),
    ("search grid without values", lambda ws: (search.main, ["--config", str(ws / "config.yaml"), "--grid", "lr"]),
     ["--grid", "KEY=V1"]),
    ("search grid value out of range", lambda ws: (search.main, ["--config", str(ws / "config.yaml"), "--grid",
                                                                 "lr=0.01,0", "--out", str(ws / "s")]), ["lr", "> 0"]),
    ("search unknown metric", lambda ws: (search.main, ["--config", str(ws / "config.yaml"), "--grid", "lr=0.01",
                                                        "--metric", "recall@50", "--out", str(ws / "s")]),
     ["--metric", "recall@50"]),
    # --- preprocessing
    ("reviews with a broken line", _reviews([OK_REVIEWS[0], '{"reviewerID": "U1", "asin":'] + OK_REVIEWS[1:]),
     ["reviews.json.gz", "line 2"]),
    ("reviews line without asin", _reviews([OK_REVIEWS[0], '{"reviewerID": "U1"}']), ["line 2", "asin"]),
    ("k-core of 0", _reviews(OK_REVIEWS, "--k", "0"), ["--k", ">= 1"]),
    ("truncated gzip", lambda ws: ((ws / "r.json.gz").write_bytes(gzip.compress(b"\n".join(
        s.encode() for s in OK_REVIEWS))[:60]), (interactions.main, ["--reviews", str(ws / "r.json.gz"), "--out",
                                                                     str(ws / "pre")]))[1], ["r.json.gz", "truncated"]),
    ("outputs exist already", lambda ws: ((ws / "pre").mkdir(), (ws / "pre" / "user_list.txt").write_text("x"),
                                          _reviews(OK_REVIEWS)(ws))[2], ["user_list.txt", "--overwrite"]),
    ("metadata nested too deeply", _meta("{'asin': 'A1', 'title': " + "[" * 5000 + "]" * 5000 + "}"),
     ["meta.json", "line 1"]),
    ("metadata without item_list", _meta("{'asin': 'A1', 'title': 'x'}", item_list=False), ["item_list.txt", "missing"]),
    ("Sentence-BERT model not local", _meta("{'asin': 'A1', 'title': 'x'}", "--model", "/nonexistent/sbert"),
     ["/nonexistent/sbert", "not a local Sentence-BERT"]),
    ("truncated .b record", _image(lambda ws: ((ws / "f.b").write_bytes(b"A1        " + b"\0" * 100),
                                               ["--from-b", str(ws / "f.b")])[1]), ["f.b", "truncated record 0"]),
    ("CNN weights not a state dict", _image(lambda ws: ((ws / "imgs").mkdir(), (ws / "w.pth").write_bytes(b"junk"),
                                                        ["--images", str(ws / "imgs"), "--weights", str(ws / "w.pth"),
                                                         "--arch", "resnet18"])[2]), ["w.pth", "state dict"]),
    ("unknown CNN", _image(lambda ws: ((ws / "imgs").mkdir(), ["--images", str(ws / "imgs"), "--random-weights",
                                                               "--arch", "resnet9000"])[1]), ["--arch", "resnet9000"]),
    ("download: unknown kind", lambda ws: (download.main, ["--category", "Baby", "--out", str(ws / "raw"), "--only",
                                                           "videos"]), ["--only", "videos"]),
    ("download: malformed digest", lambda ws: (download.main, ["--category", "Baby", "--out", str(ws / "raw"),
                                                               "--sha256", "x.gz=1234"]), ["--sha256", "64 hex"]),
    ("download: malformed digest list", lambda ws: ((ws / "sums.txt").write_text("abc\n"),
                                                    (download.main, ["--category", "Baby", "--out", str(ws / "raw"),
                                                                     "--hashes", str(ws / "sums.txt")]))[1],
     ["sums.txt", "line 1"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_message(case, ws, finished_run, capsys):
    _, setup, words = case
    if "finished" in case[0] or "another configuration" in case[0]:
        shutil.copytree(finished_run / "run", ws / "run")
    main, argv = setup(ws)
    argv = [str(ws / "RUN") if a == "RUN" else a for a in argv]
    status = run_cli(main, argv)
    err = capsys.readouterr().err
    assert status == 2, f"exit status {status}; stderr:\n{err}"
    assert "Traceback" not in err
    message = err.lower()
    for word in words:
        assert word.lower() in message, f"{word!r} not in:\n{err}"
    # Nothing was trained on bad input: no results and no checkpoint appeared.
    assert not list(ws.glob("**/checkpoint.pt"))
    if "finished" not in case[0] and "another configuration" not in case[0]:
        assert not list(ws.glob("**/results.json"))


def test_corpus_size():
    assert len(CASES) >= 40


def test_debug_shows_the_traceback(ws, capsys):
    assert run_cli(train.main, ["--config", str(ws / "config.yaml"), "--epochs", "0", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "ConfigError" in err


def test_real_command_line_prints_one_message(ws):
    write_config(ws, trian={"epochs": 3})
    proc = subprocess.run([sys.executable, "-m", "experiments.train", "--config", str(ws / "config.yaml")],
                          cwd=REPO, capture_output=True, text=True, timeout=hang_guard(300))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "unknown key" in proc.stderr and "trian" in proc.stderr


# ------------------------------------------------------------------ accepted, and said so
def test_repeated_pairs_are_dropped_and_counted(ws, capsys):
    tr, va, te = good_split()
    tr["0"] = tr["0"] + tr["0"][:2]  # two training pairs twice
    write_split(ws / "data", tr, va, te)
    assert run_cli(train.main, ["--config", str(ws / "config.yaml"), "--out", str(ws / "run"), "--no-progress"]) == 0
    assert "2 in train" in capsys.readouterr().out
    res = json.loads((ws / "run" / "results.json").read_text())
    assert res["data"]["split_report"]["duplicates_dropped"] == {"train": 2, "val": 0, "test": 0}
    assert res["data"]["train_edges"] == 6 * NUM_USERS


def test_held_out_ids_without_training_edges_are_reported(ws, capsys):
    tr, va, te = good_split()
    tr = {u: [i for i in items if i != 29] for u, items in tr.items()}  # item 29 loses its training edges
    va["0"] = [29]                                                         # and is held out for users 0 and 8
    assert 29 in te["8"]
    write_split(ws / "data", tr, va, te)
    assert run_cli(train.main, ["--config", str(ws / "config.yaml"), "--out", str(ws / "run"), "--no-progress"]) == 0
    res = json.loads((ws / "run" / "results.json").read_text())
    assert res["data"]["split_report"]["held_out_without_train"] == {"val": {"users": 0, "items": 1},
                                                                     "test": {"users": 0, "items": 1}}
    assert "0 users and 1 items have no training edge" in capsys.readouterr().out


def test_integer_multi_hot_features_are_accepted_as_float32(ws):
    # Real numbers of an integer dtype are features too (e.g. a multi-hot of categories).
    from idsf_pyg.data import load_dataset
    (ws / "data" / "item_list.txt").write_text("".join(f"a{i}\t{i}\n" for i in range(NUM_ITEMS)))
    multi_hot = (np.arange(NUM_ITEMS * 5).reshape(NUM_ITEMS, 5) % 3 == 0).astype(np.uint8)
    np.save(ws / "data" / "category_feat.npy", multi_hot)
    x = load_dataset(ws / "data")["item"].x_category
    assert x.dtype == torch.float32 and x.numpy().tolist() == multi_hot.astype(np.float32).tolist()
