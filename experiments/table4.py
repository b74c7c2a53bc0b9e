"""Table 4 of the paper: each modality alone and all fused, without and with the ID enhancement.

    python -m experiments.table4 --dataset ml100k --jobs 2 --threads 1
    python -m experiments.table4 --dataset baby,sports,clothing --device cuda   # with the real feature files
    python -m experiments.table4 --dataset ml100k --tuned runs/tune/ml100k-idsf  # at a tuning study's γ and β

Section 4.4's missing-modality experiment, for the modalities of the dataset's graph (ML-100k: the MiniLM
text of the titles and the Freebase knowledge graph; Amazon: image and text). For each modality m,
*original m* trains IDSF on m alone without the subtle features (``modalities: [m]``, ``content.enhance: false``,
``structure.gamma: 0``: no item ID enters the content, eq. 1, or the propagation, γ = 0 in eq. 7–8)
and *enhanced m* trains it on m alone with them (``--modalities m``); *original fused* and *enhanced fused*
do the same with every modality (*enhanced fused* is the full IDSF, the same run as Table 3's last row).
Cells are the mean ± std over ``--seeds`` of the test metrics at each run's best validation epoch. Writes
OUT/table4.md, table4.csv, table4_runs.csv; the last column says whether enhancing changed R@20 beyond the
spread (enhanced row against the matching original row).
"""
from __future__ import annotations

import argparse
from typing import Dict, List

from experiments.grid import (Cell, CellRuns, add_grid_options, add_verdicts, cell_config, comparison,
                              dataset_configs, metric_table, publish, run_cells)
from idsf_pyg.cli import entry_point
from idsf_pyg.data.graph import modality_names
from idsf_pyg.errors import ConfigError
from idsf_pyg.train.run import load_run_data

ORIGINAL = {"content.enhance": False, "structure.gamma": 0.0}   # no item ID in eq. (1), γ = 0 in eq. (7)-(8)


def cells_for(modalities: List[str]) -> List[Cell]:
    """The paper's row order: original single modalities, original fused, enhanced singles, enhanced fused."""
    return ([Cell(f"original {m}", {"modalities": [m], **ORIGINAL}) for m in modalities]
            + [Cell("original fused", ORIGINAL)]
            + [Cell(f"enhanced {m}", {"modalities": [m]}) for m in modalities] + [Cell("enhanced fused")])


def dataset_modalities(config, extra: str) -> List[str]:
    cfg = cell_config(config, Cell("base"), 0, extra)
    if cfg.model != "idsf":
        raise ConfigError(f"Table 4 varies IDSF's modalities; {config} trains {cfg.model!r}", "--dataset")
    names = list(cfg.model_args.get("modalities") or modality_names(load_run_data(cfg)))
    if len(names) < 2:
        raise ConfigError(f"Table 4 needs at least two modalities; {config} has {names}", "--dataset")
    return names


def enhanced_vs_original(cells: Dict[str, CellRuns], label: str, key: str = "recall@20") -> str:
    """For an "enhanced X" row: how its ``key`` compares with "original X"; "—" for the original rows."""
    kind, _, what = label.partition(" ")
    if kind != "enhanced" or f"original {what}" not in cells:   # an original row, or it has not finished
        return "—"
    return comparison(cells[label].mean_std(key), cells[f"original {what}"].mean_std(key))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.table4", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_grid_options(p, "table4")
    args = p.parse_args(argv)
    configs = dataset_configs(args.dataset)
    modality_sets = {name: dataset_modalities(path, args.extra) for name, path in configs}
    if len({tuple(v) for v in modality_sets.values()}) > 1:  # rows must mean the same thing in every column
        raise ConfigError(f"the datasets have different modalities ({modality_sets}): run them one at a time",
                          "--dataset")
    cells = cells_for(next(iter(modality_sets.values())))
    datasets = run_cells(configs, cells, args, "table4")
    rows = metric_table(datasets, [c.label for c in cells], "Modalities")
    publish(args.out, "table4", add_verdicts(rows, datasets, "R@20: enhanced vs original", enhanced_vs_original),
            datasets, args.extra)
    return datasets


if __name__ == "__main__":
    entry_point(main)
