"""A study's finished trials as a text file, so that a study outlives the machine, the store and the database.

    python -m experiments.tune --config experiments/configs/ml100k.yaml --export study.json    # here
    python -m experiments.tune --config experiments/configs/ml100k.yaml --import study.json    # elsewhere, a worker

A study runs for days; its database and run store live on one machine's disk (or one shared file system). When
the study has to move (another machine, a fresh store, a database that was lost), ``--export`` writes every
finished trial (complete or pruned) as a record: its grid point, state, validation value, the best-so-far values
it reported at each validation (what a pruner compares), its epochs, best epoch and cost, and, where its run
is in the store, the run's key, the machine it trained on and its validation curve: each validation's epoch,
epoch time and the study's metric (what ``--replay`` and the cost tables read; the run's other metrics stay in
its run folder, which keeps the file small enough to commit). No test metric is written: selection reads
validation only, and a test metric is read once, for the selection, by the study's own rule.

``--import`` adds the records to the study (created if need be) for the grid points the study has not finished,
after checking that the file is the same search (the study's definition: base configuration, grid, seed,
pruner) and that each record's run key is the one this machine's data and configuration give (another data
file, feature or setting is refused, with the point named). An imported trial is finished for every purpose
of the study: no worker trains its point again, the pruner compares later trials with its reported values, and
selection counts it. Its run is not in this store: a command that needs the run itself (the selection's seeds,
a table with ``--tuned``) trains it here, where the same seed rounds as this machine's CPU does (README, "Runs
you can trust"), and ``selected.md`` says how its value compares with the record's.

The file is JSON (``FORMAT``); a pruned record's checkpoint is not carried, so an audit trains such a point from
its start on a machine where the run is absent.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from experiments.search import combo_name
from experiments.tune_tables import COMPLETE, CURVE, IMPORTED, PRUNED, RUN_KEY, TRAINED_ON, trained_on, trials_by_point
from idsf_pyg.errors import ConfigError
from idsf_pyg.io import atomic_open

#: Version tag of the file: a reader refuses another.
FORMAT = "idsf-pyg tuning study records 1"
#: The user attributes a record carries, as Objective records them on a live trial.
RECORDED_ATTRS = ("epochs", "train_seconds", "threads", "best_epoch", "stopped", "run", TRAINED_ON, RUN_KEY)


def export_records(study, points: Dict[str, Dict[str, Any]], definition: Dict[str, Any],
                   finished: Callable[[str], Optional[Dict[str, Any]]], path: Path) -> Dict[str, int]:
    """Writes the study's finished trials to ``path`` (one record per grid point: the trial selection would read,
    complete before pruned); returns how many points were written and how many were left out (running, waiting,
    failed or not started: their progress stays in the run store's checkpoints)."""
    names = list(next(iter(points.values())))
    curve_keys = curve_fields(definition["metric"])
    records: List[Dict[str, Any]] = []
    for name, trials in trials_by_point(study, names).items():
        if name not in points:
            continue
        done = [t for t in trials if t.state.name in (COMPLETE, PRUNED)]
        if not done:
            continue
        trial = min(done, key=lambda t: (t.state.name != COMPLETE, t.number))
        attrs = {k: trial.user_attrs[k] for k in (*RECORDED_ATTRS, IMPORTED, CURVE) if k in trial.user_attrs}
        record: Dict[str, Any] = {
            "point": {k: trial.params[k] for k in names}, "trial": trial.number, "state": trial.state.name,
            "value": trial.value if trial.state.name == COMPLETE else None,
            "reported": {str(step): v for step, v in sorted(trial.intermediate_values.items())},
            "attrs": attrs}
        run = finished(name) if trial.state.name == COMPLETE and IMPORTED not in attrs else None
        if run is not None:   # what the store knows of the run: its key, its machine, its validation curve
            attrs.update({RUN_KEY: run["run_key"], TRAINED_ON: trained_on(run),
                          CURVE: [{k: e[k] for k in curve_keys} for e in run["val_curve"]]})
        records.append(record)
    order = list(points)
    records.sort(key=lambda r: order.index(combo_name(r["point"])))
    with atomic_open(path, "w") as f:   # a record a line: a later export changes the lines of the points it adds
        f.write('{"format": %s,\n "definition": %s,\n "records": [\n' % (json.dumps(FORMAT), json.dumps(definition)))
        f.write(",\n".join(json.dumps(r) for r in records))
        f.write("\n]}\n")
    return {"written": len(records), "left_out": len(points) - len(records)}


def curve_fields(metric: str) -> Tuple[str, str, str]:
    """The fields a record's validation curve keeps of each validation, for a study selecting on ``metric``."""
    return "epoch", "seconds", f"val_{metric}"


def read_records(path: Path, definition: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The records of ``path``, checked: its format, the study it came from (``definition`` must be the one
    this command's options give) and each record's fields; a bad file is one error naming the file and field."""
    source = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read the study records ({e.strerror})", "--import", source) from None
    except (UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"not a JSON file of study records ({e})", "--import", source) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"format {data.get('format') if isinstance(data, dict) else None!r}: not {FORMAT!r} "
                          "(write it with experiments.tune --export)", "format", source)
    recorded = data.get("definition")
    expected = json.loads(json.dumps(definition))
    if recorded != expected:
        recorded = recorded if isinstance(recorded, dict) else {}
        diff = [f"{k}: {recorded.get(k)!r} in the file, {expected.get(k)!r} here"
                for k in sorted(set(recorded) | set(expected)) if recorded.get(k) != expected.get(k)]
        raise ConfigError(f"the records are of another search ({'; '.join(diff)}); give the study's own options",
                          "definition", source)
    records = data.get("records")
    if not isinstance(records, list):
        raise ConfigError("must be a list of trial records", "records", source)
    for i, r in enumerate(records):
        _check_record(r, f"records[{i}]", source, list(definition["space"]), curve_fields(definition["metric"]))
    return records


def _check_record(r: Any, where: str, source: str, axes: List[str], curve_keys: Tuple[str, ...]) -> None:
    if not isinstance(r, dict):
        raise ConfigError("must be an object", where, source)
    if not isinstance(r.get("point"), dict) or sorted(r["point"]) != sorted(axes):
        raise ConfigError(f"point must set exactly {axes}, got {r.get('point')!r}", f"{where}.point", source)
    if r.get("state") not in (COMPLETE, PRUNED):
        raise ConfigError(f"state must be {COMPLETE} or {PRUNED}, got {r.get('state')!r}", f"{where}.state", source)
    value = r.get("value")
    if r["state"] == COMPLETE and not (isinstance(value, (int, float)) and math.isfinite(value)):
        raise ConfigError(f"a complete trial needs a finite value, got {value!r}", f"{where}.value", source)
    reported = r.get("reported")
    if not isinstance(reported, dict) or not all(
            k.isdigit() and isinstance(v, (int, float)) and math.isfinite(v) for k, v in reported.items()):
        raise ConfigError("must map epochs to finite values", f"{where}.reported", source)
    if not isinstance(r.get("attrs"), dict):
        raise ConfigError("must be an object", f"{where}.attrs", source)
    curve = r["attrs"].get(CURVE)
    if curve is None:
        return
    if not isinstance(curve, list) or not curve:
        raise ConfigError("must be a non-empty list of validations", f"{where}.attrs.{CURVE}", source)
    previous = 0
    for j, e in enumerate(curve):
        at = f"{where}.attrs.{CURVE}[{j}]"
        if not isinstance(e, dict) or not all(isinstance(e.get(k), (int, float)) and not isinstance(e.get(k), bool)
                                              and math.isfinite(e[k]) for k in curve_keys):
            raise ConfigError(f"must give finite numbers for {list(curve_keys)}, got {e!r}", at, source)
        if e["epoch"] != int(e["epoch"]) or e["epoch"] <= previous or e["seconds"] < 0:
            raise ConfigError(f"epochs must rise from 1 and seconds be >= 0, got epoch {e['epoch']!r} after "
                              f"{previous} and seconds {e['seconds']!r}", at, source)
        previous = int(e["epoch"])


def import_records(optuna, study, path: Path, definition: Dict[str, Any], points: Dict[str, Dict[str, Any]],
                   expected_key: Callable[[str], str]) -> Tuple[int, int]:
    """Adds ``path``'s records to ``study`` for the grid points it has not finished; returns (added, skipped).
    ``expected_key(name)`` is the run key of the point's configuration on this machine's data: a record of
    another key is refused, before anything is added."""
    records = read_records(path, definition)
    space = definition["space"]
    names = list(space)
    checked = []
    for i, r in enumerate(records):
        name = combo_name({k: r["point"][k] for k in names})
        if name not in points:
            raise ConfigError(f"{name} is not a point of this grid", f"records[{i}].point", str(path))
        key = r["attrs"].get(RUN_KEY)
        if key is not None and key != expected_key(name):
            raise ConfigError(f"{name} was trained as run {key}, but this data and configuration give run "
                              f"{expected_key(name)} (another data file, feature or setting)",
                              f"records[{i}].attrs.{RUN_KEY}", str(path))
        checked.append((name, r))
    # In the order the first study started its trials, which a replayed pruner's rungs depend on.
    checked.sort(key=lambda nr: nr[1]["trial"] if isinstance(nr[1].get("trial"), int) else float("inf"))
    by_point = trials_by_point(study, names)
    distributions = {k: optuna.distributions.CategoricalDistribution(v) for k, v in space.items()}
    added = skipped = 0
    for name, r in checked:
        if any(t.state.name in (COMPLETE, PRUNED) for t in by_point.get(name, [])):
            skipped += 1
            continue
        attrs = {**r["attrs"], IMPORTED: r["attrs"].get(IMPORTED) or Path(path).name}
        study.add_trial(optuna.trial.create_trial(
            state=getattr(optuna.trial.TrialState, r["state"]), value=r["value"],
            params={k: points[name][k] for k in names}, distributions=distributions, user_attrs=attrs,
            intermediate_values={int(step): float(v) for step, v in r["reported"].items()}))
        added += 1
    return added, skipped


def finished_in_study(study, name: str, names: List[str]):
    """The trial that finished grid point ``name`` in ``study`` (complete before pruned), or ``None``: a worker
    handed such a point again (Optuna's grid sampler does not know imported trials) trains nothing."""
    done = [t for t in trials_by_point(study, names).get(name, []) if t.state.name in (COMPLETE, PRUNED)]
    return min(done, key=lambda t: (t.state.name != COMPLETE, t.number)) if done else None
