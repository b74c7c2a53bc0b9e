"""Data-parallel training with 2 Gloo processes on the CPU, against one process: one step's loss and
gradients, a short run launched by torchrun, and a killed rank."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from idsf_pyg.data import load_dataset
from idsf_pyg.eval import evaluator_for
from idsf_pyg.models import IDSF, LightGCN
from idsf_pyg.parallel import Shard
from idsf_pyg.train.distributed import all_reduce_gradients, joined
from idsf_pyg.train.trainer import _step_loss
from tests.time_limits import hang_guard

REPO = Path(__file__).resolve().parents[2]
WORLD = 2
pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")


def build(name):
    data = load_dataset("synthetic")
    torch.manual_seed(0)
    if name.startswith("idsf"):  # 800 items in blocks of 64: 13 triangular panels dealt to the ranks
        tau = 0.01 if name == "idsf_tau0.01" else 0.5  # 0.01: below the fixed shift, self-similarity rows split
        model = IDSF.from_graph(data, contrast_block_size=64, tau=tau)
    else:
        model = LightGCN.from_graph(data)
    model = model.double()
    g = torch.Generator().manual_seed(1)
    users = torch.randint(0, 600, (301,), generator=g)  # odd: the ranks' slices differ in size
    pos, neg = torch.randint(0, 800, (301,), generator=g), torch.randint(0, 800, (301,), generator=g)
    return data, model, (users, pos, neg)


def one_step(model, batch, shard):
    loss, _ = _step_loss(model, *batch, shard)
    loss.backward()
    if shard is not None:
        all_reduce_gradients(model.parameters(), shard)
        loss = shard.all_reduce(loss.detach().clone())
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _worker(rank, init, name, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    shard = Shard(rank, WORLD)
    data, model, batch = build(name)
    loss, grads = one_step(model, batch, shard)
    with torch.no_grad():
        u, i = model.embed()
    metrics = evaluator_for(data, "val", batch_size=64).evaluate(u.float(), i.float(), shard=shard)
    if rank == 0:
        torch.save({"loss": loss, "grads": grads, "metrics": metrics}, out)
    dist.destroy_process_group()


@pytest.mark.parametrize("name", ["idsf", "idsf_tau0.01", "lightgcn"])
def test_one_step_and_evaluation_split_over_two_ranks_equal_one_process(name, tmp_path):
    """IDSF splits its all-item contrastive loss (cross-similarities by rows with their column sums
    all-reduced; self-similarities by triangular panels, or by rows below τ = 0.025); LightGCN is split by
    batch slices. Both: loss and every gradient equal the one-process step (float64), and the metrics of
    an evaluation split by user chunks equal one process's."""
    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(f"file://{tmp_path / 'rendezvous'}", name, str(out)), nprocs=WORLD, join=True)
    got = torch.load(out, weights_only=False)
    data, model, batch = build(name)
    loss, grads = one_step(model, batch, None)
    assert got["loss"] == pytest.approx(loss, rel=1e-12)
    assert got["grads"].keys() == grads.keys()
    for k in grads:
        torch.testing.assert_close(got["grads"][k], grads[k], rtol=1e-10, atol=1e-14)
    with torch.no_grad():
        u, i = model.embed()
    assert got["metrics"] == evaluator_for(data, "val", batch_size=64).evaluate(u.float(), i.float())


def _joined_worker(rank, ports, out):
    """Three groups one after the other; each block ends in a barrier, so that no rank leaves a group
    (closing its connections) while the other is still connecting to it."""
    os.environ.update(MASTER_ADDR="127.0.0.1", RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD))
    seen = {}
    os.environ["MASTER_PORT"] = str(ports[0])
    with joined(torch.device("cpu")) as shard:
        total = torch.tensor([rank + 1.0])
        dist.all_reduce(total)
        seen["inside"] = [shard.rank, shard.world, dist.is_initialized(), float(total)]
        dist.barrier()
    seen["after"] = dist.is_initialized()
    os.environ["MASTER_PORT"] = str(ports[1])
    try:
        with joined(torch.device("cpu")):
            dist.barrier()
            raise ValueError("a user error")
    except ValueError:
        seen["after_error"] = dist.is_initialized()
    dist.init_process_group("gloo", init_method=f"file://{out}.rendezvous", rank=rank, world_size=WORLD)
    with joined(torch.device("cpu")) as shard:
        seen["callers_group"] = shard.world
    seen["callers_group_after"] = dist.is_initialized()
    dist.barrier()
    dist.destroy_process_group()
    Path(f"{out}.{rank}").write_text(json.dumps(seen))


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_joined_leaves_the_group_it_made_and_keeps_the_callers(tmp_path):
    """A process that exits with its Gloo group alive may abort in teardown (SIGABRT for exit status 2):
    ``joined`` destroys the group it initialized when its block ends, by return or by error, and leaves a
    group the caller initialized alone."""
    out = tmp_path / "seen"
    mp.spawn(_joined_worker, args=(free_ports(2), str(out)), nprocs=WORLD, join=True)
    seen = [json.loads(Path(f"{out}.{r}").read_text()) for r in range(WORLD)]
    for rank, s in enumerate(seen):
        assert s == {"inside": [rank, WORLD, True, 3.0], "after": False, "after_error": False,
                     "callers_group": WORLD, "callers_group_after": True}


def torchrun(out, *extra, nproc=WORLD):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "experiments.train", "--no-progress", "--device", "cpu", "--threads", "1",
            "--out", str(out), *extra]


def test_torchrun_short_run_matches_one_process(tmp_path):
    args = ["--epochs", "3", "--eval-every", "1"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    two = subprocess.run(torchrun(tmp_path / "two", *args), cwd=REPO, capture_output=True, text=True, env=env,
                         timeout=hang_guard(600))
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "experiments.train", "--no-progress", "--device", "cpu",
                          "--threads", "1", "--out", str(tmp_path / "one"), *args], cwd=REPO,
                         capture_output=True, text=True, env=env, timeout=hang_guard(600))
    assert one.returncode == 0, one.stderr[-3000:]
    r2 = json.loads((tmp_path / "two" / "results.json").read_text())
    r1 = json.loads((tmp_path / "one" / "results.json").read_text())
    assert r2["world_size"] == 2 and r2["backend"] == "gloo" and r1["world_size"] == 1
    assert r2["run_key"] == r1["run_key"] and r2["best_epoch"] == r1["best_epoch"]
    for split in ("val", "test"):
        for k, v in r1[split].items():
            assert r2[split][k] == pytest.approx(v, abs=2e-3), (split, k)
    for a, b in zip(r1["val_curve"], r2["val_curve"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    assert two.stdout.count("epoch    1") == 1  # one log: rank 0's


def children(pid):
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the workers")
def test_a_killed_rank_fails_the_job_instead_of_hanging(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "IDSF_DIST_TIMEOUT": "30"}
    out = tmp_path / "run"
    proc = subprocess.Popen(torchrun(out, "--epochs", "200", "--eval-every", "1"), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + hang_guard(300)
        while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, "the job ended before a rank could be killed"
        workers = children(proc.pid)
        assert len(workers) == WORLD
        os.kill(max(workers), signal.SIGKILL)
        output, _ = proc.communicate(timeout=hang_guard(120))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "SIGKILL" in output or "Signal 9" in output or "failed" in output.lower()
    assert not (out / "results.json").exists() and (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("case, extra, words", [
    ("rank 0's folder check, shared with rank 1", ["--out", "FILE"], ["--out", "exists and is not a folder"]),
    ("an option every rank refuses", ["--lr", "-1"], ["lr", "must be > 0"]),
])
def test_a_user_error_under_torchrun_is_reported_once_without_the_projects_traceback(tmp_path, case, extra, words):
    """Every rank meets the error; rank 0 reports it once, the others exit quietly. What follows it is
    torchrun's own report of the failed job (its ChildFailedError), not a traceback of this project."""
    (tmp_path / "FILE").write_text("x")
    extra = [str(tmp_path / "FILE") if a == "FILE" else a for a in extra]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(torchrun(tmp_path / "run", *extra), cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=hang_guard(300))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert output.count("error: ") == 1, output
    assert all(w in output for w in words), output
    project_frames = [line for line in output.splitlines()
                      if line.strip().startswith("File ") and ("idsf_pyg" in line or "experiments" in line)]
    assert project_frames == [], output
    assert "ChildFailedError" in output and "exitcode  : 2" in output   # torchrun's report names rank 0's status
