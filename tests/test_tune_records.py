"""A tuning study moved by its records: what --export writes, --import brings back, and nothing is trained twice."""
import json
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")  # the [experiments] extra; experiments/setup.sh installs it

from experiments.tune import main  # noqa: E402
from idsf_pyg.errors import ConfigError  # noqa: E402

SYNTHETIC = "experiments/configs/synthetic.yaml"
QUICK = "--epochs 4 --eval-every 1"
GRID = ["--param", "structure.gamma=0.0,0.3", "--param", "beta=0.0,0.3"]


def argv(root: Path, *more: str):
    return ["--config", SYNTHETIC, *GRID, "--pruner", "none", "--seeds", "0", "--threads", "1", "--extra", QUICK,
            "--store", str(root / "store"), "--out", str(root / "study"), *more]


def trials(root: Path):
    return optuna.load_study(study_name="synthetic-idsf", storage=f"sqlite:///{root / 'study' / 'study.db'}").get_trials()


def runs_in(root: Path):
    """The run folders of a store that hold a finished run."""
    return sorted(p.parent.name for p in (root / "store").rglob("results.json"))


def point(t) -> str:
    return f"structure.gamma={t.params['structure.gamma']},beta={t.params['beta']}"


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """A study whose four points finished on 'the first machine', and its records."""
    first = tmp_path_factory.mktemp("first")
    summary = main(argv(first))
    assert summary["grid_finished"] and summary["selection_final"]
    counts = main(argv(first, "--export", str(first / "records.json")))
    assert counts == {"written": 4, "left_out": 0}
    return first, summary


def test_records_carry_validation_only_and_each_points_run(finished_study):
    first, _ = finished_study
    data = json.loads((first / "records.json").read_text())
    by_point = {f"structure.gamma={r['point']['structure.gamma']},beta={r['point']['beta']}": r
                for r in data["records"]}
    for t in trials(first):
        r = by_point[point(t)]
        run = json.loads((Path(t.user_attrs["run"]) / "results.json").read_text())
        assert r["state"] == "COMPLETE" and r["value"] == t.value == run["val"]["recall@20"]
        assert r["attrs"]["run_key"] == run["run_key"]
        # The curve keeps what a replay and the cost tables read (the study's metric), not the run's other metrics.
        assert r["attrs"]["val_curve"] == [{"epoch": e["epoch"], "seconds": e["seconds"],
                                            "val_recall@20": e["val_recall@20"]} for e in run["val_curve"]]
        assert len(run["val_curve"][0]) > 3
        assert {int(k): v for k, v in r["reported"].items()} == t.intermediate_values
    assert not [k for k in keys(data) if "test" in k]   # selection reads validation only; no test metric travels


def keys(obj):
    """Every key of a JSON document, at any depth."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from keys(v)


def test_an_imported_study_trains_only_the_selections_seed(finished_study, tmp_path):
    """A fresh store and database: every point imported, none trained again; the selection (the same as the first
    machine's) is trained for its seed, and on one machine that run repeats the recorded one bit for bit."""
    first, before = finished_study
    summary = main(argv(tmp_path, "--import", str(first / "records.json")))
    assert summary["selected"] == before["selected"] and summary["selection_final"]
    chosen = next(t for t in trials(first) if point(t) == before["selected"])
    assert runs_in(tmp_path) == [Path(chosen.user_attrs["run"]).name]
    assert summary["val_per_seed"] == [chosen.value]
    assert summary["test_per_seed"] == before["test_per_seed"]
    assert "Imported: 4 finished trial(s) from records.json" in (tmp_path / "study" / "selected.md").read_text()
    # Importing again changes nothing: the points are finished.
    again = main(argv(tmp_path, "--import", str(first / "records.json"), "--tables-only"))
    assert again["cost"] == summary["cost"] and len(trials(tmp_path)) == 4


def test_a_partial_import_trains_the_other_points_once(finished_study, tmp_path):
    """Two of four records imported: a worker trains the two others and nothing else, although Optuna's grid sampler
    does not know the imported trials and hands their points out again (those trials train nothing)."""
    first, before = finished_study
    data = json.loads((first / "records.json").read_text())
    kept = data["records"][:2]
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({**data, "records": kept}))
    summary = main(argv(tmp_path, "--import", str(partial)))
    imported = {f"structure.gamma={r['point']['structure.gamma']},beta={r['point']['beta']}" for r in kept}
    done = {point(t): t for t in trials(first)}
    trained = {point(t) for t in trials(tmp_path) if "run_key" in t.user_attrs and "imported_from" not in t.user_attrs}
    assert trained == set(done) - imported
    for t in trials(tmp_path):
        assert t.state.name == "COMPLETE" and t.value == done[point(t)].value   # the same values, one machine
    expected = {Path(done[p].user_attrs["run"]).name for p in set(done) - imported | {before["selected"]}}
    assert runs_in(tmp_path) == sorted(expected)
    assert summary["selected"] == before["selected"]


def test_a_replay_reads_imported_curves(finished_study, tmp_path):
    first, _ = finished_study
    here = main(argv(first, "--replay", "halving:1:2", "--replay-orders", "2"))
    main(argv(tmp_path, "--import", str(first / "records.json"), "--tables-only"))
    moved = main(argv(tmp_path, "--replay", "halving:1:2", "--replay-orders", "2"))
    assert moved["pruners"] == here["pruners"] and moved["unpruned"] == here["unpruned"]


def test_bad_records_are_refused_with_the_file_and_field(finished_study, tmp_path):
    first, _ = finished_study
    data = json.loads((first / "records.json").read_text())
    bad = tmp_path / "bad.json"

    def refused(obj, match, *more):
        bad.write_text(obj if isinstance(obj, str) else json.dumps(obj))
        with pytest.raises(ConfigError, match=match):
            main(argv(tmp_path, "--import", str(bad), "--tables-only", *more))

    refused("{not json", r"bad\.json, option --import: not a JSON file")
    refused({**data, "format": "other"}, r"bad\.json, key 'format'")
    other = {**data, "definition": {**data["definition"], "space": {"beta": [0.0]}}}
    refused(other, r"bad\.json, key 'definition': the records are of another search \(space")
    tampered = json.loads(json.dumps(data))
    tampered["records"][1]["attrs"]["run_key"] = "0" * 16
    refused(tampered, r"bad\.json, key 'records\[1\]\.attrs\.run_key': .* was trained as run 0{16}")
    tampered = json.loads(json.dumps(data))
    tampered["records"][0]["value"] = float("nan")
    refused(json.dumps(tampered), r"key 'records\[0\]\.value': a complete trial needs a finite value")
    tampered = json.loads(json.dumps(data))
    tampered["records"][2]["point"] = {"beta": 0.0}
    refused(tampered, r"key 'records\[2\]\.point'")
    tampered = json.loads(json.dumps(data))
    del tampered["records"][3]["attrs"]["val_curve"][1]["val_recall@20"]   # a replay would read it
    refused(tampered, r"key 'records\[3\]\.attrs\.val_curve\[1\]': must give finite numbers for \['epoch', "
                      r"'seconds', 'val_recall@20'\]")
    tampered = json.loads(json.dumps(data))
    tampered["records"][0]["attrs"]["val_curve"][2]["epoch"] = 1
    refused(tampered, r"key 'records\[0\]\.attrs\.val_curve\[2\]': epochs must rise")
    # A refused file adds nothing; and nothing is refused half-way: the study was never created.
    assert not (tmp_path / "study" / "study.db").exists() or trials(tmp_path) == []
    with pytest.raises(ConfigError, match="option --export: no study"):
        main(argv(tmp_path / "none", "--export", str(tmp_path / "x.json")))
    with pytest.raises(ConfigError, match="option --export: writes a study's records and does nothing else"):
        main(argv(tmp_path, "--export", str(tmp_path / "x.json"), "--import", str(first / "records.json")))


def test_first_queues_grid_points_before_the_samplers_order(tmp_path):
    """--first: the named points are the first trials the worker starts, in the order given; a point that is not on
    the grid is refused before anything is queued."""
    with pytest.raises(ConfigError, match=r"option --first: 'structure.gamma=2,beta=0 ': structure.gamma=2 is not"):
        main(argv(tmp_path, "--first", "beta=0.3,structure.gamma=0", "--first", "structure.gamma=2,beta=0 "))
    with pytest.raises(ConfigError, match="option --first: 'beta=0.3': name a value of each axis"):
        main(argv(tmp_path, "--first", "beta=0.3"))
    with pytest.raises(ConfigError, match="option --first: 'beta=0.3,beta=0,structure.gamma=0': beta given twice"):
        main(argv(tmp_path, "--first", "beta=0.3,beta=0,structure.gamma=0"))
    study = tmp_path / "study" / "study.db"
    assert not study.exists() or all(t.state.name != "WAITING" for t in trials(tmp_path))
    main(argv(tmp_path, "--first", "beta=0.3, structure.gamma=0", "--first", "structure.gamma=0.3,beta=0"))
    # (Optuna's grid sampler does not know a queued point and may hand it out again: that trial trains nothing.)
    trained = [t for t in sorted(trials(tmp_path), key=lambda t: t.datetime_start) if "copy_of" not in t.user_attrs]
    assert [point(t) for t in trained[:2]] == ["structure.gamma=0.0,beta=0.3", "structure.gamma=0.3,beta=0.0"]
    assert len({point(t) for t in trained}) == len(trained) == 4
    assert all(f.read_text().count(" model: ") == 1 for f in (tmp_path / "store").rglob("train.log"))


@pytest.mark.filterwarnings("ignore:Argument ``heartbeat_interval`` is an experimental feature",
                            "ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_crashed_trial_is_retried_before_the_points_first_queues(tmp_path):
    """A trial whose worker died (its heartbeat older than --grace) is failed and its retry queued before --first
    queues its points: it resumes ahead of them, and naming it in --first does not leave it behind them."""
    grace = ["--heartbeat", "1", "--grace", "2"]
    (tmp_path / "study").mkdir()
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study' / 'study.db'}", heartbeat_interval=1,
                                         grace_period=2)
    study = optuna.create_study(study_name="synthetic-idsf", storage=storage, direction="maximize")
    study.enqueue_trial({"structure.gamma": 0.3, "beta": 0.3})
    crashed = study.ask()                                    # a worker took the point, then died
    for axis in ("structure.gamma", "beta"):
        crashed.suggest_categorical(axis, [0.0, 0.3])
    storage.record_heartbeat(crashed._trial_id)
    time.sleep(3)                                            # its heartbeat now older than the grace period
    main(argv(tmp_path, *grace, "--first", "structure.gamma=0,beta=0", "--first", "structure.gamma=0.3,beta=0.3"))
    started = [t for t in sorted(trials(tmp_path), key=lambda t: t.datetime_start or t.datetime_complete)
               if t.number != crashed.number and "copy_of" not in t.user_attrs]
    assert [point(t) for t in started[:2]] == ["structure.gamma=0.3,beta=0.3", "structure.gamma=0.0,beta=0.0"]
    assert trials(tmp_path)[crashed.number].state.name == "FAIL"
    assert len({point(t) for t in started}) == len(started) == 4
