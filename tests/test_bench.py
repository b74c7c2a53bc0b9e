"""The benchmark commands end to end on tiny inputs (their figures are not checked: benchmarks print,
tests do not time) and the scale generator's memory."""
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from experiments import bench
from idsf_pyg.errors import ConfigError
from idsf_pyg.data import EDGE, ITEM, USER, make_scale_graph
from tests.time_limits import hang_guard

ROOT = Path(__file__).resolve().parents[1]


def test_scale_graph_memory_is_linear_not_users_times_items():
    """2e4 users x 2e4 items: a dense [U, I] float array would be 3.2 GB; the generator's peak stays
    within a small multiple of the edge arrays."""
    tracemalloc.start()
    data = make_scale_graph(20_000, 20_000, 100_000, feature_dims=(8,))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 40 * 2**20
    assert int(data[USER].num_nodes) == 20_000 and int(data[ITEM].num_nodes) == 20_000
    e = data[EDGE]
    total = e.edge_index.size(1) + e.val_edge_index.size(1) + e.test_edge_index.size(1)
    assert 0.9 * 100_000 <= total <= 100_000
    assert len(set(e.edge_index[0].tolist())) == 20_000  # every user keeps a training edge
    again = make_scale_graph(20_000, 20_000, 100_000, feature_dims=(8,))
    assert (again[EDGE].edge_index == e.edge_index).all()
    with pytest.raises(ValueError, match="num_edges"):
        make_scale_graph(10, 100, 20)


def test_scale_mode_writes_table_json_and_plot(tmp_path, capsys):
    out = bench.main(["--scale", "--scale-grid", "300,40,2000;600,80,4000", "--scopes", "all,sample",
                      "--max-steps", "1", "--device", "cpu", "--plot", str(tmp_path / "scale.png"),
                      "--json-out", str(tmp_path / "scale.json")])
    rows = out["rows"]
    assert [(r["users"], r["scope"]) for r in rows] == [(300, "all"), (300, "sample"), (600, "all"), (600, "sample")]
    assert all(r["step_seconds"] > 0 and r["peak_rss_mb"] > 0 for r in rows)
    assert json.loads((tmp_path / "scale.json").read_text())["rows"] == rows
    assert (tmp_path / "scale.png").read_bytes()[:4] == b"\x89PNG"
    assert "| users | items |" in capsys.readouterr().out


def test_the_scale_figure_is_redrawn_from_its_rows(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"train_edges": e, "scope": "batch", "peak_rss_mb": m, "rss_after_import_mb": 10.0}
            for e, m in ((1000, 110.0), (10000, 1010.0))]
    (tmp_path / "rows.json").write_text(json.dumps({"rows": rows}))
    out = bench.main(["--replot", str(tmp_path / "rows.json"), "--plot", str(tmp_path / "m.pdf")])
    assert out["rows"] == rows
    batch = out["figure"].axes[0].containers[0].lines[0]
    assert batch.get_xydata().tolist() == [[1000, 100.0], [10000, 1000.0]]     # peak memory above the imports
    assert (tmp_path / "m.pdf").read_bytes()[:4] == b"%PDF"
    with pytest.raises(ConfigError, match="give --plot"):
        bench.main(["--replot", str(tmp_path / "rows.json")])


def test_gpu_check_dry_run_on_cpu(tmp_path):
    """The prepared GPU script, end to end with --device cpu --dry-run (synthetic data, one step each)."""
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "experiments" / "gpu_check.sh"), "--device", "cpu", "--dry-run",
                           "--out", str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=hang_guard(600))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (tmp_path / "gpu_check.md").read_text()
    assert "| cpu | all | none |" in report and "| cpu | batch | bf16 |" in report
    assert "step / floor" in report and "exit 0" in report
    rows = json.loads((tmp_path / "bench_baby.json").read_text())["rows"]
    assert {(r["scope"], r["amp"]) for r in rows} == {("all", "none"), ("all", "bf16"), ("batch", "none"),
                                                       ("batch", "bf16")}
