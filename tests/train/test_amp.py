"""bf16 autocast (``--amp bf16``): what runs in low precision, what stays float32, and its run key."""
import pytest
import torch

from experiments.train import main
from idsf_pyg.data import load_dataset
from idsf_pyg.errors import ConfigError
from idsf_pyg.models import IDSF, LightGCN
from idsf_pyg.train import TrainConfig


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic")


def test_idsf_loss_under_bf16_autocast_is_float32_and_close(data):
    users, pos, neg = torch.arange(64), torch.arange(64), torch.arange(64, 128)
    values, grads = {}, {}
    for amp in (False, True):
        torch.manual_seed(0)
        model = IDSF.from_graph(data)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss, logs = model.loss(users, pos, neg)
        assert loss.dtype == torch.float32 and all(v.dtype == torch.float32 for v in logs.values())
        loss.backward()
        values[amp] = {k: float(v) for k, v in logs.items()}
        grads[amp] = model.content.proj["view_a"].weight.grad
        assert grads[amp].dtype == torch.float32
    # bf16 keeps ~3 significant digits in the products; the sums are float32
    for k in values[False]:
        assert values[True][k] == pytest.approx(values[False][k], rel=2e-2, abs=1e-6)
    cos = torch.nn.functional.cosine_similarity(grads[True].flatten(), grads[False].flatten(), dim=0)
    assert cos > 0.99
    assert values[True] != values[False]  # the products really ran in bf16


def test_idsf_propagation_stays_float32_under_autocast(data):
    model = IDSF.from_graph(data)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        u, i = model.embed()
    assert u.dtype == torch.float32 and i.dtype == torch.float32


def test_amp_is_checked_and_part_of_the_run(tmp_path):
    with pytest.raises(ConfigError, match="amp"):
        TrainConfig(amp="fp8")
    result = main(["--no-progress", "--epochs", "1", "--amp", "bf16", "--device", "cpu", "--out", str(tmp_path / "r")])
    assert result["train_config"]["amp"] == "bf16"
    assert 0.0 < result["test"]["recall@20"] <= 1.0
    assert IDSF.supports_amp and not LightGCN.supports_amp
    with pytest.raises(ConfigError, match="amp=bf16 is implemented for idsf only"):
        main(["--no-progress", "--model", "lightgcn", "--amp", "bf16", "--epochs", "1"])
