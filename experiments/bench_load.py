"""How long a dataset takes to load: parsed from its raw files, then read back from ``processed/`` (a benchmark: it
prints figures, asserts nothing).

    python -m experiments.bench_load                          # Baby (LATTICE json) and ML-100k (text + KG)
    python -m experiments.bench_load --dataset amazon2014/sports --repeats 5

Each dataset goes through :class:`~idsf_pyg.data.InteractionDataset` twice in a fresh root: the first load parses
and saves, the second reads the processed graph; each figure is the fastest of ``--repeats`` (a new root each
time). ML-100k's text and KG encodings are cached in ``$IDSF_CACHE`` (computing them once takes ~40 s, not timed:
a warm-up load fills the cache first). The last column checks that the loaded graph's fingerprint is the parsed one's.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch

from idsf_pyg.cli import DEBUG_HELP, entry_point
from idsf_pyg.data import InteractionDataset, MovieLens100K, default_data_root, describe

DEFAULTS = ["amazon2014/baby", "ml-100k"]


def time_loads(source: Path, features: Dict[str, str], repeats: int) -> Dict[str, float]:
    with tempfile.TemporaryDirectory() as root:   # warm-up: feature caches, file cache
        InteractionDataset(source, root, features=features)
    first, second, same = [], [], True
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as root:
            t0 = time.perf_counter()
            a = InteractionDataset(source, root, features=features)[0]
            first.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = InteractionDataset(source, root, features=features)[0]
            second.append(time.perf_counter() - t0)
            same = same and describe(a)["fingerprint"] == describe(b)["fingerprint"]
    return {"first": min(first), "second": min(second), "same": same}


def main(argv=None) -> List[Dict[str, object]]:
    p = argparse.ArgumentParser(prog="python -m experiments.bench_load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", action="append", help=f"dataset under $IDSF_DATA (default: {', '.join(DEFAULTS)})")
    p.add_argument("--repeats", type=int, default=3, help="timings per dataset, the fastest counts (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = []
    print(f"| dataset | first load: parse + save (s) | second load: processed (s) | same graph |\n|---|---|---|---|")
    for name in args.dataset or DEFAULTS:
        source = default_data_root() / name
        features = MovieLens100K.DEFAULT_FEATURES if Path(name).name == "ml-100k" else {}
        r = {"dataset": name, **time_loads(source, features, args.repeats)}
        rows.append(r)
        print(f"| {name}{' (text + KG)' if features else ''} | {r['first']:.3f} | {r['second']:.3f} | {r['same']} |",
              flush=True)
    return rows


if __name__ == "__main__":
    entry_point(main)
