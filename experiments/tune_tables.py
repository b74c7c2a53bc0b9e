"""The tables of a study of :mod:`experiments.tune`, from the study and the run store: every trial (trials.csv), the
validation surface (surface.md and a heat map, one panel per value of any axes beyond the first two), and the
selection with its test metrics and the search's cost (selected.md, selected.json)."""
from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from experiments.extras import MissingExtra
from experiments.grid import fmt, mean_std
from experiments.plot import GridPanel, grid_heatmap
from experiments.search import combo_name
from experiments.search import select as search_select
from idsf_pyg.io import atomic_open, write_json, write_text
from idsf_pyg.train.machine import describe as describe_machine

#: Trial states as Optuna names them.
COMPLETE, PRUNED, FAIL, RUNNING, WAITING = "COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"
#: Trial user attributes: the machine its run trained on, the run key, and for a trial imported from another
#: study's records (experiments/tune_records.py) the file and the run's validation curve.
TRAINED_ON, RUN_KEY, IMPORTED, CURVE = "trained_on", "run_key", "imported_from", "val_curve"


def trained_on(result: Dict[str, Any]) -> str:
    """The machines a finished run trained on, one line (``results.json``'s ``machines``, each from an epoch on)."""
    machines = result.get("machines") or []
    if not machines:
        return "unrecorded"
    if len(machines) == 1:
        return describe_machine(machines[0])
    return "; ".join(f"{describe_machine(m)} from epoch {m.get('from_epoch', '?')}" for m in machines)


def curve_core_seconds(curve: Sequence[Dict[str, Any]], threads: int = 1) -> float:
    """Core-seconds of training behind a validation curve: each validation's epoch time (a curve entry's
    ``seconds``, the time of the epoch just validated) times the epochs since the previous validation, times
    the threads. Exact when every epoch is validated; with ``eval_every > 1`` the validated epochs stand for
    the others."""
    total, previous = 0.0, 0
    for e in curve:
        total += float(e["seconds"]) * (int(e["epoch"]) - previous)
        previous = int(e["epoch"])
    return total * threads


def trials_by_point(study, names: Sequence[str]) -> Dict[str, List[Any]]:
    """``{point name: [trials]}`` of the study (a grid point may have several after a retry)."""
    out: Dict[str, List[Any]] = {}
    for t in study.get_trials(deepcopy=False):
        if set(t.params) == set(names):
            out.setdefault(combo_name({k: t.params[k] for k in names}), []).append(t)
    return out



def trial_rows(study, points: Dict[str, Dict[str, Any]], metric: str = "recall@20",
               finished: Optional[Callable[[str], Optional[Dict[str, Any]]]] = None) -> Dict[str, Dict[str, Any]]:
    """Per grid point its outcome: the finished trial (complete, else pruned), else the one being worked on (running,
    else waiting for a worker: a crashed trial's retry), else failed, else not started.

    ``finished(name)`` gives a point's run if it has finished in the run store: a pruned point whose run was then
    trained to its end (by ``--audit``, or by another command) counts as complete with that run's validation
    ``metric``, marked ``audited``."""
    by_point = trials_by_point(study, list(next(iter(points.values()))))
    rows = {}
    for name in points:
        trials = by_point.get(name, [])
        # A failed trial's retry (waiting or running) tells more than the failure it replaces.
        rank = {COMPLETE: 0, PRUNED: 1, RUNNING: 2, WAITING: 3, FAIL: 4}
        best = min(trials, key=lambda t: (rank.get(t.state.name, 5), t.number), default=None)
        if best is None:
            rows[name] = {"state": "not started", "value": None, "epochs": 0, "seconds": 0.0}
            continue
        last = best.intermediate_values[max(best.intermediate_values)] if best.intermediate_values else None
        rows[name] = {"state": best.state.name.lower(), "trial": best.number,
                      "value": best.value if best.state.name == COMPLETE else last,
                      "epochs": best.user_attrs.get("epochs", max(best.intermediate_values, default=0)),
                      "best_epoch": best.user_attrs.get("best_epoch"),
                      # The trials of a point share one run, and each records that run's whole curve (a retry
                      # resumes it and replays the epochs before): the run's cost is the longest record, not a sum.
                      "seconds": max(t.user_attrs.get("train_seconds", 0.0) * t.user_attrs.get("threads", 1)
                                     for t in trials),
                      "run": best.user_attrs.get("run", ""),
                      "trained_on": best.user_attrs.get(TRAINED_ON, ""),
                      "imported": best.user_attrs.get(IMPORTED)}
        done = finished(name) if finished is not None and rows[name]["state"] == "pruned" else None
        if done is not None:
            threads = max(t.user_attrs.get("threads", 1) for t in trials)
            rows[name].update(state="complete", audited=True, pruned_at=rows[name]["epochs"],
                              pruned_value=rows[name]["value"],
                              value=done["val"][metric], epochs=int(done["val_curve"][-1]["epoch"]),
                              best_epoch=done["best_epoch"],
                              seconds=max(rows[name]["seconds"],
                                          curve_core_seconds(done["val_curve"], threads)))
    return rows


def unfinished(rows: Dict[str, Dict[str, Any]]) -> int:
    """Grid points still being worked on or not started: the grid is done when there are none."""
    return sum(r["state"] in ("running", "waiting", "not started") for r in rows.values())


def to_audit(rows: Dict[str, Dict[str, Any]], k: int) -> List[str]:
    """The ``k`` pruned points that came closest to going on: the furthest rung first (the most epochs trained),
    then the best validation value reported there. Points already audited count with where they were pruned, so
    the same ``k`` names the same points before, during and after the audit."""
    where = {n: (r["pruned_at"], r["pruned_value"]) if r.get("audited") else (r["epochs"], r["value"])
             for n, r in rows.items() if (r["state"] == "pruned" and r["value"] is not None) or r.get("audited")}
    order = list(rows)
    return sorted(where, key=lambda n: (-where[n][0], -where[n][1], order.index(n)))[:k]


def audit_pending(rows: Dict[str, Dict[str, Any]], k: int) -> List[str]:
    """The points of a ``k``-point audit whose runs have not finished: until there are none, the best complete
    point may still be overtaken, so it is not yet the selection."""
    return [n for n in to_audit(rows, k) if rows[n]["state"] != "complete"]


def final_selection(rows: Dict[str, Dict[str, Any]], audit: int) -> Optional[str]:
    """The selection once the study's own work is done (the grid and the ``audit``-point audit), else ``None``. The
    study cannot change it after that; a pruned point that another command later trains to its end (a sweep, a
    table) is a validation result like any other and can still take it over (``selected.md`` says so)."""
    chosen = select(rows)
    return chosen if chosen is not None and unfinished(rows) == 0 and not audit_pending(rows, audit) else None


def select(rows: Dict[str, Dict[str, Any]]) -> Optional[str]:
    """The completed grid point with the best validation value (search's rule: the earlier one in grid order wins
    ties); ``None`` before any has completed."""
    done = {name: {"val": {"value": r["value"]}} for name, r in rows.items() if r["state"] == "complete"}
    return search_select(done, "value") if done else None


def seconds_per_epoch(rows: Dict[str, Dict[str, Any]]) -> float:
    """Core-seconds per trained epoch over the whole study."""
    return sum(r["seconds"] for r in rows.values()) / max(sum(r["epochs"] for r in rows.values()), 1)


def unpruned_estimate(rows: Dict[str, Dict[str, Any]]) -> float:
    """Core-seconds the grid would have cost without pruning: a complete point its own run's time; any other
    point its own measured seconds per epoch (the mean over all trained epochs where it has none) times the
    mean epochs of the complete points, or the epochs it has already trained where those are more (a running
    point is never priced below what it has cost). Per point, because an epoch's cost varies several-fold
    across a grid (IDSF's contrastive loss is off at β = 0). NaN before any point has completed."""
    done = [r for r in rows.values() if r["state"] == "complete"]
    if not done:
        return float("nan")
    mean_epochs = sum(r["epochs"] for r in done) / len(done)
    overall = seconds_per_epoch(rows)
    return sum(r["seconds"] if r["state"] == "complete" else
               (r["seconds"] / r["epochs"] if r["epochs"] else overall) * max(r["epochs"], mean_epochs)
               for r in rows.values())


def surface_markdown(space: Dict[str, List[Any]], rows: Dict[str, Dict[str, Any]], metric: str,
                     audit_points: Sequence[str] = ()) -> str:
    """The validation surface over the first two axes (one grid per value of any further axes); a pruned point
    whose run was trained to its end reads 'audit' when it is one of ``audit_points``, else 'finished later'."""
    keys = list(space)
    if len(keys) == 1:
        keys.append("")
        space = {**space, "": [None]}
    r_key, c_key, rest = keys[0], keys[1], keys[2:]
    blocks = []
    for fixed in itertools.product(*(space[k] for k in rest)):
        head = ", ".join(f"{k}={v}" for k, v in zip(rest, fixed))
        lines = [f"**{head}**\n" if head else "",
                 f"| {r_key} \\ {c_key} | " + " | ".join(str(v) for v in space[c_key]) + " |",
                 "|---|" + "---|" * len(space[c_key])]
        for rv in space[r_key]:
            cells = []
            for cv in space[c_key]:
                point = {r_key: rv, **({c_key: cv} if c_key else {}), **dict(zip(rest, fixed))}
                name = combo_name({k: point[k] for k in space if k})
                cells.append(_cell(rows[name], name in audit_points))
            lines.append(f"| {rv} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(line for line in lines if line != ""))
    return (f"Validation {metric} (%) at each trial's best epoch; 'pruned @e' gives the last value reported "
            "before the pruner stopped it, 'running @e' the latest so far; 'audit' marks a point the pruner stopped "
            "and the study's audit then trained to its end, 'finished later' one whose run another command (a "
            "table or sweep) trained to its end.\n\n" + "\n\n".join(blocks) + "\n")


def _cell(r: Dict[str, Any], audit: bool = True) -> str:
    if r["state"] == "complete":
        how = "audit" if audit else "finished later"
        return f"{100 * r['value']:.2f}" + (f" ({how}; pruned @{r['pruned_at']})" if r.get("audited") else "")
    if r["state"] in ("pruned", "running") and r["value"] is not None:
        return f"{r['state']} @{r['epochs']} ({100 * r['value']:.2f})"
    return r["state"]


def heat_map(space: Dict[str, List[Any]], rows: Dict[str, Dict[str, Any]], metric: str, path: Path,
             audit_points: Sequence[str] = ()) -> Optional[str]:
    """OUT/surface.png: the first two axes as rows and columns, one panel per combination of the values of any
    further axes, the best complete point framed; ``None``, or why it was not drawn."""
    keys = list(space)
    if len(keys) < 2:
        return "a heat map needs two axes"
    r_key, c_key, rest = keys[0], keys[1], keys[2:]
    chosen = select(rows)
    panels = []
    for fixed in itertools.product(*(space[k] for k in rest)):
        held = dict(zip(rest, fixed))
        # Only completed trials are coloured: a pruned trial's last value is from an earlier epoch, not its end.
        values = np.full((len(space[r_key]), len(space[c_key])), np.nan)
        labels = [["" for _ in space[c_key]] for _ in space[r_key]]
        highlight = None
        for i, rv in enumerate(space[r_key]):
            for j, cv in enumerate(space[c_key]):
                name = combo_name({k: {r_key: rv, c_key: cv, **held}[k] for k in space})
                r = rows[name]
                highlight = (i, j) if name == chosen else highlight
                if r["state"] == "complete":
                    values[i, j] = 100 * r["value"]
                    labels[i][j] = f"{values[i, j]:.2f}" + (("\naudit" if name in audit_points else "\nfinished later")
                                                            if r.get("audited") else "")
                elif r["state"] in ("pruned", "running") and r["value"] is not None:
                    labels[i][j] = f"{r['state']} @{r['epochs']}\n({100 * r['value']:.2f})"
                else:
                    labels[i][j] = r["state"]
        panels.append(GridPanel(values, labels, ", ".join(f"{k}={v}" for k, v in held.items()), highlight))
    try:
        grid_heatmap(path, panels, space[r_key], space[c_key], row_label=r_key, col_label=c_key,
                     colorbar_label=f"validation {metric} (%)")
    except MissingExtra as e:  # the tables are written all the same
        return str(e)
    return None


def write_tables(args, study, rows: Dict[str, Dict[str, Any]], points, space, seeds: List[int], out: Path,
                 selected_runs: Optional[List[Dict[str, Any]]], audit: int = 0) -> Dict[str, Any]:
    with atomic_open(out / "trials.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*space, "state", "trial", f"val_{args.metric}", "epochs", "best_epoch", "core_seconds", "run",
                    "trained_on", "imported_from"])
        for name, point in points.items():
            r = rows[name]
            w.writerow([*point.values(), r["state"], r.get("trial", ""), "" if r["value"] is None else r["value"],
                        r["epochs"], r.get("best_epoch") or "", f"{r['seconds']:.1f}", r.get("run", ""),
                        r.get("trained_on", ""), r.get("imported") or ""])
    audit_points = to_audit(rows, audit)
    write_text(out / "surface.md", surface_markdown(space, rows, args.metric, audit_points))
    figure_note = heat_map(space, rows, args.metric, out / f"surface.{args.format}", audit_points)

    counts = {s: sum(r["state"] == s for r in rows.values())
              for s in ("complete", "pruned", "fail", "running", "waiting", "not started")}
    left = unfinished(rows)
    spent = sum(r["seconds"] for r in rows.values())
    done = [r for r in rows.values() if r["state"] == "complete"]
    per_epoch = seconds_per_epoch(rows)
    full = unpruned_estimate(rows)
    cost = {"core_hours_spent": spent / 3600, "core_hours_unpruned_estimate": full / 3600,
            "core_seconds_per_epoch": per_epoch, "trials": counts,
            "core_hours_per_finished_trial": spent / 3600 / max(counts["complete"] + counts["pruned"], 1)}
    chosen = select(rows)
    pending = audit_pending(rows, audit) if left == 0 else []
    # dataset, model, settings and extra: what experiment commands' --tuned needs (experiments.grid.load_tuned)
    summary: Dict[str, Any] = {"study": study.study_name, "dataset": Path(args.config).stem,
                               "model": study.user_attrs["definition"]["model"], "space": space,
                               "metric": f"val {args.metric}", "selected": chosen,
                               "settings": dict(points[chosen]) if chosen is not None else None,
                               "grid_finished": left == 0, "audit": audit, "audit_pending": pending,
                               "selection_final": final_selection(rows, audit) is not None,
                               "extra": args.extra, "cost": cost, "seeds": seeds}
    lines = [f"# Study {study.study_name}", "",
             f"Grid of {len(points)} points over {', '.join(f'{k} ∈ {v}' for k, v in space.items())}; "
             f"pruner {args.pruner} (min epochs {args.min_epochs}, factor {args.reduction}); selection on "
             f"validation {args.metric} only.", "",
             f"Trials: {counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed, "
             f"{counts['running']} running, {counts['waiting']} waiting for a worker (retries), "
             f"{counts['not started']} not started.", "",
             f"Cost: {cost['core_hours_spent']:.2f} core-hours of training so far "
             f"({cost['core_hours_per_finished_trial']:.2f} per finished trial); the unpruned grid, estimated "
             "with each point's own seconds per epoch, a pruned, running or unstarted point trained for the mean "
             "epochs of the complete trials (a running one for its epochs so far where those are more), "
             + (f"{cost['core_hours_unpruned_estimate']:.2f} core-hours." if done else "needs a complete trial."),
             "(A point read back from the run store counts with the time its run took, whichever command trained it.)",
             ""]
    imported = sorted({r["imported"] for r in rows.values() if r.get("imported")})
    machines = sorted({r["trained_on"] for r in rows.values() if r.get("trained_on")})
    if imported:
        lines += [f"Imported: {sum(bool(r.get('imported')) for r in rows.values())} finished trial(s) from "
                  f"{', '.join(imported)} (records of runs that are not in this run store).", ""]
    if len(machines) > 1:
        lines += ["Trained on: " + "; ".join(machines) + " (another CPU rounds the same seed otherwise: a point's "
                  "value is one draw of its configuration).", ""]
    summary["trained_on"] = machines
    if chosen is None:
        lines.append("No trial has completed yet: nothing selected.")
    else:
        lines.append((f"Best on validation so far ({left} grid points not finished, so not yet the selection)"
                      if left else
                      f"Best on validation so far (the audit of {', '.join(pending)} has not finished, so not yet "
                      "the selection)" if pending else "Selected on validation")
                     + f": **{chosen}** (validation {args.metric} {100 * rows[chosen]['value']:.2f} %, "
                       f"trial {rows[chosen]['trial']}).")
        best = "selection" if summary["selection_final"] else "best complete point so far"
        audited = [n for n, r in rows.items() if r.get("audited") and n in audit_points]
        later = [n for n, r in rows.items() if r.get("audited") and n not in audit_points]

        def ended(names: List[str]) -> str:
            return "; ".join(f"{n} (pruned @{rows[n]['pruned_at']} at {100 * rows[n]['pruned_value']:.2f}, "
                             f"ends at {100 * rows[n]['value']:.2f})" for n in names)

        if audited:
            summary["audited"] = {n: {"pruned_at": rows[n]["pruned_at"], "pruned_value": rows[n]["pruned_value"],
                                      "value": rows[n]["value"]} for n in audited}
            lines += ["", f"Audit of the pruner: {len(audited)} pruned point(s) trained on to their end: "
                      + ended(audited)
                      + (f". The {best} is one of them: the pruner alone would have missed it." if chosen in audited
                         else f". None of them beats the {best}.")]
        if later:
            # Trained to their end by other commands (a sweep at the selected value, say): validation results like
            # any other, so selection counts them, and they show where the pruner and its audit were wrong.
            summary["finished_later"] = {n: {"pruned_at": rows[n]["pruned_at"],
                                             "pruned_value": rows[n]["pruned_value"], "value": rows[n]["value"]}
                                         for n in later}
            lines += ["", f"Finished later by other commands: {len(later)} pruned point(s) whose runs were trained "
                      "to their end outside the study: " + ended(later)
                      + (f". The {best} is one of them: the pruner and its audit would have missed it."
                         if chosen in later else f". None of them beats the {best}.")]
        if not summary["selection_final"]:
            lines.append("Test metrics: none shown until the selection is final.")
        elif selected_runs is None:
            lines.append(f"Test metrics: not yet, the selected configuration's seeds {seeds} have not all finished.")
        else:
            keys = ["recall@20", "ndcg@20", "recall@10", "ndcg@10"]
            test = {k: mean_std([100 * r["test"][k] for r in selected_runs]) for k in keys}
            summary["test"] = {k: {"mean": m, "std": s} for k, (m, s) in test.items()}
            summary["test_per_seed"] = {k: [r["test"][k] for r in selected_runs] for k in keys}
            summary["val_per_seed"] = [r["val"][args.metric] for r in selected_runs]
            if rows[chosen].get("imported"):
                origin = rows[chosen]["trained_on"] or "an unrecorded machine"
                lines += ["", f"The selection's trial was imported (trained on {origin}; validation "
                          f"{100 * rows[chosen]['value']:.2f}); its seed-{seeds[0]} run "
                          f"in this store (trained on {trained_on(selected_runs[0])}) has validation "
                          f"{100 * selected_runs[0]['val'][args.metric]:.2f}, and the test metrics below are this "
                          "store's runs'."]
            lines += ["", f"| selected, seeds {seeds} | " + " | ".join(f"test {k}" for k in keys) + " |",
                      "|---|" + "---|" * len(keys),
                      f"| {chosen} | " + " | ".join(fmt(*test[k], digits=2) for k in keys) + " |", "",
                      "Mean ± sample std over the seeds (%), each run's test read once at its best validation epoch."]
    if figure_note:
        lines.append(f"\n(surface.{args.format} not written: {figure_note})")
    write_text(out / "selected.md", "\n".join(lines) + "\n")
    write_json(out / "selected.json", summary)
    print((out / "surface.md").read_text())
    print((out / "selected.md").read_text())
    return summary
