"""Run folders and run stores handed to the commands as a hostile but realistic user would: edited,
mixed, damaged, written twice at once, killed mid-write; options that would quietly do something else.

Every case writes its files at test time and runs the real entry point through ``idsf_pyg.cli.run_cli``
(what ``python -m <command>`` does); a refusal must be exit status 2 with a message naming the file,
field or option, never a traceback. The concurrency and SIGKILL cases run real subprocesses.
"""
from __future__ import annotations

import gzip
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Tuple

import pytest
import torch
import yaml

from experiments import export, recommend, search, sweep, table2, train
from idsf_pyg.cli import run_cli
from idsf_pyg.train.checkpoint import Checkpointer
from idsf_pyg.train.run_folder import MANIFEST
from preprocessing import download
from tests.forge import forge_manifest
from tests.test_bad_inputs import NUM_USERS, good_split, interactions_of, write_config, write_split
from tests.time_limits import hang_guard

REPO = Path(__file__).resolve().parents[1]


def train_argv(root: Path, out: Path, *extra: str) -> List[str]:
    return ["--config", str(root / "config.yaml"), "--out", str(out), "--no-progress", "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A workspace: tiny dataset and BPR-MF config, a finished run (seed 0) and one of seed 1, an
    interrupted run (stopped after its first checkpoint), and a run store with one finished table2 run."""
    root = tmp_path_factory.mktemp("runs")
    write_split(root / "data", *good_split())
    write_config(root, train={"epochs": 3})
    assert run_cli(train.main, train_argv(root, root / "run")) == 0
    assert run_cli(train.main, train_argv(root, root / "seed1", "--seed", "1")) == 0
    real_save = Checkpointer.save

    def save_then_stop(self, *args, **kwargs):
        real_save(self, *args, **kwargs)
        raise KeyboardInterrupt
    Checkpointer.save = save_then_stop
    try:
        assert run_cli(train.main, train_argv(root, root / "interrupted")) == 130
    finally:
        Checkpointer.save = real_save
    assert (root / "interrupted" / "checkpoint.pt").is_file()
    assert run_cli(table2.main, store_argv(root, root)) == 0
    return root


def store_argv(root: Path, ws: Path, *extra: str) -> List[str]:
    return ["--dataset", str(root / "config.yaml"), "--models", "bpr", "--seeds", "0", "--device", "cpu",
            "--store", str(ws / "store"), "--out", str(ws / "t2"), *extra]


def store_results(ws: Path) -> Path:
    return next((ws / "store").rglob("results.json"))


# ------------------------------------------------------------------------------------ the cases
# Each: (name, prepare(ws, root) -> (main, argv), words the message must hold). ``ws`` holds copies of the
# fixture's folders; a prepare edits them as the case says.
Case = Tuple[str, Callable, List[str]]


def _recommend(*extra: str):
    return lambda ws: (recommend.main, ["--run", str(ws / "run"), "--users", "0", "--device", "cpu", *extra])


def _export(out: str):
    return lambda ws: (export.main, ["--run", str(ws / "run"), "--out", out.replace("WS", str(ws)), "--device", "cpu"])


def _edit(name: str, change: Callable[[Path], None], forge: bool = False, then=_recommend()):
    def prepare(ws):
        change(ws / "run" / name)
        if forge:
            forge_manifest(ws / "run")
        return then(ws)
    return prepare


def _mutator(load: Callable[[Path], object], dump: Callable[[object, Path], None]):
    """``edit = mutator(change)``: ``edit(path)`` loads the file, lets ``change`` alter the object in place
    (its return value is ignored) and writes it back."""
    def with_change(change: Callable[[object], object]):
        def edit(path: Path):
            obj = load(path)
            change(obj)
            dump(obj, path)
        return edit
    return with_change


_yaml_edit = _mutator(lambda p: yaml.safe_load(p.read_text()), lambda o, p: p.write_text(yaml.safe_dump(o)))
_json_edit = _mutator(lambda p: json.loads(p.read_text()), lambda o, p: p.write_text(json.dumps(o)))
_torch_edit = _mutator(lambda p: torch.load(p, weights_only=True), lambda o, p: torch.save(o, p))


def _torch_write(obj):
    return lambda path: torch.save(obj, path)


def _nan_weights(best: dict) -> None:
    best["state_dict"] = {k: torch.full_like(v, float("nan")) for k, v in best["state_dict"].items()}


def _other_runs(name: str):
    return lambda path: shutil.copy(path.parent.parent / "seed1" / name, path)


def _resume(change: Callable[[Path], None], forge: bool = True):
    def prepare(ws):
        change(ws / "interrupted" / "checkpoint.pt")
        if forge:
            forge_manifest(ws / "interrupted")
        return train.main, train_argv(ws, ws / "interrupted")
    return prepare


def _store(change: Callable[[Path], None], forge: bool, *extra: str):
    def prepare(ws):
        results = store_results(ws)
        change(results)
        if forge:
            forge_manifest(results.parent)
        return table2.main, store_argv(ws, ws, *extra)
    return prepare


def _inter_with_ratings(ws: Path, rating: Callable[[int, int], str]) -> Path:
    lines = ["userID:token\titemID:token\trating:float\ttimestamp:float\tx_label:token"]
    for u in range(NUM_USERS):
        for j, i in enumerate(interactions_of(u)):
            label = 0 if j < 6 else (1 if j == 6 else 2)
            lines.append(f"{u}\t{i}\t{rating(u, j)}\t{1e9 + 86400 * j}\t{label}")
    path = ws / "rated" / "rated.inter"
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _rated(rating: Callable[[int, int], str], *extra: str):
    return lambda ws: (train.main, ["--config", str(ws / "config.yaml"), "--dataset",
                                    str(_inter_with_ratings(ws, rating)), "--no-progress", *extra])


def _sweep(*argv: str):
    return lambda ws: (sweep.main, ["--dataset", str(ws / "config.yaml"), "--seeds", "0", "--store", str(ws / "sw"),
                                    "--out", str(ws / "swo"), "--device", "cpu", *argv])


def _search(*argv: str):
    return lambda ws: (search.main, ["--config", str(ws / "config.yaml"), "--out", str(ws / "search"),
                                     "--device", "cpu", *argv])


def _binary_users(ws):
    (ws / "users.bin").write_bytes(b"\x00\xff\xfe\x01 binary \x89PNG")
    return recommend.main, ["--run", str(ws / "run"), "--users-file", str(ws / "users.bin"), "--device", "cpu"]


def _file(ws, name="a_file"):
    (ws / name).write_text("x")
    return ws / name


CASES: List[Case] = [
    # --- reads that trusted whatever was on disk
    ("config.yaml edited", _edit("config.yaml", _yaml_edit(lambda c: c["config"]["model_args"].update(
        embedding_dim=16))), ["config.yaml", "differs from what the run wrote", "experiments.seal"]),
    ("key_material deleted from config.yaml", _edit("config.yaml", _yaml_edit(lambda c: c.pop("key_material"))),
     ["config.yaml", "differs from what the run wrote"]),
    ("key_material deleted and the manifest forged", _edit("config.yaml", _yaml_edit(lambda c: c.pop("key_material")),
                                                           forge=True), ["config.yaml", "key_material"]),
    ("config.yaml edited and the manifest forged", _edit("config.yaml", _yaml_edit(lambda c: c["config"]["model_args"]
                                                                                 .update(embedding_dim=16)), forge=True),
     ["config.yaml", "records run key", "not of one run"]),
    ("best.pt of another run", _edit("best.pt", _other_runs("best.pt"), forge=True),
     ["best.pt", "records run key", "not of one run"]),
    ("results.json of another run", _edit("results.json", _other_runs("results.json"), forge=True),
     ["results.json", "records run key"]),
    ("no manifest (an older version's folder)", _edit(MANIFEST, lambda p: p.unlink()),
     ["no manifest.json", "experiments.seal"]),
    ("all-NaN weights: recommend", _edit("best.pt", _torch_edit(_nan_weights), forge=True),
     ["best.pt", "NaN or infinite"]),
    ("all-NaN weights: export", _edit("best.pt", _torch_edit(_nan_weights), forge=True, then=_export("WS/exp")),
     ["best.pt", "NaN or infinite"]),
    # --- tracebacks before
    ("best.pt without state_dict", _edit("best.pt", _torch_edit(lambda b: b.pop("state_dict")), forge=True),
     ["best.pt", "state_dict"]),
    ("best.pt holding a list", _edit("best.pt", _torch_write([1, 2]), forge=True),
     ["best.pt", "not a model file", "list"]),
    ("config.yaml with model_args: abc", _edit("config.yaml", _yaml_edit(lambda c: c["config"].update(model_args="abc")),
                                               forge=True), ["config.yaml", "model_args", "mapping"]),
    ("config.yaml a YAML list", _edit("config.yaml", lambda p: p.write_text("- a\n- b\n"), forge=True),
     ["config.yaml", "mapping", "list"]),
    ("truncated results.json", _edit("results.json", lambda p: p.write_text(p.read_text()[:100]), forge=True),
     ["results.json", "unreadable"]),
    ("binary --users-file", _binary_users, ["--users-file", "users.bin", "line 1"]),
    ("export --out is a file", lambda ws: _export(str(_file(ws)))(ws), ["--out", "a_file", "not a folder"]),
    ("export --out under a file", lambda ws: _export(str(_file(ws) / "sub"))(ws), ["--out", "cannot write there", "a_file is a file"]),
    ("export --out cannot be created", _export("/proc/idsf-export"), ["--out", "/proc/idsf-export", "cannot write"]),
    ("resume: checkpoint edited", _resume(lambda p: p.write_bytes(p.read_bytes() + b"x"), forge=False),
     ["checkpoint.pt", "differs from what the run wrote"]),
    ("resume: checkpoint lacking fields", _resume(_torch_edit(lambda c: c.pop("optimizer"))),
     ["checkpoint.pt", "field 'optimizer'"]),
    ("resume: checkpoint with wrong-shaped tensors", _resume(_torch_edit(lambda c: c["model"].update(
        {k: torch.zeros(3, 3) for k in c["model"]}))), ["checkpoint.pt", "does not fit", "shape (3, 3)"]),
    ("resume: checkpoint of a foreign format", _resume(_torch_write({"something": torch.zeros(2)})),
     ["checkpoint.pt", "not an idsf-pyg checkpoint"]),
    ("store results.json edited (recall@20: 0.99)", _store(_json_edit(lambda r: r["test"].update(
        {"recall@20": 0.99})), False, "--finished-only"), ["results.json", "differs from what the run wrote"]),
    ("store results.json edited, table2 without --finished-only", _store(_json_edit(lambda r: r["test"].update(
        {"recall@20": 0.99})), False), ["results.json", "differs from what the run wrote"]),
    ("store results.json without test", _store(_json_edit(lambda r: r.pop("test")), True, "--finished-only"),
     ["results.json", "field 'test'"]),
    ("store results.json with a string metric", _store(_json_edit(lambda r: r["test"].update({"recall@20": "high"})),
                                                       True, "--finished-only"),
     ["results.json", "test.recall@20", "finite number"]),
    ("download --out is a file", lambda ws: (download.main, ["--category", "Baby", "--out", str(_file(ws)),
                                                              "--no-progress"]), ["--out", "not a folder"]),
    # --- options that quietly did something else
    ("sweep --param seed", _sweep("--param", "seed", "--values", "1,2"), ["--param", "--seeds"]),
    ("sweep --param epochs with --extra --epochs", _sweep("--param", "epochs", "--values", "1,2", "--extra",
                                                          "--epochs 5"), ["--extra", "epochs", "override"]),
    ("sweep --param lr with --extra --set lr", _sweep("--param", "lr", "--values", "0.01,0.1", "--extra",
                                                      "--set lr=0.5"), ["--extra", "lr"]),
    ("sweep with --seed in --extra", _sweep("--param", "lr", "--values", "0.01", "--extra", "--seed 4"),
     ["--extra", "seed", "--seeds"]),
    ("search --grid seed", _search("--grid", "seed=1,2"), ["seed", "--seed"]),
    ("search --grid epochs with --extra --epochs", _search("--grid", "epochs=1,2", "--extra", "--epochs 3"),
     ["--extra", "epochs"]),
    ("--edge-weight with a model that ignores weights", _rated(lambda u, j: "4", "--edge-weight", "rating"),
     ["edge_weight", "'bpr'", "ignore"]),
    ("--edge-weight without use_edge_weight", _rated(lambda u, j: "4", "--model", "lightgcn", "--edge-weight",
                                                     "rating"), ["edge_weight", "use_edge_weight=true"]),
    ("all-zero ratings", _rated(lambda u, j: "0", "--model", "lightgcn", "--edge-weight", "rating", "--set",
                                "use_edge_weight=true"), ["rated.inter", "weight 0"]),
    ("rating overflowing float32", _rated(lambda u, j: "1e39" if (u, j) == (3, 2) else "4", "--model", "lightgcn",
                                          "--edge-weight", "rating", "--set", "use_edge_weight=true"),
     ["rated.inter", f"line {3 * 8 + 2 + 2}", "overflows float32"]),
    ("--users 0_1", _recommend("--users", "0_1"), ["0_1", "digits 0-9"]),
    ("--users with other digits", _recommend("--users", "\u0661"), ["digits 0-9"]),
    ("--preset ../../x", lambda ws: (train.main, train_argv(ws, ws / "p", "--preset", "../../x")),
     ["--preset", "not a preset name"]),
    ("--preset file that is not there", lambda ws: (train.main, train_argv(ws, ws / "p", "--preset", "mine.yaml")),
     ["--preset", "mine.yaml"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_refused_with_a_message(case, runs, tmp_path, capsys):
    name, prepare, words = case
    ws = tmp_path
    for entry in ("data", "config.yaml", "run", "seed1", "interrupted", "store"):
        src = runs / entry
        (shutil.copytree if src.is_dir() else shutil.copy)(src, ws / entry)
    main, argv = prepare(ws)
    before = {p: p.stat().st_mtime_ns for p in ws.rglob("*.pt")}
    capsys.readouterr()
    status = run_cli(main, argv)
    err = capsys.readouterr().err
    assert status == 2, f"exit status {status}; stderr:\n{err}"
    assert "Traceback" not in err
    for word in words:
        assert word.lower() in err.lower(), f"{word!r} not in:\n{err}"
    assert err.count("error:") == 1
    assert not (ws / "exp").exists() or not list((ws / "exp").glob("*.npy"))    # nothing exported
    assert {p: p.stat().st_mtime_ns for p in ws.rglob("*.pt")} == before         # nothing trained or resumed


def test_the_refused_cases_work_when_nothing_is_wrong(runs, tmp_path, capsys):
    """The controls: the same commands on the untouched folders succeed."""
    for entry in ("config.yaml", "data", "run", "interrupted", "store"):
        src = runs / entry
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / entry)
    assert run_cli(recommend.main, ["--run", str(tmp_path / "run"), "--users", "0,1", "--device", "cpu"]) == 0
    assert run_cli(export.main, ["--run", str(tmp_path / "run"), "--out", str(tmp_path / "exp"), "--device", "cpu"]) == 0
    assert run_cli(table2.main, store_argv(runs, tmp_path, "--finished-only")) == 0
    assert run_cli(train.main, train_argv(runs, tmp_path / "interrupted")) == 0     # resumes and finishes
    out = capsys.readouterr().out
    assert "resuming from" in out
    assert (tmp_path / "interrupted" / "results.json").is_file()
    assert not (tmp_path / "interrupted" / "checkpoint.pt").exists()


def test_an_edit_made_on_purpose_is_resealed_by_the_documented_command(runs, tmp_path, capsys):
    from experiments import seal
    shutil.copytree(runs / "run", tmp_path / "run")
    results = tmp_path / "run" / "results.json"
    record = json.loads(results.read_text())
    record["note"] = "checked by hand"
    results.write_text(json.dumps(record))
    assert run_cli(recommend.main, ["--run", str(tmp_path / "run"), "--users", "0", "--device", "cpu"]) == 2
    assert run_cli(seal.main, [str(tmp_path / "run")]) == 0
    assert run_cli(recommend.main, ["--run", str(tmp_path / "run"), "--users", "0", "--device", "cpu"]) == 0
    # An edit of what defines the run is never sealed: the weights were not trained with it.
    config = tmp_path / "run" / "config.yaml"
    config.write_text(config.read_text().replace("embedding_dim: 8", "embedding_dim: 16"))
    capsys.readouterr()
    assert run_cli(seal.main, [str(tmp_path / "run")]) == 2
    assert "records run key" in capsys.readouterr().out


def test_file_urls_are_warned_like_plain_http(tmp_path, capsys):
    site = tmp_path / "site"
    site.mkdir()
    with gzip.open(site / "reviews_Baby_5.json.gz", "wt") as f:
        f.write("{}\n")
    assert run_cli(download.main, ["--category", "Baby", "--only", "reviews", "--out", str(tmp_path / "raw"),
                                   "--base-url", site.as_uri(), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "file://" in err and "checked only if digests are given" in err


# ------------------------------------------------------------------------------ real processes
def _command(ws: Path, out: Path, *extra: str) -> List[str]:
    return [sys.executable, "-m", "experiments.train", "--config", str(ws / "config.yaml"), "--out", str(out),
            "--no-progress", "--device", "cpu", "--threads", "1", *extra]


def _ctrl_c_interrupts():
    # A shell starts a background job with SIGINT ignored, a child inherits that, and Python then never raises
    # KeyboardInterrupt: the Ctrl-C below would be lost and the test would wait forever (seen with `pytest &`).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_two_writers_one_folder_the_second_is_refused_and_the_first_finishes_whole(runs, tmp_path):
    out = tmp_path / "D"
    first = subprocess.Popen(_command(runs, out, "--epochs", "100000", "--patience", "100000"), cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             preexec_fn=_ctrl_c_interrupts)
    try:
        deadline = time.monotonic() + hang_guard(120)
        while first.poll() is None and not ((out / ".lock").is_file() and (out / ".lock").read_text()):
            assert time.monotonic() < deadline, "the first writer never recorded itself in its lock"
            time.sleep(0.05)                     # until the first writer has recorded itself
        assert first.poll() is None, first.communicate()[0]
        second = subprocess.run(_command(runs, out, "--epochs", "3", "--seed", "1"), cwd=REPO, capture_output=True,
                                text=True)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "another process is writing" in second.stderr and f"pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        first.send_signal(signal.SIGINT)        # Ctrl-C: the first stops, its checkpoint kept
        first.communicate(timeout=hang_guard(120))
    finally:
        if first.poll() is None:
            first.kill()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["config"]["train"]["seed"] == 0 and saved["config"]["train"]["epochs"] == 100000


KILL_DURING_CHECKPOINT_WRITE = """
import os, signal, sys
real_fsync = os.fsync
writes = []
def fsync(fd):
    real_fsync(fd)
    name = os.readlink(f"/proc/self/fd/{fd}")
    if "/.checkpoint.pt." in name and name.endswith(".tmp"):
        writes.append(name)
        if len(writes) == 2:            # the second checkpoint, complete in its temporary file, not yet renamed
            os.kill(os.getpid(), signal.SIGKILL)
os.fsync = fsync
from idsf_pyg.cli import entry_point
from experiments.train import main
sys.argv = ["train"] + sys.argv[1:]
entry_point(main)
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see which file is synced")
def test_a_checkpoint_write_killed_by_sigkill_leaves_nothing_once_the_run_resumes(runs, tmp_path):
    out = tmp_path / "run"
    argv = _command(runs, out, "--epochs", "4")[3:]
    killed = subprocess.run([sys.executable, "-c", KILL_DURING_CHECKPOINT_WRITE, *argv], cwd=REPO,
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    left = sorted(p.name for p in out.glob(".checkpoint.pt.*.tmp"))
    assert len(left) == 1 and (out / "checkpoint.pt").is_file()      # epoch 1's checkpoint, epoch 2's half-way
    resumed = subprocess.run(_command(runs, out, "--epochs", "4"), cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"removed {left[0]}, left by a write that was killed" in resumed.stdout
    assert "resuming from" in resumed.stdout
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    assert (out / "results.json").is_file() and not (out / "checkpoint.pt").exists()
