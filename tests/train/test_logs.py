"""The package's log: stdlib logging that a caller routes; each run folder keeps its own copy."""
import io
import logging

from experiments.train import CONFIG_DIR
from idsf_pyg.logs import console, logger, silenced
from idsf_pyg.train import resolve_run_config, run


def small_config():
    return resolve_run_config(CONFIG_DIR / "synthetic.yaml", sets={"embedding_dim": 8}, train={"epochs": 2})


def test_a_run_logs_to_its_folder_and_to_the_console_only_when_asked(tmp_path, capsys):
    cfg = small_config()
    run(cfg, tmp_path / "quiet", threads=1, progress=False)
    assert capsys.readouterr().out == ""                 # a library call prints nothing by itself
    log = (tmp_path / "quiet" / "train.log").read_text()
    assert "data: synthetic" in log and "epoch    2" in log and "val recall@20" in log
    stream = io.StringIO()
    with console(stream):
        again = run(cfg, tmp_path / "loud", threads=1, progress=False)
    shown = stream.getvalue()
    assert "epoch    2" in shown and shown.count("\n") == (tmp_path / "loud" / "train.log").read_text().count("\n")
    assert again["test"]["recall@20"] > 0
    # The same run resumed or read back appends to its log; nothing is written without a folder.
    run(cfg, tmp_path / "quiet", threads=1, progress=False, reuse=True)
    assert "finished earlier with the same configuration" in (tmp_path / "quiet" / "train.log").read_text()


def test_a_caller_routes_the_log_like_any_logger(tmp_path):
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep(level=logging.INFO)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        run(small_config(), None, threads=1, progress=False)
        assert any(m.startswith("epoch    2") for m in records)
        records.clear()
        with silenced():                                    # what the other ranks of a torchrun job do
            run(small_config(), None, threads=1, progress=False)
        assert records == []
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
