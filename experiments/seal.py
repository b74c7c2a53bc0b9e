"""Seal run folders: record their files in manifest.json after checking that they are one run's.

    python -m experiments.seal runs/baby                 # a folder a person edited on purpose
    python -m experiments.seal --store runs/store        # every run folder of a store (e.g. written by an
                                                         # idsf-pyg without manifests)

Readers (load_run, recommend, export, resume, table2 and --finished-only) refuse a run folder whose files
differ from its manifest. After an edit you mean (a results.json fixed by hand, a folder copied from an
older version), this command writes the manifest anew, but only after checking what readers check:
config.yaml parses into a valid configuration; results.json has its fields and finite metrics; best.pt
and checkpoint.pt load with weights only, with finite weights; and every run key the folder records
(config.yaml, best.pt, results.json, checkpoint.pt) is the key that config.yaml's configuration gives on
the data it names (the data is loaded, so an edit that changes the configuration is refused: those
weights were not trained with it). It takes each folder's lock, so it is refused while a run writes it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional

from idsf_pyg.cli import DEBUG_HELP, entry_point
from idsf_pyg.errors import ConfigError, IDSFError, RunFolderError
from idsf_pyg.train.checkpoint import read_checkpoint
from idsf_pyg.train.config import RunConfig
from idsf_pyg.train.run import check_run_key, load_run_data
from idsf_pyg.train.run_folder import BEST, CHECKPOINT, CONFIG, RESULTS, RunFolder, check_results, parse_config
from idsf_pyg.trained import read_best


def recorded_keys(folder: RunFolder) -> Dict[str, str]:
    """The run key each file of ``folder`` records, each file checked as its reader checks it (no manifest)."""
    path = folder.file(CONFIG)
    if not path.is_file():
        raise RunFolderError(f"{path}: missing; not a run folder of experiments.train")
    saved = parse_config(path.read_bytes(), path)
    cfg = RunConfig.from_dict(saved["config"], str(path))
    keys = {CONFIG: saved["run_key"]}
    if folder.file(RESULTS).is_file():
        try:
            results = json.loads(folder.file(RESULTS).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise RunFolderError(f"{folder.file(RESULTS)}: unreadable results file ({e})") from None
        check_results(results, folder.file(RESULTS))
        keys[RESULTS] = results["run_key"]
    if folder.file(BEST).is_file():
        keys[BEST] = read_best(folder.file(BEST), folder.file(BEST).read_bytes(), cfg.model)["run_key"]
    if folder.file(CHECKPOINT).is_file():
        keys[CHECKPOINT] = read_checkpoint(folder.file(CHECKPOINT))["key"]
    check_run_key(folder.path, cfg, load_run_data(cfg), saved, keys)
    return keys


def seal(path: Path) -> List[str]:
    """Checks and seals one run folder; returns the files sealed."""
    folder = RunFolder(path)
    with folder.writing():
        recorded_keys(folder)
        return sorted(folder.seal())


def run_folders(store: Path) -> List[Path]:
    return sorted(p.parent for p in store.rglob(CONFIG))


def main(argv: Optional[List[str]] = None) -> Dict[str, str]:
    p = argparse.ArgumentParser(prog="python -m experiments.seal", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", type=Path, help="run folders to seal")
    p.add_argument("--store", type=Path, help="seal every run folder under this run store")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = p.parse_args(argv)
    folders = list(args.runs)
    if args.store is not None:
        if not args.store.is_dir():
            raise ConfigError(f"{args.store}: no such folder", "--store")
        folders += run_folders(args.store)
    if not folders:
        raise ConfigError("name a run folder, or a store with --store", "runs")
    outcome: Dict[str, str] = {}
    failed = []
    for folder in folders:
        if not folder.is_dir():
            raise ConfigError(f"{folder}: no such run folder", "runs")
        try:
            files = seal(folder)
            outcome[str(folder)] = "sealed: " + ", ".join(files)
        except IDSFError as e:
            outcome[str(folder)] = f"not sealed: {e}"
            failed.append(folder)
        print(f"{folder}: {outcome[str(folder)]}", flush=True)
    if failed:
        raise RunFolderError(f"{len(failed)} of {len(folders)} run folders not sealed (reasons above)")
    return outcome


if __name__ == "__main__":
    entry_point(main)
