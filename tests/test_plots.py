"""The figures (matplotlib): each draws the data it is given, in the format its suffix names; clear errors."""
import numpy as np
import pytest

pytest.importorskip("matplotlib")  # the [experiments] extra; experiments/setup.sh installs it

from experiments import extras  # noqa: E402
from experiments.extras import MissingExtra  # noqa: E402
from experiments.plot import GridPanel, PALETTE, Series, grid_heatmap, heatmap, line_plot, pyplot, scatter_plot  # noqa: E402,E501
from idsf_pyg.errors import ConfigError  # noqa: E402


def read_image(path):
    """The figure decoded back (matplotlib's reader, Pillow underneath): [h, w, 3] floats in [0, 1]."""
    import matplotlib.image
    return matplotlib.image.imread(path)[..., :3]


def test_line_plot_draws_each_series_with_its_error_bars(tmp_path):
    a = Series("a", [1, 2, 3], [10, 20, 15], yerr=[1, 2, 1])
    b = Series("b", [1, 2, 3], [5, 6, 7])
    fig = line_plot(tmp_path / "p.png", [a, b], title="t", xlabel="x", ylabel="y")
    ax = fig.axes[0]
    data = [c.lines[0].get_xydata().tolist() for c in ax.containers]
    assert data == [[[1, 10], [2, 20], [3, 15]], [[1, 5], [2, 6], [3, 7]]]
    # a's error bars span y +- yerr at each x; b has none
    bars = ax.containers[0].lines[2][0].get_segments()
    assert [(s[0][1], s[1][1]) for s in bars] == [(9, 11), (18, 22), (14, 16)] and not ax.containers[1].lines[2]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    assert ax.get_title() == "t" and ax.get_xlabel() == "x"
    img = read_image(tmp_path / "p.png")
    blue = np.array([int(PALETTE[0][i:i + 2], 16) / 255 for i in (1, 3, 5)])
    assert (np.abs(img - blue).max(-1) < 0.02).sum() > 50          # the first series' colour is on the image
    with pytest.raises(ValueError, match="log axis"):
        line_plot(tmp_path / "q.png", [Series("a", [0, 1], [1, 2])], logx=True)
    with pytest.raises(ValueError, match="equal lengths"):
        line_plot(tmp_path / "q.png", [Series("a", [1, 2], [1])])


def test_formats_follow_the_suffix(tmp_path):
    for suffix, head in ((".pdf", b"%PDF"), (".svg", b"<?xml"), (".png", b"\x89PNG")):
        line_plot(tmp_path / f"f{suffix}", [Series("a", [1, 2], [1, 2])])
        assert (tmp_path / f"f{suffix}").read_bytes()[:len(head)] == head
    with pytest.raises(ConfigError, match="one of png, pdf, svg"):
        line_plot(tmp_path / "f.gif", [Series("a", [1, 2], [1, 2])])


def test_scatter_and_heatmap_draw_what_they_are_given(tmp_path):
    pts = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.2]])
    fig = scatter_plot(tmp_path / "s.png", pts, [0, 1, 0], title="t", legend=["a", "b"])
    groups = fig.axes[0].collections
    assert [c.get_offsets().tolist() for c in groups] == [[[0.0, 0.0], [0.5, 0.2]], [[1.0, 1.0]]]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b"]
    m = np.array([[1.0, 0.0, 0.2], [0.0, 0.5, 0.0], [0.3, 0.0, 1.0]])
    fig = heatmap(tmp_path / "h.png", m, boundaries=[1])
    assert np.array_equal(fig.axes[0].images[0].get_array(), m)
    assert [line.get_ydata()[0] for line in fig.axes[0].lines][:1] == [0.5]   # the boundary between rows 0 and 1
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        heatmap(tmp_path / "x.png", np.array([[2.0]]))
    with pytest.raises(ValueError, match="square"):
        heatmap(tmp_path / "x.png", np.zeros((2, 3)))


def test_without_matplotlib_a_figure_is_one_clear_line(monkeypatch):
    real = extras.importlib.import_module

    def missing(name, *a):
        if name.split(".")[0] == "matplotlib":
            raise ImportError(name)
        return real(name, *a)
    monkeypatch.setattr(extras.importlib, "import_module", missing)
    with pytest.raises(MissingExtra, match=r"drawing figures needs the optional package 'matplotlib'.*\[experiments\]"):
        pyplot()


def test_a_sweep_is_replotted_from_its_own_table(tmp_path):
    from experiments import sweep
    from idsf_pyg.errors import DataFormatError
    table = tmp_path / "gamma.csv"
    table.write_text("gamma,R@10,P@10,N@10,R@20,P@20,N@20,R@20 vs the config's value\n"
                     "0,1 ± 0.1,1 ± 0.1,1 ± 0.1,21.5 ± 0.8,1 ± 0.1,18.0 ± 0.4,lower\n"
                     "0.3,1 ± 0.1,1 ± 0.1,1 ± 0.1,not finished,1 ± 0.1,not finished,—\n"
                     "3,1 ± 0.1,1 ± 0.1,1 ± 0.1,30.4 ± 0.3,1 ± 0.1,24.0 ± 0.4,higher\n")
    figs = sweep.main(["--param", "gamma", "--replot", str(table), "--dataset", "ml100k", "--out", str(tmp_path),
                       "--format", "svg"])
    recall = figs[tmp_path / "gamma_ml100k_recall20.svg"].axes[0]
    assert recall.containers[0].lines[0].get_ydata().tolist() == [21.5, 30.4]     # 'not finished' left out
    assert [t.get_text() for t in recall.get_xticklabels()] == ["0", "3"]
    bars = [v for seg in recall.containers[0].lines[2][0].get_segments() for v in (seg[0][1], seg[1][1])]
    assert bars == pytest.approx([20.7, 22.3, 30.1, 30.7])
    table.write_text("beta,R@20\n0,1 ± 0.1\n")
    with pytest.raises(DataFormatError, match="gamma.csv, line 1: not a sweep table of 'gamma'"):
        sweep.main(["--param", "gamma", "--replot", str(table), "--out", str(tmp_path)])


def test_grid_heatmap_panels_share_one_colour_scale_and_grey_out_missing_cells(tmp_path):
    a = np.array([[30.0, np.nan], [32.0, 34.0]])
    b = np.array([[31.0, 33.0], [np.nan, 35.0]])
    labels = [["x", "pruned"], ["y", "z"]]
    fig = grid_heatmap(tmp_path / "g.png", [GridPanel(a, labels, "lambda=1e-5"),
                                            GridPanel(b, labels, "lambda=1e-4", highlight=(1, 1))],
                       [0.1, 1.0], [0, 0.3], row_label="gamma", col_label="beta", colorbar_label="val %")
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["lambda=1e-5", "lambda=1e-4"]
    for ax, values in zip(panels, (a, b)):
        image = ax.images[0]
        assert np.array_equal(image.get_array().mask, np.isnan(values))            # missing cells: no colour
        assert np.array_equal(image.get_array().filled(np.nan), values, equal_nan=True)
        assert image.get_clim() == (30.0, 35.0)                                     # the range over all panels
        assert sorted(t.get_text() for t in ax.texts) == ["pruned", "x", "y", "z"]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["0", "0.3"] and panels[0].get_ylabel() == "gamma"
    assert not panels[0].patches and panels[1].patches[0].get_xy() == (0.5, 0.5)   # the framed cell (1, 1)
    with pytest.raises(ValueError, match=r"must be \(2, 2\)"):
        grid_heatmap(tmp_path / "h.png", [GridPanel(a[:1], labels[:1])], [0.1, 1.0], [0, 0.3])
