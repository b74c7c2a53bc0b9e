"""Train a recommender on one dataset and write a results file.

    python -m experiments.train                                  # IDSF on the built-in synthetic dataset
    python -m experiments.train --config experiments/configs/baby_random.yaml --device cuda --out runs/baby
    python -m experiments.train --config experiments/configs/ml100k.yaml --model bpr --set embedding_dim=64
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import torch
import yaml

from idsf_pyg.data import default_data_root, describe, load_dataset
from idsf_pyg.models import MODELS
from idsf_pyg.train import TrainConfig, hardware, software_versions, train, write_json

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "synthetic.yaml"


def parse_value(text: str) -> Any:
    """``--set k=v`` values: YAML scalars (1e-4, true, [10, 20], batch)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        # YAML 1.1 reads 1e-4 (no dot) as a string; a hyper-parameter that looks like a number is one.
        try:
            return float(value)
        except ValueError:
            pass
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="YAML config (dataset, features, model, model_args, train); default: %(default)s")
    p.add_argument("--dataset", help="override the config's dataset: 'synthetic', a path, or a path relative "
                                     "to $IDSF_DATA (default ../shared/data)")
    p.add_argument("--feature", action="append", default=[], metavar="NAME=SPEC",
                   help="add/replace an item modality: SPEC is a .npy path, 'random[:dim[:std]]' (NAME must start "
                        "with 'random') or 'item-text-minilm' (RecBole .item text)")
    p.add_argument("--model", choices=sorted(MODELS),
                   help="train another model on the config's dataset, with that model's defaults from "
                        "experiments/configs/models/<model>.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model argument, e.g. --set gamma=1.0 --set contrast_scope=batch "
                        "--set structure_no_id=true")
    p.add_argument("--modalities", help="comma-separated subset of the graph's modalities (Table 4)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--seed", type=int, help="training seed (initialization and sampling)")
    p.add_argument("--split-seed", type=int, help="seed of the per-user split for files without one")
    p.add_argument("--epochs", type=int, help="maximum number of epochs")
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, help="BPR triples per step")
    p.add_argument("--eval-every", type=int, help="validate every N epochs")
    p.add_argument("--patience", type=int, help="early stopping: evaluations without improvement")
    p.add_argument("--max-seconds", type=float, help="stop training after this many seconds (then test once)")
    p.add_argument("--mask-val-in-test", action="store_true", help="also mask validation items when testing")
    p.add_argument("--out", type=Path, help="write results.json (and topk.csv) into this folder")
    p.add_argument("--save-topk", action="store_true",
                   help="write each test user's top-20 items (training items excluded) to OUT/topk.csv")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    return p


def model_defaults(model: str) -> Dict[str, Any]:
    path = CONFIG_DIR / "models" / f"{model}.yaml"
    if not path.is_file():
        raise SystemExit(f"no default config for model {model!r} at {path}")
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def resolve_config(args: argparse.Namespace) -> Dict[str, Any]:
    with open(args.config, encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    cfg = copy.deepcopy(cfg)
    cfg.setdefault("model_args", {})
    cfg.setdefault("train", {})
    cfg.setdefault("features", {})
    if args.dataset:
        cfg["dataset"] = args.dataset
    if args.model and args.model != cfg.get("model"):
        # Another model than the config's: its own defaults (configs/models/<model>.yaml) replace the
        # model arguments and the optimizer settings; the dataset and the protocol stay.
        defaults = model_defaults(args.model)
        cfg["model"] = args.model
        cfg["model_args"] = dict(defaults.get("model_args", {}))
        cfg["train"].update(defaults.get("train", {}))
    for item in args.feature:
        name, _, spec = item.partition("=")
        cfg["features"][name] = spec
    for item in args.set:
        key, _, value = item.partition("=")
        cfg["model_args"][key] = parse_value(value)
    if args.modalities:
        cfg["model_args"]["modalities"] = args.modalities.split(",")
    if args.split_seed is not None:
        cfg["split_seed"] = args.split_seed
    overrides = {"seed": args.seed, "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                 "eval_every": args.eval_every, "patience": args.patience, "max_seconds": args.max_seconds}
    cfg["train"].update({k: v for k, v in overrides.items() if v is not None})
    if args.mask_val_in_test:
        cfg["train"]["mask_val_in_test"] = True
    return cfg


def dataset_path(name: str) -> str:
    if name == "synthetic":
        return name
    p = Path(name)
    return str(p if p.is_absolute() or p.exists() else default_data_root() / p)


def print_table(rows: List[Dict[str, Any]], ks) -> None:
    cols = [f"{m}@{k}" for k in ks for m in ("recall", "precision", "ndcg")]
    print("\n| model | split | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for r in rows:
        print(f"| {r['model']} | {r['split']} | " + " | ".join(f"{100 * r[c]:.3f}" for c in cols) + " |")
    print("(values in %, as in the paper's tables)")


def main(argv=None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    cfg = resolve_config(args)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda was asked for, but torch sees no CUDA device")

    t0 = time.perf_counter()
    data = load_dataset(dataset_path(cfg["dataset"]), features=cfg["features"] or None,
                        discover_features=cfg.get("discover_features", True), split_seed=cfg.get("split_seed", 0))
    info = describe(data)
    print(f"data: {info['name']}  users {info['users']}  items {info['items']}  train/val/test edges "
          f"{info['train_edges']}/{info['val_edges']}/{info['test_edges']}  ({time.perf_counter() - t0:.1f}s)")
    for m, d in info["modalities"].items():
        print(f"  modality {m}: {d['dim']}-d, {d['source']}")

    model_cls = MODELS[cfg["model"]]
    model = model_cls.from_graph(data, **cfg["model_args"])
    tcfg = TrainConfig(**cfg["train"])
    if args.no_progress:
        tcfg.progress = False
    print(f"model: {cfg['model']} {cfg['model_args']}\ntrain: {cfg['train']}  device {device}")
    result = train(model, data, tcfg, device=device, save_topk=args.save_topk)
    topk = result.pop("_topk")
    result = {"model": cfg["model"], "config": cfg, "config_file": str(args.config), "seed": tcfg.seed,
              "feature_sources": dict(data.feature_sources), "software": software_versions(),
              "hardware": hardware(device), **result}

    print(f"\n{result['stopped']}; best validation epoch {result['best_epoch']} of {result['epochs_run']}; "
          f"{result['seconds']['per_epoch_mean']:.2f}s per epoch, {result['seconds']['per_eval_mean']:.2f}s "
          f"per evaluation")
    print_table([{"model": cfg["model"], "split": "val", **result["val"]},
                 {"model": cfg["model"], "split": "test", **result["test"]}], tcfg.ks)
    if args.out:
        write_json(args.out / "results.json", result)
        if topk is not None:
            top, users = topk
            with open(args.out / "topk.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["user_id", "item_ids"])
                for u, row in zip(users.tolist(), top.tolist()):
                    w.writerow([u, " ".join(map(str, row))])
        print(f"wrote {args.out / 'results.json'}" + (" and topk.csv" if topk is not None else ""))
    elif args.save_topk:
        print("--save-topk needs --out DIR; top-k lists were not written")
    return result


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The per-run options of the drivers that train many runs (table2, search)."""
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--max-seconds", type=float, help="per-run cap on training time")
    p.add_argument("--extra", default="", help="extra arguments for every experiments.train run, quoted")


def run_options(args: argparse.Namespace) -> List[str]:
    """Those options as experiments.train arguments."""
    argv = ["--device", args.device, "--seed", str(args.seed)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.max_seconds:
        argv += ["--max-seconds", str(args.max_seconds)]
    return argv + args.extra.split()


def run_resumable(run_dir: Path, argv: List[str], tag: str) -> Dict[str, Any]:
    """Trains ``argv`` into ``run_dir`` unless ``run_dir/results.json`` already exists, and returns
    the results either way, so that an interrupted sweep resumes where it stopped."""
    done = run_dir / "results.json"
    if done.is_file():
        print(f"{tag}: finished earlier, reading {done}")
    else:
        print(f"{tag}: training", flush=True)
        main([*argv, "--out", str(run_dir), "--no-progress"])
    return json.loads(done.read_text())


if __name__ == "__main__":
    main()
