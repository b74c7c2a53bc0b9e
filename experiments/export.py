"""Export a finished run's user and item embeddings (for an approximate-nearest-neighbour index).

    python -m experiments.export --run runs/baby --out exports/baby

Writes into --out: user_embeddings.npy [users, d] and item_embeddings.npy [items, d] (float32; the score of
a pair is the inner product of its rows, exactly what the evaluator ranks by), user_ids.txt and
item_ids.txt (line r = the id of row r: the dataset's original id where it has an id map, else the
internal id), and export.json (run key, model, dimensions, data fingerprint). Existing files are not
replaced without --overwrite; every file is written atomically.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from idsf_pyg.cli import DEBUG_HELP, entry_point
from idsf_pyg.errors import OutputExistsError
from idsf_pyg.io import writable_folder, write_json, write_text, write_with
from idsf_pyg.trained import load_run

FILES = ("user_embeddings.npy", "item_embeddings.npy", "user_ids.txt", "item_ids.txt", "export.json")


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m experiments.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a finished run folder (experiments.train --out)")
    p.add_argument("--out", type=Path, required=True, help="folder for the exported files")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace files exported earlier")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = p.parse_args(argv)
    writable_folder(args.out, "--out")
    existing = [str(args.out / f) for f in FILES if (args.out / f).exists()]
    if existing and not args.overwrite:
        raise OutputExistsError(f"outputs exist already: {', '.join(existing)} (pass --overwrite to replace them)")
    run = load_run(args.run, device=args.device)
    users, items = run.embeddings()
    user_ids = run.user_ids or [str(k) for k in range(users.shape[0])]
    item_ids = run.item_ids or [str(k) for k in range(items.shape[0])]
    write_with(args.out / "user_embeddings.npy", lambda f: np.save(f, users))
    write_with(args.out / "item_embeddings.npy", lambda f: np.save(f, items))
    write_text(args.out / "user_ids.txt", "".join(f"{u}\n" for u in user_ids))
    write_text(args.out / "item_ids.txt", "".join(f"{i}\n" for i in item_ids))
    manifest = {"run": str(args.run), "run_key": (run.results or {}).get("run_key"), "model": run.config.model,
                "users": int(users.shape[0]), "items": int(items.shape[0]), "dim": int(users.shape[1]),
                "score": "inner product of a user row and an item row",
                "ids": "original (user_list.txt / item_list.txt)" if run.user_ids else "internal",
                "data_fingerprint": (run.results or {}).get("data", {}).get("fingerprint")}
    write_json(args.out / "export.json", manifest)
    print(f"wrote {args.out}: {users.shape[0]} users and {items.shape[0]} items, {users.shape[1]}-d")
    return manifest


if __name__ == "__main__":
    entry_point(main)
