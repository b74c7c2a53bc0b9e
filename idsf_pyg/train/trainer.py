"""The training loop: BPR batches, periodic validation, early stopping, one test read."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from ..data.graph import EDGE, ITEM, describe
from ..eval import evaluator_for
from ..models.base import Recommender
from .sampler import BPRSampler


@dataclass
class TrainConfig:
    """Optimization and protocol settings (the paper's defaults)."""

    lr: float = 5e-4
    batch_size: int = 1024
    epochs: int = 1000
    eval_every: int = 1
    patience: int = 5               # evaluations without a better validation score
    select_metric: str = "recall@20"
    ks: List[int] = field(default_factory=lambda: [10, 20])
    mask_val_in_test: bool = False
    eval_batch_size: int = 1024
    seed: int = 0
    max_seconds: Optional[float] = None  # wall-clock cap on training (the run stops cleanly)
    progress: bool = True


def set_seed(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def train(model: Recommender, data: HeteroData, config: TrainConfig, device: torch.device | str = "cpu",
          log: Callable[[str], None] = lambda s: print(s, flush=True), save_topk: bool = False) -> Dict[str, Any]:
    """Trains ``model`` on ``data``'s training edges and returns a results dict.

    Model selection uses the validation split only: the state with the best
    ``select_metric`` is kept, and the test split is evaluated once, with that
    state, after training.
    """
    device = torch.device(device)
    gen = set_seed(config.seed)
    model = model.to(device)
    store = data[EDGE]
    sampler = BPRSampler(store.edge_index, int(data[ITEM].num_nodes), config.batch_size, gen)
    val_eval = evaluator_for(data, "val", ks=config.ks, batch_size=config.eval_batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.lr)

    best_score, best_epoch, best_state, since_best = -math.inf, 0, None, 0
    curve, epoch_times, eval_times = [], [], []
    start = time.perf_counter()
    stopped = "max epochs"
    bar = tqdm(range(1, config.epochs + 1), desc="epochs", disable=not config.progress, leave=False)
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        totals: Dict[str, float] = {}
        objective = 0.0  # the loss actually minimized (weighted sum), not the sum of the logged parts
        for users, pos, neg in tqdm(sampler, desc=f"epoch {epoch}", leave=False,
                                    disable=not config.progress, total=len(sampler)):
            loss, parts = model.loss(users.to(device), pos.to(device), neg.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v
            value = float(loss.detach())
            objective += value
            if not math.isfinite(value):
                raise FloatingPointError(f"loss became {value} at epoch {epoch}: {parts}")
        epoch_times.append(time.perf_counter() - t0)
        means = {k: v / len(sampler) for k, v in totals.items()}
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            t1 = time.perf_counter()
            model.eval()
            with torch.no_grad():
                u, i = model.embed()
                val = val_eval.evaluate(u, i)
            eval_times.append(time.perf_counter() - t1)
            score = float(val[config.select_metric])
            curve.append({"epoch": epoch, "seconds": epoch_times[-1], "loss": objective / len(sampler),
                          **{f"loss_{k}": v for k, v in means.items()},
                          **{f"val_{k}": v for k, v in val.items() if "@" in k}})
            improved = score > best_score
            if improved:
                best_score, best_epoch, since_best = score, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                since_best += 1
            log(f"epoch {epoch:4d}  loss {objective / len(sampler):.4f} {_fmt(means)}  "
                f"val {config.select_metric} {score:.5f}{' *' if improved else ''}  ({epoch_times[-1]:.1f}s)")
            bar.set_postfix({config.select_metric: f"{score:.4f}", "best": best_epoch})
            if since_best >= config.patience:
                stopped = f"early stopping: no better validation {config.select_metric} for {config.patience} evaluations"
                break
        if config.max_seconds is not None and time.perf_counter() - start > config.max_seconds:
            stopped = f"time cap of {config.max_seconds:.0f}s reached"
            break
    bar.close()
    train_seconds = time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)

    # The test split is read exactly once, at the epoch chosen on validation.
    model.eval()
    test_eval = evaluator_for(data, "test", mask_val_in_test=config.mask_val_in_test, ks=config.ks,
                              batch_size=config.eval_batch_size)
    with torch.no_grad():
        u, i = model.embed()
        test = test_eval.evaluate(u, i, return_topk=save_topk)
    topk = None
    if save_topk:
        topk = (test.pop("topk"), test.pop("topk_users"))
    best_val = next((c for c in curve if c["epoch"] == best_epoch), {})
    return {
        "train_config": asdict(config),
        "data": describe(data),
        "best_epoch": best_epoch,
        "stopped": stopped,
        "epochs_run": len(epoch_times),
        "seconds": {"train_total": train_seconds,
                    "per_epoch_mean": sum(epoch_times) / max(len(epoch_times), 1),
                    "per_eval_mean": sum(eval_times) / max(len(eval_times), 1)},
        "val_curve": curve,
        "val": {k[4:]: v for k, v in best_val.items() if k.startswith("val_")},
        "test": {k: v for k, v in test.items() if "@" in k},
        "test_users": test["num_users"],
        "_topk": topk,
    }


def _fmt(parts: Dict[str, float]) -> str:
    return "(" + ", ".join(f"{k} {v:.4f}" for k, v in parts.items()) + ")"
