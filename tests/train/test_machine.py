"""A run records the machines it trained on: bit-identical numbers hold on one kind of machine only, so a run
continued from another machine's checkpoint says so and lists both, each from the epoch it took over."""
import logging
import platform

import pytest

from idsf_pyg.data import make_synthetic
from idsf_pyg.models import IDSF
from idsf_pyg.train import TrainConfig, Trainer
from idsf_pyg.train import trainer as trainer_module
from idsf_pyg.train.checkpoint import Checkpointer
from idsf_pyg.train.machine import cpu_model, machine


def test_cpu_model_reads_the_first_model_name_of_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14 96-Core Processor\n\n"
                    "processor\t: 1\nmodel name\t: Something Else\n")
    assert cpu_model(info) == "AMD EPYC 9R14 96-Core Processor"
    assert cpu_model(tmp_path / "absent") == (platform.processor() or platform.machine())
    info.write_text("processor\t: 0\nmodel name\t:\n")       # an empty name is no name
    assert cpu_model(info) == (platform.processor() or platform.machine())


class Stop(Exception):
    pass


def stop_after(epoch):
    def on_validation(entry, final):
        if entry["epoch"] == epoch:
            raise Stop
    return on_validation


@pytest.fixture(scope="module")
def graph():
    return make_synthetic(num_users=60, num_items=80, seed=0)


def trainer(data, path, on_validation=None):
    model = IDSF.from_graph(data, embedding_dim=8)
    config = TrainConfig(epochs=4, batch_size=128, eval_every=1, patience=20)
    return Trainer(model, data, config, progress=False, checkpoint=Checkpointer(path, "key"),
                   on_validation=on_validation)


def test_a_run_resumed_on_another_machine_lists_both_and_warns(graph, tmp_path, monkeypatch, caplog):
    path = tmp_path / "checkpoint.pt"
    here = machine("cpu")
    with pytest.raises(Stop):
        trainer(graph, path, stop_after(2)).fit()
    elsewhere = {**here, "cpu": "Another CPU", "cpu_capability": "AVX2"}
    monkeypatch.setattr(trainer_module, "machine", lambda device: dict(elsewhere))
    with caplog.at_level(logging.WARNING, logger="idsf_pyg"):
        result = trainer(graph, path).fit()
    assert result.epochs_run == 4 and result.resumed_after_epochs == [2]
    assert result.machines == [{"from_epoch": 1, **here}, {"from_epoch": 3, **elsewhere}]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "written on another machine" in warned[0] and "from epoch 3 on" in warned[0]
    assert "Another CPU (AVX2)" in warned[0] and here["cpu"] in warned[0]


def test_a_run_resumed_on_the_same_machine_lists_it_once(graph, tmp_path, caplog):
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(Stop):
        trainer(graph, path, stop_after(2)).fit()
    with caplog.at_level(logging.WARNING, logger="idsf_pyg"):
        result = trainer(graph, path).fit()
    assert result.resumed_after_epochs == [2]
    assert result.machines == [{"from_epoch": 1, **machine("cpu")}]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
