"""Grid search over hyper-parameters, selected on the validation split only.

    python -m experiments.search --config experiments/configs/baby.yaml --model bpr \\
        --grid lr=1e-4,5e-4,1e-3 --grid embedding_dim=64,128
    python -m experiments.search --config experiments/configs/ml100k.yaml --grid structure.gamma=0.1,0.3,1.0 \\
        --grid beta=0.1,0.3

Every combination of the --grid values is a run of the run store (--store, the one the paper-experiment commands
share: a combination another command trained already is read back, not retrained), trained like
experiments.train (early stopping on validation, test read once at the best validation epoch); a finished run is
read back only when its run key (resolved config, seed, data fingerprint, features) equals this one's, and an
interrupted one resumes from its checkpoint. The combination with the best validation metric (default
recall@20; ties go to the earlier one in grid order) is selected, and only its test metrics are reported:
OUT/search.csv lists the validation metrics of every combination (and its run folder) and the test metrics of
the selected one, OUT/selected.json names it. Keys are settings as for --set: training settings (lr,
batch_size, epochs, patience, ...) go to the trainer, every other key is a model option (part.option for a part
of IDSF).
"""
from __future__ import annotations

import argparse
import csv
import itertools
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from experiments.grid import Cell, cell_config, parse_extra, store_folder, train_in_store
from experiments.train import add_run_options, parse_value
from idsf_pyg.cli import entry_point
from idsf_pyg.errors import ConfigError
from idsf_pyg.io import atomic_open, write_json
from idsf_pyg.train.config import METRIC_NAMES


def parse_grid(specs: Sequence[str]) -> List[Tuple[str, List[Any]]]:
    """``["lr=1e-3,1e-4", "embedding_dim=64"]`` -> ``[("lr", [0.001, 0.0001]), ("embedding_dim", [64])]``."""
    grid = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ConfigError(f"{spec!r}: expected KEY=V1,V2,...", "--grid")
        if key.strip() in (k for k, _ in grid):
            raise ConfigError(f"{spec!r}: key {key.strip()!r} given twice", "--grid")
        grid.append((key.strip(), [parse_value(v.strip()) for v in values.split(",") if v.strip()]))
    return grid


def combinations(grid: List[Tuple[str, List[Any]]]) -> List[Dict[str, Any]]:
    keys = [k for k, _ in grid]
    return [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in grid))]


def combo_name(combo: Dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in combo.items()) or "defaults"


def select(results: Dict[str, dict], metric: str = "recall@20") -> str:
    """The name of the run with the best *validation* ``metric``; the earliest one wins ties.
    Test metrics are never looked at."""
    if not results:
        raise ValueError("no finished runs to select from")
    best_name, best = None, None
    for name, r in results.items():
        if metric not in r.get("val", {}):
            raise KeyError(f"run {name!r} has no validation {metric!r}")
        if best is None or r["val"][metric] > best:
            best_name, best = name, r["val"][metric]
    return best_name


def main(argv=None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m experiments.search", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, required=True, help="dataset config, as for experiments.train")
    p.add_argument("--model", help="model to search (default: the config's)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...", required=True,
                   help="values to try for one hyper-parameter (repeat for a product grid)")
    p.add_argument("--metric", default="recall@20", help="validation metric to select on (default: %(default)s)")
    p.add_argument("--out", type=Path, help="folder for search.csv and selected.json (default: "
                                            "runs/search/<config>_<model>)")
    p.add_argument("--store", type=Path, default=Path("runs") / "store",
                   help="the run store shared with the paper-experiment commands (default: %(default)s)")
    add_run_options(p)
    args = p.parse_args(argv)

    grid = parse_grid(args.grid)
    model_tag = args.model or "config-model"
    out = args.out or Path("runs") / "search" / f"{args.config.stem}_{model_tag}"
    extra = parse_extra(args.extra)
    fixed = {**({"model": args.model} if args.model else {}),
             **({"max_seconds": args.max_seconds} if args.max_seconds is not None else {})}
    # Every combination's config is resolved (and checked) before the first one trains.
    configs = {combo_name(c): cell_config(args.config, Cell(combo_name(c), {**fixed, **c}), args.seed, extra)
               for c in combinations(grid)}
    first = next(iter(configs.values()))
    metric, _, k = args.metric.partition("@")
    if metric not in METRIC_NAMES or not k.isdigit() or int(k) not in first.train.ks:
        raise ConfigError(f"{args.metric!r} is not a validation metric of these runs: use <metric>@<k> with metric "
                          f"one of {', '.join(METRIC_NAMES)} and k in {first.train.ks}", "--metric")
    results: Dict[str, dict] = {}
    folders = {name: store_folder(args.store, cfg) for name, cfg in configs.items()}
    for name, cfg in configs.items():
        print(f"[search] {name}: {folders[name]}", flush=True)
        results[name] = train_in_store(cfg, folders[name], args.device, args.threads, args.overwrite)

    chosen = select(results, args.metric)
    keys = ["recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@20"]
    with atomic_open(out / "search.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "selected", "best_epoch", "stopped", *[f"val_{k}" for k in keys],
                    *[f"test_{k}" for k in keys], "folder"])
        for name, r in results.items():
            sel = name == chosen
            w.writerow([name, int(sel), r["best_epoch"], r["stopped"], *[r["val"].get(k, "") for k in keys],
                        *[(r["test"].get(k, "") if sel else "") for k in keys], str(folders[name])])
    summary = {"selected": chosen, "selected_on": f"val {args.metric}", "grid": dict(grid),
               "val": results[chosen]["val"], "test": results[chosen]["test"],
               "runs": {n: r["val"].get(args.metric) for n, r in results.items()},
               "folders": {n: str(f) for n, f in folders.items()}}
    write_json(out / "selected.json", summary)
    print(f"\n| run | val {args.metric} |\n|---|---|")
    for name, r in results.items():
        print(f"| {name}{' (selected)' if name == chosen else ''} | {100 * r['val'][args.metric]:.3f} |")
    print(f"\nselected on validation: {chosen}; its test metrics (read once): "
          + ", ".join(f"{k} {100 * results[chosen]['test'][k]:.3f}" for k in keys if k in results[chosen]["test"]))
    print(f"wrote {out / 'search.csv'} and {out / 'selected.json'}")
    return summary


if __name__ == "__main__":
    entry_point(main)
