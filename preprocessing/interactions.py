"""Reviews (``reviews_<Category>_5.json.gz``) -> k-core interactions, id maps and the split.

    python -m preprocessing.interactions --reviews raw/reviews_Baby_5.json.gz --out data/baby

Writes into ``--out``: ``5-core/{train,val,test}.json`` (the LATTICE/MICRO/IDSF split),
``<name>.inter`` (MMRec atomic: userID itemID rating timestamp x_label), ``user_list.txt`` and
``item_list.txt`` (``original_id<TAB>integer_id``) and ``manifest_interactions.json``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from idsf_pyg.cli import DEBUG_HELP, entry_point
from idsf_pyg.data.split import random_split_per_user
from idsf_pyg.errors import ConfigError, DataFormatError
from idsf_pyg.io import atomic_open, write_text

from .common import BadRecords, check_outputs, check_positive, describe_input, iter_lines, write_manifest


def read_reviews(path: Path, bad: BadRecords) -> Tuple[List[str], List[str], List[float], List[float]]:
    """(reviewerID, asin, unixReviewTime, overall) of every review line."""
    users, items, times, ratings = [], [], [], []
    for line_no, raw in iter_lines(path):
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            bad(DataFormatError(path, f"not a JSON object ({e.msg})", line_no))
            continue
        if not isinstance(obj, dict):
            bad(DataFormatError(path, "expected a JSON object per line", line_no))
            continue
        missing = [k for k in ("reviewerID", "asin") if not isinstance(obj.get(k), str) or not obj.get(k)]
        if missing:
            bad(DataFormatError(path, "missing or empty", line_no, field=missing[0]))
            continue
        users.append(obj["reviewerID"])
        items.append(obj["asin"])
        times.append(float(obj.get("unixReviewTime", 0) or 0))
        ratings.append(float(obj.get("overall", 0) or 0))
    return users, items, times, ratings


def k_core(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Mask of interactions kept by iterated k-core filtering (users and items with >= k, until stable)."""
    keep = np.ones(users.shape[0], dtype=bool)
    while True:
        u_cnt = np.bincount(users[keep], minlength=int(users.max()) + 1)
        i_cnt = np.bincount(items[keep], minlength=int(items.max()) + 1)
        new = keep & (u_cnt[users] >= k) & (i_cnt[items] >= k)
        if new.sum() == keep.sum():
            return new
        keep = new


def build(reviews: Path, k: int, seed: int, skip_bad: bool) -> Dict[str, object]:
    bad = BadRecords(skip_bad)
    u_raw, i_raw, times, ratings = read_reviews(reviews, bad)
    if not u_raw:
        raise DataFormatError(reviews, "no reviews found")
    n_lines = len(u_raw)
    # Deterministic ids: sorted original ids (never Python set order).
    u_names, u_idx = np.unique(np.asarray(u_raw), return_inverse=True)
    i_names, i_idx = np.unique(np.asarray(i_raw), return_inverse=True)
    times_a, ratings_a = np.asarray(times), np.asarray(ratings)
    # Duplicates: keep each (user, item) pair's earliest review (ties: first in the file).
    order = np.lexsort((np.arange(n_lines), times_a, i_idx, u_idx))
    key = u_idx[order].astype(np.int64) * len(i_names) + i_idx[order]
    first = np.ones(order.shape[0], dtype=bool)
    first[1:] = key[1:] != key[:-1]
    sel = np.sort(order[first])
    u_idx, i_idx, times_a, ratings_a = u_idx[sel], i_idx[sel], times_a[sel], ratings_a[sel]
    keep = k_core(u_idx, i_idx, k)
    if not keep.any():
        raise DataFormatError(reviews, f"no interactions survive {k}-core filtering")
    u_idx, i_idx, times_a, ratings_a = u_idx[keep], i_idx[keep], times_a[keep], ratings_a[keep]
    # Re-index the survivors 0..n-1, still in sorted original-id order.
    u_keep, u_new = np.unique(u_idx, return_inverse=True)
    i_keep, i_new = np.unique(i_idx, return_inverse=True)
    splits = random_split_per_user(u_new, i_new, seed=seed)
    return {"user_names": u_names[u_keep].tolist(), "item_names": i_names[i_keep].tolist(),
            "users": u_new, "items": i_new, "times": times_a, "ratings": ratings_a, "splits": splits,
            "counts": {"review_lines": n_lines, "duplicates_dropped": int(n_lines - sel.shape[0]),
                       "interactions_after_kcore": int(keep.sum()), "users": int(len(u_keep)),
                       "items": int(len(i_keep)), **{f"{s}_edges": len(v) for s, v in splits.items()}},
            "bad": bad.report()}


def write_outputs(result: Dict[str, object], out: Path, name: str) -> List[Path]:
    core = out / "5-core"
    core.mkdir(parents=True, exist_ok=True)
    paths = []
    label = {}
    for code, split in enumerate(("train", "val", "test")):
        inter = result["splits"][split]
        by_user: Dict[str, List[int]] = {}
        for u, i in zip(inter.users.tolist(), inter.items.tolist()):
            by_user.setdefault(str(u), []).append(i)
            label[(u, i)] = code
        by_user = {u: sorted(v) for u, v in sorted(by_user.items(), key=lambda kv: int(kv[0]))}
        p = core / f"{split}.json"
        write_text(p, json.dumps(by_user))
        paths.append(p)
    p = out / f"{name}.inter"
    with atomic_open(p, "w") as f:
        f.write("userID\titemID\trating\ttimestamp\tx_label\n")
        for u, i, r, t in zip(result["users"].tolist(), result["items"].tolist(), result["ratings"].tolist(),
                              result["times"].tolist()):
            f.write(f"{u}\t{i}\t{r:g}\t{int(t)}\t{label[(u, i)]}\n")
    paths.append(p)
    for fname, names in (("user_list.txt", result["user_names"]), ("item_list.txt", result["item_names"])):
        p = out / fname
        write_text(p, "".join(f"{n}\t{k}\n" for k, n in enumerate(names)))
        paths.append(p)
    return paths


def main(argv=None) -> Dict[str, object]:
    p = argparse.ArgumentParser(prog="python -m preprocessing.interactions", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reviews", type=Path, required=True, help="reviews_<Category>_5.json.gz (or .json)")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    p.add_argument("--name", help="dataset name for the .inter file (default: the folder name)")
    p.add_argument("--k", type=int, default=5, help="k-core threshold for users and items (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-user split (default: %(default)s)")
    p.add_argument("--skip-bad", action="store_true", help="skip and count malformed lines instead of failing")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = p.parse_args(argv)
    check_positive("--k", args.k)
    if args.seed < 0:
        raise ConfigError(f"must be >= 0, got {args.seed}", "--seed")
    name = args.name or args.out.name
    outputs = [args.out / "5-core" / f"{s}.json" for s in ("train", "val", "test")]
    outputs += [args.out / f"{name}.inter", args.out / "user_list.txt", args.out / "item_list.txt"]
    check_outputs(outputs + [args.out / "manifest_interactions.json"], args.overwrite)
    result = build(args.reviews, args.k, args.seed, args.skip_bad)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = write_outputs(result, args.out, name)
    manifest = write_manifest(args.out / "manifest_interactions.json", "interactions",
                              [describe_input(args.reviews)], paths,
                              {"k_core": args.k, "split_seed": args.seed, "counts": result["counts"],
                               "split_rule": "per user: n<10 -> 1 valid + 1 test; else k=int(0.2n), "
                                             "test=k//2, valid=k-k//2", **result["bad"]})
    print(json.dumps(manifest["counts"]))
    return manifest


if __name__ == "__main__":
    entry_point(main)
