"""Top-K recommendations from a finished run folder.

    python -m experiments.recommend --run runs/baby --users 0,1,2 --k 10
    python -m experiments.recommend --run runs/baby --users A2I1QPVS2C6FTD --k 10 --original-ids --json
    python -m experiments.recommend --run runs/baby --users-file users.txt --k 20 --exclude-val --device cuda

Training items are excluded (--include-seen keeps them; --exclude-val also drops validation items);
ties go to the lower item id. --json prints one JSON object mapping each user id (as a string) to its
list of item ids; otherwise one line per user, "user<TAB>item item ...". With --original-ids, users are
given and items printed in the dataset's own ids (user_list.txt / item_list.txt, e.g. Amazon ASINs).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from idsf_pyg.cli import DEBUG_HELP, entry_point
from idsf_pyg.errors import ConfigError
from idsf_pyg.trained import load_run


def parse_users(args: argparse.Namespace) -> List[str]:
    users: List[str] = []
    if args.users:
        users += [u.strip() for u in args.users.split(",") if u.strip()]
    if args.users_file:
        try:
            raw = args.users_file.read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read {args.users_file} ({e.strerror or e})", "--users-file") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[:e.start].count(b"\n") + 1
            raise ConfigError(f"{args.users_file}, line {line}: not UTF-8 text (byte {e.start}); give one user id "
                              "per line", "--users-file") from None
        for lineno, line in enumerate(text.splitlines(), 1):
            if "\x00" in line:
                raise ConfigError(f"{args.users_file}, line {lineno}: holds a NUL byte (a binary file?); give one "
                                  "user id per line", "--users-file")
            if line.strip():
                users.append(line.strip())
    if not users:
        raise ConfigError("name at least one user (--users 0,1,2 or --users-file FILE)", "--users")
    return users


def main(argv: Optional[List[str]] = None) -> Dict[Any, List[Any]]:
    p = argparse.ArgumentParser(prog="python -m experiments.recommend", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a finished run folder (experiments.train --out)")
    p.add_argument("--users", help="comma-separated user ids")
    p.add_argument("--users-file", type=Path, help="a file with one user id per line")
    p.add_argument("--k", type=int, default=10, help="items per user (default: %(default)s)")
    p.add_argument("--original-ids", action="store_true", help="users and items in the dataset's own ids")
    p.add_argument("--exclude-val", action="store_true", help="also leave out each user's validation items")
    p.add_argument("--include-seen", action="store_true", help="do not leave out the training items")
    p.add_argument("--json", action="store_true", help="one JSON object: user id -> list of item ids")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = p.parse_args(argv)
    users = parse_users(args)
    run = load_run(args.run, device=args.device)
    recs = run.recommend(users, args.k, exclude_seen=not args.include_seen, exclude_val=args.exclude_val,
                         original_ids=args.original_ids)
    if args.json:
        print(json.dumps({str(u): items for u, items in recs.items()}))
    else:
        for u, items in recs.items():
            print(f"{u}\t{' '.join(map(str, items))}")
    return recs


if __name__ == "__main__":
    entry_point(main)
