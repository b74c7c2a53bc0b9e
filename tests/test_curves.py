"""Learning curves: every run folder's curves.csv, the overlay command (also for the authors' log), TensorBoard,
and plain output when the console is not a terminal."""
import csv
import json

import pytest

from experiments import curves, train
from idsf_pyg.errors import ConfigError, DataFormatError
from idsf_pyg.train import run
from experiments.grid import Cell, cell_config
from pathlib import Path

SYNTHETIC = Path("experiments/configs/synthetic.yaml")


def quick(epochs=4, eval_every=1):
    return cell_config(SYNTHETIC, Cell("quick", {}), 0, f"--epochs {epochs} --eval-every {eval_every}")


def read_curves_csv(folder):
    with open(folder / "curves.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_curves_csv_holds_the_whole_curve_also_after_a_resume(tmp_path):
    stopped_early = []

    def stop_after_two(entry, final):
        if entry["epoch"] == 2 and not stopped_early:
            stopped_early.append(True)
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run(quick(), tmp_path / "r", device="cpu", threads=1, progress=False, on_validation=stop_after_two)
    assert [r["epoch"] for r in read_curves_csv(tmp_path / "r")] == ["1", "2"]     # readable while it runs
    result = run(quick(), tmp_path / "r", device="cpu", threads=1, progress=False)
    rows = read_curves_csv(tmp_path / "r")
    assert [int(r["epoch"]) for r in rows] == [e["epoch"] for e in result["val_curve"]] == [1, 2, 3, 4]
    for row, entry in zip(rows, result["val_curve"]):
        assert {k: float(v) for k, v in row.items()} == pytest.approx({k: float(v) for k, v in entry.items()})


def official_log(path, values):
    lines = ["2026-11-29 21:10:  some header line"]
    for e, r20 in enumerate(values):
        lines.append(f"2026-11-29 21:12:  Epoch {e} [59.5s + 0.6s]: train==[{790 - e:.5f}=28.00792 + 0.21117 + 0.00000], "
                     f"recall=[0.15116, {r20:.5f}], precision=[0.12428, 0.10461], hit=[0.66066, 0.79852], "
                     f"ndcg=[0.30397, 0.40671]")
        lines.append("2026-11-29 21:12:  Test_Recall@20: 0.25205")
    path.write_text("\n".join(lines) + "\n")


def test_overlay_of_a_run_and_the_authors_log(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    result = run(quick(), tmp_path / "ours", device="cpu", threads=1, progress=False)
    official_log(tmp_path / "official.log", [0.25, 0.30, 0.28])
    out = curves.main(["--run", str(tmp_path / "ours"), "--label", "ours", "--official", str(tmp_path / "official.log"),
                       "--label", "theirs", "--official-batches", "79", "--losses", "--out", str(tmp_path / "c.svg"),
                       "--csv", str(tmp_path / "c.csv")])
    ours, theirs = out
    assert ours.series("val_recall@20") == ([1, 2, 3, 4], [e["val_recall@20"] for e in result["val_curve"]])
    assert theirs.series("val_recall@20") == ([1, 2, 3], [0.25, 0.30, 0.28])      # epochs counted from 1
    assert theirs.series("loss")[1] == pytest.approx([790 / 79, 789 / 79, 788 / 79])
    assert theirs.rows[2]["val_ndcg@10"] == 0.30397
    table = list(csv.reader(open(tmp_path / "c.csv")))
    assert table[0] == ["epoch", "ours", "theirs"] and table[4][2] == ""   # epoch 4: the official log stopped at 3
    assert (tmp_path / "c.svg").read_bytes()[:5] == b"<?xml"
    assert "theirs: 3 validations, best recall@20 30.00 at epoch 2" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="2 labels for 1 curves"):
        curves.main(["--run", str(tmp_path / "ours"), "--label", "a", "--label", "b", "--out", str(tmp_path / "x.png")])
    (tmp_path / "bad.log").write_text("Epoch 0 [1s + 1s]: train==[1.0=1 + 0 + 0], recall=[0.1, 0.2, 0.3]\n")
    with pytest.raises(DataFormatError, match="bad.log, line 1: recall has 3 values"):
        curves.read_official_log(tmp_path / "bad.log")
    (tmp_path / "empty.log").write_text("nothing here\n")
    with pytest.raises(DataFormatError, match="empty.log: no 'Epoch E"):
        curves.read_official_log(tmp_path / "empty.log")
    # the loss parts of a run, as logged (the official log has none: a clear error)
    fig = curves.plot_curves([ours], "recall@20", tmp_path / "p.png", losses="parts")
    drawn = {line.get_label(): line.get_ydata().tolist() for line in fig.axes[1].lines}
    for part in ("bpr", "contrast"):
        assert drawn[f"ours: {part}"] == [e[f"loss_{part}"] for e in result["val_curve"]]
    with pytest.raises(ConfigError, match="no curve has logged loss parts"):
        curves.plot_curves([theirs], "recall@20", tmp_path / "p.png", losses="parts")
    # a folder written before curves.csv existed is read from results.json
    (tmp_path / "ours" / "curves.csv").unlink()
    assert curves.read_run(tmp_path / "ours").series("val_recall@20") == ours.series("val_recall@20")


def authors_log(path, values, every=1, end=None):
    """A log as the authors' main.py writes it with --verbose ``every``: each epoch's line (training seconds 10 + e),
    the validation lists on every ``every``-th, and the test line after each validation that improved, its value
    the validation's + 0.01; then ``end``, a last line, if given (a killed run's log has none)."""
    lines, best = [], 0.0
    for e in range(len(values) * every):
        head = f"2026-11-30 01:00:  Epoch {e} [{10 + e:.1f}s"
        if (e + 1) % every:
            lines.append(f"{head}]: train==[{100 - e:.5f}=1.0 + 0.1 + 0.00000]")
            continue
        r20 = values[(e + 1) // every - 1]
        lines.append(f"{head} + 1.0s]: train==[{100 - e:.5f}=1.0 + 0.1 + 0.00000], recall=[0.1, {r20:.5f}], "
                     "precision=[0.1, 0.1], hit=[0.5, 0.6], ndcg=[0.2, 0.3]")
        if r20 > best:
            best = r20
            lines.append(f"2026-11-30 01:00:  Test_Recall@20: {r20 + 0.01:.5f}")
        else:
            lines.append("2026-11-30 01:00:  #####Early stopping steps: 1 #####")
    path.write_text("\n".join(lines + ([end] if end else [])) + "\n")


def test_table_of_curves_and_the_means_of_groups(tmp_path):
    pytest.importorskip("matplotlib")
    result = run(quick(3), tmp_path / "ours", device="cpu", threads=1, progress=False)
    logs = {"a1": [0.20, 0.30, 0.30], "a2": [0.22, 0.26, 0.27], "b1": [0.205, 0.31, 0.29], "b2": [0.221, 0.262, 0.302]}
    argv = []
    ends = {"a1": None, "a2": "2026-11-30 01:00:  #####Early stop! #####",   # a1 killed, a2 and b1 ended
            "b1": "2026-11-30 01:00:  {'precision': array([0.1, 0.1]), 'recall': array([0.1, 0.29])}", "b2": None}
    for name, values in logs.items():
        authors_log(tmp_path / f"{name}.log", values, every=2, end=ends[name])   # validated at epochs 2, 4, 6
        argv += ["--official", str(tmp_path / f"{name}.log"), "--label", name]
    out = curves.main(argv + ["--run", str(tmp_path / "ours"), "--label", "ours", "--out", str(tmp_path / "c.png"),
                              "--table", str(tmp_path / "t.md"), "--table-epochs", "2,4,6",
                              "--group", "A=a1,a2", "--group", "B=b1,b2", "--group", "C=b2"])
    a1 = out[0]
    assert a1.series("seconds") == ([1, 2, 3, 4, 5, 6], [10.0, 11.0, 12.0, 13.0, 14.0, 15.0])   # every epoch's
    assert a1.series("loss_sum")[1] == [100.0, 99.0, 98.0, 97.0, 96.0, 95.0]
    # a1's best is its first 0.30 (epoch 4): the later equal value is no improvement, and no test was logged there
    assert a1.best("recall@20") == (4, 0.30) and a1.test_at_best("recall@20") == pytest.approx(0.31)
    assert out[-1].test_at_best("recall@20") == result["test"]["recall@20"]
    table = (tmp_path / "t.md").read_text().splitlines()
    assert table[2] == "| a1 | 20.00 | 30.00 | 30.00 | 30.00 (4) | 6 so far | 31.00 | 12 |"
    assert [row.split(" | ")[5] for row in table[3:5]] == ["6", "6"]             # a2 stopped early, b1 ran out
    ours_epochs = {e["epoch"]: e["val_recall@20"] for e in result["val_curve"]}
    assert table[6].startswith(f"| ours | {100 * ours_epochs[2]:.2f} |  |")       # ours has no epoch 4 or 6
    assert table[6].split(" | ")[5] == str(result["epochs_run"]) == "3"
    running = tmp_path / "running"            # a run still training: its curves.csv and no results.json yet
    running.mkdir()
    (running / "curves.csv").write_text((tmp_path / "ours" / "curves.csv").read_text())
    still = curves.read_run(running)
    assert not still.finished and still.epochs == 3 and out[-1].finished
    # means by hand: A 21.00 / 28.00 / 28.50, B 21.30 / 28.60 / 29.60; tests A 31, 28 -> 29.50 +- 2.12,
    # B 32, 31.2 -> 31.60 +- 0.57; B - A: 0.3, 0.6, 1.1 points
    assert "| A (2) | 21.00 | 28.00 | 28.50 | 29.50 ± 2.12 |" in table
    assert "| B (2) | 21.30 | 28.60 | 29.60 | 31.60 ± 0.57 |" in table
    assert ("B − A, mean validation recall@20 curves: within ±0.5 points at 1 and within ±1 at 2 of 3 epochs; "
            "mean difference +0.67, largest +1.10.") in table
    # every later group against the first: C (b2 alone) - A: +1.1, -1.8, +1.7 points
    assert ("C − A, mean validation recall@20 curves: within ±0.5 points at 0 and within ±1 at 0 of 3 epochs; "
            "mean difference +0.33, largest -1.80.") in table
    with pytest.raises(ConfigError, match="no curve labelled 'c1'"):
        curves.main(argv + ["--out", str(tmp_path / "c.png"), "--table", str(tmp_path / "t.md"), "--group", "C=c1"])
    with pytest.raises(ConfigError, match="--group adds rows to --table"):
        curves.main(argv + ["--out", str(tmp_path / "c.png"), "--group", "A=a1"])
    (tmp_path / "orphan.log").write_text("2026-11-30 01:00:  Test_Recall@20: 0.3\n")
    with pytest.raises(DataFormatError, match="orphan.log, line 1: a Test_Recall line that follows no validated"):
        curves.read_official_log(tmp_path / "orphan.log")


def test_tensorboard_events_hold_the_curve_and_the_console_holds_plain_lines(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    result = train.main(["--epochs", "4", "--eval-every", "2", "--threads", "1", "--out", str(tmp_path / "r"),
                         "--tensorboard", str(tmp_path / "tb")])
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    scalars = acc.Scalars("val/recall@20")
    assert [s.step for s in scalars] == [2, 4]
    assert [s.value for s in scalars] == pytest.approx([e["val_recall@20"] for e in result["val_curve"]])
    assert [s.value for s in acc.Scalars("loss/total")] == pytest.approx([e["loss"] for e in result["val_curve"]])
    # stdout/stderr are not terminals here: no progress-bar frames, one plain line per epoch
    captured = capsys.readouterr()
    assert "\r" not in captured.out + captured.err
    epoch_lines = [line for line in captured.out.splitlines() if line.startswith("epoch ")]
    assert [int(line.split()[1]) for line in epoch_lines] == [1, 2, 3, 4]
    log = (tmp_path / "r" / "train.log").read_text()
    assert all(f"epoch    {e}  loss" in log for e in (1, 2, 3, 4))
    assert json.loads((tmp_path / "r" / "results.json").read_text())["val_curve"] == result["val_curve"]
