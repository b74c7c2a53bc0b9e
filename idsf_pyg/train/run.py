"""One training run from a :class:`~idsf_pyg.train.config.RunConfig` to a run folder.

The folder's files, its lock and its manifest are :mod:`idsf_pyg.train.run_folder`'s. Rules that keep
results honest: one process writes a folder at a time (its lock, held for the whole run); the folder is
checked for writing before anything costly; a finished run is never overwritten without ``overwrite``; a
checkpoint or results of another configuration (another key) are never resumed or reused; a checkpoint
of the same configuration is resumed by default; every file read back is checked against the manifest.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import io
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import yaml

from ..data import default_data_root, describe, load_dataset
from ..errors import ConfigError, IDSFError, RunFolderError
from ..io import write_text
from ..logs import logger, silenced
from .checkpoint import Checkpointer, cpu_state
from .machine import machine
from .config import RunConfig, key_differences, key_material, run_key
from .distributed import broadcast_error, joined, local_device
from .run_folder import BEST, CHECKPOINT, CONFIG, CURVES, LOG, MANIFEST, RESULTS, TOPK, RunFolder, require_one_run
from .trainer import set_seed, train, use_deterministic_algorithms

#: Format of best.pt: {"format", "idsf_pyg", "model", "run_key", "state_dict"}, loadable with weights_only=True.
BEST_FORMAT = 1


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``, checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto", "--device") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("CUDA was asked for, but torch sees no CUDA device (use --device cpu)", "--device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{name}: only {torch.cuda.device_count()} CUDA device(s)", "--device")
    elif device.type != "cpu":
        raise ConfigError(f"unsupported device {name!r}: use cpu, cuda, cuda:N or auto", "--device")
    return device


def dataset_path(name: str) -> str:
    """``synthetic``, an existing path, or a path relative to ``$IDSF_DATA``."""
    if name == "synthetic":
        return name
    p = Path(name)
    return str(p if p.is_absolute() or p.exists() else default_data_root() / p)


@functools.lru_cache(maxsize=2)
def _load_cached(path: str, features: Tuple[Tuple[str, str], ...], discover: bool, split_seed: int,
                 edge_weight: Optional[str]):
    return load_dataset(path, features=dict(features) or None, discover_features=discover, split_seed=split_seed,
                        edge_weight=edge_weight)


def load_run_data(cfg: RunConfig):
    """The graph of a config (kept for the next run of the same process: table2 and search reuse it)."""
    return _load_cached(dataset_path(cfg.dataset), tuple(sorted(cfg.features.items())), cfg.discover_features,
                        cfg.split_seed, cfg.edge_weight)


def run_key_here(cfg: RunConfig) -> Tuple[str, Dict[str, Any]]:
    """The run key ``cfg`` gets on the data this machine has for it, and the key material it digests: what a run
    of ``cfg`` trained here records, and what a run of ``cfg`` finished elsewhere must have recorded to be read
    back here."""
    data = load_run_data(cfg)
    fingerprint = describe(data)["fingerprint"]
    return run_key(cfg, fingerprint, data.feature_sources), key_material(cfg, fingerprint, data.feature_sources)


def build_model(cfg: RunConfig, data):
    from ..models import MODELS
    try:
        return MODELS[cfg.model].from_graph(data, **cfg.model_args)
    except ValueError as e:  # the models check their option values (choices, modality names)
        raise ConfigError(str(e), "model_args", " <- ".join(cfg.sources)) from None


def run(cfg: RunConfig, out: Optional[Path] = None, *, device: str = "auto", threads: Optional[int] = None,
        progress: bool = True, save_topk: bool = False, overwrite: bool = False, resume: bool = True,
        reuse: bool = False, deterministic: bool = False, checkpoint_every: int = 1,
        on_validation: Optional[Callable[[Dict[str, Any], bool], None]] = None) -> Dict[str, Any]:
    """Trains ``cfg`` (resuming its checkpoint in ``out`` if there is one) and writes the run folder.

    Args:
        cfg: The resolved configuration.
        out: The run folder (nothing is written without one).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        threads: torch CPU threads (default: torch's choice).
        save_topk: Also write each test user's top-20 items.
        overwrite: Replace a finished run or a checkpoint, whatever its configuration.
        resume: Continue from ``out``'s checkpoint of the same configuration (default).
        reuse: Return the results of a finished run of the same configuration instead of refusing
            (what table2 and search do).
        deterministic: :func:`~idsf_pyg.train.trainer.use_deterministic_algorithms`.
        checkpoint_every: Epochs between checkpoints.
        on_validation: Called with each validation's curve entry and whether training ends there
            (:class:`~idsf_pyg.train.trainer.Trainer`); an exception it raises stops the run after that epoch's
            checkpoint. Not called for a finished run read back.
    """
    if threads is not None:
        if not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"must be >= 1, got {threads}", "--threads")
        torch.set_num_threads(threads)
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ConfigError(f"must be >= 1, got {checkpoint_every}", "--checkpoint-every")
    dev = resolve_device(device)
    folder = RunFolder(out) if out is not None else None
    with contextlib.ExitStack() as held:
        shard = held.enter_context(joined(dev))   # under torchrun: this process's rank (None otherwise)
        dev = local_device(dev, shard)
        lead = shard is None or shard.rank == 0
        if not lead:                              # one log, one set of files: rank 0's
            progress = False
        held.enter_context(silenced(not lead))
        error: Optional[BaseException] = None
        if folder is not None and lead:  # the one writer, for the whole run
            try:
                held.enter_context(folder.writing(log=folder.file(LOG)))   # the run's own log, beside its results
            except IDSFError as e:
                error = e
        broadcast_error(shard, error)
        return _run_holding(cfg, folder, dev, shard, lead, progress=progress, save_topk=save_topk,
                            overwrite=overwrite, resume=resume, reuse=reuse, deterministic=deterministic,
                            checkpoint_every=checkpoint_every, on_validation=on_validation)


def _run_holding(cfg: RunConfig, folder: Optional[RunFolder], dev: torch.device, shard, lead: bool, *,
                 progress: bool, save_topk: bool, overwrite: bool, resume: bool, reuse: bool, deterministic: bool,
                 checkpoint_every: int, on_validation=None) -> Dict[str, Any]:
    """:func:`run` once the folder's lock is held (by rank 0 under torchrun)."""
    use_deterministic_algorithms(deterministic)

    t0 = time.perf_counter()
    data = load_run_data(cfg)
    info = describe(data)
    logger.info(f"data: {info['name']}  users {info['users']}  items {info['items']}  train/val/test edges "
        f"{info['train_edges']}/{info['val_edges']}/{info['test_edges']}  ({time.perf_counter() - t0:.1f}s)")
    for note in info["notes"]:
        logger.info(f"  note: {note}")
    for m, d in info["modalities"].items():
        logger.info(f"  modality {m}: {d['dim']}-d, {d['source']}")
    key = run_key(cfg, info["fingerprint"], data.feature_sources)
    material = key_material(cfg, info["fingerprint"], data.feature_sources)

    checkpointer, done, error = None, None, None
    try:
        if folder is not None and lead:
            done, checkpointer = _prepare_folder(folder, cfg, key, material, reuse, overwrite, resume,
                                                 checkpoint_every)
    except IDSFError as e:
        error = e
    broadcast_error(shard, error)
    if shard is not None:  # every rank resumes from rank 0's checkpoint (a shared file system), or none
        box = [None if checkpointer is None else str(checkpointer.path), done is not None]
        dist.broadcast_object_list(box, src=0)
        if not lead and box[0] is not None:
            checkpointer = Checkpointer(Path(box[0]), key, checkpoint_every)
        if box[1]:
            return done if lead else {}
    elif done is not None:
        return done

    set_seed(cfg.train.seed)  # before the model is built: its initialization is part of the run
    model = build_model(cfg, data)
    logger.info(f"model: {cfg.model} {cfg.model_args}\ntrain: {cfg.train}  device {dev}"
        + (f"  ranks {shard.world} ({shard.backend})" if shard is not None else ""))
    if folder is not None and lead:
        on_validation = _writing_curves(folder, on_validation)
    trained = train(model, data, cfg.train, device=dev, save_topk=save_topk, progress=progress,
                    checkpoint=checkpointer, data_info=info, shard=shard, on_validation=on_validation)
    result = {"model": cfg.model, "config": cfg.to_dict(), "config_sources": cfg.sources, "run_key": key,
              "key_material": material, "seed": cfg.train.seed, "feature_sources": dict(data.feature_sources),
              "software": software_versions(), "hardware": hardware(dev), "deterministic": deterministic,
              "world_size": 1 if shard is None else shard.world,
              "backend": None if shard is None else shard.backend, **trained.to_dict()}
    if folder is not None and lead:
        _write_results(folder, cfg, key, model, result, trained.topk)
    return result


def curves_csv(curve: Sequence[Dict[str, Any]]) -> str:
    """A run's curve entries as CSV: epoch, seconds, losses by part, validation metrics (columns in the order first
    seen; a metric an entry lacks is left empty)."""
    columns: List[str] = []
    for entry in curve:
        columns += [k for k in entry if k not in columns]
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=columns, restval="")
    w.writeheader()
    w.writerows(curve)
    return text.getvalue()


def _writing_curves(folder: RunFolder, then: Optional[Callable[[Dict[str, Any], bool], None]]):
    """An ``on_validation`` that rewrites the folder's curves.csv (earlier sessions' entries are replayed first on
    resume, so the file always holds the whole curve), then calls ``then``."""
    curve: List[Dict[str, Any]] = []

    def on_validation(entry: Dict[str, Any], final: bool) -> None:
        curve.append(entry)
        write_text(folder.file(CURVES), curves_csv(curve))
        if then is not None:
            then(entry, final)
    return on_validation


def finished_run(cfg: RunConfig, out: Path) -> Optional[Dict[str, Any]]:
    """The results of the run of ``cfg`` finished in ``out``, or ``None`` when none has finished there (an
    unstarted or interrupted run); nothing is trained. The folder's files are checked against its manifest,
    and a finished run of another run key (the data or the configuration changed) is refused with the
    difference named, as :func:`run` refuses it."""
    folder = RunFolder(out)
    done = folder.finished()
    if done is None:
        return None
    key, material = run_key_here(cfg)
    if done.get("run_key") != key:
        raise RunFolderError(f"{folder.file(RESULTS)} holds a run of another configuration: "
                             f"{_describe_diff(done.get('key_material'), material)}; rerun without "
                             "--finished-only and with --overwrite to replace it")
    _check_recorded_keys(folder, key)
    return done


def _check_recorded_keys(folder: RunFolder, key: str) -> None:
    """``config.yaml``'s and the manifest's run keys must be the results' (one run's files, not a mix)."""
    require_one_run(key, {CONFIG: (folder.read_config() or {}).get("run_key"),
                          MANIFEST: (folder.manifest() or {}).get("run_key")}, folder.path, "its results.json")


def check_run_key(folder: Path, cfg: RunConfig, data, saved: Dict[str, Any], recorded: Dict[str, Optional[str]]) -> str:
    """The run key of ``config.yaml`` (``saved``, parsed) on ``data``, after checking that the data is the
    data the run was trained on and that every file's recorded key (``recorded``) is this one."""
    info = describe(data)
    if info["fingerprint"] != saved["key_material"].get("data_fingerprint"):
        raise RunFolderError(f"{folder}: the data at {cfg.dataset!r} is not the data this run was trained on (split "
                             "fingerprint differs); point $IDSF_DATA or the config at the original data")
    key = run_key(cfg, info["fingerprint"], data.feature_sources)
    require_one_run(key, recorded, folder, "config.yaml's configuration on this data")
    return key


def _prepare_folder(folder: RunFolder, cfg: RunConfig, key: str, material: Dict[str, Any], reuse: bool,
                    overwrite: bool, resume: bool, checkpoint_every: int):
    """Checks ``folder`` against this run (finished results, a checkpoint of another configuration) and
    writes its ``config.yaml``; returns ``(finished results to reuse or None, checkpointer)``."""
    done = None if overwrite else folder.finished()
    if done is not None and reuse and done.get("run_key") == key:
        _check_recorded_keys(folder, key)
        logger.info(f"finished earlier with the same configuration: reading {folder.file(RESULTS)}")
        return done, None
    if done is not None:
        if done.get("run_key") == key:
            raise RunFolderError(f"{folder.file(RESULTS)}: this run has finished already (same configuration); "
                                 "pass --overwrite to train it again, or choose another --out")
        raise RunFolderError(f"{folder.file(RESULTS)} holds a run of another configuration: "
                             f"{_describe_diff(done.get('key_material'), material)}; pass --overwrite to "
                             "replace it, or choose another --out")
    if overwrite:
        folder.clear()
    checkpointer = Checkpointer(folder.file(CHECKPOINT), key, checkpoint_every, folder=folder)
    if checkpointer.exists():
        previous = folder.read_config() or {}
        if previous.get("run_key") != key:
            raise RunFolderError(f"{folder.file(CHECKPOINT)} is a checkpoint of another configuration: "
                                 f"{_describe_diff(previous.get('key_material'), material)}; pass --overwrite "
                                 "to start this one there, or choose another --out")
        if not resume:
            raise RunFolderError(f"{folder.file(CHECKPOINT)} exists: rerun without --no-resume to continue it, "
                                 "or pass --overwrite to start again")
        checkpointer.check()  # now, before any rank trains: manifest, format, fields, run key
    folder.set_run_key(key)
    folder.write_text(CONFIG, yaml.safe_dump({"run_key": key, "config": cfg.to_dict(), "key_material": material},
                                             sort_keys=False))
    return None, checkpointer


def _write_results(folder: RunFolder, cfg: RunConfig, key: str, model, result: Dict[str, Any], topk) -> None:
    if topk is not None:
        top, users = topk
        text = io.StringIO(newline="")
        w = csv.writer(text)
        w.writerow(["user_id", "item_ids"])
        for u, row in zip(users.tolist(), top.tolist()):
            w.writerow([u, " ".join(str(i) for i in row if i >= 0)])
        folder.write_text(TOPK, text.getvalue())
    from .. import __version__
    best = {"format": BEST_FORMAT, "idsf_pyg": __version__, "model": cfg.model, "run_key": key,
            "state_dict": cpu_state(model)}
    folder.write(BEST, lambda f: torch.save(best, f))
    folder.write_json(RESULTS, result)
    folder.remove(CHECKPOINT)  # finished: results.json is the record now


def _describe_diff(old: Optional[Dict[str, Any]], new: Dict[str, Any]) -> str:
    if not old:
        return "its configuration is not recorded"
    diffs = key_differences(old, new)
    return "differs in " + "; ".join(diffs[:6]) + (f" (+{len(diffs) - 6} more)" if len(diffs) > 6 else "") \
        if diffs else "same settings but another run key"


def software_versions() -> Dict[str, str]:
    import numpy
    import torch_geometric
    out = {"python": platform.python_version(), "torch": torch.__version__,
           "torch_geometric": torch_geometric.__version__, "numpy": numpy.__version__}
    try:
        import torch_scatter
        out["torch_scatter"] = torch_scatter.__version__
    except ImportError:
        out["torch_scatter"] = "absent (PyG pure-PyTorch scatter)"
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        if rev.returncode == 0:
            out["idsf_pyg_git"] = rev.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def hardware(device: torch.device) -> Dict[str, Any]:
    """Where the run trained: :func:`machine`'s record (the CPU's model and kernel instruction set, which decide the
    rounding) plus the device, core and thread counts and the platform."""
    m = machine(device)
    info: Dict[str, Any] = {"device": str(device), "cpu": platform.processor() or platform.machine(),
                            "cpu_model": m["cpu"], "cpu_capability": m["cpu_capability"],
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "platform": platform.platform()}
    if device.type == "cuda":
        info["gpu"] = m["accelerator"]
        info["cuda"] = torch.version.cuda
    return info
