"""Train every model on one or more datasets over several seeds and write the paper's Table 2 layout.

    python -m experiments.table2 --dataset ml100k --jobs 2 --threads 1
    python -m experiments.table2 --dataset baby_random --models bpr,ngcf,lightgcn --device cuda
    python -m experiments.table2 --dataset baby --seeds 0,1,2,3,4 --device cuda   # with the real feature files
    python -m experiments.table2 --dataset ml100k --tuned runs/tune/ml100k-idsf  # IDSF at a tuning study's selection

--dataset names dataset configs in experiments/configs/ (baby, baby_random, sports, clothing, ml100k,
synthetic): each fixes the data, the features and IDSF's per-dataset hyper-parameters; every other model
uses its own defaults from experiments/configs/models/<model>.yaml. Every model is trained once per seed
into the shared run store (experiments/grid.py: a run's folder is named by its configuration, so IDSF's
column is the same run as Table 3's IDSF row; finished runs are read back, interrupted ones resume).
Model selection is on validation; each cell is the mean ± sample std over the seeds of the test metrics
read once at each run's best validation epoch. The best mean is in bold and the second underlined;
"Improve" is the best over the second, and says "(within spread)" when their means differ by less than
their summed std. Writes OUT/table2.md, table2.csv and table2_runs.csv.
"""
from __future__ import annotations

import argparse
from typing import Dict, List, Tuple

from experiments.grid import (Cell, CellRuns, add_grid_options, dataset_configs, differs, fmt, mean_std, publish,
                              run_cells)
from idsf_pyg.cli import entry_point
from idsf_pyg.errors import ConfigError
from idsf_pyg.models import MODELS

ORDER = ["bpr", "ngcf", "lightgcn", "vbpr", "mmgcn", "grcn", "slmrec", "micro", "bm3", "freedom", "idsf"]
ROWS = [("Recall@10", "recall@10"), ("Precision@10", "precision@10"), ("NDCG@10", "ndcg@10"),
        ("Recall@20", "recall@20"), ("Precision@20", "precision@20"), ("NDCG@20", "ndcg@20")]
LEGACY_ROWS = [("NDCG-legacy@10", "ndcg_legacy@10"), ("NDCG-legacy@20", "ndcg_legacy@20")]


def table(stats: Dict[str, Dict[str, Tuple[float, float]]], dataset: str) -> List[List[str]]:
    """``stats[model][metric] = (mean %, std %)`` -> the paper's rows (one per metric, one column per model)."""
    models = [m for m in ORDER if m in stats] + sorted(m for m in stats if m not in ORDER)
    rows = [["Dataset", "Metric(x100%)", *models, "Improve"]]
    for label, key in ROWS + LEGACY_ROWS:
        vals = {m: stats[m][key] for m in models if key in stats[m]}
        ranked = sorted(vals, key=lambda m: vals[m][0], reverse=True)
        cells = []
        for m in models:
            v = fmt(*vals[m]) if m in vals else "-"
            if ranked and m == ranked[0]:
                v = f"**{v}**"
            elif len(ranked) > 1 and m == ranked[1]:
                v = f"<u>{v}</u>"
            cells.append(v)
        improve = "-"
        if len(ranked) > 1 and vals[ranked[1]][0] > 0:
            best, second = vals[ranked[0]], vals[ranked[1]]
            improve = f"{100 * (best[0] - second[0]) / second[0]:.1f}%"
            if not differs(best, second) and all(s == s for _, s in (best, second)):
                improve += " (within spread)"
        rows.append([dataset, label, *cells, improve])
    return rows


def model_stats(cells: Dict[str, CellRuns]) -> Dict[str, Dict[str, Tuple[float, float]]]:
    return {model: {key: mean_std(runs.values(key)) for _, key in ROWS + LEGACY_ROWS
                    if all(key in r["test"] for r in runs.results)} for model, runs in cells.items()}


def main(argv=None) -> Dict[str, Dict[str, CellRuns]]:
    p = argparse.ArgumentParser(prog="python -m experiments.table2", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(ORDER), help="comma-separated subset (default: all)")
    add_grid_options(p, "table2")
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ConfigError(f"unknown models {unknown}; known: {', '.join(ORDER)}", "--models")
    cells = [Cell(m, {"model": m}) for m in models]
    datasets = run_cells(dataset_configs(args.dataset), cells, args, "table2")
    rows = [r for n, (name, c) in enumerate(datasets.items()) for r in table(model_stats(c), name)[(n > 0):]]
    notes = ["NDCG is the standard one; NDCG-legacy is the NGCF/LATTICE formula."]
    for name, c in datasets.items():
        for m, runs in c.items():
            epochs = ", ".join(f"{r['best_epoch']} ({r['stopped']})" for r in runs.results)
            notes.append(f"{name} {m}: best validation epochs {epochs}")
    publish(args.out, "table2", rows, datasets, args.extra, notes)
    return datasets


if __name__ == "__main__":
    entry_point(main)
