"""Checkpoints: everything a killed run needs to continue as if it had never stopped.

A checkpoint holds the model's and the optimizer's state, the sampler's and torch's random-number
states, the epoch reached, the early-stopping state (best score, its epoch, evaluations since), the best
state itself, the validation curve and the time spent, plus the run's key (:func:`~idsf_pyg.train.config.run_key`)
so that a checkpoint is only ever resumed by the same configuration. It is written atomically (a killed
write leaves the previous checkpoint) and read with ``torch.load(weights_only=True)``: tensors and plain
containers only, no pickled code.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch import Tensor

from ..errors import RunFolderError
from ..io import write_with

CHECKPOINT_FORMAT = 1


@dataclass
class TrainState:
    """The trainer's progress, saved in every checkpoint."""

    epoch: int = 0                        # last finished epoch
    best_score: float = -math.inf
    best_epoch: int = 0
    since_best: int = 0                   # evaluations without improvement
    curve: List[Dict[str, Any]] = field(default_factory=list)
    epoch_times: List[float] = field(default_factory=list)
    eval_times: List[float] = field(default_factory=list)
    elapsed: float = 0.0                  # training seconds so far, all sessions together
    stopped: Optional[str] = None         # why training ended; None while it goes on
    resumed_at: List[int] = field(default_factory=list)  # epochs after which a run was resumed

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: Dict[str, Any]) -> "TrainState":
        return cls(**obj)


def cpu_state(module: torch.nn.Module) -> Dict[str, Tensor]:
    """A copy of ``module.state_dict()`` on the CPU (kept off the accelerator, safe from later steps)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


class Checkpointer:
    """Saves and loads one run's checkpoint file.

    Args:
        path: The checkpoint file (``<run folder>/checkpoint.pt``).
        key: The run's key; :meth:`load` refuses a checkpoint with another.
        every: Save after every ``every``-th epoch (and always when training stops).
    """

    def __init__(self, path: Path, key: str, every: int = 1):
        self.path, self.key, self.every = Path(path), key, every

    def exists(self) -> bool:
        return self.path.is_file()

    def due(self, epoch: int, stopped: bool) -> bool:
        return stopped or epoch % self.every == 0

    def save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, sampler_rng: torch.Generator,
             state: TrainState, best_state: Optional[Dict[str, Tensor]]) -> None:
        payload = {
            "format": CHECKPOINT_FORMAT,
            "key": self.key,
            "model": cpu_state(model),
            "optimizer": optimizer.state_dict(),
            "sampler_rng": sampler_rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "state": state.to_dict(),
            "best_state": best_state,
        }
        write_with(self.path, lambda f: torch.save(payload, f))

    def load(self) -> Dict[str, Any]:
        """The checkpoint's payload; :class:`RunFolderError` if it is unreadable or of another run."""
        payload = read_checkpoint(self.path)
        if payload["key"] != self.key:
            raise RunFolderError(f"{self.path} belongs to another configuration (run key {payload['key'][:12]}, "
                                 f"this run {self.key[:12]}); use another --out or --overwrite")
        return payload

    @staticmethod
    def restore(payload: Dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                sampler_rng: torch.Generator) -> tuple:
        """Puts a payload back into the live objects; returns ``(TrainState, best_state)``."""
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        sampler_rng.set_state(payload["sampler_rng"])
        torch.set_rng_state(payload["torch_rng"])
        if payload["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        return TrainState.from_dict(payload["state"]), payload["best_state"]


def read_checkpoint(path: Path) -> Dict[str, Any]:
    """Loads a checkpoint file (weights only) and checks its format."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or pickled code that weights_only refuses
        raise RunFolderError(f"{path}: cannot read the checkpoint ({type(e).__name__}: {str(e)[:200]}); "
                             "delete it or pass --overwrite to start the run again") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise RunFolderError(f"{path}: not an idsf-pyg checkpoint of format {CHECKPOINT_FORMAT} (found {found!r})")
    return payload
