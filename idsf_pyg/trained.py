"""Using a trained model: rebuild it from its run folder, recommend, export embeddings.

    from idsf_pyg import load_run
    run = load_run("runs/baby", device="cuda")
    run.recommend([0, 1, 2], k=10)                          # {0: [item, ...], ...}, training items excluded
    run.recommend(["A2I1QPVS2C6FTD"], k=10, original_ids=True)  # the dataset's own ids in and out
    users, items = run.embeddings()                         # score(u, i) = users[u] @ items[i]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import yaml
from torch_geometric.data import HeteroData

from .data.graph import EDGE, describe
from .errors import ConfigError, RunFolderError
from .models.base import Recommender
from .train.config import RunConfig
from .train.run import BEST, BEST_FORMAT, CONFIG, RESULTS, build_model, load_run_data, resolve_device

PathLike = Union[str, Path]


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
            try:
                idx = int(u)
            except (TypeError, ValueError):
                raise ConfigError(f"user {u!r} is not an internal id (an integer); with original ids, say so "
                                  "(--original-ids)", "users") from None
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
        items, _ = self.model.recommend(index, k, exclude_seen=exclude_seen, exclude=exclude, batch_size=batch_size)
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
        return u.detach().cpu().float().numpy(), i.detach().cpu().float().numpy()


def load_run(folder: PathLike, device: str = "cpu") -> TrainedRun:
    """Rebuilds the best model of a finished run folder on ``device``.

    Reads ``config.yaml`` (the resolved configuration), loads the same data (its fingerprint must be
    the one the run was trained on) and the weights of ``best.pt`` (``torch.load(weights_only=True)``).
    Errors name what is missing or does not fit: no folder, no model, another version's model, data
    that changed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RunFolderError(f"{folder}: no such run folder")
    if not (folder / BEST).is_file():
        hint = ("the run has not finished (a checkpoint is there: rerun its command to finish it)"
                if (folder / "checkpoint.pt").is_file() else "it is not a finished run folder of experiments.train")
        raise RunFolderError(f"{folder}: no trained model ({BEST} is missing): {hint}")
    try:
        saved = yaml.safe_load((folder / CONFIG).read_text())
        cfg = RunConfig.from_dict(saved["config"], str(folder / CONFIG))
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise RunFolderError(f"{folder / CONFIG}: missing or unreadable run configuration ({e})") from None
    try:
        best = torch.load(folder / BEST, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or pickled code that weights_only refuses
        raise RunFolderError(f"{folder / BEST}: cannot read the model ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(best, dict) or best.get("format") != BEST_FORMAT:
        raise RunFolderError(f"{folder / BEST}: not a model file of this idsf-pyg version (format "
                             f"{best.get('format') if isinstance(best, dict) else '?'}, expected {BEST_FORMAT}); "
                             "retrain the run with this version")
    if best.get("model") != cfg.model:
        raise RunFolderError(f"{folder / BEST} holds a {best.get('model')!r} model but config.yaml says {cfg.model!r}")
    data = load_run_data(cfg)
    recorded = (saved.get("key_material") or {}).get("data_fingerprint")
    if recorded is not None and describe(data)["fingerprint"] != recorded:
        raise RunFolderError(f"{folder}: the data at {cfg.dataset!r} is not the data this run was trained on (split "
                             "fingerprint differs); point $IDSF_DATA or the config at the original data")
    model = build_model(cfg, data)
    try:
        model.load_state_dict(best["state_dict"])
    except RuntimeError as e:
        raise RunFolderError(f"{folder / BEST} does not fit the {cfg.model!r} model of idsf-pyg "
                             f"(saved by version {best.get('idsf_pyg')}): {str(e).splitlines()[0]}") from None
    model = model.to(resolve_device(device)).eval()
    results = None
    if (folder / RESULTS).is_file():
        import json
        results = json.loads((folder / RESULTS).read_text())
    return TrainedRun(folder, cfg, model, data, results, getattr(data, "user_ids", None),
                      getattr(data, "item_ids", None))
