"""Same seed -> same numbers, across processes; a run killed with SIGKILL resumes to the numbers of an
uninterrupted run; finished runs are reused only by the configuration that made them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from experiments import table2
from idsf_pyg.cli import run_cli
from tests.forge import forge_manifest
from tests.time_limits import hang_guard

REPO = Path(__file__).resolve().parents[1]
# The main command on the built-in synthetic dataset (IDSF), short, checkpoint every epoch. Two threads: the
# CPU backward of advanced indexing (x[idx]) was not bit-reproducible with more than one, only with one.
ARGS = ["--threads", "2", "--no-progress", "--epochs", "8", "--eval-every", "1", "--patience", "20"]


def command(out: Path, *extra: str):
    return [sys.executable, "-W", "ignore", "-m", "experiments.train", *ARGS, "--out", str(out), *extra]


def comparable(results: dict) -> dict:
    """What must be bit-identical between two runs of one command (timings are not)."""
    curve = [{k: v for k, v in row.items() if k != "seconds"} for row in results["val_curve"]]
    return {"val_curve": curve, "val": results["val"], "test": results["test"], "best_epoch": results["best_epoch"],
            "run_key": results["run_key"], "epochs_run": results["epochs_run"]}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same command twice, in two separate processes (run side by side)."""
    root = tmp_path_factory.mktemp("determinism")
    procs = [subprocess.Popen(command(root / name), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for name in ("a", "b")]
    for p in procs:
        out, _ = p.communicate(timeout=hang_guard(600))
        assert p.returncode == 0, out
    return root


def test_same_seed_same_numbers_across_processes(two_runs):
    a = json.loads((two_runs / "a" / "results.json").read_text())
    b = json.loads((two_runs / "b" / "results.json").read_text())
    assert comparable(a) == comparable(b)
    assert len(a["val_curve"]) == 8 and a["seed"] == 0
    # ... down to the bits of the chosen model.
    sa = torch.load(two_runs / "a" / "best.pt", weights_only=True)["state_dict"]
    sb = torch.load(two_runs / "b" / "best.pt", weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # A finished run leaves no checkpoint behind, and records what it was.
    assert not (two_runs / "a" / "checkpoint.pt").exists()
    assert a["resumed_after_epochs"] == [] and len(a["run_key"]) == 64


def test_killed_run_resumes_to_the_uninterrupted_numbers(two_runs, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(command(out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt, epoch, deadline = out / "checkpoint.pt", 0, time.time() + hang_guard(300)
    try:
        while epoch < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
            if ckpt.exists():
                try:
                    epoch = torch.load(ckpt, weights_only=True)["state"]["epoch"]
                except Exception:  # replaced while we read it: the next poll reads the new one
                    pass
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=hang_guard(60))
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "results.json").exists()
    saved = torch.load(ckpt, weights_only=True)["state"]["epoch"]
    assert 2 <= saved < 8

    # Another configuration never continues this checkpoint.
    other = subprocess.run(command(out, "--seed", "3"), cwd=REPO, capture_output=True, text=True,
                           timeout=hang_guard(600))
    assert other.returncode == 2 and "checkpoint of another configuration" in other.stderr
    assert "train.seed: 0 -> 3" in other.stderr

    # The same command continues it, losing at most the epoch in flight.
    resumed = subprocess.run(command(out), cwd=REPO, capture_output=True, text=True, timeout=hang_guard(600))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming from {ckpt}: {saved} epochs done" in resumed.stdout
    r = json.loads((out / "results.json").read_text())
    assert r["resumed_after_epochs"] == [saved]
    assert comparable(r) == comparable(json.loads((two_runs / "a" / "results.json").read_text()))


def test_finished_runs_are_reused_only_by_their_configuration(tmp_path, capsys):
    store = tmp_path / "store"
    argv = ["--dataset", "synthetic", "--models", "bpr", "--seeds", "0", "--store", str(store), "--out",
            str(tmp_path / "t2"), "--threads", "1", "--device", "cpu", "--extra", "--epochs 2 --eval-every 1"]
    assert run_cli(table2.main, argv) == 0
    (folder,) = [p for p in (store / "synthetic").iterdir() if p.is_dir()]
    done = folder / "results.json"
    first = json.loads(done.read_text())
    stamp = done.stat().st_mtime_ns

    # Same configuration: read back, not retrained.
    assert run_cli(table2.main, argv) == 0
    assert done.stat().st_mtime_ns == stamp
    assert "finished earlier with the same configuration" in (folder / "train.log").read_text()

    # Another seed or other options: another configuration, another folder; the first one untouched.
    assert run_cli(table2.main, argv[:5] + ["7"] + argv[6:]) == 0
    assert run_cli(table2.main, argv[:-1] + ["--epochs 3 --eval-every 1"]) == 0
    folders = sorted(p.name for p in (store / "synthetic").iterdir() if p.is_dir())
    assert len(folders) == 3 and "bpr-seed7-" in " ".join(folders)
    assert done.stat().st_mtime_ns == stamp

    # A folder of this configuration holding a run of another key (the data changed under the same
    # specs): refused with the difference named, never silently reused; --overwrite retrains it.
    first["run_key"] = "0" * 64
    first["key_material"]["data_fingerprint"] = "an-older-split"
    done.write_text(json.dumps(first))
    capsys.readouterr()
    assert run_cli(table2.main, argv) == 2
    assert f"{done}: differs from what the run wrote" in capsys.readouterr().err   # an edit, refused first
    forge_manifest(folder)   # as if that run had written it: refused for its key, the difference named
    assert run_cli(table2.main, argv) == 2
    assert "data_fingerprint: an-older-split ->" in capsys.readouterr().err
    assert run_cli(table2.main, argv + ["--overwrite"]) == 0
    second = json.loads(done.read_text())
    assert second["run_key"] != "0" * 64 and second["key_material"]["data_fingerprint"] != "an-older-split"
