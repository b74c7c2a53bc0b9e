"""The official code's stopping rule as a preset: a run under it stops where the official training loop
(main.py, transcribed below from its own lines) would stop on the same validation curve."""
import json

from experiments import train
from idsf_pyg.cli import run_cli
from tests.test_bad_inputs import good_split, write_config, write_split


def official_loop(val_recall, max_epochs, verbose=5, patience=5):
    """main.py's loop over epochs counted from 0, on given validation scores: ``(best epoch, last epoch)``
    as 1-based numbers of finished epochs."""
    best_recall, stopping_step, best_epoch = 0, 0, None
    for epoch in range(max_epochs):
        if (epoch + 1) % verbose != 0:
            continue
        recall = val_recall[epoch + 1]
        if recall > best_recall:
            best_recall, best_epoch, stopping_step = recall, epoch + 1, 0
        elif stopping_step < patience:
            stopping_step += 1
        else:
            return best_epoch, epoch + 1
    return best_epoch, max_epochs


def test_the_official_stopping_preset_stops_where_the_official_loop_does(tmp_path):
    write_split(tmp_path / "data", *good_split())
    write_config(tmp_path, model_args={"embedding_dim": 4}, train={"epochs": 400, "lr": 0.05})
    out = tmp_path / "run"
    assert run_cli(train.main, ["--config", str(tmp_path / "config.yaml"), "--preset", "official_stopping",
                                "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["config"]["train"]["eval_every"] == 5 and result["config"]["train"]["patience"] == 6
    curve = {row["epoch"]: row["val_recall@20"] for row in result["val_curve"]}
    assert sorted(curve) == list(range(5, result["epochs_run"] + 1, 5))      # validated every 5th epoch only
    assert result["stopped"].startswith("early stopping")                    # the rule, not the epoch cap
    best, last = official_loop(curve, result["epochs_run"])
    assert (result["best_epoch"], result["epochs_run"]) == (best, last)
    assert last == best + 30
