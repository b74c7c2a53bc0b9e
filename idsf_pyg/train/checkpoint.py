"""Checkpoints: everything a killed run needs to continue as if it had never stopped.

A checkpoint holds the model's and the optimizer's state, the sampler's and torch's random-number
states, the epoch reached, the early-stopping state (best score, its epoch, evaluations since), the best
state itself, the validation curve and the time spent, plus the run's key (:func:`~idsf_pyg.train.config.run_key`)
so that a checkpoint is only ever resumed by the same configuration. It is written atomically (a killed
write leaves the previous checkpoint) and read with ``torch.load(weights_only=True)``: tensors and plain
containers only, no pickled code.
"""
from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import torch
from torch import Tensor

from ..errors import RunFolderError
from ..io import write_with

if TYPE_CHECKING:
    from .run_folder import RunFolder

CHECKPOINT_FORMAT = 1
#: The fields of a checkpoint and their types (``best_state`` may also be ``None``).
CHECKPOINT_FIELDS = {"format": int, "key": str, "model": dict, "optimizer": dict, "sampler_rng": Tensor,
                     "torch_rng": Tensor, "cuda_rng": list, "state": dict, "best_state": dict}
#: What torch's refusal of a file with pickled code means for a file of this project, in place of torch's
#: advice (which suggests ``weights_only=False``: running whatever code the file holds).
UNSAFE_FILE_ADVICE = ("it holds pickled Python objects that safe loading (weights_only=True) refuses; idsf-pyg never "
                      "writes such files, so it was not written by this project: do not load it with "
                      "weights_only=False unless you trust its source, since unpickling can run any code")


def describe_load_error(e: Exception) -> str:
    """One line for an exception of ``torch.load(weights_only=True)``, without torch's unsafe advice."""
    text = str(e)
    if "weights_only" in text or "Unsupported global" in text or "WeightsUnpickler" in text:
        return UNSAFE_FILE_ADVICE
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(e).__name__}: {first[:300]}"


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
    # machines the run trained on, each from an epoch on (idsf_pyg.train.machine); older checkpoints lack it
    machines: List[Dict[str, Any]] = field(default_factory=list)

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

    def __init__(self, path: Path, key: str, every: int = 1, folder: Optional["RunFolder"] = None):
        self.path, self.key, self.every, self.folder = Path(path), key, every, folder
        self._checked: Optional[Dict[str, Any]] = None  # a payload check() read, handed to the next load()

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
        if self.folder is not None:  # sealed in the run folder's manifest
            self.folder.write(self.path.name, lambda f: torch.save(payload, f))
        else:
            write_with(self.path, lambda f: torch.save(payload, f))

    def load(self) -> Dict[str, Any]:
        """The checkpoint's payload; :class:`RunFolderError` if it is unreadable, not the file the run wrote
        (checked against the run folder's manifest), malformed or of another run."""
        if self._checked is not None:  # read (and checked) once per resume, not twice
            payload, self._checked = self._checked, None
            return payload
        data = self.folder.read(self.path.name) if self.folder is not None else None
        payload = read_checkpoint(self.path, data)
        if payload["key"] != self.key:
            raise RunFolderError(f"{self.path} belongs to another configuration (run key {payload['key'][:12]}, "
                                 f"this run {self.key[:12]}); use another --out or --overwrite")
        return payload

    def check(self) -> None:
        """Loads and checks the checkpoint now (a :class:`RunFolderError` before any training starts); the
        next :meth:`load` returns it without reading the file again."""
        self._checked = None
        self._checked = self.load()

    @staticmethod
    def restore(payload: Dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                sampler_rng: torch.Generator, source: Optional[Path] = None) -> tuple:
        """Puts a payload back into the live objects; returns ``(TrainState, best_state)``. A payload that
        does not fit them (another model size, missing state) is a :class:`RunFolderError`."""
        try:
            state = TrainState.from_dict(payload["state"])
            upgrade = getattr(model, "upgrade_state_dict", lambda s: s)
            saved, best = upgrade(payload["model"]), payload["best_state"]
            best = None if best is None else upgrade(best)
            _check_fits(saved, model, "model")
            if best is not None:
                _check_fits(best, model, "best_state")
            model.load_state_dict(saved)
            optimizer.load_state_dict(optimizer_by_names(payload["optimizer"], saved, model))
            sampler_rng.set_state(payload["sampler_rng"])
            torch.set_rng_state(payload["torch_rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise RunFolderError(f"{source or 'checkpoint'}: does not fit this run's model or trainer: "
                                 f"{str(e).strip().splitlines()[0][:300]}; delete it or pass --overwrite to "
                                 "start the run again") from None
        if payload["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        return state, best


def optimizer_by_names(opt_state: Dict[str, Any], saved_model: Dict[str, Any], model: torch.nn.Module
                       ) -> Dict[str, Any]:
    """The optimizer state of a checkpoint, re-indexed so that each parameter gets its own moments when the
    model lists its parameters in another order than the one that saved it (an optimizer's state is indexed by
    position). The saved order is that of the saved state dict's parameters (one optimizer group of all
    trainable parameters, as :func:`~idsf_pyg.train.trainer.train` builds it)."""
    now = [n for n, p in model.named_parameters() if p.requires_grad]
    then = [k for k in saved_model if k in set(now)]
    groups = opt_state.get("param_groups", [])
    if then == now or sorted(then) != sorted(now) or len(groups) != 1 \
            or list(groups[0].get("params", [])) != list(range(len(now))):
        return opt_state
    old_index = {name: i for i, name in enumerate(then)}
    state = {j: opt_state["state"][old_index[name]] for j, name in enumerate(now)
             if old_index[name] in opt_state["state"]}
    return {**opt_state, "state": state}


def _check_fits(state: Dict[str, Any], model: torch.nn.Module, name: str) -> None:
    own = model.state_dict()
    for k, v in own.items():
        if k not in state:
            raise KeyError(f"{name} lacks {k!r}")
        if not isinstance(state[k], Tensor) or state[k].shape != v.shape:
            shape = tuple(state[k].shape) if isinstance(state[k], Tensor) else type(state[k]).__name__
            raise ValueError(f"{name}[{k!r}] has shape {shape}, the model {tuple(v.shape)}")


def read_checkpoint(path: Path, data: Optional[bytes] = None) -> Dict[str, Any]:
    """Loads a checkpoint (from ``data`` when given, the file's bytes already read) with weights only and
    checks its format and fields."""
    try:
        payload = torch.load(io.BytesIO(data) if data is not None else path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or pickled code that weights_only refuses
        raise RunFolderError(f"{path}: cannot read the checkpoint ({describe_load_error(e)}); "
                             "delete it or pass --overwrite to start the run again") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise RunFolderError(f"{path}: not an idsf-pyg checkpoint of format {CHECKPOINT_FORMAT} (found {found!r})")
    for name, kind in CHECKPOINT_FIELDS.items():
        value = payload.get(name)
        if not isinstance(value, kind) and not (name == "best_state" and value is None):
            raise RunFolderError(f"{path}, field '{name}': missing or not a {kind.__name__} (a damaged or "
                                 "foreign checkpoint); delete it or pass --overwrite to start the run again")
    state = payload["state"]
    known = {f.name for f in fields(TrainState)}
    if set(state) - known or "epoch" not in state:
        raise RunFolderError(f"{path}, field 'state': not this version's training state (fields "
                             f"{sorted(state)}); delete it or pass --overwrite to start the run again")
    return payload
