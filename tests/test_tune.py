"""The tuning study: trials are store runs, pruning keeps checkpoints, workers share a study, selection on validation."""
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")  # the [experiments] extra; experiments/setup.sh installs it

from experiments.extras import MissingExtra, require  # noqa: E402
from experiments.grid import Cell, cell_config, store_folder  # noqa: E402
from experiments.search import combo_name  # noqa: E402
from experiments.tune import Objective, main, search_space  # noqa: E402
from experiments.tune_tables import heat_map, select, surface_markdown, unpruned_estimate  # noqa: E402
from idsf_pyg.errors import ConfigError  # noqa: E402
from idsf_pyg.train import run  # noqa: E402
from tests.killed_commands import ENDLESS, assert_sigterm_ends_workers, needs_proc_children  # noqa: E402
from tests.time_limits import hang_guard  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = "experiments/configs/synthetic.yaml"
QUICK = "--epochs 4 --eval-every 1"


def study_trials(out: Path, name: str = "synthetic-idsf"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}").get_trials()


def training_sessions(folder: Path) -> int:
    """How many times a run was (re)started: train.log gets one 'model:' line per session that trained."""
    return (folder / "train.log").read_text().count(" model: ")


def test_two_workers_share_one_study_and_train_each_grid_point_once(tmp_path):
    out, store = tmp_path / "study", tmp_path / "store"
    argv = [sys.executable, "-m", "experiments.tune", "--config", SYNTHETIC, "--param", "structure.gamma=0.0,0.3,1.0",
            "--param", "beta=0.0,0.3", "--pruner", "none", "--seeds", "0", "--threads", "1", "--extra", QUICK,
            "--store", str(store), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # The database and an empty study exist first (as after a first worker's start), then two workers start at once;
    # the first to open it records the search's definition.
    out.mkdir()
    optuna.create_study(study_name="synthetic-idsf", storage=f"sqlite:///{out / 'study.db'}")
    workers = [subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    logs = [w.communicate(timeout=hang_guard(120))[0] for w in workers]   # only ends a hang, scaled for load
    assert all(w.returncode == 0 for w in workers), logs
    trials = study_trials(out)
    points = {(t.params["structure.gamma"], t.params["beta"]) for t in trials}
    assert len(trials) == 6 and len(points) == 6 and all(t.state.name == "COMPLETE" for t in trials)
    folders = {Path(t.user_attrs["run"]) for t in trials}
    assert len(folders) == 6 and all(training_sessions(f) == 1 for f in folders)
    # Selection reads the runs' validation metric only, and agrees with the run folders themselves.
    results = {f: json.loads((f / "results.json").read_text()) for f in folders}
    best = max(results, key=lambda f: results[f]["val"]["recall@20"])
    summary = json.loads((out / "selected.json").read_text())
    assert summary["grid_finished"] is True
    chosen = next(t for t in trials if Path(t.user_attrs["run"]) == best)
    assert summary["selected"] == f"structure.gamma={chosen.params['structure.gamma']},beta={chosen.params['beta']}"
    assert summary["test_per_seed"]["recall@20"] == [results[best]["test"]["recall@20"]]
    # More seeds of the selected configuration, trained --jobs at a time: each is the run a plain train gives.
    summary = main([*argv[3:], "--seeds", "0,1", "--jobs", "2"])
    params = {"structure.gamma": chosen.params["structure.gamma"], "beta": chosen.params["beta"]}
    seed1 = cell_config(Path(SYNTHETIC), Cell(summary["selected"], params), 1, QUICK)
    alone = run(seed1, tmp_path / "alone", device="cpu", threads=1, progress=False)
    assert summary["test_per_seed"]["recall@20"] == [results[best]["test"]["recall@20"], alone["test"]["recall@20"]]
    assert json.loads((store_folder(store, seed1) / "results.json").read_text())["test"] == alone["test"]


@needs_proc_children
def test_a_killed_study_command_takes_its_workers_with_it(tmp_path):
    # Two endless trials on --jobs 2; SIGTERM to the command alone must end both workers (their trials are
    # retried from their checkpoints once their heartbeats are --grace seconds old).
    argv = [sys.executable, "-m", "experiments.tune", "--config", SYNTHETIC, "--param", "structure.gamma=0.0,0.3",
            "--param", "beta=0.3", "--pruner", "none", "--seeds", "0", "--threads", "1", "--jobs", "2",
            "--extra", ENDLESS, "--store", str(tmp_path / "store"), "--out", str(tmp_path / "study")]
    assert_sigterm_ends_workers(argv, tmp_path / "store")


class PruneAt:
    """A stand-in for an Optuna trial whose pruner stops it after a given epoch."""

    def __init__(self, number, params, prune_after=None):
        self.number, self.params, self.prune_after = number, params, prune_after
        self.reports, self.user_attrs = [], {}

    def suggest_categorical(self, name, values):
        assert self.params[name] in values
        return self.params[name]

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.prune_after is not None and self.reports[-1][0] >= self.prune_after

    def set_user_attr(self, key, value):
        self.user_attrs[key] = value


def test_a_pruned_trial_keeps_its_checkpoint_and_nothing_is_trained_twice(tmp_path):
    import argparse
    args = argparse.Namespace(store=tmp_path / "store", device="cpu", threads=1, overwrite=False, metric="recall@20")
    space = {"beta": [0.3]}
    cfg = cell_config(Path(SYNTHETIC), Cell("beta=0.3", {"beta": 0.3}), 0, QUICK)
    objective = Objective(optuna, {"beta=0.3": cfg}, space, args, tmp_path / "study")
    folder = store_folder(args.store, cfg)

    first = PruneAt(0, {"beta": 0.3}, prune_after=2)
    with pytest.raises(optuna.TrialPruned):
        objective(first)
    assert [s for s, _ in first.reports] == [1, 2] and first.user_attrs["epochs"] == 2
    curve = json.loads(objective.marker(folder).read_text())["curve"]
    running_best = [max(e["val_recall@20"] for e in curve[:n]) for n in (1, 2)]
    assert [v for _, v in first.reports] == running_best      # the pruner ranks best-so-far, not one noisy epoch
    assert (folder / "checkpoint.pt").is_file() and not (folder / "results.json").exists()
    stamp = (folder / "checkpoint.pt").stat().st_mtime_ns

    # A second trial of the same point (a duplicate from another worker) is pruned by the marker, untrained.
    second = PruneAt(1, {"beta": 0.3})
    with pytest.raises(optuna.TrialPruned, match="pruned by trial 0"):
        objective(second)
    assert (folder / "checkpoint.pt").stat().st_mtime_ns == stamp and training_sessions(folder) == 1

    # Asked for again outside the study (a table), the run resumes at epoch 3 and ends as an uninterrupted run.
    resumed = run(cfg, folder, device="cpu", threads=1, progress=False, reuse=True)
    straight = run(cfg, tmp_path / "straight", device="cpu", threads=1, progress=False)
    assert resumed["resumed_after_epochs"] == [2]
    strip = lambda curve: [{k: v for k, v in e.items() if k != "seconds"} for e in curve]  # noqa: E731
    assert strip(resumed["val_curve"]) == strip(straight["val_curve"]) and resumed["test"] == straight["test"]
    # ... and a later trial reads the finished run back (the marker no longer applies), training nothing.
    third = PruneAt(2, {"beta": 0.3}, prune_after=1)
    assert objective(third) == resumed["val"]["recall@20"]
    assert [s for s, _ in third.reports] == [1, 2, 3, 4] and training_sessions(folder) == 2
    assert [v for _, v in third.reports][-1] == resumed["val"]["recall@20"]


def best_counting(out: Path, name: str, value: float) -> str:
    """The selection by hand, over the study's complete trials of the γ grid at β = 0.3 plus the point ``name``
    whose pruned run ended at ``value`` (ties: the earlier grid point)."""
    complete = {f"structure.gamma={t.params['structure.gamma']},beta=0.3": t.value
                for t in study_trials(out) if t.state.name == "COMPLETE"}
    complete[name] = value
    grid = [f"structure.gamma={g},beta=0.3" for g in (0.0, 0.3, 1.0, 3.0)]
    return max(complete, key=lambda n: (complete[n], -grid.index(n)))


def test_audit_trains_the_pruned_point_closest_to_going_on_to_its_end(tmp_path):
    out, store = tmp_path / "study", tmp_path / "store"
    argv = ["--config", SYNTHETIC, "--param", "structure.gamma=0.0,0.3,1.0,3.0", "--param", "beta=0.3",
            "--pruner", "halving", "--min-epochs", "1", "--reduction", "2", "--seeds", "0", "--threads", "1",
            "--extra", QUICK, "--store", str(store), "--out", str(out)]
    before = main(argv)
    pruned = [t for t in study_trials(out) if t.state.name == "PRUNED"]
    assert before["cost"]["trials"]["pruned"] == len(pruned) >= 1 and "audited" not in before
    # The one that came closest: the most epochs, then the best value reported at its last one.
    closest = max(pruned, key=lambda t: (max(t.intermediate_values), t.intermediate_values[max(t.intermediate_values)],
                                         -t.number))
    name = f"structure.gamma={closest.params['structure.gamma']},beta=0.3"
    # Asked for but not run yet (tables only): nothing is the selection, and no test metric is shown.
    waiting = main(argv + ["--audit", "1", "--tables-only"])
    assert waiting["audit_pending"] == [name] and waiting["selection_final"] is False and "test" not in waiting
    assert f"the audit of {name} has not finished" in (out / "selected.md").read_text()
    after = main(argv + ["--audit", "1"])
    assert list(after["audited"]) == [name] and after["cost"]["trials"]["pruned"] == len(pruned) - 1
    assert after["audited"][name]["pruned_at"] == max(closest.intermediate_values)
    # Resumed from the pruned checkpoint, the run ends where a run trained straight through ends.
    cfg = cell_config(Path(SYNTHETIC), Cell(name, {"structure.gamma": closest.params["structure.gamma"],
                                                   "beta": 0.3}), 0, QUICK)
    straight = run(cfg, tmp_path / "straight", device="cpu", threads=1, progress=False)
    assert after["audited"][name]["value"] == straight["val"]["recall@20"]
    assert after["selected"] == best_counting(out, name, straight["val"]["recall@20"])  # as any complete point
    assert "(audit; pruned @" in (out / "surface.md").read_text()
    assert after["selection_final"] is True and after["audit_pending"] == []
    # The audit is recorded in the study: a later worker without --audit keeps it, and the same K names the
    # same point after it finished (no second point is trained).
    again = main(argv)
    assert again["audit"] == 1 and again["audited"] == after["audited"] and again["selection_final"] is True
    assert again["cost"]["trials"] == after["cost"]["trials"]


def test_a_pruned_point_another_command_finished_counts_as_finished_later_not_as_audit(tmp_path):
    out, store = tmp_path / "study", tmp_path / "store"
    argv = ["--config", SYNTHETIC, "--param", "structure.gamma=0.0,0.3,1.0,3.0", "--param", "beta=0.3",
            "--pruner", "halving", "--min-epochs", "1", "--reduction", "2", "--seeds", "0", "--threads", "1",
            "--extra", QUICK, "--store", str(store), "--out", str(out)]
    main(argv)
    pruned = [t for t in study_trials(out) if t.state.name == "PRUNED"]
    assert pruned
    gamma = pruned[0].params["structure.gamma"]
    name = f"structure.gamma={gamma},beta=0.3"
    # A table or sweep asks for the same configuration: the pruned run resumes in the store and ends.
    cfg = cell_config(Path(SYNTHETIC), Cell(name, {"structure.gamma": gamma, "beta": 0.3}), 0, QUICK)
    ended = run(cfg, store_folder(store, cfg), device="cpu", threads=1, progress=False, reuse=True)
    later = main(argv + ["--tables-only"])
    assert "audited" not in later and list(later["finished_later"]) == [name]
    assert later["finished_later"][name]["value"] == ended["val"]["recall@20"]
    assert later["finished_later"][name]["pruned_at"] == max(pruned[0].intermediate_values)
    surface = (out / "surface.md").read_text()
    assert "(finished later; pruned @" in surface and "(audit;" not in surface
    assert later["selected"] == best_counting(out, name, ended["val"]["recall@20"])    # as any complete point
    assert "Finished later by other commands: 1 pruned point(s)" in (out / "selected.md").read_text()


def test_a_changed_search_under_the_same_name_is_refused(tmp_path):
    base = ["--config", SYNTHETIC, "--param", "beta=0.0,0.3", "--store", str(tmp_path / "store"), "--out",
            str(tmp_path / "study"), "--seeds", "0", "--study", "s", "--extra", QUICK, "--tables-only"]
    with pytest.raises(ConfigError, match="--tables-only: no study 's' in sqlite.*start it without --tables-only"):
        main(base)
    assert not (tmp_path / "study").exists()                   # no empty database left behind
    (tmp_path / "study").mkdir()
    optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study' / 'study.db'}")  # as a worker would
    summary = main(base)
    assert summary["selected"] is None and summary["cost"]["trials"]["not started"] == 6
    assert summary["grid_finished"] is False
    with pytest.raises(ConfigError, match="another search.*space"):
        main([*base[:3], "beta=0.0,1.0", *base[4:]])
    with pytest.raises(ConfigError, match="another search.*base_run"):
        main([*base[:-2], "--epochs 5 --eval-every 1", "--tables-only"])


def test_search_space_selection_and_surface():
    space = search_space(Path("experiments/configs/ml100k.yaml"), "idsf", ["reg_weight=1e-5,1e-4", "beta=0,1"])
    assert space == {"structure.gamma": [0.1, 0.3, 1.0, 3.0, 10.0], "beta": [0.0, 1.0], "reg_weight": [1e-5, 1e-4]}
    with pytest.raises(ConfigError, match="declares no search space"):
        search_space(Path("experiments/configs/ml100k.yaml"), "bpr", [])
    with pytest.raises(ConfigError, match="given twice"):
        search_space(Path("experiments/configs/ml100k.yaml"), "idsf", ["beta=1,1.0"])
    rows = {"a=1": {"state": "complete", "value": 0.2}, "a=2": {"state": "pruned", "value": 0.9, "epochs": 5},
            "a=3": {"state": "complete", "value": 0.3}, "a=4": {"state": "complete", "value": 0.3}}
    assert select(rows) == "a=3"   # the pruned trial's higher early value is not a result; ties: the earlier point
    table = surface_markdown({"a": [1, 2, 3, 4]}, rows, "recall@20")
    assert "| 2 | pruned @5 (90.00) |" in table and "| 3 | 30.00 |" in table


def test_unpruned_estimate_prices_each_point_at_its_own_epoch_cost():
    rows = {"a": {"state": "complete", "epochs": 100, "seconds": 1000.0},     # 10 s per epoch
            "b": {"state": "complete", "epochs": 50, "seconds": 3500.0},      # 70 s per epoch
            "c": {"state": "pruned", "epochs": 10, "seconds": 600.0},         # 60 s per epoch, would run 75
            "d": {"state": "not started", "epochs": 0, "seconds": 0.0}}       # priced at the overall 32 s
    overall = (1000 + 3500 + 600) / 160
    assert unpruned_estimate(rows) == pytest.approx(1000 + 3500 + 60 * 75 + overall * 75)
    assert np.isnan(unpruned_estimate({"c": rows["c"], "d": rows["d"]}))     # nothing complete: no estimate
    rows["e"] = {"state": "running", "epochs": 120, "seconds": 6000.0}      # past the mean 75: its own cost so far
    overall = (1000 + 3500 + 600 + 6000) / 280
    assert unpruned_estimate(rows) == pytest.approx(1000 + 3500 + 60 * 75 + overall * 75 + 6000)


def test_a_retried_point_costs_its_run_once():
    from experiments.tune_tables import trial_rows
    dist = {"beta": optuna.distributions.CategoricalDistribution([0.0, 0.3])}
    study = optuna.create_study(direction="maximize")
    curve_seconds = [60.0] * 30                              # one run: 19 epochs before the crash, 30 by now
    for state, epochs, value in ((optuna.trial.TrialState.FAIL, 19, None),
                                 (optuna.trial.TrialState.COMPLETE, 30, 0.31)):
        study.add_trial(optuna.trial.create_trial(
            params={"beta": 0.3}, distributions=dist, state=state, value=value,
            intermediate_values={e: 0.01 * e for e in range(1, epochs + 1)},
            user_attrs={"epochs": epochs, "train_seconds": sum(curve_seconds[:epochs]), "threads": 1}))
    rows = trial_rows(study, {"beta=0.0": {"beta": 0.0}, "beta=0.3": {"beta": 0.3}})
    assert rows["beta=0.3"]["state"] == "complete" and rows["beta=0.3"]["value"] == 0.31
    assert rows["beta=0.3"]["seconds"] == sum(curve_seconds)       # not 19 + 30 epochs' worth
    assert rows["beta=0.0"] == {"state": "not started", "value": None, "epochs": 0, "seconds": 0.0}


def test_surface_heat_map_has_a_panel_per_value_of_a_third_axis(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from experiments import tune_tables
    space = {"g": [1, 2], "b": [0, 1], "l": [5, 6]}
    rows = {}
    for g, b, lam in itertools.product(*space.values()):
        rows[combo_name({"g": g, "b": b, "l": lam})] = ({"state": "pruned", "value": 0.5, "epochs": 10}
                                                        if (g, b) == (2, 1) else
                                                        {"state": "complete", "value": g / 10 + b / 100 + lam / 1000})
    assert heat_map(space, rows, "recall@20", tmp_path / "s.png") is None and (tmp_path / "s.png").exists()
    drawn = []
    monkeypatch.setattr(tune_tables, "grid_heatmap", lambda path, panels, *a, **k: drawn.extend(panels))
    heat_map(space, rows, "recall@20", tmp_path / "t.png")
    assert [p.title for p in drawn] == ["l=5", "l=6"]
    assert [p.highlight for p in drawn] == [None, (1, 0)]      # the best complete point: g=2, b=0, l=6
    for panel, lam in zip(drawn, (5, 6)):
        expected = np.array([[100 * (g / 10 + b / 100 + lam / 1000) for b in (0, 1)] for g in (1, 2)])
        expected[1, 1] = np.nan                                # pruned: a label, no colour
        assert np.allclose(panel.values, expected, equal_nan=True)
        assert panel.labels[1][1] == "pruned @10\n(50.00)" and panel.labels[0][1] == f"{expected[0, 1]:.2f}"


def test_a_missing_optional_library_is_one_clear_line():
    with pytest.raises(MissingExtra, match=r"needs the optional package 'no-such-lib'.*\[experiments\]"):
        require("no_such_lib", "this figure")


def test_experiment_commands_run_a_finished_studys_selection(tmp_path):
    from experiments import sweep, table3
    from experiments.grid import GridResults, experiment_notes, load_tuned
    from idsf_pyg.train.config import model_arg_value
    out, store = tmp_path / "study", tmp_path / "store"
    # No grid point is the config's own γ = 0.3 / β = 0.3, so a selection that is not applied shows.
    summary = main(["--config", SYNTHETIC, "--param", "structure.gamma=1.0,3.0", "--param", "beta=0.0,0.1",
                    "--pruner", "none", "--seeds", "0", "--threads", "1", "--extra", QUICK, "--store", str(store),
                    "--out", str(out)])
    gamma, beta = summary["settings"]["structure.gamma"], summary["settings"]["beta"]
    assert summary["selected"] == f"structure.gamma={gamma},beta={beta}"
    assert (summary["dataset"], summary["model"]) == ("synthetic", "idsf")
    tuned = load_tuned(out)
    value = lambda cfg, key: model_arg_value(cfg.model, cfg.model_args, key)  # noqa: E731
    # A row's own switch wins over the selection; the other selected setting stays.
    no_id = cell_config(Path(SYNTHETIC), Cell("structure w/o ID", {"structure.gamma": 0.0}), 0, QUICK, tuned)
    assert (value(no_id, "gamma"), value(no_id, "beta")) == (0.0, beta)
    # Another model's cell is untouched.
    lightgcn = Cell("lightgcn", {"model": "lightgcn"})
    assert cell_config(Path(SYNTHETIC), lightgcn, 0, QUICK, tuned) == cell_config(Path(SYNTHETIC), lightgcn, 0, QUICK)
    assert sweep.config_value(Path(SYNTHETIC), "gamma", QUICK, tuned) == gamma

    # Table 3's IDSF row is the study's selected run, read back (--finished-only trains nothing).
    datasets = table3.main(["--dataset", SYNTHETIC, "--seeds", "0", "--extra", QUICK, "--store", str(store),
                            "--out", str(tmp_path / "t3"), "--tuned", str(out), "--finished-only"])
    idsf = datasets["synthetic"]["IDSF"]
    chosen = next(t for t in study_trials(out) if t.params == summary["settings"])
    assert idsf.folders == [Path(chosen.user_attrs["run"])] and training_sessions(idsf.folders[0]) == 1
    assert [r["test"]["recall@20"] for r in idsf.results] == summary["test_per_seed"]["recall@20"]
    assert "selected by study synthetic-idsf" in (tmp_path / "t3" / "table3.md").read_text()
    shared = GridResults({"synthetic": {"a": idsf, "b": idsf}})               # two rows, one run: its cost once
    seconds = idsf.results[0]["seconds"]["train_total"]
    assert f"Cost: 1 run, {seconds / 60:.1f} min of training" in " ".join(experiment_notes(shared, QUICK))
    shared.tuned = tuned                                  # a table under other options than the study's says so
    assert f"study ran with --extra `{QUICK}`, this command with none" in " ".join(experiment_notes(shared, ""))
    # "content w/o contrast" is β = 0 at the selected γ: the study's run of that grid point; the rows the grid
    # did not cover (γ = 0, no content, no ID enhancement) have not been trained.
    no_contrast = next(t for t in study_trials(out) if t.params == {"structure.gamma": gamma, "beta": 0.0})
    assert datasets["synthetic"]["content w/o contrast"].folders == [Path(no_contrast.user_attrs["run"])]
    assert set(datasets["synthetic"]) == {"IDSF", "content w/o contrast"}

    with pytest.raises(ConfigError, match="--extra sets beta .*which study synthetic-idsf selected"):
        cell_config(Path(SYNTHETIC), Cell("IDSF"), 0, QUICK + " --set beta=0.5", tuned)
    with pytest.raises(ConfigError, match="tuned idsf on synthetic, not on ml100k"):
        load_tuned(out, [("ml100k", Path("experiments/configs/ml100k.yaml"))])
    data = json.loads((out / "selected.json").read_text())
    for change, message in (({"grid_finished": False}, "grid is not finished"),
                            ({"selection_final": False, "audit_pending": ["beta=1"]}, "audit of beta=1 has not"),
                            ({"settings": None}, "holds no selected configuration")):
        (tmp_path / "bad.json").write_text(json.dumps({**data, **change}))
        with pytest.raises(ConfigError, match=f"bad.json: .*{message}"):
            load_tuned(tmp_path / "bad.json")
    (tmp_path / "old.json").write_text(json.dumps({k: v for k, v in data.items() if k != "settings"}))
    with pytest.raises(ConfigError, match="old.json: no settings field.*--tables-only"):
        load_tuned(tmp_path / "old.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match="broken.json: not readable as JSON"):
        load_tuned(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="no such file"):
        load_tuned(tmp_path / "nowhere.json")


def test_a_finished_run_read_back_competes_at_the_rungs_it_passed(tmp_path):
    import argparse
    args = argparse.Namespace(store=tmp_path / "store", device="cpu", threads=1, overwrite=False, metric="recall@20")
    cfg = cell_config(Path(SYNTHETIC), Cell("beta=0.3", {"beta": 0.3}), 0, QUICK)
    trained = run(cfg, store_folder(args.store, cfg), device="cpu", threads=1, progress=False)  # by another command
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.GridSampler({"beta": [0.3]}),
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2))
    study.optimize(Objective(optuna, {"beta=0.3": cfg}, {"beta": [0.3]}, args, tmp_path / "study"), n_trials=1)
    trial = study.trials[0]
    assert trial.state.name == "COMPLETE" and trial.value == trained["val"]["recall@20"]
    # Rungs at epochs 1, 2, 4: the best validation so far at each, as a live trial records them.
    curve = [e["val_recall@20"] for e in trained["val_curve"]]
    assert [trial.system_attrs.get(f"completed_rung_{r}") for r in range(4)] == [
        max(curve[:1]), max(curve[:2]), max(curve[:4]), None]


def test_a_replayed_pruner_makes_the_live_studys_decisions(tmp_path):
    """The second code path: a live pruned study (one worker) whose audit then trains every pruned point on, and the
    replay of the same pruner over the finished runs in the study's order, must stop the same points at the same
    epochs, select the same point and cost the same; unpruned, the replay selects what the audited study selects."""
    out, store = tmp_path / "study", tmp_path / "store"
    argv = ["--config", SYNTHETIC, "--param", "structure.gamma=0.0,0.3,1.0,3.0", "--param", "beta=0.3",
            "--pruner", "halving", "--min-epochs", "1", "--reduction", "2", "--seeds", "0", "--threads", "1",
            "--extra", QUICK, "--store", str(store), "--out", str(out)]
    with pytest.raises(ConfigError, match="needs every grid point's run finished"):
        main(argv + ["--replay", "halving:1:2"])         # nothing trained yet
    assert not out.exists()                                # ... and no study created by asking
    live = main(argv)
    trials = study_trials(out)
    pruned = {f"structure.gamma={t.params['structure.gamma']},beta=0.3": max(t.intermediate_values)
              for t in trials if t.state.name == "PRUNED"}
    assert pruned and len(pruned) < len(trials)           # the check means something: some stopped, some not
    audited = main(argv + ["--audit", "4"])
    replayed = main(argv + ["--replay", "halving:1:2", "--replay", "halving:1:3", "--replay-orders", "3"])
    first = replayed["pruners"]["halving:1:2"]
    assert first["pruned_first_order"] == pruned
    assert first["selected"][0] == live["selected"]
    assert first["core_hours"][0] == pytest.approx(live["cost"]["core_hours_spent"], rel=1e-9)
    assert replayed["unpruned"]["selected"] == audited["selected"]
    assert replayed["unpruned"]["core_hours"] == pytest.approx(audited["cost"]["core_hours_spent"], rel=1e-9)
    assert len(first["core_hours"]) == 3 and "halving:1:3" in replayed["pruners"]
    assert "| halving:1:2 |" in (out / "replay.md").read_text()


def test_replay_by_hand_successive_halving_depends_on_the_order():
    """Three made-up curves, rungs at epochs 1 and 2 (factor 2): a trial goes on at a rung when its best value so
    far is at least the best of the top len // 2 of the values recorded there (the first one always goes on)."""
    from experiments.tune import make_pruner
    from experiments.tune_replay import replay, selected

    def curve(values, seconds):
        return [{"epoch": e, "seconds": s, "val_recall@20": v} for e, (v, s) in enumerate(zip(values, seconds), 1)]

    curves = {"A": curve([0.1, 0.2, 0.3], [1, 1, 1]), "B": curve([0.05, 0.5, 0.6], [1.5, 1.5, 1.5]),
              "C": curve([0.2, 0.25, 0.26], [4, 4, 4])}
    finals = {n: c[-1]["val_recall@20"] for n, c in curves.items()}
    pruner = lambda: make_pruner(optuna, "halving", 1, 2)  # noqa: E731
    # A, B, C: A goes on alone; at epoch 1 B (0.05) is below A (0.1): stopped; C (0.2) tops epoch 1 and, at epoch 2,
    # A's 0.2 (the only value there) too.
    abc = replay(optuna, pruner(), curves, finals, ["A", "B", "C"], "recall@20")
    assert {n: r.pruned_at for n, r in abc.items()} == {"A": None, "B": 1, "C": None}
    assert selected(abc, ["A", "B", "C"]) == "A"                      # the best point, B, was stopped
    assert sum(r.core_seconds for r in abc.values()) == 3 + 1.5 + 12
    # B, A, C: B goes on; A's 0.1 tops epoch 1 but its 0.2 is below B's 0.5 at epoch 2, and so is C's 0.25.
    bac = replay(optuna, pruner(), curves, finals, ["B", "A", "C"], "recall@20")
    assert {n: r.pruned_at for n, r in bac.items()} == {"A": 2, "B": None, "C": 2}
    assert selected(bac, ["A", "B", "C"]) == "B" and sum(r.core_seconds for r in bac.values()) == 4.5 + 2 + 8
    # The same order two at a time, on the clock of the recorded epoch times: B (1.5 s per epoch) and A (1 s) start
    # together, A's epoch 1 (t = 1) comes first and goes on, and B's 0.05 at t = 1.5 is below it: stopped. C starts
    # then, and at epoch 1 (t = 5.5) its 0.2 tops A's 0.1 and B's 0.05, at epoch 2 A's 0.2: it goes on, and so
    # does A. Started first, the best point is stopped all the same because A overtook it on the clock.
    two = replay(optuna, pruner(), curves, finals, ["B", "A", "C"], "recall@20", workers=2)
    assert {n: r.pruned_at for n, r in two.items()} == {"A": None, "B": 1, "C": None}


def test_core_seconds_count_the_epochs_between_validations():
    from experiments.tune_replay import parse_pruner_spec
    from experiments.tune_tables import curve_core_seconds
    every_fifth = [{"epoch": 5, "seconds": 2.0}, {"epoch": 10, "seconds": 3.0}]
    assert curve_core_seconds(every_fifth, threads=2) == 2 * (5 * 2.0 + 5 * 3.0)
    assert parse_pruner_spec("median:10:3").label == "median:10:3"
    for bad in ("halving:10", "nope:1:2", "halving:0:3", "halving:10:1", "halving:x:3"):
        with pytest.raises(ConfigError, match="--replay"):
            parse_pruner_spec(bad)
