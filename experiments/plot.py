"""The experiments' figures, drawn with matplotlib (the ``[experiments]`` extra): lines with error bars, 2-D maps of
embeddings, heat maps. The file's suffix picks the format (``.png``, ``.pdf`` for a paper, ``.svg``).

    line_plot("gamma.pdf", [Series("Recall@20", [0.1, 0.3, 1.0], [7.1, 7.4, 7.0], yerr=[0.1, 0.2, 0.1])],
              title="IDSF on Baby vs γ", xlabel="γ", ylabel="%")

Colours are the Okabe–Ito palette (distinguishable with the common colour-vision deficiencies), paired with
marker shapes so that series also differ in grey print. Each function returns the matplotlib ``Figure`` it saved.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from experiments.extras import require
from idsf_pyg.errors import ConfigError

FORMATS = ("png", "pdf", "svg")
#: Okabe & Ito (2008), "Color Universal Design": blue, vermillion, bluish green, reddish purple, orange, sky blue,
#: yellow, black.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "D", "^", "v", "<", ">", "P", "X", "*")


@dataclass
class Series:
    """One line: ``x``/``y`` values and optional symmetric error bars ``yerr`` (e.g. the std over seeds)."""
    label: str
    x: Sequence[float]
    y: Sequence[float]
    yerr: Optional[Sequence[float]] = None


def add_format_option(parser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="png", help="figure file format (default: %(default)s)")


def style(k: int) -> dict:
    """Colour and marker of the ``k``-th series or group."""
    return {"color": PALETTE[k % len(PALETTE)], "marker": MARKERS[(k // len(PALETTE) + k) % len(MARKERS)]}


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (no display needed), or a one-line error."""
    matplotlib = require("matplotlib", "drawing figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, path) -> None:
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ConfigError(f"{path}: a figure is written as one of {', '.join(FORMATS)}, not {fmt or 'no suffix'!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=150, bbox_inches="tight")
    pyplot().close(fig)


def line_plot(path, series: Sequence[Series], title: str = "", xlabel: str = "", ylabel: str = "",
              logx: bool = False, logy: bool = False, legend: str = "best",
              xticklabels: Optional[Sequence[str]] = None):
    """``series`` as lines with markers and error bars on shared axes (``legend``: a matplotlib location;
    ``xticklabels``: one label per x value of the first series, for evenly spaced categories)."""
    if not series or not any(len(s.x) for s in series):
        raise ValueError("line_plot needs at least one series with points")
    for s in series:
        if len(s.x) != len(s.y) or (s.yerr is not None and len(s.yerr) != len(s.y)):
            raise ValueError(f"series {s.label!r}: x, y and yerr must have equal lengths")
        if (logx and min(s.x) <= 0) or (logy and min(s.y) <= 0):
            raise ValueError(f"series {s.label!r}: a log axis needs positive values")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for k, s in enumerate(series):
        ax.errorbar(s.x, s.y, yerr=s.yerr, label=s.label, capsize=3, linewidth=1.5, markersize=5, **style(k))
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if logy else "linear")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if xticklabels is not None:
        ax.set_xticks(list(series[0].x), list(xticklabels))
    ax.grid(alpha=0.3)
    ax.legend(loc=legend, frameon=False)
    save(fig, path)
    return fig


def scatter_plot(path, points: np.ndarray, groups: Sequence[int], title: str = "", legend: Sequence[str] = ()):
    """Points ``[n, 2]`` coloured (and shaped) by ``groups`` on axes without ticks (a 2-D embedding's coordinates
    have no units); ``legend`` names the groups in order."""
    points, groups = np.asarray(points, dtype=float), np.asarray(groups)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(groups):
        raise ValueError(f"points must be [n, 2] with one group each, got {points.shape} and {len(groups)} groups")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for k, g in enumerate(sorted(set(groups.tolist()))):
        pts = points[groups == g]
        ax.scatter(pts[:, 0], pts[:, 1], s=28, edgecolors="white", linewidths=0.5,
                   label=legend[k] if k < len(legend) else str(g), **style(int(g)))
    ax.set(title=title, xticks=[], yticks=[])
    if legend:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
    save(fig, path)
    return fig


def heatmap(path, matrix: np.ndarray, title: str = "", boundaries: Sequence[int] = ()):
    """A square matrix with values in [0, 1], white (0) to dark blue (1); ``boundaries`` (row indices) are drawn
    as thin red lines between blocks (e.g. the items of one user), as in the paper's Figures 3 and 4."""
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"heatmap needs a square matrix, got shape {matrix.shape}")
    if matrix.size and (matrix.min() < 0 or matrix.max() > 1):
        raise ValueError("heatmap values must be in [0, 1]")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 4.4))
    im = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    for b in boundaries:
        ax.axhline(b - 0.5, color="#D55E00", linewidth=0.6)
        ax.axvline(b - 0.5, color="#D55E00", linewidth=0.6)
    ax.set(title=title, xticks=[], yticks=[])
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    save(fig, path)
    return fig


@dataclass
class GridPanel:
    """One panel of :func:`grid_heatmap`: ``values[i][j]`` for row value ``i`` and column value ``j`` (NaN: drawn
    grey, no colour), ``labels`` the text written in each cell, ``title`` what the panel holds fixed, ``highlight``
    a cell ``(i, j)`` framed (e.g. the selected configuration)."""
    values: np.ndarray
    labels: Sequence[Sequence[str]]
    title: str = ""
    highlight: Optional[Tuple[int, int]] = None


def grid_heatmap(path, panels: Sequence[GridPanel], row_values: Sequence, col_values: Sequence,
                 row_label: str = "", col_label: str = "", colorbar_label: str = ""):
    """Panels of a grid of values (e.g. a validation surface over two hyper-parameters, one panel per value of a
    third), side by side on one colour scale, each cell labelled; cells without a value are grey."""
    shape = (len(row_values), len(col_values))
    if not panels:
        raise ValueError("grid_heatmap needs at least one panel")
    for p in panels:
        if np.shape(p.values) != shape or len(p.labels) != shape[0] or any(len(r) != shape[1] for r in p.labels):
            raise ValueError(f"panel {p.title!r}: values and labels must be {shape}, got {np.shape(p.values)}")
    finite = np.concatenate([np.asarray(p.values, dtype=float).ravel() for p in panels])
    finite = finite[np.isfinite(finite)]
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    middle = (vmin + vmax) / 2
    plt = pyplot()
    width = 1.3 * shape[1] + 1.0
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels) + 1.5, 0.9 * shape[0] + 1.5),
                             squeeze=False, sharey=True)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    for ax, p in zip(axes[0], panels):
        values = np.asarray(p.values, dtype=float)
        im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", aspect="auto")
        ax.set_xticks(range(shape[1]), [str(v) for v in col_values])
        ax.set_yticks(range(shape[0]), [str(v) for v in row_values])
        ax.set(xlabel=col_label, title=p.title)
        for i in range(shape[0]):
            for j in range(shape[1]):
                dark = np.isfinite(values[i, j]) and values[i, j] < middle
                ax.text(j, i, p.labels[i][j], ha="center", va="center", fontsize=8, color="white" if dark else "black")
        if p.highlight is not None:
            i, j = p.highlight
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor=PALETTE[1], linewidth=2.5))
    axes[0][0].set_ylabel(row_label)
    fig.colorbar(im, ax=list(axes[0]), label=colorbar_label)
    save(fig, path)
    return fig
