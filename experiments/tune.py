"""The paper's protocol for hyper-parameters: a grid search on the validation split, pruned, shared by many workers.

    python -m experiments.tune --config experiments/configs/ml100k.yaml --threads 1          # a worker
    python -m experiments.tune --config experiments/configs/ml100k.yaml --tables-only        # the tables so far

The grid is the search space declared for the dataset config and model in experiments/configs/spaces/<config>.yaml
(ML-100k IDSF: γ ∈ {0.1, 0.3, 1, 3, 10} × β ∈ {0, 0.03, 0.1, 0.3, 1}); --param KEY=V1,V2,... replaces an axis or
adds one (--param reg_weight=1e-5,1e-4). Optuna drives it: its grid sampler keeps it a grid search, as the paper
says; its pruner stops a trial whose validation curve is clearly behind (successive halving by default:
at epochs 10, 30, 90, ... only the best third of the trials that got there goes on, ranked by their best
validation so far); its storage holds the study,
so that a study survives restarts and several workers share it.

**Trials are runs of the run store** (--store, shared with table2/3/4, sweep and search): a grid point another
command finished is read back, not retrained; an interrupted or pruned one keeps its checkpoint, and a run
asked for again (a trial retried after a crash, or a later table) resumes from it, so nothing is trained twice.

**Selection on validation only.** The completed trial with the best validation metric (default recall@20, at its
own best epoch; ties go to the earlier grid point) is selected; then its configuration is trained for every
other seed of --seeds (no pruning), and only the selected configuration's test metrics are reported (each
run reads its test split once, at its best validation epoch). MMRec instead picks its grid's best on test
(its issue #64); this command never looks at a test metric to choose.

**Many workers.** Start the same command several times, on one machine (--jobs N starts N worker processes)
or on several machines that share the run store's file system and the study's database: each worker takes a
grid point no other has started, and a worker stops when every grid point is finished or being worked on.
The study lives in --storage: SQLite in the output folder by default (one machine); a database URL
(postgresql://user:pass@host/db, with psycopg2 installed) for several machines. A worker killed mid-trial is
noticed by its missing heartbeat (--grace seconds), its trial is marked failed and retried from its checkpoint;
the workers of --jobs N end with their command, however it is stopped.
A study that has to move to another machine, store or database travels as a text file of its finished trials:
--export FILE there, --import FILE here (experiments/tune_records.py); no imported point is trained again.

Writes OUT/trials.csv (every trial: parameters, state, epochs, validation metric, seconds, run folder),
OUT/surface.md (the validation surface as a grid), OUT/surface.png (a heat map, one panel per value of any third
axis; --format pdf|svg), OUT/selected.md and OUT/selected.json (the selected configuration, its test metrics over
the seeds, and the search's cost); experiments/tune_tables.py writes them. --replay halving:30:3 (repeatable), once
every grid point's run has finished, replays that pruner over the recorded curves and writes OUT/replay.md: what
the pruned search would have stopped, selected and cost (experiments/tune_replay.py).
"""
from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from experiments.extras import require
from experiments.plot import add_format_option
from experiments.grid import (Cell, cell_config, exit_with_parent, locked, parse_extra, parse_seeds, store_folder,
                              train_many)
from experiments.search import combo_name, parse_grid
from experiments.train import CONFIG_DIR, add_run_options, parse_value
from experiments.tune_records import export_records, finished_in_study, import_records
from experiments.tune_replay import best_so_far, parse_pruner_spec, replay_report
from experiments.tune_tables import (COMPLETE, CURVE, FAIL, PRUNED, RUN_KEY, RUNNING, TRAINED_ON, WAITING,
                                    curve_core_seconds, final_selection, to_audit, trained_on, trial_rows,
                                    trials_by_point, unfinished, write_tables)
from idsf_pyg.cli import entry_point
from idsf_pyg.errors import ConfigError, TrainingError
from idsf_pyg.io import write_json, write_text
from idsf_pyg.train import RunConfig, finished_run, run
from idsf_pyg.train.config import METRIC_NAMES
from idsf_pyg.train.run import run_key_here

SPACES_DIR = CONFIG_DIR / "spaces"
PRUNERS = ("halving", "median", "none")


def load_optuna():
    """Optuna, quiet: its per-trial log lines repeat ours, and the heartbeat it flags as experimental is the
    documented way to retry a crashed worker's trial."""
    optuna = require("optuna", "experiments.tune")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# ----------------------------------------------------------------------------------------- the grid
def declared_space(config: Path, model: str, spaces: Path = SPACES_DIR) -> Dict[str, List[Any]]:
    """The search space ``spaces/<config stem>.yaml`` declares for ``model`` (``{}`` when none)."""
    path = spaces / f"{config.stem}.yaml"
    declared = (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
    space = declared.get(model) or {}
    for key, values in space.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: {model}.{key} must be a non-empty list of values", f"{model}.{key}")
    return {k: list(v) for k, v in space.items()}


def search_space(config: Path, model: str, params: Sequence[str]) -> Dict[str, List[Any]]:
    """The declared space with each ``--param KEY=V1,V2,...`` replacing its axis or adding one."""
    space = declared_space(config, model)
    space.update(dict(parse_grid(params)))
    if not space:
        raise ConfigError(f"{SPACES_DIR / (config.stem + '.yaml')} declares no search space for {model}: give the "
                          "axes with --param KEY=V1,V2,...", "--param")
    for key, values in space.items():
        if any(v == w for i, v in enumerate(values) for w in values[:i]):
            raise ConfigError(f"{key}: a value is given twice in {values}", "--param")
    return space


def grid_points(space: Dict[str, List[Any]]) -> List[Dict[str, Any]]:
    """Every combination, in grid order (the first axis varies slowest)."""
    return [dict(zip(space, values)) for values in itertools.product(*space.values())]


def make_pruner(optuna, name: str, min_epochs: int, reduction: int):
    if name == "halving":  # asynchronous successive halving: rungs at min_epochs * reduction ** k
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_epochs, reduction_factor=reduction)
    if name == "median":   # stop below the median of earlier trials at the same epoch, after min_epochs
        return optuna.pruners.MedianPruner(n_startup_trials=reduction, n_warmup_steps=min_epochs)
    return optuna.pruners.NopPruner()


# ---------------------------------------------------------------------------------------- the study
def creates_study(args: argparse.Namespace) -> bool:
    """Whether the command may create the study: a worker or an import may; --tables-only, --export may not."""
    return bool(args.imports) or not (args.tables_only or args.export)


def storage_url(args: argparse.Namespace, out: Path) -> str:
    if args.storage:
        return args.storage
    if creates_study(args):
        out.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(out / 'study.db').resolve()}"


def open_study(optuna, args: argparse.Namespace, out: Path, definition: Dict[str, Any], space: Dict[str, List[Any]]):
    """Creates the study, or loads it and checks that it is the same search (a changed grid, data config,
    pruner or seed under the same name would mix two searches: refused, with the difference named)."""
    url = storage_url(args, out)
    reading = "--export" if args.export else "--tables-only"
    missing = ConfigError(f"no study {definition['study']!r} in {url} to read: start it without {reading} (or "
                          "--import its records), or give the --out (or --storage) and --study of an existing one",
                          reading)
    creating = creates_study(args)
    if not creating and not args.storage and not (out / "study.db").exists():
        raise missing                                           # and leave no empty database behind
    storage = optuna.storages.RDBStorage(
        url, heartbeat_interval=args.heartbeat, grace_period=args.grace,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None),
        engine_kwargs={"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None)
    if not creating and definition["study"] not in optuna.get_all_study_names(storage):
        raise missing
    sampler = optuna.samplers.GridSampler(space, seed=definition["seed"])
    pruner = make_pruner(optuna, args.pruner, args.min_epochs, args.reduction)
    study = optuna.create_study(study_name=definition["study"], storage=storage, sampler=sampler, pruner=pruner,
                                direction="maximize", load_if_exists=True)
    recorded = study.user_attrs.get("definition")
    if recorded is None:
        study.set_user_attr("definition", definition)
    elif recorded != json.loads(json.dumps(definition)):
        diff = [f"{k}: {recorded.get(k)!r} in the study, {definition.get(k)!r} now"
                for k in sorted(set(recorded) | set(definition)) if recorded.get(k) != definition.get(k)]
        raise ConfigError(f"study {definition['study']!r} in {url} is another search ({'; '.join(diff)}): give "
                          "another --study name or the study's own options", "--study")
    return study


def open_points(study, points: Dict[str, Dict[str, Any]]) -> Tuple[List[str], List[str], bool]:
    """Grid points no trial has finished and none is working on, those being worked on, and whether a retry
    of a crashed trial waits in the study."""
    by_point = trials_by_point(study, list(next(iter(points.values()))))
    to_start, running = [], []
    for name in points:
        states = {t.state.name for t in by_point.get(name, [])}
        if states & {COMPLETE, PRUNED} or (FAIL in states and not states & {RUNNING, WAITING}):
            continue
        (running if states & {RUNNING, WAITING} else to_start).append(name)
    waiting = any(t.state.name == WAITING for t in study.get_trials(deepcopy=False))
    return to_start, running, waiting


# ---------------------------------------------------------------------------------------- one trial
class Objective:
    """One trial: its grid point's run of the store, trained (or resumed, or read back) with every validation
    reported to the pruner; a pruned run keeps its checkpoint and a marker, so that no other worker trains it on."""

    def __init__(self, optuna, configs: Dict[str, RunConfig], space: Dict[str, List[Any]], args, out: Path):
        self.optuna, self.configs, self.space, self.args, self.out = optuna, configs, space, args, out
        self.metric = f"val_{args.metric}"

    def marker(self, folder: Path) -> Path:
        return self.out / "pruned" / f"{folder.parent.name}_{folder.name}.json"

    def __call__(self, trial) -> float:
        params = {k: trial.suggest_categorical(k, v) for k, v in self.space.items()}
        name = combo_name(params)
        done = finished_in_study(trial.study, name, list(self.space)) if hasattr(trial, "study") else None
        if done is not None:   # finished already (an imported record): nothing to train
            trial.set_user_attr("copy_of", done.number)
            print(f"[tune] trial {trial.number}: {name} finished by trial {done.number}, not trained again",
                  flush=True)
            if done.state.name == PRUNED:
                raise self.optuna.TrialPruned(f"pruned by trial {done.number}")
            return done.value
        cfg = self.configs[name]
        folder = store_folder(self.args.store, cfg)
        trial.set_user_attr("run", str(folder))
        print(f"[tune] trial {trial.number}: {name} -> {folder}", flush=True)
        seen: List[Dict[str, Any]] = []

        def report(entry: Dict[str, Any], final: bool) -> None:
            seen.append(entry)
            trial.report(best_so_far(seen, self.metric), int(entry["epoch"]))
            self._record(trial, seen)   # a running trial's progress and cost show in --tables-only
            if not final and trial.should_prune():  # a run that ends here anyway completes
                write_json(self.marker(folder), {"trial": trial.number, "point": name, "epoch": entry["epoch"],
                                                 "value": entry[self.metric], "curve": seen})
                print(f"[tune] trial {trial.number}: pruned after epoch {entry['epoch']} "
                      f"({self.args.metric} {100 * entry[self.metric]:.3f})", flush=True)
                raise self.optuna.TrialPruned(f"pruned after epoch {entry['epoch']}")

        with locked(folder):
            marker = self.marker(folder)
            if marker.is_file() and finished_run(cfg, folder) is None:  # another worker pruned it
                pruned = json.loads(marker.read_text())
                self._record(trial, pruned["curve"])
                for n, entry in enumerate(pruned["curve"], start=1):
                    trial.report(best_so_far(pruned["curve"][:n], self.metric), int(entry["epoch"]))
                raise self.optuna.TrialPruned(f"pruned by trial {pruned['trial']} after epoch {pruned['epoch']}")
            folder.mkdir(parents=True, exist_ok=True)
            result = run(cfg, folder, device=self.args.device, threads=self.args.threads, progress=False,
                         reuse=True, overwrite=self.args.overwrite, on_validation=report)
        if not seen:  # a finished run read back: its curve, for the record and for the pruner of later trials
            curve = result["val_curve"]
            for n, entry in enumerate(curve, start=1):
                trial.report(best_so_far(curve[:n], self.metric), int(entry["epoch"]))
                # Asked as a live trial is, so that successive halving records its value at each rung it passed
                # and later trials compete with it there; the answer does not matter, the run has finished.
                trial.should_prune()
        self._record(trial, result["val_curve"], result)
        value = result["val"][self.args.metric]
        print(f"[tune] trial {trial.number}: {name} finished, {self.args.metric} {100 * value:.3f} at epoch "
              f"{result['best_epoch']} ({result['stopped']})", flush=True)
        return value

    def _record(self, trial, curve: Sequence[Dict[str, Any]], result: Optional[Dict[str, Any]] = None) -> None:
        trial.set_user_attr("epochs", int(curve[-1]["epoch"]) if curve else 0)
        trial.set_user_attr("train_seconds", curve_core_seconds(curve))
        trial.set_user_attr("threads", int(self.args.threads or _torch_threads()))
        if result is not None:
            trial.set_user_attr("best_epoch", result["best_epoch"])
            trial.set_user_attr("stopped", result["stopped"])
            trial.set_user_attr(RUN_KEY, result["run_key"])
            trial.set_user_attr(TRAINED_ON, trained_on(result))


def _torch_threads() -> int:
    import torch
    return torch.get_num_threads()


# ------------------------------------------------------------------------------------------- workers
def work(args: argparse.Namespace, configs: Dict[str, RunConfig], points: Dict[str, Dict[str, Any]], space,
         definition, out: Path) -> None:
    """One worker: takes grid points until none is left to start."""
    optuna = load_optuna()
    study = open_study(optuna, args, out, definition, space)
    objective = Objective(optuna, configs, space, args, out)
    while True:
        optuna.storages.fail_stale_trials(study)   # a crashed worker's trial: failed, and retried below
        to_start, running, waiting = open_points(study, points)
        if not to_start and not waiting:
            print(f"[tune] nothing left to start ({len(running)} grid points being trained by other workers; a "
                  f"worker that crashed is noticed {args.grace} s after its last heartbeat)", flush=True)
            return
        study.optimize(objective, n_trials=1, catch=(TrainingError,))


def _work_job(parent: int, job) -> None:
    exit_with_parent(parent)   # a worker of a command killed with SIGTERM: its trial is retried after --grace
    work(*job)


# ---------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=CONFIG_DIR / "ml100k.yaml",
                   help="dataset config, as for experiments.train (default: %(default)s)")
    p.add_argument("--model", help="model to tune (default: the config's)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="an axis of the grid, replacing the declared one of that key or adding one (repeatable)")
    p.add_argument("--metric", default="recall@20", help="validation metric to select on (default: %(default)s)")
    p.add_argument("--study", help="study name (default: <config>-<model>)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///OUT/study.db; several machines: "
                                     "postgresql://user:pass@host/db)")
    p.add_argument("--out", type=Path, help="folder for the tables (default: runs/tune/<study>)")
    p.add_argument("--store", type=Path, default=Path("runs") / "store",
                   help="the run store shared with the paper-experiment commands (default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2", help="training seeds: the first for the trials, all of them for the "
                                                    "selected configuration (default: %(default)s)")
    p.add_argument("--pruner", choices=PRUNERS, default="halving", help="default: %(default)s")
    p.add_argument("--min-epochs", type=int, default=10, help="first rung (halving) or warm-up (median) in epochs "
                                                             "(default: %(default)s)")
    p.add_argument("--reduction", type=int, default=3, help="halving: keep the best 1/N at each rung; median: "
                                                            "trials before pruning starts (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes on this machine (default: %(default)s)")
    p.add_argument("--heartbeat", type=int, default=60, help="seconds between a worker's heartbeats (default: "
                                                             "%(default)s)")
    p.add_argument("--grace", type=int, default=600, help="seconds without a heartbeat after which a trial counts as "
                                                          "crashed and is retried (default: %(default)s)")
    p.add_argument("--audit", type=int, default=0, metavar="K",
                   help="once the grid is done, train the K pruned points that came closest to going on to their end "
                        "(from their checkpoints), as a check of the pruner; selection counts them and waits for them. "
                        "Recorded in the study: the largest K given applies to every later command (default: "
                        "%(default)s)")
    p.add_argument("--tables-only", action="store_true",
                   help="train nothing: write the tables from the study and the runs finished so far")
    p.add_argument("--export", type=Path, metavar="FILE",
                   help="train nothing: write the study's finished trials (complete or pruned) to FILE, a JSON file that "
                        "--import reads on another machine, store or database (no test metric is written)")
    p.add_argument("--import", dest="imports", action="append", type=Path, default=[], metavar="FILE",
                   help="add the finished trials of FILE (written by --export) to the study, for the grid points it has "
                        "not finished, before anything else the command does; the file must be of the same search and "
                        "each record's run key the one this machine's data gives (repeatable)")
    p.add_argument("--first", action="append", default=[], metavar="KEY=V,KEY=V",
                   help="a grid point for the workers to start before the others (repeatable, in that order; one "
                        "the study has finished or is training is left as it is): on a machine lent for a few hours, "
                        "the points that fit")
    p.add_argument("--replay", action="append", default=[], metavar="NAME:MIN:FACTOR",
                   help="train nothing: replay a pruner (halving:10:3, median:10:3, ...) over the grid's finished runs "
                        "and write OUT/replay.md: what that pruned search would have selected and cost (repeatable; "
                        "needs every grid point's run finished)")
    p.add_argument("--replay-orders", type=int, default=20,
                   help="replay: the study's own order plus this many minus one shuffled orders (default: %(default)s)")
    p.add_argument("--replay-workers", type=int, default=1,
                   help="replay: trials running at once (default: %(default)s)")
    p.add_argument("--replay-seed", type=int, default=0, help="replay: seed of the shuffled orders "
                                                              "(default: %(default)s)")
    add_format_option(p)
    add_run_options(p)
    return p


def main(argv=None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    for option, value, low in (("--min-epochs", args.min_epochs, 1), ("--reduction", args.reduction, 2),
                               ("--jobs", args.jobs, 1), ("--heartbeat", args.heartbeat, 1),
                               ("--audit", args.audit, 0), ("--replay-orders", args.replay_orders, 1),
                               ("--replay-workers", args.replay_workers, 1)):
        if value < low:
            raise ConfigError(f"must be >= {low}, got {value}", option)
    if args.grace <= args.heartbeat:
        raise ConfigError(f"must be longer than --heartbeat ({args.heartbeat}), got {args.grace}", "--grace")
    seeds = parse_seeds(args.seeds)
    extra = parse_extra(args.extra)
    base = cell_config(args.config, Cell("base", {"model": args.model} if args.model else {}), seeds[0], extra)
    space = search_space(args.config, base.model, args.param)
    metric, _, k = args.metric.partition("@")
    if metric not in METRIC_NAMES or not k.isdigit() or int(k) not in base.train.ks:
        raise ConfigError(f"{args.metric!r} is not a validation metric of these runs: use <metric>@<k> with metric "
                          f"one of {', '.join(METRIC_NAMES)} and k in {base.train.ks}", "--metric")
    fixed = {**({"model": args.model} if args.model else {}),
             **({"max_seconds": args.max_seconds} if args.max_seconds is not None else {})}
    points = {combo_name(p): p for p in grid_points(space)}
    # Every grid point's configuration is resolved and checked before the first one trains.
    configs = {name: cell_config(args.config, Cell(name, {**fixed, **p}), seeds[0], extra) for name, p in points.items()}
    study_name = args.study or f"{args.config.stem}-{base.model}"
    out = args.out or Path("runs") / "tune" / study_name
    # What makes two searches the same: the base run's configuration (dataset, features, model, training settings,
    # --extra, the trials' seed: its store digest, independent of the machine's paths), the grid and the pruner.
    definition = {"study": study_name, "base_run": store_folder(Path(), base).name, "model": base.model,
                  "space": space, "seed": seeds[0], "metric": args.metric, "pruner": args.pruner,
                  "min_epochs": args.min_epochs, "reduction": args.reduction,
                  **({"max_seconds": args.max_seconds} if args.max_seconds is not None else {})}

    def finished(name: str):
        return finished_run(configs[name], store_folder(args.store, configs[name]))

    if args.replay:
        return replay_study(args, configs, points, out, definition)
    if args.export and (args.imports or args.tables_only or args.first):
        raise ConfigError("writes a study's records and does nothing else: give it alone", "--export")
    if args.first and args.tables_only:
        raise ConfigError("queues grid points for workers: give it without --tables-only", "--first")
    optuna = load_optuna()
    study = open_study(optuna, args, out, definition, space)   # created once, before any worker starts
    for path in args.imports:
        added, skipped = import_records(optuna, study, path, definition, points,
                                        lambda name: run_key_here(configs[name])[0])
        print(f"[tune] {path}: {added} finished trial(s) imported, {skipped} skipped (finished in this study "
              "already)", flush=True)
    if not (args.tables_only or args.export):
        # A crashed worker's trial is failed and its retry queued before --first queues anything: the retry
        # resumes from its checkpoint ahead of the named points, and a named point that crashed is not left behind.
        optuna.storages.fail_stale_trials(study)
    queue_first(study, args.first, points, space)
    if args.export:
        counts = export_records(study, points, definition, finished, args.export)
        print(f"[tune] {args.export}: {counts['written']} finished trial(s) written; {counts['left_out']} grid "
              "point(s) not finished (running, failed or not started) left out", flush=True)
        return counts
    # The audit asked for is part of the study: the largest K any worker was given applies to every later command
    # (--tables-only included), which calls nothing selected until those K points have finished.
    audit = max(args.audit, int(study.user_attrs.get("audit", 0)))
    if audit > int(study.user_attrs.get("audit", 0)) and not args.tables_only:
        study.set_user_attr("audit", audit)

    if not args.tables_only:
        job = (args, configs, points, space, definition, out)
        if args.jobs == 1:
            work(*job)
        else:
            ctx = multiprocessing.get_context("spawn")
            workers = [ctx.Process(target=_work_job, args=(os.getpid(), job)) for _ in range(args.jobs)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            if any(w.exitcode for w in workers):
                raise TrainingError(f"a worker failed (exit codes {[w.exitcode for w in workers]}); rerun the same "
                                    "command to continue the study")

    rows = trial_rows(study, points, args.metric, finished)
    grid_done = unfinished(rows) == 0
    if grid_done and audit and not args.tables_only:
        # The pruner's check: the pruned points that came closest to going on, trained to their end from their
        # checkpoints (one already finished is read back); selection then counts them as any complete point.
        names = to_audit(rows, audit)
        print(f"[tune] audit of the pruner: training {', '.join(names) or 'nothing'} to the end", flush=True)
        jobs = [(configs[n], store_folder(args.store, configs[n]), args.device, args.threads, args.overwrite)
                for n in names]
        for _ in train_many(jobs, args.jobs):
            pass
        rows = trial_rows(study, points, args.metric, finished)
    chosen = final_selection(rows, audit)   # no test metric of a point that is not yet the selection
    selected_runs = None
    if chosen is not None:
        cfgs = [cell_config(args.config, Cell(chosen, {**fixed, **points[chosen]}), s, extra) for s in seeds]
        if args.tables_only:
            found = [finished_run(c, store_folder(args.store, c)) for c in cfgs]
            selected_runs = found if all(r is not None for r in found) else None
        else:  # the selected configuration over every seed, to convergence, --jobs at a time
            jobs = [(c, store_folder(args.store, c), args.device, args.threads, args.overwrite) for c in cfgs]
            selected_runs = [result for _, result in train_many(jobs, args.jobs)]
    return write_tables(args, study, rows, points, space, seeds, out, selected_runs, audit)


def parse_point(text: str, space: Dict[str, List[Any]]) -> Dict[str, Any]:
    """``"structure.gamma=10,beta=0.03"`` -> the grid point it names (values compared as numbers: 10 is 10.0)."""
    pairs = [(key.strip(), value) for key, _, value in (kv.partition("=") for kv in text.split(","))]
    given = dict(pairs)
    if len(given) < len(pairs):
        twice = sorted({k for k, _ in pairs if [p for p, _ in pairs].count(k) > 1})
        raise ConfigError(f"{text!r}: {', '.join(twice)} given twice", "--first")
    if sorted(given) != sorted(space):
        raise ConfigError(f"{text!r}: name a value of each axis, {', '.join(space)} (KEY=V,KEY=V)", "--first")
    point = {}
    for key, values in space.items():
        value = parse_value(given[key].strip())
        match = [v for v in values if v == value]
        if not match:
            raise ConfigError(f"{text!r}: {key}={given[key]} is not on the grid ({values})", "--first")
        point[key] = match[0]
    return point


def queue_first(study, texts: Sequence[str], points: Dict[str, Dict[str, Any]], space: Dict[str, List[Any]]) -> None:
    """``--first``: the named grid points queued in the study (Optuna's enqueue_trial), so that the next workers
    start them before the grid sampler's own order; a point finished, running or already queued is left alone."""
    wanted = [parse_point(t, space) for t in texts]    # every one checked before anything is queued
    if not wanted:
        return
    by_point = trials_by_point(study, list(space))
    queued = [t.system_attrs.get("fixed_params") for t in study.get_trials(deepcopy=False)
              if t.state.name == WAITING]
    for point in wanted:
        if by_point.get(combo_name(point)) or point in queued:
            print(f"[tune] --first {combo_name(point)}: started, finished or queued already; left as it is",
                  flush=True)
            continue
        study.enqueue_trial(point)
        queued.append(point)


def replay_study(args: argparse.Namespace, configs: Dict[str, RunConfig], points: Dict[str, Dict[str, Any]],
                 out: Path, definition: Dict[str, Any]) -> Dict[str, Any]:
    """``--replay``: the pruners given, replayed over the grid's finished runs (experiments/tune_replay.py);
    writes OUT/replay.md and OUT/replay.json, trains nothing and leaves the study as it is."""
    specs = [parse_pruner_spec(s) for s in args.replay]
    optuna = load_optuna()
    curves, finals, threads, missing = {}, {}, {}, []
    url = args.storage or (f"sqlite:///{(out / 'study.db').resolve()}" if (out / "study.db").exists() else None)
    study = (optuna.load_study(study_name=definition["study"], storage=url)
             if url is not None and definition["study"] in optuna.get_all_study_names(url) else None)
    by_point = trials_by_point(study, list(next(iter(points.values())))) if study is not None else {}
    for name, cfg in configs.items():
        done = finished_run(cfg, store_folder(args.store, cfg))
        if done is not None:
            curves[name], finals[name] = done["val_curve"], done["val"][args.metric]
            threads[name] = (int((done.get("hardware") or {}).get("torch_threads") or 1)
                             * int(done.get("world_size") or 1))
            continue
        # A complete trial imported from another machine's records carries its run's validation curve.
        record = next((t for t in by_point.get(name, []) if t.state.name == COMPLETE and CURVE in t.user_attrs), None)
        if record is None:
            missing.append(name)
            continue
        curves[name], finals[name] = record.user_attrs[CURVE], record.value
        threads[name] = int(record.user_attrs.get("threads", 1))
    if missing:
        raise ConfigError(f"a replay needs every grid point's run finished in {args.store}: {len(missing)} of "
                          f"{len(points)} have not ({', '.join(missing)}); train them on with --audit {len(points)} "
                          "or --pruner none", "--replay")
    order = None   # the order the study started its points in, where the study exists (none is created)
    if study is not None:
        started = sorted((min(t.number for t in ts), n) for n, ts in by_point.items() if n in points)
        order = [n for _, n in started] + [n for n in points if n not in by_point]
    summary = replay_report(optuna, make_pruner, specs, curves, finals, list(points), order, args.metric,
                            args.replay_orders, args.replay_workers, args.replay_seed, threads,
                            title=definition["study"])
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "replay.md", summary["markdown"])
    write_json(out / "replay.json", {k: v for k, v in summary.items() if k != "markdown"})
    print(summary["markdown"])
    return summary


if __name__ == "__main__":
    entry_point(main)
