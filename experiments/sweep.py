"""Sensitivity to one hyper-parameter (the paper's Figures 7 and 8: γ and β), over several seeds, as plots.

    python -m experiments.sweep --param gamma --values 0,0.1,0.3,1.0 --dataset ml100k --jobs 2 --threads 1
    python -m experiments.sweep --param beta --values 0,0.1,0.3,1.0 --dataset ml100k --jobs 2 --threads 1
    python -m experiments.sweep --param gamma --values 0,0.1,0.3,0.5,1.0 --dataset baby,sports,clothing --device cuda
    python -m experiments.sweep --param gamma --values 0.1,0.3,1,3,10 --tuned runs/tune/ml100k-idsf  # at the selected β

Each value v trains the dataset config with ``--set PARAM=v`` for every seed (γ = 0 is the paper's
"structure w/o ID" by another road, β = 0 its "content w/o contrast"); the value equal to the config's own
is the same run as Table 3's IDSF row (shared run store, see experiments/grid.py). Writes OUT/<param>.md and
.csv (mean ± std of the test metrics per value, and whether each value differs from the config's own value
beyond the spread) and, per dataset, OUT/<param>_<dataset>_recall20.png and _ndcg20.png (``--format pdf|svg``): test Recall@20 and
NDCG@20 (%) against the value (evenly spaced, as the paper's Figures 7 and 8), with error bars of one standard deviation over the seeds.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from experiments.grid import (METRICS, NOT_FINISHED, Cell, CellRuns, Tuned, add_grid_options, cell_config, comparison,
                              dataset_configs, fmt, load_tuned, parse_seeds, parse_values, publish, run_cells)
from experiments.plot import Series, add_format_option, line_plot
from idsf_pyg.cli import entry_point
from idsf_pyg.errors import ConfigError, DataFormatError
from idsf_pyg.train.config import TRAIN_FIELDS, full_model_args, model_arg_value

PLOTTED = [("Recall@20", "recall@20"), ("NDCG@20", "ndcg@20")]


def label(param: str, value: float) -> str:
    return f"{param}={value:g}"


def config_value(config: Path, param: str, extra: str, tuned: Optional[Tuned] = None) -> float:
    """The dataset config's own value of ``param`` (what the other experiments run), or a study's selected one
    (``--tuned``)."""
    cfg = cell_config(config, Cell("base"), 0, extra, tuned)
    if param in TRAIN_FIELDS:
        return getattr(cfg.train, param)
    try:
        return model_arg_value(cfg.model, cfg.model_args, param)
    except KeyError:
        args = full_model_args(cfg.model, cfg.model_args)
        raise ConfigError(f"{param!r} is neither a training setting nor an argument of {cfg.model!r} "
                          f"(its arguments: {', '.join(sorted(args))})", "--param") from None


def plot(path: Path, param: str, values: List[float], cells: Dict[str, CellRuns], dataset: str, metric: str,
         key: str) -> None:
    """One metric against the value, error bars of one std over the seeds (none with a single seed); values
    whose runs have not all finished (``--finished-only``) are left out."""
    values = [v for v in values if label(param, v) in cells]
    stats = [cells[label(param, v)].mean_std(key) for v in values]
    draw(path, param, values, stats, dataset, metric, len(next(iter(cells.values())).results))


def draw(path: Path, param: str, values: List[float], stats: List[Tuple[float, float]], dataset: str, metric: str,
         seeds: int):
    means, stds = [m for m, _ in stats], [s if s == s else 0.0 for _, s in stats]
    # the legend goes to the corner the line's right end leaves free
    mid = (max(m + s for m, s in zip(means, stds)) + min(m - s for m, s in zip(means, stds))) / 2
    # evenly spaced values, as the paper's Figures 7 and 8 draw them
    return line_plot(path, [Series(f"test {metric}", list(range(len(values))), means, yerr=stds)],
              title=f"{dataset}: {metric} vs {param} ({seeds} seed{'' if seeds == 1 else 's'})",
              xlabel=param, ylabel=f"{metric} (%)",
              legend="lower right" if means[-1] > mid else "upper right", xticklabels=[f"{v:g}" for v in values])


def replot(table: Path, param: str, dataset: str, seeds: int, out: Path, fmt: str) -> Dict[Path, object]:
    """The figures of a finished sweep from its own table (``<param>.csv``: one row per value, cells "mean ± std"),
    without the run store."""
    rows = list(csv.reader(open(table, newline="", encoding="utf-8")))
    if not rows or rows[0][0] != param:
        raise DataFormatError(table, f"not a sweep table of {param!r} (its first column is "
                                     f"{rows[0][0] if rows else 'missing'!r})", line=1)
    written = {}
    for metric, key in PLOTTED:
        head = {"recall@20": "R@20", "ndcg@20": "N@20"}[key]
        column = next((i for i, h in enumerate(rows[0]) if h in (head, f"{dataset} {head}")), None)
        if column is None:
            raise DataFormatError(table, f"no column {head!r} (or {dataset + ' ' + head!r})", line=1)
        values, stats = [], []
        for n, row in enumerate(rows[1:], start=2):
            if row[column] == NOT_FINISHED:
                continue
            mean, _, std = row[column].partition(" ± ")
            try:
                values.append(float(row[0]))
                stats.append((float(mean), float(std) if std else float("nan")))
            except ValueError:
                raise DataFormatError(table, f"{row[column]!r} is not 'mean ± std'", line=n, field=head) from None
        path = out / f"{param}_{dataset}_{key.replace('@', '')}.{fmt}"
        written[path] = draw(path, param, values, stats, dataset, metric, seeds)
    return written


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--param", required=True, help="the hyper-parameter to vary (gamma, beta, tau, lr, ...)")
    p.add_argument("--values", help="comma-separated values, e.g. 0,0.1,0.3,1.0 (required unless --replot)")
    add_grid_options(p, "sweep")
    add_format_option(p)
    p.add_argument("--replot", type=Path, metavar="TABLE_CSV",
                   help="train nothing: draw the figures of a finished sweep from its <param>.csv (one dataset, "
                        "--dataset names it, --seeds gives the count) into --out")
    args = p.parse_args(argv)
    if args.replot is not None:
        return replot(args.replot, args.param, args.dataset, len(parse_seeds(args.seeds)), args.out, args.format)
    if args.values is None:
        raise ConfigError("give the values to sweep (or --replot TABLE_CSV)", "--values")
    values = sorted(parse_values(args.values, "--values"))
    configs = dataset_configs(args.dataset)
    tuned = load_tuned(args.tuned, configs) if args.tuned else None
    own = {name: config_value(path, args.param, args.extra, tuned) for name, path in configs}
    whose = "tuned" if tuned is not None else "config"
    cells = [Cell(label(args.param, v), {args.param: v}) for v in values]
    datasets = run_cells(configs, cells, args, f"sweep {args.param}")

    header = [args.param] + [f"{n} {h}" if len(datasets) > 1 else h for n in datasets for h, _ in METRICS]
    header.append(f"R@20 vs the {whose} value")
    rows = [header]
    for v, cell in zip(values, cells):
        row = [f"{v:g}"]
        verdicts = []
        for name, runs in datasets.items():
            if cell.label not in runs:
                row += [NOT_FINISHED] * len(METRICS)
                verdicts.append(f"{name}: —" if len(datasets) > 1 else "—")
                continue
            row += [fmt(*runs[cell.label].mean_std(k)) for _, k in METRICS]
            ref = label(args.param, own[name])
            verdict = (f"({whose} value)" if v == own[name] else
                       comparison(runs[cell.label].mean_std("recall@20"), runs[ref].mean_std("recall@20"))
                       if ref in runs else
                       f"{whose} value {own[name]:g} {NOT_FINISHED if own[name] in values else 'not swept'}")
            verdicts.append(f"{name}: {verdict}" if len(datasets) > 1 else verdict)
        rows.append(row + ["; ".join(verdicts)])
    notes = []
    for name, runs in datasets.items():
        if not runs:
            continue
        pngs = []
        for metric, key in PLOTTED:
            png = args.out / f"{args.param}_{name}_{key.replace('@', '')}.{args.format}"
            plot(png, args.param, values, runs, name, metric, key)
            pngs.append(f"[{png.name}]({png.name})")
        notes.append(f"Plots ({name}): {', '.join(pngs)}.")
    publish(args.out, args.param, rows, datasets, args.extra, notes)
    return datasets


if __name__ == "__main__":
    entry_point(main)
