"""The training loop: BPR batches, periodic validation, early stopping, checkpoints, one test read."""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict
from typing import Any, Callable, Dict, Optional

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from ..data.graph import EDGE, ITEM, describe
from ..errors import TrainingError
from ..eval import evaluator_for
from ..models.base import Recommender
from .checkpoint import Checkpointer, TrainState, cpu_state
from .config import TrainConfig
from ..parallel import Shard, batch_share
from .distributed import all_reduce_gradients
from .sampler import BPRSampler


def set_seed(seed: int) -> torch.Generator:
    """Seeds torch's global generators (model initialization, dropout) and returns the sampler's own."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


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


def train(model: Recommender, data: HeteroData, config: TrainConfig, device: torch.device | str = "cpu",
          log: Callable[[str], None] = lambda s: print(s, flush=True), save_topk: bool = False,
          progress: bool = True, checkpoint: Optional[Checkpointer] = None,
          data_info: Optional[Dict[str, Any]] = None, shard: Optional[Shard] = None) -> Dict[str, Any]:
    """Trains ``model`` on ``data``'s training edges and returns a results dict.

    Model selection uses the validation split only: the state with the best ``select_metric`` is kept
    (on the CPU), and the test split is evaluated once, with that state, after training.

    With a ``checkpoint``, the run is saved after every ``checkpoint.every`` epochs and when it stops;
    if the checkpoint file exists already, training continues from it and ends with the same numbers
    as an uninterrupted run (same seed, threads and device). The model must have been built from the
    same seed as in the first session (:func:`set_seed` before building it). ``data_info`` is
    :func:`~idsf_pyg.data.describe` of ``data`` if the caller has it already (it sorts every split).

    With ``shard``, this process is one rank of a data-parallel job (:mod:`idsf_pyg.train.distributed`):
    every rank draws the same global batches and computes its share of each step's loss, gradients are
    summed over the ranks before every optimizer step, evaluation is split by users, and only rank 0
    saves checkpoints (every rank resumes from them).
    """
    device = torch.device(device)
    gen = set_seed(config.seed)
    model = model.to(device)
    store = data[EDGE]
    sampler = BPRSampler(store.edge_index, int(data[ITEM].num_nodes), config.batch_size, gen, mode=config.sampler)
    val_eval = evaluator_for(data, "val", ks=config.ks, batch_size=config.eval_batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.lr)

    state, best_state = TrainState(), None
    if checkpoint is not None and checkpoint.exists():
        state, best_state = Checkpointer.restore(checkpoint.load(), model, opt, gen, checkpoint.path)
        state.resumed_at.append(state.epoch)
        log(f"resuming from {checkpoint.path}: {state.epoch} epochs done, best validation "
            f"{config.select_metric} {state.best_score:.5f} at epoch {state.best_epoch}"
            + (f" (training had ended: {state.stopped})" if state.stopped else ""))

    start = time.perf_counter() - state.elapsed
    epochs = range(state.epoch + 1, config.epochs + 1) if state.stopped is None else range(0)
    bar = tqdm(epochs, desc="epochs", disable=not progress, leave=False)
    for epoch in bar:
        for group in opt.param_groups:  # the official code's LambdaLR(0.96 ** (epoch / 50)), as a function of the epoch
            group["lr"] = config.lr * config.lr_decay ** ((epoch - 1) / 50)
        model.train()
        t0 = time.perf_counter()
        totals: Dict[str, Tensor] = {}
        # The loss actually minimized (weighted sum), not the sum of the logged parts. Summed on the device
        # in float64 and read once per epoch: no host-device synchronization per step.
        objective = torch.zeros((), dtype=torch.float64, device=device)
        for users, pos, neg in tqdm(sampler, desc=f"epoch {epoch}", leave=False, disable=not progress,
                                    total=len(sampler)):
            with autocast(device, config.amp):
                loss, parts = _step_loss(model, users.to(device), pos.to(device), neg.to(device), shard)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if shard is not None:
                all_reduce_gradients(params, shard)
            opt.step()
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v.double()
            objective += loss.detach().double()
        if shard is not None:  # each rank holds its share of the epoch's losses
            keys = sorted(totals)
            both = shard.all_reduce(torch.stack([objective] + [totals[k] for k in keys]))
            objective, totals = both[0], dict(zip(keys, both[1:]))
        means = {k: float(v) / len(sampler) for k, v in totals.items()}
        value = float(objective)
        if not math.isfinite(value):
            kept = (f"; the checkpoint of epoch {state.epoch} is kept in {checkpoint.path}"
                    if checkpoint is not None and checkpoint.exists() else "")
            raise TrainingError(f"the loss became {value} in epoch {epoch} ({_fmt(means)}): lower the learning "
                                f"rate (now {config.lr:g}) or check the feature scale{kept}")
        state.epoch = epoch
        state.epoch_times.append(time.perf_counter() - t0)
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            t1 = time.perf_counter()
            model.eval()
            with torch.no_grad():
                u, i = model.embed()
                val = val_eval.evaluate(u, i, shard=shard)
            state.eval_times.append(time.perf_counter() - t1)
            score = float(val[config.select_metric])
            state.curve.append({"epoch": epoch, "seconds": state.epoch_times[-1], "loss": value / len(sampler),
                                **{f"loss_{k}": v for k, v in means.items()},
                                **{f"val_{k}": v for k, v in val.items() if "@" in k}})
            improved = score > state.best_score
            if improved:
                state.best_score, state.best_epoch, state.since_best = score, epoch, 0
                best_state = cpu_state(model)
            else:
                state.since_best += 1
            log(f"epoch {epoch:4d}  loss {value / len(sampler):.4f} {_fmt(means)}  "
                f"val {config.select_metric} {score:.5f}{' *' if improved else ''}  ({state.epoch_times[-1]:.1f}s)")
            bar.set_postfix({config.select_metric: f"{score:.4f}", "best": state.best_epoch})
            if state.since_best >= config.patience:
                state.stopped = (f"early stopping: no better validation {config.select_metric} for "
                                 f"{config.patience} evaluations")
        if state.stopped is None and config.max_seconds is not None:
            over = torch.tensor(float(time.perf_counter() - start > config.max_seconds), device=device)
            if shard is not None:  # the ranks' clocks differ: stop when any rank is over, all together
                shard.all_reduce(over, "max")
            if over.item() > 0:
                state.stopped = f"time cap of {config.max_seconds:.0f}s reached"
        if state.stopped is None and epoch == config.epochs:
            state.stopped = "max epochs"
        state.elapsed = time.perf_counter() - start
        if checkpoint is not None and checkpoint.due(epoch, state.stopped is not None) \
                and (shard is None or shard.rank == 0):
            checkpoint.save(model, opt, gen, state, best_state)
        if state.stopped is not None:
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)

    # The test split is read exactly once, at the epoch chosen on validation.
    model.eval()
    test_eval = evaluator_for(data, "test", mask_val_in_test=config.mask_val_in_test, ks=config.ks,
                              batch_size=config.eval_batch_size)
    with torch.no_grad():
        u, i = model.embed()
        test = test_eval.evaluate(u, i, return_topk=save_topk, shard=shard)
    topk = None
    if save_topk:
        topk = (test.pop("topk"), test.pop("topk_users"))
    best_val = next((c for c in state.curve if c["epoch"] == state.best_epoch), {})
    return {
        "train_config": asdict(config),
        "data": data_info if data_info is not None else describe(data),
        "best_epoch": state.best_epoch,
        "stopped": state.stopped or "max epochs",
        "epochs_run": state.epoch,
        "resumed_after_epochs": state.resumed_at,
        "seconds": {"train_total": state.elapsed,
                    "per_epoch_mean": sum(state.epoch_times) / max(len(state.epoch_times), 1),
                    "per_eval_mean": sum(state.eval_times) / max(len(state.eval_times), 1)},
        "val_curve": state.curve,
        "val": {k[4:]: v for k, v in best_val.items() if k.startswith("val_")},
        "test": {k: v for k, v in test.items() if "@" in k},
        "test_users": test["num_users"],
        "_topk": topk,
    }


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
