"""CUDA against the CPU: the contrastive kernel, the model's loss and gradients, evaluation and a short
run. Skipped without a GPU; experiments/gpu_check.sh runs them (``pytest -m cuda``) on a GPU machine."""
import pytest
import torch
import torch.nn.functional as F

from experiments.train import main
from idsf_pyg.data import load_dataset
from idsf_pyg.eval import evaluator_for
from idsf_pyg.models import IDSF
from idsf_pyg.similarity_lse import auto_block_size, similarity_lse

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic")


@pytest.mark.parametrize("block", [64, None])
def test_similarity_kernel_on_cuda_equals_cpu(block):
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(500, 32, generator=g, dtype=torch.float64), dim=-1)
    y = F.normalize(torch.randn(500, 32, generator=g, dtype=torch.float64), dim=-1)
    w = torch.randn(500, generator=g, dtype=torch.float64)
    outs = {}
    for dev in ("cpu", "cuda"):
        xd, yd = x.to(dev).requires_grad_(), y.to(dev).requires_grad_()
        rows, cols = similarity_lse(xd, yd, 0.5, columns=True, block_size=block)
        self_rows, _ = similarity_lse(xd, None, 0.5, skip_diagonal=True, block_size=block)
        loss = rows @ w.to(dev) + cols.sum() + self_rows.sum()
        loss.backward()
        outs[dev] = [t.detach().cpu() for t in (rows, cols, self_rows, xd.grad, yd.grad)]
    for a, b in zip(outs["cpu"], outs["cuda"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert auto_block_size(7050, 4, torch.device("cuda")) % 64 == 0


def test_idsf_loss_and_gradients_on_cuda_equal_cpu(data):
    users, pos, neg = torch.arange(256), torch.arange(256), torch.arange(256, 512)
    grads = {}
    for dev in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = IDSF.from_graph(data).to(dev)
        loss, _ = model.loss(users.to(dev), pos.to(dev), neg.to(dev))
        loss.backward()
        grads[dev] = (float(loss), {n: p.grad.cpu() for n, p in model.named_parameters()})
    assert grads["cuda"][0] == pytest.approx(grads["cpu"][0], rel=1e-5)
    for name, g in grads["cpu"][1].items():
        torch.testing.assert_close(grads["cuda"][1][name], g, rtol=1e-3, atol=1e-6)


def test_bf16_autocast_on_cuda_is_close(data):
    users, pos, neg = torch.arange(256).cuda(), torch.arange(256).cuda(), torch.arange(256, 512).cuda()
    values = {}
    for amp in (False, True):
        torch.manual_seed(0)
        model = IDSF.from_graph(data).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss, logs = model.loss(users, pos, neg)
        assert loss.dtype == torch.float32
        values[amp] = float(loss)
    assert values[True] == pytest.approx(values[False], rel=2e-2)


def test_evaluation_on_cuda_equals_cpu(data):
    torch.manual_seed(0)
    model = IDSF.from_graph(data)
    with torch.no_grad():
        u, i = model.embed()
    ev = evaluator_for(data, "val")
    cpu = ev.evaluate(u, i)
    gpu = ev.evaluate(u.cuda(), i.cuda())
    for k, v in cpu.items():
        if "@" in k:
            assert gpu[k] == pytest.approx(v, abs=1e-6)


def test_short_run_on_cuda_matches_cpu_and_repeats(tmp_path):
    args = ["--no-progress", "--epochs", "3", "--eval-every", "1"]
    cpu = main(args + ["--device", "cpu"])
    gpu = main(args + ["--device", "cuda", "--deterministic", "--out", str(tmp_path / "a")])
    again = main(args + ["--device", "cuda", "--deterministic", "--out", str(tmp_path / "b")])
    assert gpu["test"] == again["test"] and gpu["val_curve"] == again["val_curve"]
    # float32 on two devices: same training within rounding, so metrics within a small margin
    assert abs(gpu["test"]["recall@20"] - cpu["test"]["recall@20"]) < 0.02
