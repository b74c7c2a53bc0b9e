"""Using a trained model: rebuild it from its run folder, recommend, export embeddings.

    from idsf_pyg import load_run
    run = load_run("runs/baby", device="cuda")
    run.recommend([0, 1, 2], k=10)                          # {0: [item, ...], ...}, training items excluded
    run.recommend(["A2I1QPVS2C6FTD"], k=10, original_ids=True)  # the dataset's own ids in and out
    users, items = run.embeddings()                         # score(u, i) = users[u] @ items[i]
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch_geometric.data import HeteroData

from .data.graph import EDGE
from .errors import ConfigError, RunFolderError
from .models.base import Recommender
from .train.checkpoint import describe_load_error
from .train.config import RunConfig
from .train.run import BEST_FORMAT, build_model, check_run_key, load_run_data, resolve_device
from .train.run_folder import BEST, CHECKPOINT, CONFIG, MANIFEST, RESULTS, RunFolder

PathLike = Union[str, Path]
_INTERNAL_ID = re.compile(r"[0-9]+")


@dataclass
class TrainedRun:
    """A model rebuilt from a finished run folder, with its graph and id maps."""

    folder: Path
    config: RunConfig
    model: Recommender
    data: HeteroData
    results: Optional[Dict[str, Any]] = None
    user_ids: Optional[List[str]] = field(default=None, repr=False)
    item_ids: Optional[List[str]] = field(default=None, repr=False)

    def internal_users(self, users: Sequence[Any], original_ids: bool = False) -> torch.Tensor:
        """User indices from internal ids (ints or digit strings) or, with ``original_ids``, the dataset's."""
        if original_ids:
            if self.user_ids is None:
                raise ConfigError("this dataset has no user id map (user_list.txt), so there are no original ids; "
                                  "use the internal ids", "users")
            lookup = {u: k for k, u in enumerate(self.user_ids)}
            missing = [u for u in users if str(u) not in lookup]
            if missing:
                raise ConfigError(f"unknown user {missing[0]!r} (not in the dataset's user_list.txt)", "users")
            return torch.tensor([lookup[str(u)] for u in users], dtype=torch.long)
        out = []
        for u in users:
            if isinstance(u, str) and _INTERNAL_ID.fullmatch(u):
                idx = int(u)
            elif isinstance(u, (int, np.integer)) and not isinstance(u, bool):
                idx = int(u)
            else:  # int() would also take "0_1", " 1", "+1" or other scripts' digits
                raise ConfigError(f"user {u!r} is not an internal id (digits 0-9 only); with original ids, say so "
                                  "(--original-ids)", "users")
            if not 0 <= idx < self.model.num_users:
                raise ConfigError(f"unknown user {idx}: internal ids are 0..{self.model.num_users - 1}", "users")
            out.append(idx)
        return torch.tensor(out, dtype=torch.long)

    def recommend(self, users: Sequence[Any], k: int = 10, exclude_seen: bool = True, exclude_val: bool = False,
                  original_ids: bool = False, batch_size: int = 1024) -> Dict[Any, List[Any]]:
        """Each user's top-``k`` items (best first; training items excluded unless ``exclude_seen=False``;
        validation items too with ``exclude_val``), keyed by the user as given."""
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.model.num_items:
            raise ConfigError(f"must be between 1 and the number of items ({self.model.num_items}), got {k!r}", "k")
        if original_ids and self.item_ids is None:
            raise ConfigError("this dataset has no item id map (item_list.txt), so there are no original ids",
                              "original_ids")
        index = self.internal_users(users, original_ids)
        exclude = self.data[EDGE].val_edge_index if exclude_val else None
        items, scores = self.model.recommend(index, k, exclude_seen=exclude_seen, exclude=exclude,
                                             batch_size=batch_size)
        picked = scores[items >= 0]
        if not bool(torch.isfinite(picked).all()):
            raise RunFolderError(f"{self.folder}: the model scores some items NaN or infinite; its rankings are "
                                 "meaningless (retrain the run)")
        out: Dict[Any, List[Any]] = {}
        for user, row in zip(users, items.tolist()):
            row = [i for i in row if i >= 0]
            out[user] = [self.item_ids[i] for i in row] if original_ids else row
        return out

    @torch.no_grad()
    def embeddings(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(user_embeddings [U, d], item_embeddings [I, d])``: a pair's score is their inner product."""
        self.model.eval()
        u, i = self.model.embed()
        for name, x in (("user", u), ("item", i)):
            if not bool(torch.isfinite(x).all()):
                raise RunFolderError(f"{self.folder}: {int((~torch.isfinite(x)).sum())} {name} embedding values are "
                                     "NaN or infinite (retrain the run)")
        return u.detach().cpu().float().numpy(), i.detach().cpu().float().numpy()


def load_run(folder: PathLike, device: str = "cpu") -> TrainedRun:
    """Rebuilds the best model of a finished run folder on ``device``.

    Every file is checked before it is used: against the folder's manifest (the files the run wrote, see
    :mod:`idsf_pyg.train.run_folder`), for its fields, for one run key throughout (recomputed from
    ``config.yaml`` and the data, compared with those recorded in ``best.pt``, ``results.json`` and the
    manifest) and for finite weights. Each refusal names the file and what does not fit.
    """
    path = Path(folder)
    if not path.is_dir():
        raise RunFolderError(f"{path}: no such run folder")
    run_folder = RunFolder(path)
    best_bytes = run_folder.read(BEST)
    if best_bytes is None:
        hint = ("the run has not finished (a checkpoint is there: rerun its command to finish it)"
                if run_folder.file(CHECKPOINT).is_file() else "it is not a finished run folder of experiments.train")
        raise RunFolderError(f"{path}: no trained model ({BEST} is missing): {hint}")
    saved = run_folder.read_config()
    if saved is None:
        raise RunFolderError(f"{path / CONFIG}: missing; the run folder is incomplete")
    cfg = RunConfig.from_dict(saved["config"], str(path / CONFIG))
    best = read_best(path / BEST, best_bytes, cfg.model)
    results = run_folder.finished()
    data = load_run_data(cfg)
    recorded = {CONFIG: saved["run_key"], BEST: best["run_key"], MANIFEST: (run_folder.manifest() or {}).get("run_key")}
    if results is not None:
        recorded[RESULTS] = results["run_key"]
    check_run_key(path, cfg, data, saved, recorded)
    model = build_model(cfg, data)
    try:
        model.load_state_dict(best["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise RunFolderError(f"{path / BEST} does not fit the {cfg.model!r} model of idsf-pyg "
                             f"(saved by version {best.get('idsf_pyg')}): {str(e).strip().splitlines()[0]}") from None
    model = model.to(resolve_device(device)).eval()
    return TrainedRun(path, cfg, model, data, results, getattr(data, "user_ids", None),
                      getattr(data, "item_ids", None))


def read_best(path: Path, data: bytes, model: str) -> Dict[str, Any]:
    """``best.pt``'s payload (weights only), its fields and the finiteness of its weights checked."""
    try:
        best = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or pickled code that weights_only refuses
        raise RunFolderError(f"{path}: cannot read the model ({describe_load_error(e)})") from None
    if not isinstance(best, dict) or best.get("format") != BEST_FORMAT:
        raise RunFolderError(f"{path}: not a model file of this idsf-pyg version (format "
                             f"{best.get('format') if isinstance(best, dict) else type(best).__name__!r}, expected "
                             f"{BEST_FORMAT}); retrain the run with this version")
    for name, kind in (("model", str), ("run_key", str), ("state_dict", dict)):
        if not isinstance(best.get(name), kind):
            raise RunFolderError(f"{path}, field '{name}': missing or not a {kind.__name__}")
    if best["model"] != model:
        raise RunFolderError(f"{path} holds a {best['model']!r} model but config.yaml says {model!r}")
    for name, tensor in best["state_dict"].items():
        if not isinstance(tensor, torch.Tensor):
            raise RunFolderError(f"{path}, field 'state_dict.{name}': not a tensor")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise RunFolderError(f"{path}, field 'state_dict.{name}': {bad} of {tensor.numel()} values are NaN or "
                                 "infinite; this model cannot rank")
    return best
