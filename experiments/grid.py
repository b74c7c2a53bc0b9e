"""What the paper-experiment commands share: cells trained over seeds, one run store, mean ± std tables.

An experiment (Table 3, Table 4, a γ or β sweep, Table 2 over seeds) is a list of :class:`Cell` s, each a
label and the settings, as data, that turn the dataset config into that cell's configuration
(``{"item_score": "structure"}``, ``{"modalities": ["text"]}``, ...). Every cell is trained once per seed.

**One run store.** A run's folder is named by its resolved configuration, not by the command that asked
for it: ``STORE/<dataset>/<model>-seed<S>-<digest>``, where the digest hashes everything that defines the
run's numbers (model and all its arguments with defaults filled in, training settings, seed, dataset,
split seed, feature specs). So the full IDSF of Table 3, the "enhanced fused" row of Table 4, γ = 0.3 of
the γ sweep and IDSF's column of Table 2 are one run, trained by whichever command gets there first and
read back by the others; so are Table 3's "structure w/o ID" and "content w/o contrast" and the sweeps'
γ = 0 and β = 0 (the same function: :meth:`~idsf_pyg.models.IDSF.key_options`). A finished run
is read back only when its run key (which adds the data fingerprint and the features' sources) equals
this one's; an interrupted one resumes from its checkpoint; a run folder that holds another key (the data
changed under the same specs) is refused with the difference named, ``--overwrite`` retrains it. A lock
file per run lets two commands (or ``--jobs`` worker processes) share the store without training a run
twice.

**Partial tables.** ``--finished-only`` trains nothing: the tables are written from the runs already
finished in the store (an experiment that spans several sessions or machines can be read at any point), a
cell whose seeds have not all finished reads "not finished" and is named, with its count of finished seeds, in
the notes; no mean is ever taken over fewer seeds than asked for.

**Tuned settings.** ``--tuned STUDY`` takes a finished :mod:`experiments.tune` study's selection (chosen on
validation) as its model's settings in every cell; a cell's own setting wins (:class:`Tuned`), so a table at the
selected γ and β reads the study's own runs back where they coincide.

**Honest summaries.** Every table cell is the mean ± sample standard deviation over the seeds of the
test metrics, each read once at that run's best validation epoch. Two cells are called different only
when their means differ by more than the sum of their standard deviations (:func:`differs`); every table
says whether its numbers can be set beside the paper's (:func:`comparability`).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import fcntl
import hashlib
import json
import math
import multiprocessing
import os
import shlex
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from experiments.train import CONFIG_DIR, config_from_args, parse_config_options, settings_of
from idsf_pyg.cli import DEBUG_HELP
from idsf_pyg.errors import ConfigError
from idsf_pyg.io import atomic_open, write_text
from idsf_pyg.models import IDSF
from idsf_pyg.train import RunConfig, finished_run, run
from idsf_pyg.train.config import key_material

#: The metric columns of the paper's Tables 2–4, in their order: (header, results key).
METRICS = [("R@10", "recall@10"), ("P@10", "precision@10"), ("N@10", "ndcg@10"),
           ("R@20", "recall@20"), ("P@20", "precision@20"), ("N@20", "ndcg@20")]
#: The paper's datasets: with their real feature files, a table's numbers can be set beside the paper's.
PAPER_DATASETS = ("amazon2014/baby", "amazon2014/sports", "amazon2014/clothing")
#: Epochs of an uncapped run (the full stopping rule: early stopping on validation, patience 20 evaluations).
UNCAPPED_EPOCHS = 1000


@dataclass(frozen=True)
class Cell:
    """One row (or plotted point) of an experiment: its label and the settings that make its configuration from
    the dataset config, as data: ``{"model": "lightgcn"}``, ``{"modalities": ["text"]}``, or any ``--set`` key
    with its value (``{"item_score": "structure"}``, ``{"structure.gamma": 0.0}``, ``{"lr": 1e-3}``)."""
    label: str
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tuned:
    """What an :mod:`experiments.tune` study selected on validation (its ``selected.json``): the settings of one
    model on one dataset config, which ``--tuned`` makes that model's settings in every cell of an experiment
    command. A cell's own setting wins (Table 3's *structure w/o ID* keeps γ = 0 and takes the selected β, a γ
    sweep varies γ at the selected β); cells of other models and other datasets are refused or left alone (see
    :func:`cell_config` and :func:`load_tuned`). With the same settings a cell is the study's own run (same store
    folder), read back rather than retrained."""
    source: Path
    study: str
    dataset: str
    model: str
    settings: Mapping[str, Any]
    metric: str
    extra: str = ""

    def describe(self) -> str:
        chosen = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.settings.items())
        return (f"{self.model}'s settings {chosen} selected by study {self.study} on {self.metric} ({self.source}); "
                "a cell's own setting replaces the selected one")


TUNED_FIELDS = ("study", "dataset", "model", "settings", "metric", "grid_finished", "selection_final")


def load_tuned(path: Path, datasets: Sequence[Tuple[str, Path]] = ()) -> Tuned:
    """The selection of a finished study, from its ``selected.json`` (or the study's output folder holding it),
    checked to belong to every one of ``datasets``; anything else is one :class:`ConfigError` naming the file."""
    path = Path(path)
    file = path / "selected.json" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"{file}: no such file (give the selected.json of an experiments.tune study, or its folder)",
                          "--tuned")
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{file}: not readable as JSON ({e})", "--tuned") from None
    missing = [k for k in TUNED_FIELDS if not isinstance(data, dict) or k not in data]
    if missing:
        raise ConfigError(f"{file}: no {', '.join(missing)} field(s); an older experiments.tune wrote it: rewrite it "
                          "with experiments.tune --tables-only", "--tuned")
    if not data["grid_finished"]:
        raise ConfigError(f"{file}: study {data['study']}'s grid is not finished, so its selection may still change; "
                          "continue the study first", "--tuned")
    if not data["selection_final"]:
        raise ConfigError(f"{file}: study {data['study']}'s audit of {', '.join(data.get('audit_pending') or [])} has "
                          "not finished, so its selection may still change; continue the study first", "--tuned")
    if not isinstance(data["settings"], dict) or not data["settings"]:
        raise ConfigError(f"{file}: field 'settings' holds no selected configuration ({data['settings']!r})", "--tuned")
    tuned = Tuned(file, str(data["study"]), str(data["dataset"]), str(data["model"]), dict(data["settings"]),
                  str(data["metric"]), str(data.get("extra") or ""))
    for name, config in datasets:
        if Path(config).stem != tuned.dataset:
            raise ConfigError(f"{file}: study {tuned.study} tuned {tuned.model} on {tuned.dataset}, not on {name}: give "
                              f"--dataset {tuned.dataset} alone", "--tuned")
    return tuned


#: What a table shows for a cell whose seeds have not all finished (``--finished-only``).
NOT_FINISHED = "not finished"


class GridResults(dict):
    """``{dataset: {label: CellRuns}}`` of :func:`run_cells`, holding only cells whose seeds all finished;
    ``unfinished`` names the others (``--finished-only``) as ``"<dataset> <label>: k of n seeds finished"``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.unfinished: List[str] = []
        self.tuned: Optional[Tuned] = None


@dataclass
class CellRuns:
    """A cell's runs, one per seed, in seed order."""
    cell: Cell
    results: List[Dict[str, Any]]
    folders: List[Path]

    def values(self, key: str, split: str = "test") -> List[float]:
        return [100.0 * r[split][key] for r in self.results]

    def mean_std(self, key: str, split: str = "test") -> Tuple[float, float]:
        return mean_std(self.values(key, split))


# ------------------------------------------------------------------------------------------- options
def add_grid_options(p: argparse.ArgumentParser, default_out: str) -> None:
    """The options every experiment command shares."""
    p.add_argument("--dataset", default="ml100k",
                   help="dataset config name(s) in experiments/configs/, comma-separated (e.g. ml100k,baby_random): "
                        "one column group each (default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated (default: %(default)s)")
    p.add_argument("--store", type=Path, default=Path("runs") / "store",
                   help="the run store shared by all experiment commands (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("runs") / default_out,
                   help="folder for this command's tables and figures (default: %(default)s)")
    p.add_argument("--extra", default="",
                   help="experiments.train options for every run, quoted, e.g. \"--epochs 10\" (a stated cap) or "
                        "\"--set contrast_scope=batch\"; they are part of each run's configuration")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--threads", type=int, help="torch CPU threads per run (default: torch's choice)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs trained at once, each in its own process (default: %(default)s; on a CPU, e.g. "
                        "--jobs 2 --threads 1 on 2 cores)")
    p.add_argument("--tuned", type=Path, metavar="STUDY",
                   help="the selected.json (or output folder) of a finished experiments.tune study: its selected "
                        "settings become its model's settings in every cell (a cell's own setting wins)")
    p.add_argument("--finished-only", action="store_true",
                   help="train nothing: write the tables from the runs already finished in --store; cells whose "
                        "seeds have not all finished read 'not finished' and are named in the notes")
    p.add_argument("--overwrite", action="store_true",
                   help="retrain a run whose folder holds a run of another key (e.g. the data changed)")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)


def parse_seeds(text: str) -> List[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"{text!r}: expected comma-separated integers", "--seeds") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"{text!r}: expected distinct non-negative integers", "--seeds")
    return seeds


def parse_values(text: str, option: str) -> List[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{text!r}: expected comma-separated numbers", option) from None
    if not values or len(set(values)) != len(values):
        raise ConfigError(f"{text!r}: expected distinct numbers", option)
    return values


def dataset_configs(text: str) -> List[Tuple[str, Path]]:
    """``"ml100k,baby_random"`` -> [(name, experiments/configs/<name>.yaml), ...], each checked to exist."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("name at least one dataset config", "--dataset")
    out = []
    for name in names:
        path = Path(name) if name.endswith((".yaml", ".yml")) else CONFIG_DIR / f"{name}.yaml"
        if not path.is_file():
            known = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
            raise ConfigError(f"no dataset config {path}; known: {', '.join(known)}", "--dataset")
        out.append((Path(name).stem, path))
    return out


def parse_extra(extra: str) -> argparse.Namespace:
    """``--extra``, parsed once (shell quoting rules) as experiments.train's configuration options; a seed there is
    refused (the seeds are ``--seeds``')."""
    try:
        argv = shlex.split(extra)
    except ValueError as e:
        raise ConfigError(f"{extra!r}: {e}", "--extra") from None
    ns = parse_config_options(argv, "--extra")
    seed_option = settings_of(ns).get("seed")
    if seed_option:
        raise ConfigError(f"--extra sets the training seed ({seed_option}), which the command's own --seeds (or "
                          "--seed) sets for every run: give it there", "--extra")
    return ns


def setting_name(key: str) -> str:
    """One name per setting, whatever the spelling (``gamma`` and ``structure.gamma``; ``no_content`` and
    ``item_score``), so that two spellings of one setting count as the same."""
    from idsf_pyg.models.idsf import SWITCHES
    path = SWITCHES[key][0] if key in SWITCHES else IDSF.option_path(key)
    return ".".join(path)


def cell_config(config: Path, cell: Cell, seed: int, extra: Union[argparse.Namespace, str] = "",
                tuned: Optional[Tuned] = None) -> RunConfig:
    """A cell's configuration for one seed: the dataset config, ``--extra`` (parsed, or its text), a study's
    selected settings when the cell's model is the one tuned (``tuned``), the cell's overrides, the seed. A
    setting that ``--extra`` and the cell (or the selection) both set is refused (one would silently override
    the other), and so is a seed set by the cell (the seeds are ``--seeds``'); the cell's own setting replaces
    a selected one."""
    ns = copy.deepcopy(parse_extra(extra) if isinstance(extra, str) else extra)
    given = {setting_name(k): option for k, option in settings_of(ns).items()}
    overrides = dict(cell.overrides)
    for key, value in overrides.items():
        if key == "seed":
            raise ConfigError(f"{cell.label!r} sets the training seed, which the command's own --seeds (or --seed) "
                              "sets for every run: a seed is not a setting to vary", "--param")
        name = setting_name(key)
        if name in given:
            raise ConfigError(f"--extra sets {key} ({given[name]}), which cell {cell.label!r} sets itself "
                              f"({key}={value!r}): one would silently override the other; drop it from --extra",
                              "--extra")
    if "model" in overrides:
        ns.model = overrides.pop("model")
    if "modalities" in overrides:
        ns.modalities = ",".join(overrides.pop("modalities"))
    ns.seed = seed
    cfg = config_from_args(config, ns, sets=overrides)
    if tuned is None or cfg.model != tuned.model:
        return cfg
    own = {setting_name(k) for k in cell.overrides}
    selected = {k: v for k, v in tuned.settings.items() if setting_name(k) not in own}
    for key in selected:
        if setting_name(key) in given:
            raise ConfigError(f"--extra sets {key} ({given[setting_name(key)]}), which study {tuned.study} selected "
                              f"({key}={tuned.settings[key]!r}, {tuned.source}): drop it from --extra or --tuned",
                              "--extra")
    return config_from_args(config, ns, sets={**selected, **overrides})


# ----------------------------------------------------------------------------------------- the store
def config_digest(cfg: RunConfig) -> str:
    """12 hex digits naming what defines a run's numbers, computed without loading the data: the run key's
    material (:func:`~idsf_pyg.train.config.key_material`) with the dataset and feature specs in place of
    the data fingerprint and feature sources."""
    material = key_material(cfg, "", {})
    material.update(dataset=cfg.dataset, features=dict(sorted(cfg.features.items())),
                    discover_features=cfg.discover_features)
    text = json.dumps(material, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def store_folder(store: Path, cfg: RunConfig) -> Path:
    dataset = cfg.dataset.strip("/").replace("/", "_").replace("\\", "_") or "dataset"
    return store / dataset / f"{cfg.model}-seed{cfg.train.seed}-{config_digest(cfg)}"


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Holds ``<folder>.lock`` exclusively (waits for another process holding it)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def train_in_store(cfg: RunConfig, folder: Path, device: str, threads: Optional[int],
                   overwrite: bool) -> Dict[str, Any]:
    """Trains ``cfg`` into ``folder`` (its log in ``folder/train.log``) or reads the finished run back."""
    with locked(folder):
        folder.mkdir(parents=True, exist_ok=True)
        return run(cfg, folder, device=device, threads=threads, progress=False, reuse=True, overwrite=overwrite)


def _train_job(job: Tuple[RunConfig, Path, str, Optional[int], bool]) -> Dict[str, Any]:
    return train_in_store(*job)


def exit_with_parent(parent: int, poll_seconds: float = 1.0) -> None:
    """Worker start of ``--jobs N``: the worker exits when the command that spawned it is gone.

    A command killed with SIGTERM (unlike Ctrl-C, which reaches the whole process group) would otherwise
    leave its workers alive, each finishing its run and then the runs already queued to it, holding
    their locks and the cores while a restarted command waits. Exiting mid-epoch loses nothing the
    store cannot resume: checkpoints are written atomically and the lock dies with the process."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def train_many(jobs: Sequence[Tuple[RunConfig, Path, str, Optional[int], bool]],
               workers: int) -> Iterator[Tuple[Path, Dict[str, Any]]]:
    """:func:`train_in_store` for each job (``(config, folder, device, threads, overwrite)``), on ``workers``
    processes; yields ``(folder, result)`` in the jobs' order."""
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield job[1], train_in_store(*job)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=exit_with_parent,
                             initargs=(os.getpid(),)) as pool:
        for job, result in zip(jobs, pool.map(_train_job, jobs)):
            yield job[1], result


def run_cells(datasets: Sequence[Tuple[str, Path]], cells: Sequence[Cell], args: argparse.Namespace,
              tag: str) -> GridResults:
    """Trains (or reads back) every cell of every dataset for every seed; ``{dataset: {label: CellRuns}}``.
    Every configuration is resolved and checked before the first run trains. With ``args.finished_only``
    nothing is trained and only the cells whose seeds all finished are returned (:class:`GridResults`)."""
    seeds = parse_seeds(args.seeds)
    if args.jobs < 1:
        raise ConfigError(f"must be >= 1, got {args.jobs}", "--jobs")
    extra = parse_extra(args.extra)
    tuned = load_tuned(args.tuned, datasets) if getattr(args, "tuned", None) else None
    plan: List[Tuple[str, Cell, RunConfig, Path]] = []
    for name, path in datasets:
        for cell in cells:
            for seed in seeds:
                cfg = cell_config(path, cell, seed, extra, tuned)
                plan.append((name, cell, cfg, store_folder(args.store, cfg)))
    unique = list(dict.fromkeys(folder for *_, folder in plan))  # a cell shared by two labels trains once
    cfg_of = {folder: cfg for _, _, cfg, folder in plan}
    print(f"[{tag}] {len(plan)} cells x seeds, {len(unique)} distinct runs in {args.store}", flush=True)
    jobs = [(cfg_of[f], f, args.device, args.threads, args.overwrite) for f in unique]
    results: Dict[Path, Dict[str, Any]] = {}
    t0 = time.perf_counter()

    def report(folder: Path, result: Dict[str, Any]) -> None:
        results[folder] = result
        print(f"[{tag}] {len(results)}/{len(unique)} {folder.name}: test R@20 {100 * result['test']['recall@20']:.3f} "
              f"(best epoch {result['best_epoch']}, {result['stopped']}) [{time.perf_counter() - t0:.0f}s]",
              flush=True)

    if args.finished_only:
        for cfg, folder, *_ in jobs:
            done = finished_run(cfg, folder)
            if done is not None:
                results[folder] = done
        print(f"[{tag}] --finished-only: {len(results)} of {len(unique)} runs finished, nothing trained", flush=True)
    else:
        for folder, result in train_many(jobs, args.jobs):
            report(folder, result)
    out = GridResults((name, {}) for name, _ in datasets)
    out.tuned = tuned
    for name, cell in ((name, cell) for name, _ in datasets for cell in cells):
        folders = [folder for n, c, _, folder in plan if n == name and c == cell]
        found = [f for f in folders if f in results]
        if len(found) < len(folders):
            out.unfinished.append(f"{name} {cell.label}: {len(found)} of {len(folders)} seeds finished")
            continue
        out[name][cell.label] = CellRuns(cell, [results[f] for f in folders], folders)
    return out


# -------------------------------------------------------------------------------------- summaries
def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (``nan`` for a single value)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return mean, std


def fmt(mean: float, std: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(std) else f"{mean:.{digits}f}"


def differs(a: Tuple[float, float], b: Tuple[float, float]) -> bool:
    """Whether two (mean, std) differ by more than their spread: ``|mean_a - mean_b| > std_a + std_b``
    (never with a single seed)."""
    (ma, sa), (mb, sb) = a, b
    if not (math.isfinite(sa) and math.isfinite(sb)):
        return False
    return abs(ma - mb) > sa + sb


def comparison(a: Tuple[float, float], b: Tuple[float, float]) -> str:
    """``"higher"``, ``"lower"`` or ``"within spread"`` for ``a`` against ``b`` (:func:`differs`); ``"one seed: no
    spread"`` when either has a single seed, which says nothing of whether they differ."""
    if not (math.isfinite(a[1]) and math.isfinite(b[1])):
        return "one seed: no spread"
    if not differs(a, b):
        return "within spread"
    return "higher" if a[0] > b[0] else "lower"


def comparability(runs: Sequence[Dict[str, Any]]) -> str:
    """One sentence: can these runs' numbers be set beside the paper's?"""
    cfg = runs[0]["config"]
    sources = {s for r in runs for s in r["feature_sources"].values()}
    capped = [r for r in runs if r["stopped"] == "max epochs" and r["config"]["train"]["epochs"] < UNCAPPED_EPOCHS]
    timed = [r for r in runs if str(r["stopped"]).startswith("time cap")]
    notes = []
    if any(s.startswith("random") for s in sources):
        notes.append("random stand-in features: NOT comparable with the paper's numbers (they measure the "
                     "interactions, the ID embeddings and the code path, not multimodal content)")
    elif cfg["dataset"].strip("/").endswith(PAPER_DATASETS):
        notes.append("the paper's dataset and split with the given feature files: comparable with the paper's "
                     "table when the features are the paper's and the runs are not capped")
    else:
        notes.append(f"dataset {cfg['dataset']!r} is not in the paper: no paper figure to compare with; the "
                     "comparison is between rows of this table")
    if capped:
        notes.append(f"{len(capped)} of {len(runs)} runs stopped at the epoch cap "
                     f"({cfg['train']['epochs']} epochs), not by early stopping: numbers of capped training")
    if timed:
        notes.append(f"{len(timed)} of {len(runs)} runs stopped at the time cap")
    return "; ".join(notes) + "."


def features_line(runs: Sequence[Dict[str, Any]]) -> str:
    src = runs[0]["feature_sources"]
    return ", ".join(f"{k} = {v}" for k, v in src.items()) or "none (ID-only)"


def cost_line(all_runs: Sequence[Dict[str, Any]]) -> str:
    """Training time of these runs as their results record it (each run's own process and threads)."""
    total = sum(r["seconds"]["train_total"] for r in all_runs)
    hw = all_runs[0]["hardware"]
    where = (hw["gpu"] if "gpu" in hw else
             f"{hw.get('cpu_count', '?')}-core CPU ({hw.get('cpu_model') or hw.get('cpu') or '?'}), "
             f"{hw.get('torch_threads', '?')} torch threads")
    return (f"{len(all_runs)} run{'' if len(all_runs) == 1 else 's'}, {total / 60:.1f} min of training in all "
            f"({total / max(len(all_runs), 1) / 60:.1f} min per run) on {where}")


def metric_table(datasets: Dict[str, Dict[str, CellRuns]], labels: Sequence[str], first_header: str
                 ) -> List[List[str]]:
    """The paper's layout: one row per label, per dataset the six metric columns as mean ± std (%)."""
    header = [first_header]
    for name in datasets:
        header += [f"{name} {h}" if len(datasets) > 1 else h for h, _ in METRICS]
    rows = [header]
    for label in labels:
        row = [label]
        for cells in datasets.values():
            row += [fmt(*cells[label].mean_std(key)) if label in cells else NOT_FINISHED for _, key in METRICS]
        rows.append(row)
    return rows


def markdown(rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def write_table(out: Path, stem: str, rows: Sequence[Sequence[str]], notes: Sequence[str]) -> None:
    """``out/<stem>.csv`` (the cells, without Markdown emphasis) and ``out/<stem>.md`` (the table and its notes)."""
    plain = [[c.replace("**", "").replace("<u>", "").replace("</u>", "") for c in r] for r in rows]
    with atomic_open(out / f"{stem}.csv", "w", newline="") as f:
        csv.writer(f).writerows(plain)
    write_text(out / f"{stem}.md", markdown(rows) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")


def write_runs(out: Path, stem: str, datasets: Dict[str, Dict[str, CellRuns]]) -> None:
    """``out/<stem>_runs.csv``: every run behind a table (folder, seed, stopping, validation and test)."""
    with atomic_open(out / f"{stem}_runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "label", "seed", "folder", "best_epoch", "epochs_run", "stopped", "seconds_per_epoch",
                    "val_recall@20", *[f"test_{k}" for _, k in METRICS]])
        for name, cells in datasets.items():
            for label, runs in cells.items():
                for r, folder in zip(runs.results, runs.folders):
                    w.writerow([name, label, r["seed"], str(folder), r["best_epoch"], r["epochs_run"], r["stopped"],
                                f"{r['seconds']['per_epoch_mean']:.2f}", f"{r['val'].get('recall@20', float('nan')):.5f}",
                                *[f"{r['test'][k]:.5f}" for _, k in METRICS]])


def experiment_notes(datasets: Dict[str, Dict[str, CellRuns]], extra: str) -> List[str]:
    """Per dataset: features, comparability, cost; and the shared options."""
    notes = ["Test metrics (%) at each run's best validation Recall@20, mean ± sample std over the seeds "
             "(full ranking over all items, training items masked)."]
    for name, cells in datasets.items():
        # each run once, though two rows may share it (a zero weight or --tuned makes two cells one run)
        runs = list({f: r for c in cells.values() for f, r in zip(c.folders, c.results)}.values())
        if not runs:
            notes.append(f"{name}: no cell has finished all its seeds yet.")
            continue
        seeds = sorted({r["seed"] for r in runs})
        notes.append(f"{name}: features {features_line(runs)}; seeds {seeds}. {comparability(runs)} "
                     f"Cost: {cost_line(runs)}.")
    if extra.strip():
        notes.append(f"Options given to every run: `{extra.strip()}`.")
    tuned = getattr(datasets, "tuned", None)
    if tuned is not None:
        notes.append(f"Tuned: {tuned.describe()}.")
        if tuned.extra.strip() != extra.strip():
            def given(text: str) -> str:
                return f"`{text.strip()}`" if text.strip() else "none"
            notes.append(f"The study ran with --extra {given(tuned.extra)}, this command with {given(extra)}: "
                         "the selection was made under other options.")
    unfinished = getattr(datasets, "unfinished", [])
    if unfinished:
        notes.append(f"Written with --finished-only; {NOT_FINISHED} (left out, no mean over fewer seeds): "
                     + "; ".join(unfinished) + ".")
    return notes


def add_verdicts(rows: List[List[str]], datasets: Dict[str, Dict[str, CellRuns]], header: str,
                 verdict: Callable[[Dict[str, CellRuns], str], str]) -> List[List[str]]:
    """Appends a column ``header`` to a :func:`metric_table`: ``verdict(cells, label)`` per dataset."""
    rows[0].append(header)
    for row in rows[1:]:
        parts = [(f"{name}: " if len(datasets) > 1 else "") + (verdict(cells, row[0]) if row[0] in cells else "—")
                 for name, cells in datasets.items()]
        row.append("; ".join(parts))
    return rows


def publish(out: Path, stem: str, rows: Sequence[Sequence[str]], datasets: Dict[str, Dict[str, CellRuns]],
            extra: str, more_notes: Sequence[str] = ()) -> None:
    """Writes ``out/<stem>.md``, ``.csv`` and ``_runs.csv`` (with the shared notes) and prints the Markdown."""
    write_table(out, stem, rows, experiment_notes(datasets, extra) + list(more_notes))
    write_runs(out, stem, datasets)
    print((out / f"{stem}.md").read_text())
