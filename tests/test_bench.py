"""The benchmark commands end to end on tiny inputs (their figures are not checked: benchmarks print,
tests do not time), the scale generator's memory, and the PNG plots decoded back."""
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from experiments import bench
from experiments.plot import COLORS, Series, line_plot
from idsf_pyg.data import EDGE, ITEM, USER, make_scale_graph
from tests.time_limits import hang_guard

ROOT = Path(__file__).resolve().parents[1]


def read_png(path: Path) -> np.ndarray:
    """Decodes the RGB, filter-0 PNGs that experiments.plot writes (an independent reader)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", None
    while pos < len(data):
        (length,), tag = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(tag + body)
        if tag == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    w, h = size
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, 1 + 3 * w)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(h, w, 3)


def test_line_plot_draws_each_series_where_its_points_are(tmp_path):
    path = tmp_path / "p.png"
    line_plot(path, [Series("a", [1, 2, 3], [10, 20, 15], yerr=[1, 2, 1]), Series("b", [1, 2, 3], [5, 6, 7])],
              title="t", xlabel="x", ylabel="y")
    img = read_png(path)
    assert img.shape == (560, 900, 3)
    for k in range(2):
        assert (img == np.array(COLORS[k], dtype=np.uint8)).all(-1).sum() > 100  # both lines drawn
    # series a's highest point (x=2, y=22 with its error bar) is above series b everywhere
    rows_a = np.nonzero((img == np.array(COLORS[0], dtype=np.uint8)).all(-1))[0]
    rows_b = np.nonzero((img == np.array(COLORS[1], dtype=np.uint8)).all(-1))[0]
    assert rows_a.min() < rows_b.min()
    with pytest.raises(ValueError, match="log axis"):
        line_plot(tmp_path / "q.png", [Series("a", [0, 1], [1, 2])], logx=True)
    with pytest.raises(ValueError, match="equal lengths"):
        line_plot(tmp_path / "q.png", [Series("a", [1, 2], [1])])


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
    assert read_png(tmp_path / "scale.png").shape[2] == 3
    assert "| users | items |" in capsys.readouterr().out


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
