"""Write a dataset's split and item features in the layout of the authors' IDSF code (and LATTICE, whose loader it
kept), to run that code side by side with idsf-pyg on exactly the same input.

    python -m experiments.export_official --config experiments/configs/ml100k.yaml --split-seed 1 \\
        --image title_minilm --text title_minilm --out official/data/ml100k

Writes into --out: ``5-core/train.json``, ``5-core/val.json``, ``5-core/test.json`` (``{"user": [items]}``, the
graph's internal ids), ``image_feat.npy`` and ``text_feat.npy`` (float32, one row per item) and ``export.json``
(the data fingerprint, split seed, feature sources and which modality went where). Their code needs two modalities;
with one, give the same name twice.

--out must not exist: the authors' ``utility/load_data.py`` loads a ``5-core/s_*adj_mat.npz`` it finds there and
never checks it against ``train.json``, so a folder written earlier for another split would train on that split's
graph without a word.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from experiments.train import CONFIG_DIR, parse_assignments
from idsf_pyg.cli import DEBUG_HELP, entry_point
from idsf_pyg.data import EDGE, ITEM, USER, describe, modality_names
from idsf_pyg.data.graph import FEATURE_PREFIX
from idsf_pyg.errors import ConfigError, OutputExistsError
from idsf_pyg.io import write_json, write_text, write_with
from idsf_pyg.train.config import resolve_run_config
from idsf_pyg.train.run import load_run_data

SPLITS = (("train", "edge_index"), ("val", "val_edge_index"), ("test", "test_edge_index"))


def split_lists(edge_index) -> Dict[str, List[int]]:
    """``{"user": [items in edge order]}`` of a ``[2, E]`` user-item edge index."""
    out: Dict[str, List[int]] = {}
    for u, i in edge_index.t().tolist():
        out.setdefault(str(u), []).append(i)
    return out


def export(data, image: str, text: str, out: Path, split_seed: Optional[int] = None) -> Dict[str, Any]:
    """Writes ``data``'s split and the modalities ``image`` and ``text`` into ``out`` (which must not exist);
    ``split_seed`` is recorded in export.json."""
    if out.exists():
        raise OutputExistsError(f"{out} exists: the authors' code would reuse a cached adjacency matrix found there "
                                "(see --help); give a folder that does not exist")
    known = modality_names(data)
    for option, name in (("--image", image), ("--text", text)):
        if name not in known:
            raise ConfigError(f"no modality {name!r} in this dataset; it has {', '.join(known) or 'none'}", option)
    splits = {name: split_lists(getattr(data[EDGE], attr)) for name, attr in SPLITS}
    # Their loader sizes the graph by the largest ids it sees (users: in train.json; items: in any split).
    users = 1 + max(int(u) for u in splits["train"])
    items = 1 + max(i for s in splits.values() for lst in s.values() for i in lst)
    if (users, items) != (data[USER].num_nodes, data[ITEM].num_nodes):
        raise ConfigError(f"the authors' loader would see {users} users and {items} items (largest ids + 1), the graph "
                          f"has {data[USER].num_nodes} and {data[ITEM].num_nodes}: a user without training edges or an "
                          "item in no split cannot be exported to their format", "--config")
    (out / "5-core").mkdir(parents=True)
    for name, lists in splits.items():
        write_text(out / "5-core" / f"{name}.json", json.dumps(lists))
    for filename, modality in (("image_feat.npy", image), ("text_feat.npy", text)):
        x = data[ITEM][FEATURE_PREFIX + modality].detach().cpu().numpy().astype(np.float32)
        write_with(out / filename, lambda f, x=x: np.save(f, x))
    info = describe(data)
    record = {"fingerprint": info["fingerprint"], "split_seed": split_seed,
              "users": users, "items": items, "image_feat.npy": image, "text_feat.npy": text,
              "feature_sources": {m: data.feature_sources.get(m) for m in {image, text}}}
    write_json(out / "export.json", record)
    return record


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m experiments.export_official", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=CONFIG_DIR / "ml100k.yaml",
                   help="dataset config, as for experiments.train (default: %(default)s)")
    p.add_argument("--dataset", help="dataset path, replacing the config's")
    p.add_argument("--feature", action="append", default=[], metavar="NAME=SPEC",
                   help="an item modality, as for experiments.train (repeatable)")
    p.add_argument("--split-seed", type=int, help="seed of the per-user split for files without one")
    p.add_argument("--image", required=True, help="the modality written as image_feat.npy")
    p.add_argument("--text", required=True, help="the modality written as text_feat.npy")
    p.add_argument("--out", type=Path, required=True, help="a folder that does not exist yet (their data/<name>)")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = p.parse_args(argv)
    cfg = resolve_run_config(args.config, dataset=args.dataset, features=parse_assignments(args.feature, "--feature"),
                             split_seed=args.split_seed)
    record = export(load_run_data(cfg), args.image, args.text, args.out, cfg.split_seed)
    print(f"wrote {args.out}: {record['users']} users, {record['items']} items, data fingerprint "
          f"{record['fingerprint'][:8]}…; run the authors' main.py from the folder above data/")
    return record


if __name__ == "__main__":
    entry_point(main)
