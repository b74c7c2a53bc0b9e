"""Table 3 of the paper: IDSF and its four ablations, over several seeds, in the paper's layout.

    python -m experiments.table3 --dataset ml100k --jobs 2 --threads 1
    python -m experiments.table3 --dataset baby,sports,clothing --device cuda   # with the real feature files
    python -m experiments.table3 --dataset ml100k --tuned runs/tune/ml100k-idsf  # at a tuning study's γ and β

Rows (section 4.3): *w/o content* (the score uses the structural item representation only),
*content w/o contrast* (β = 0), *content w/o ID* (no ID enhancement of the modalities, eq. 1 skipped),
*structure w/o ID* (γ = 0 in eq. 7–8), and the full IDSF, each the dataset config's IDSF with one switch
(``item_score=structure`` etc.). Every cell is the mean ± std over ``--seeds`` of the test metrics read once
at each run's best validation epoch; runs live in the shared store (see experiments/grid.py) and are
reused by the other experiment commands. Writes OUT/table3.md, table3.csv, table3_runs.csv; the last
column compares each row's R@20 with IDSF's ("higher"/"lower" only beyond the two rows' summed std).
"""
from __future__ import annotations

import argparse
from typing import Dict

from experiments.grid import (Cell, CellRuns, add_grid_options, add_verdicts, comparison, dataset_configs,
                              metric_table, publish, run_cells)
from idsf_pyg.cli import entry_point

FULL = "IDSF"
CELLS = [Cell("w/o content", {"item_score": "structure"}),        # e_i^s alone in eq. (11), no L_C
         Cell("content w/o contrast", {"beta": 0.0}),                # β = 0 in eq. (13)
         Cell("content w/o ID", {"content.enhance": False}),         # e^{m'} = e^m in eq. (1)
         Cell("structure w/o ID", {"structure.gamma": 0.0}),         # γ = 0 in eq. (7)-(8)
         Cell(FULL)]


def versus_full(cells: Dict[str, CellRuns], label: str, key: str = "recall@20") -> str:
    """How a row's ``key`` compares with the full IDSF's (beyond the summed std, or "within spread"); "—" for
    IDSF itself or when IDSF has not finished (``--finished-only``)."""
    if label == FULL or FULL not in cells:
        return "—"
    return comparison(cells[label].mean_std(key), cells[FULL].mean_std(key))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.table3", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_grid_options(p, "table3")
    args = p.parse_args(argv)
    datasets = run_cells(dataset_configs(args.dataset), CELLS, args, "table3")
    rows = metric_table(datasets, [c.label for c in CELLS], "Variant")
    publish(args.out, "table3", add_verdicts(rows, datasets, f"R@20 vs {FULL}", versus_full), datasets, args.extra)
    return datasets


if __name__ == "__main__":
    entry_point(main)
