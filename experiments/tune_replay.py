"""A pruner replayed over a grid whose runs all finished: what a pruned search would have selected and cost.

    python -m experiments.tune --config experiments/configs/ml100k.yaml --replay halving:10:3 --replay halving:30:3

An unpruned study (``--pruner none``), or one whose audit trained every pruned point on (``--audit K`` with K the
number of points), leaves every grid point's whole validation curve in the run store. Optuna's own pruner, fed
those curves as a live trial feeds it (its best validation so far after each validation; never asked at a run's
last validation), then tells without training anything which points it would have stopped and where, what that
search would have cost (each validation priced at the run's recorded seconds per epoch) and which point it
would have selected.

Successive halving ranks a trial at a rung against the trials that reached that rung before it, so its outcome
depends on the order the trials ran in and on how many ran at once: the replay runs the grid in the study's own
order (the order its trials were started; grid order for a grid the study never ran) and in shuffled orders,
with ``workers`` trials at a time on a clock made of the recorded epoch times, and says in how many orders
the pruned search keeps the unpruned search's selection.
"""
from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from experiments.tune_tables import curve_core_seconds, select
from idsf_pyg.errors import ConfigError

#: Pruners a replay can run, as experiments.tune names them.
REPLAY_PRUNERS = ("halving", "median")


@dataclass(frozen=True)
class PrunerSpec:
    """One pruner setting: ``halving:MIN:FACTOR`` (first rung in epochs, keep the best 1/FACTOR) or
    ``median:MIN:N`` (warm-up epochs, trials before pruning starts), as ``--pruner``, ``--min-epochs`` and
    ``--reduction`` set them for a live study."""
    name: str
    min_epochs: int
    reduction: int

    @property
    def label(self) -> str:
        return f"{self.name}:{self.min_epochs}:{self.reduction}"


def parse_pruner_spec(text: str) -> PrunerSpec:
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in REPLAY_PRUNERS or not all(p.isdigit() for p in parts[1:]):
        raise ConfigError(f"{text!r}: give NAME:MIN_EPOCHS:FACTOR with NAME one of {', '.join(REPLAY_PRUNERS)}, "
                          "e.g. halving:10:3", "--replay")
    spec = PrunerSpec(parts[0], int(parts[1]), int(parts[2]))
    if spec.min_epochs < 1 or spec.reduction < 2:
        raise ConfigError(f"{text!r}: the first rung must be >= 1 epoch and the factor >= 2", "--replay")
    return spec


def best_so_far(curve: Sequence[Dict[str, Any]], metric: str) -> float:
    """What a trial reports to the pruner at a validation: its best validation value so far (the value it ends
    with at least, as selection keeps the best epoch), not that epoch's own value, which moves by about half a point
    from epoch to epoch on ML-100k: a rung must not rank two trials by one noisy epoch each."""
    return max(float(e[metric]) for e in curve)


@dataclass
class Replayed:
    """One grid point in one replayed search: where the pruner stopped it (``None``: trained to its end), the
    core-seconds it cost, and its validation value when it completed."""
    pruned_at: Optional[int]
    core_seconds: float
    value: Optional[float]


def replay(optuna, pruner, curves: Dict[str, Sequence[Dict[str, Any]]], finals: Dict[str, float],
           order: Sequence[str], metric: str, workers: int = 1,
           threads: Optional[Dict[str, int]] = None) -> Dict[str, Replayed]:
    """The search ``pruner`` makes over the finished ``curves`` (per point, its run's validation curve; ``finals``:
    its run's validation ``metric`` at the best epoch), the points started in ``order``, ``workers`` at a time:
    the worker whose next validation comes first on the clock of recorded epoch times reports next."""
    threads = threads or {}
    study = optuna.create_study(direction="maximize", pruner=pruner)
    queue, out = list(order), {}
    events: List[Any] = []
    tie = itertools.count()

    def schedule(name: str, trial, i: int, clock: float) -> None:
        curve = curves[name]
        epochs = int(curve[i]["epoch"]) - (int(curve[i - 1]["epoch"]) if i else 0)
        heapq.heappush(events, (clock + float(curve[i]["seconds"]) * epochs, next(tie), name, trial, i))

    for _ in range(min(workers, len(queue))):
        schedule(queue.pop(0), study.ask(), 0, 0.0)
    while events:
        clock, _, name, trial, i = heapq.heappop(events)
        curve = curves[name]
        trial.report(best_so_far(curve[:i + 1], f"val_{metric}"), int(curve[i]["epoch"]))
        last = i == len(curve) - 1
        if not last and trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            out[name] = Replayed(int(curve[i]["epoch"]), curve_core_seconds(curve[:i + 1], threads.get(name, 1)),
                                 None)
        elif last:
            study.tell(trial, finals[name])
            out[name] = Replayed(None, curve_core_seconds(curve, threads.get(name, 1)), finals[name])
        else:
            schedule(name, trial, i + 1, clock)
            continue
        if queue:
            schedule(queue.pop(0), study.ask(), 0, clock)
    return out


def selected(outcome: Dict[str, Replayed], grid: Sequence[str]) -> Optional[str]:
    """The live study's selection (:func:`experiments.tune_tables.select`) over the points that completed."""
    return select({n: {"state": "complete" if outcome[n].value is not None else "pruned", "value": outcome[n].value}
                   for n in grid})


def replay_report(optuna, make_pruner, specs: Sequence[PrunerSpec], curves, finals, grid: Sequence[str],
                  study_order: Optional[Sequence[str]], metric: str, orders: int, workers: int, seed: int,
                  threads: Optional[Dict[str, int]] = None, title: str = "") -> Dict[str, Any]:
    """Every spec replayed in the study's order (grid order without one) and ``orders - 1`` shuffled orders
    (``seed``); returns the summary (``markdown`` holds the table)."""
    first = list(study_order) if study_order is not None else list(grid)
    rng = random.Random(seed)
    shuffled = [rng.sample(list(grid), len(grid)) for _ in range(orders - 1)]
    full = {n: Replayed(None, curve_core_seconds(curves[n], (threads or {}).get(n, 1)), finals[n]) for n in grid}
    best = selected(full, grid)
    unpruned = sum(r.core_seconds for r in full.values())
    rows, summary = [], {"unpruned": {"selected": best, "value": finals[best], "core_hours": unpruned / 3600},
                         "orders": orders, "workers": workers, "seed": seed,
                         "first_order": "study" if study_order is not None else "grid", "pruners": {}}
    for spec in specs:
        runs = [replay(optuna, make_pruner(optuna, spec.name, spec.min_epochs, spec.reduction), curves, finals,
                       order, metric, workers, threads) for order in [first, *shuffled]]
        hours = [sum(r.core_seconds for r in run.values()) / 3600 for run in runs]
        chosen = [selected(run, grid) for run in runs]
        kept = sum(c == best for c in chosen)
        summary["pruners"][spec.label] = {
            "core_hours": hours, "selected": chosen, "kept_best": kept,
            "pruned_first_order": {n: r.pruned_at for n, r in runs[0].items() if r.pruned_at is not None}}
        c0 = chosen[0]
        rows.append(f"| {spec.label} | {hours[0]:.2f} ({100 * hours[0] * 3600 / unpruned:.0f} %) | "
                    f"{c0} ({100 * finals[c0]:.2f}) | {sum(r.pruned_at is not None for r in runs[0].values())} | "
                    f"{kept} of {orders} orders | {sum(hours) / len(hours):.2f} ({min(hours):.2f}–{max(hours):.2f}) |")
    order_name = "the study's own order" if study_order is not None else "grid order"
    lines = [f"# Pruner replay{': ' + title if title else ''}", "",
             f"Every one of the {len(grid)} grid points' runs has finished: unpruned, the grid cost "
             f"{unpruned / 3600:.2f} core-hours and selects **{best}** (validation {metric} "
             f"{100 * finals[best]:.2f} %). Each pruner below is Optuna's, fed the recorded curves as a live trial "
             f"feeds it, {workers} trial(s) at a time, in {order_name} and {orders - 1} shuffled orders (seed "
             f"{seed}); a validation costs its run's recorded seconds per epoch.", "",
             f"| pruner (name:first rung:factor) | core-hours, {order_name} (share of unpruned) | selects, "
             f"{order_name} (validation %) | points stopped, {order_name} | keeps {best} in | core-hours over all orders: "
             "mean (min–max) |",
             "|---|---|---|---|---|---|", *rows, ""]
    summary["markdown"] = "\n".join(lines)
    return summary
