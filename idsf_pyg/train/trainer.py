"""The training loop: BPR batches, periodic validation, early stopping, checkpoints, one test read."""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from ..data.graph import EDGE, ITEM, describe
from ..errors import TrainingError
from ..eval import evaluator_for
from ..logs import logger
from ..models.base import Recommender
from .checkpoint import Checkpointer, TrainState, cpu_state
from .config import TrainConfig
from ..parallel import Shard, batch_share
from .distributed import all_reduce_gradients
from .sampler import BPRSampler
from .machine import describe as describe_machine, machine


def set_seed(seed: int, sampler_stream: str = "shared") -> torch.Generator:
    """Seeds torch's global generators (model initialization, dropout) and returns the sampler's own, seeded with
    :func:`sampler_seed`."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(sampler_seed(seed, sampler_stream))


def sampler_seed(seed: int, sampler_stream: str = "shared") -> int:
    """The seed of the sampler's generator: ``seed`` itself (``"shared"``: the CPU generator then repeats the
    numbers the model's initialization drew from the global one, so the first epochs' batches are a function of
    the initial weights) or, for ``"independent"``, the first word of NumPy's child :class:`~numpy.random.
    SeedSequence` of ``seed`` (32 bits: torch's CPU generator keeps only the low 32 bits of a seed)."""
    if sampler_stream == "shared":
        return seed
    if sampler_stream != "independent":
        raise ValueError(f"sampler_stream must be 'shared' or 'independent', got {sampler_stream!r}")
    return int(np.random.SeedSequence(seed).spawn(1)[0].generate_state(1, np.uint32)[0])


def autocast(device: torch.device, amp: str):
    """``amp="bf16"``: bfloat16 matrix products (linear layers, propagation, the contrastive similarity
    blocks) under :func:`torch.autocast`; the models accumulate their losses in float32. ``"none"``: off."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16")


def use_deterministic_algorithms(enabled: bool) -> None:
    """``--deterministic``: bit-identical CUDA runs at some speed cost (CPU runs are deterministic already).

    Turns on :func:`torch.use_deterministic_algorithms` (an op without a deterministic implementation
    then raises instead of silently varying) and the cuBLAS workspace setting it requires.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = enabled


@dataclass
class TrainResult:
    """What one training run gives: written once, to ``results.json`` (:meth:`to_dict`)."""

    train_config: Dict[str, Any]
    data: Dict[str, Any]
    best_epoch: int
    stopped: str
    epochs_run: int
    resumed_after_epochs: List[int]
    #: Each machine the run trained on and the first epoch it trained (:func:`~idsf_pyg.train.machine.machine`).
    machines: List[Dict[str, Any]]
    seconds: Dict[str, float]
    val_curve: List[Dict[str, Any]]
    val: Dict[str, float]
    test: Dict[str, float]
    test_users: int
    #: Each test user's top-k items and the users, with ``save_topk`` (not in :meth:`to_dict`: a file of its own).
    topk: Optional[Tuple[Tensor, Tensor]] = None

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "topk"}


class Trainer:
    """Trains a model on a graph's training edges, in the manner of MMRec's trainer: :meth:`fit` runs epochs of
    :meth:`train_epoch` and, every ``eval_every`` epochs, :meth:`validate`, which keeps the best state and decides
    when to stop; :meth:`test` then reads the test split once, with the state chosen on validation.

    With a ``checkpoint``, the run is saved after every ``checkpoint.every`` epochs and when it stops; if the
    checkpoint file exists already, training continues from it and ends with the same numbers as an
    uninterrupted run (same seed, threads and device). The model must have been built from the same seed as in
    the first session (:func:`set_seed` before building it). ``data_info`` is :func:`~idsf_pyg.data.describe` of
    ``data`` if the caller has it already (it sorts every split).

    With ``shard``, this process is one rank of a data-parallel job (:mod:`idsf_pyg.train.distributed`): every
    rank draws the same global batches and computes its share of each step's loss, gradients are summed over the
    ranks before every optimizer step, evaluation is split by users, and only rank 0 saves checkpoints (every
    rank resumes from them). Progress goes to :data:`idsf_pyg.logs.logger`.

    ``on_validation(entry, final)`` is called with every validation's curve entry (``{"epoch", "loss",
    "val_<metric>", ...}``) once that epoch's checkpoint is saved, the entries of earlier sessions first when
    resuming; ``final`` says that training ends there (a stopping rule fired or the last epoch is done). An
    exception it raises ends training there (a search's pruner stops a trial so, and the run resumes from that
    epoch if asked again).
    """

    def __init__(self, model: Recommender, data: HeteroData, config: TrainConfig, device: torch.device | str = "cpu",
                 progress: bool = True, checkpoint: Optional[Checkpointer] = None,
                 data_info: Optional[Dict[str, Any]] = None, shard: Optional[Shard] = None,
                 on_validation: Optional[Callable[[Dict[str, Any], bool], None]] = None):
        self.device = torch.device(device)
        self.on_validation = on_validation
        # Bars only on a terminal: redirected to a file they would write carriage-return frames, not lines.
        self.config, self.data, self.progress = config, data, progress and sys.stderr.isatty()
        self.checkpoint, self.data_info, self.shard = checkpoint, data_info, shard
        self.generator = set_seed(config.seed, config.sampler_stream)
        self.model = model.to(self.device)
        self.sampler = BPRSampler(data[EDGE].edge_index, int(data[ITEM].num_nodes), config.batch_size,
                                  self.generator, mode=config.sampler)
        self.val_eval = evaluator_for(data, "val", ks=config.ks, batch_size=config.eval_batch_size)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=config.lr)
        self.state, self.best_state = TrainState(), None

    def fit(self, save_topk: bool = False) -> TrainResult:
        """Trains until a stopping rule fires (or resumes a run that had stopped), then tests once."""
        if self.checkpoint is not None and self.checkpoint.exists():
            self.resume()
        self.note_machine()
        config, state = self.config, self.state
        if self.on_validation is not None:
            for i, entry in enumerate(state.curve):
                self.on_validation(entry, state.stopped is not None and i == len(state.curve) - 1)
        start = time.perf_counter() - state.elapsed
        epochs = range(state.epoch + 1, config.epochs + 1) if state.stopped is None else range(0)
        bar = tqdm(epochs, desc="epochs", disable=not self.progress, leave=False)
        for epoch in bar:
            objective, means = self.train_epoch(epoch)
            state.epoch = epoch
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                score = self.validate(epoch, objective, means)
                bar.set_postfix({config.select_metric: f"{score:.4f}", "best": state.best_epoch})
            else:  # one plain line per epoch, validated or not
                logger.info(f"epoch {epoch:4d}  loss {objective:.4f} {_fmt(means)}  ({state.epoch_times[-1]:.1f}s)")
            self.check_time_cap(start)
            if state.stopped is None and epoch == config.epochs:
                state.stopped = "max epochs"
            state.elapsed = time.perf_counter() - start
            self.save_checkpoint(epoch)
            if self.on_validation is not None and state.curve and state.curve[-1]["epoch"] == epoch:
                self.on_validation(state.curve[-1], state.stopped is not None)
            if state.stopped is not None:
                break
        bar.close()
        return self.test(save_topk)

    def resume(self) -> None:
        self.state, self.best_state = Checkpointer.restore(self.checkpoint.load(), self.model, self.optimizer,
                                                           self.generator, self.checkpoint.path)
        state = self.state
        state.resumed_at.append(state.epoch)
        logger.info(f"resuming from {self.checkpoint.path}: {state.epoch} epochs done, best validation "
                    f"{self.config.select_metric} {state.best_score:.5f} at epoch {state.best_epoch}"
                    + (f" (training had ended: {state.stopped})" if state.stopped else ""))

    def note_machine(self) -> None:
        """Records this machine from the next epoch on, unless it is the one the run trained on last; a run that
        continues another machine's checkpoint says that it is no longer bit for bit an uninterrupted run."""
        state, here = self.state, machine(self.device)
        last = {k: v for k, v in state.machines[-1].items() if k != "from_epoch"} if state.machines else None
        if last == here:
            return
        if last is not None:
            logger.warning(f"this checkpoint was written on another machine ({describe_machine(last)}; here "
                           f"{describe_machine(here)}): from epoch {state.epoch + 1} on, the numbers round otherwise "
                           "than an uninterrupted run's on either machine (results.json lists both)")
        state.machines.append({"from_epoch": state.epoch + 1, **here})

    def train_epoch(self, epoch: int) -> Tuple[float, Dict[str, float]]:
        """One pass of BPR batches; returns the mean objective (the weighted sum actually minimized) and the mean
        of each logged part. A non-finite objective is a :class:`TrainingError`."""
        config, model, opt = self.config, self.model, self.optimizer
        for group in opt.param_groups:  # the official code's LambdaLR(0.96 ** (epoch / 50)), as a function of the epoch
            group["lr"] = config.lr * config.lr_decay ** ((epoch - 1) / 50)
        model.train()
        t0 = time.perf_counter()
        totals: Dict[str, Tensor] = {}
        # Summed on the device in float64 and read once per epoch: no host-device synchronization per step.
        objective = torch.zeros((), dtype=torch.float64, device=self.device)
        for users, pos, neg in tqdm(self.sampler, desc=f"epoch {epoch}", leave=False, disable=not self.progress,
                                    total=len(self.sampler)):
            with autocast(self.device, config.amp):
                loss, parts = _step_loss(model, users.to(self.device), pos.to(self.device), neg.to(self.device),
                                         self.shard)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.shard is not None:
                all_reduce_gradients(self.params, self.shard)
            opt.step()
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v.double()
            objective += loss.detach().double()
        if self.shard is not None:  # each rank holds its share of the epoch's losses
            keys = sorted(totals)
            both = self.shard.all_reduce(torch.stack([objective] + [totals[k] for k in keys]))
            objective, totals = both[0], dict(zip(keys, both[1:]))
        n = len(self.sampler)
        means = {k: float(v) / n for k, v in totals.items()}
        value = float(objective) / n
        if not math.isfinite(value):
            kept = (f"; the checkpoint of epoch {self.state.epoch} is kept in {self.checkpoint.path}"
                    if self.checkpoint is not None and self.checkpoint.exists() else "")
            raise TrainingError(f"the loss became {float(objective)} in epoch {epoch} ({_fmt(means)}): lower the "
                                f"learning rate (now {config.lr:g}) or check the feature scale{kept}")
        self.state.epoch_times.append(time.perf_counter() - t0)
        return value, means

    def validate(self, epoch: int, objective: float, means: Dict[str, float]) -> float:
        """Full ranking on the validation split: records the curve, keeps the best state (on the CPU) and sets
        ``stopped`` after ``patience`` evaluations without improvement; returns the selection metric."""
        config, state, model = self.config, self.state, self.model
        t1 = time.perf_counter()
        model.eval()
        with torch.no_grad():
            val = self.val_eval.evaluate(*model.embed(), shard=self.shard)
        state.eval_times.append(time.perf_counter() - t1)
        score = float(val[config.select_metric])
        state.curve.append({"epoch": epoch, "seconds": state.epoch_times[-1], "loss": objective,
                            **{f"loss_{k}": v for k, v in means.items()},
                            **{f"val_{k}": v for k, v in val.items() if "@" in k}})
        improved = score > state.best_score
        if improved:
            state.best_score, state.best_epoch, state.since_best = score, epoch, 0
            self.best_state = cpu_state(model)
        else:
            state.since_best += 1
        logger.info(f"epoch {epoch:4d}  loss {objective:.4f} {_fmt(means)}  "
                    f"val {config.select_metric} {score:.5f}{' *' if improved else ''}  ({state.epoch_times[-1]:.1f}s)")
        if state.since_best >= config.patience:
            state.stopped = (f"early stopping: no better validation {config.select_metric} for "
                             f"{config.patience} evaluations")
        return score

    def check_time_cap(self, start: float) -> None:
        """``max_seconds``: stops cleanly once training has taken longer (all ranks together)."""
        if self.state.stopped is not None or self.config.max_seconds is None:
            return
        over = torch.tensor(float(time.perf_counter() - start > self.config.max_seconds), device=self.device)
        if self.shard is not None:  # the ranks' clocks differ: stop when any rank is over, all together
            self.shard.all_reduce(over, "max")
        if over.item() > 0:
            self.state.stopped = f"time cap of {self.config.max_seconds:.0f}s reached"

    def save_checkpoint(self, epoch: int) -> None:
        if self.checkpoint is not None and self.checkpoint.due(epoch, self.state.stopped is not None) \
                and (self.shard is None or self.shard.rank == 0):
            self.checkpoint.save(self.model, self.optimizer, self.generator, self.state, self.best_state)

    def test(self, save_topk: bool = False) -> TrainResult:
        """The test split, read exactly once, with the state of the best validation epoch."""
        config, state, model = self.config, self.state, self.model
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        model.eval()
        test_eval = evaluator_for(self.data, "test", mask_val_in_test=config.mask_val_in_test, ks=config.ks,
                                  batch_size=config.eval_batch_size)
        with torch.no_grad():
            test = test_eval.evaluate(*model.embed(), return_topk=save_topk, shard=self.shard)
        topk = (test.pop("topk"), test.pop("topk_users")) if save_topk else None
        best_val = next((c for c in state.curve if c["epoch"] == state.best_epoch), {})
        return TrainResult(
            train_config=asdict(config),
            data=self.data_info if self.data_info is not None else describe(self.data),
            best_epoch=state.best_epoch, stopped=state.stopped or "max epochs", epochs_run=state.epoch,
            resumed_after_epochs=state.resumed_at,
            machines=state.machines,
            seconds={"train_total": state.elapsed,
                     "per_epoch_mean": sum(state.epoch_times) / max(len(state.epoch_times), 1),
                     "per_eval_mean": sum(state.eval_times) / max(len(state.eval_times), 1)},
            val_curve=state.curve, val={k[4:]: v for k, v in best_val.items() if k.startswith("val_")},
            test={k: v for k, v in test.items() if "@" in k}, test_users=test["num_users"], topk=topk)


def train(model: Recommender, data: HeteroData, config: TrainConfig, device: torch.device | str = "cpu",
          save_topk: bool = False, progress: bool = True, checkpoint: Optional[Checkpointer] = None,
          data_info: Optional[Dict[str, Any]] = None, shard: Optional[Shard] = None,
          on_validation: Optional[Callable[[Dict[str, Any], bool], None]] = None) -> TrainResult:
    """``Trainer(model, data, config, ...).fit(save_topk)``: trains, selects on validation, tests once."""
    return Trainer(model, data, config, device, progress, checkpoint, data_info, shard, on_validation).fit(save_topk)


def _step_loss(model: Recommender, users: Tensor, pos: Tensor, neg: Tensor, shard: Optional[Shard]):
    """One step's loss on this rank: the whole loss in one process; in a data-parallel job, this rank's
    share (a model that splits its own loss gets the whole global batch, any other its slice, weighted)."""
    if shard is None:
        return model.loss(users, pos, neg)
    if model.supports_shard:
        return model.loss(users, pos, neg, shard=shard)
    part, weight = batch_share(users.numel(), shard)
    if part.stop == part.start:  # more ranks than triples in this (last) batch
        zero = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
        return zero, {}
    loss, logs = model.loss(users[part], pos[part], neg[part])
    return weight * loss, {k: weight * v for k, v in logs.items()}


def _fmt(parts: Dict[str, float]) -> str:
    return "(" + ", ".join(f"{k} {v:.4f}" for k, v in parts.items()) + ")"
