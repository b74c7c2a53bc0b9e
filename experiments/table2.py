"""Train every model on one dataset and write the paper's Table 2 layout (CSV and Markdown).

    python -m experiments.table2 --dataset baby_random
    python -m experiments.table2 --dataset baby --models bpr,ngcf,lightgcn --device cuda

--dataset names a dataset config in experiments/configs/ (baby, baby_random, sports, clothing, ml100k,
synthetic): it fixes the data, the features and IDSF's per-dataset hyper-parameters; every other model
uses its own defaults from experiments/configs/models/<model>.yaml. Each run writes
OUT/<model>/results.json. A run finished earlier is read back only when its key (resolved config,
seed, data fingerprint, features) equals this one's; a folder holding a run of another configuration
is refused with the difference named (--overwrite retrains it); an interrupted run resumes from its
checkpoint. Model selection is on validation; the table shows the test metrics read once at the
selected epoch.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Dict, List

from experiments.train import CONFIG_DIR, add_run_options, run_config, run_resumable
from idsf_pyg.cli import entry_point
from idsf_pyg.errors import ConfigError
from idsf_pyg.io import atomic_open, write_text
from idsf_pyg.models import MODELS

ORDER = ["bpr", "ngcf", "lightgcn", "vbpr", "mmgcn", "grcn", "slmrec", "micro", "bm3", "freedom", "idsf"]
CF = {"bpr", "ngcf", "lightgcn"}
ROWS = [("Recall@10", "recall@10"), ("Precision@10", "precision@10"), ("NDCG@10", "ndcg@10"),
        ("Recall@20", "recall@20"), ("Precision@20", "precision@20"), ("NDCG@20", "ndcg@20")]
LEGACY_ROWS = [("NDCG-legacy@10", "ndcg_legacy@10"), ("NDCG-legacy@20", "ndcg_legacy@20")]


def table(results: Dict[str, dict], dataset: str) -> List[List[str]]:
    models = [m for m in ORDER if m in results] + sorted(m for m in results if m not in ORDER)
    header = ["Dataset", "Metric(x100%)", *models, "Improve"]
    rows = [header]
    for label, key in ROWS + LEGACY_ROWS:
        vals = {m: 100 * results[m]["test"][key] for m in models if key in results[m]["test"]}
        ranked = sorted(vals, key=vals.get, reverse=True)
        cells = []
        for m in models:
            v = f"{vals[m]:.3f}" if m in vals else "-"
            if ranked and m == ranked[0]:
                v = f"**{v}**"
            elif len(ranked) > 1 and m == ranked[1]:
                v = f"<u>{v}</u>"
            cells.append(v)
        improve = (f"{100 * (vals[ranked[0]] - vals[ranked[1]]) / vals[ranked[1]]:.1f}%"
                   if len(ranked) > 1 and vals[ranked[1]] > 0 else "-")
        rows.append([dataset, label, *cells, improve])
    return rows


def main(argv=None) -> Dict[str, dict]:
    p = argparse.ArgumentParser(prog="python -m experiments.table2", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="a config name in experiments/configs/ (e.g. baby_random)")
    p.add_argument("--models", default=",".join(ORDER), help="comma-separated subset (default: all)")
    p.add_argument("--out", type=Path, help="folder for runs and tables (default: runs/table2/<dataset>)")
    add_run_options(p)
    args = p.parse_args(argv)
    config = CONFIG_DIR / f"{args.dataset}.yaml"
    if not config.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"no dataset config {config}; known: {', '.join(known)}", "--dataset")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ConfigError(f"unknown models {unknown}; known: {', '.join(ORDER)}", "--models")
    out = args.out or Path("runs") / "table2" / args.dataset
    configs = {m: run_config(config, args, ["--model", m]) for m in models}  # all checked before training
    results: Dict[str, dict] = {}
    for model in models:
        results[model] = run_resumable(out / model, configs[model], args, f"[table2] {model}")
    rows = table(results, args.dataset)
    with atomic_open(out / "table2.csv", "w", newline="") as f:
        csv.writer(f).writerows([[c.replace("**", "").replace("<u>", "").replace("</u>", "") for c in r]
                                 for r in rows])
    md = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    md += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    notes = [f"- {m}: best validation epoch {r['best_epoch']} ({r['stopped']}); seed {r['seed']}; features "
             f"{', '.join(f'{k}={v}' for k, v in r['feature_sources'].items()) or 'none (ID-only)'}"
             for m, r in results.items()]
    write_text(out / "table2.md", "\n".join(md) + "\n\nTest metrics at the best validation Recall@20; "
               "NDCG is the standard one; NDCG-legacy is the NGCF/LATTICE formula.\n" + "\n".join(notes) + "\n")
    print("\n".join(md))
    print(f"wrote {out / 'table2.csv'} and {out / 'table2.md'}")
    return results


if __name__ == "__main__":
    entry_point(main)
