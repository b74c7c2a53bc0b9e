"""Line plots with error bars as PNG files, from numpy and zlib only.

The project's package list (torch, torch-geometric, numpy, ...) has no plotting library, and the figures
the experiments need are simple: lines with markers and error bars, linear or log axes, a legend, a
title and axis labels. This module rasterizes them itself; text uses a 5x7 bitmap font (capitals,
digits and common signs: lower-case letters are drawn as capitals).

    line_plot("gamma.png", [Series("Recall@20", [0.1, 0.3, 1.0], [7.1, 7.4, 7.0], yerr=[0.1, 0.2, 0.1])],
              title="IDSF on Baby vs gamma", xlabel="gamma", ylabel="%")
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from idsf_pyg.io import write_with

# 5x7 glyphs, one hex byte per row (top to bottom), bit 4 = leftmost column.
_FONT = {
    "0": "0E11131519110E", "1": "040C040404040E", "2": "0E11010204081F",
    "3": "1F02040201110E", "4": "02060A121F0202", "5": "1F101E0101110E",
    "6": "0608101E11110E", "7": "1F010204080808", "8": "0E11110E11110E", "9": "0E11110F01020C",
    "A": "0E1111111F1111", "B": "1E11111E11111E", "C": "0E11101010110E", "D": "1C12111111121C",
    "E": "1F10101E10101F", "F": "1F10101E101010", "G": "0E11101711110F",
    "H": "1111111F111111", "I": "0E04040404040E", "J": "0702020202120C", "K": "11121418141211",
    "L": "1010101010101F", "M": "111B1515111111", "N": "11111915131111", "O": "0E11111111110E",
    "P": "1E11111E101010", "Q": "0E11111115120D", "R": "1E11111E141211", "S": "0F10100E01011E",
    "T": "1F040404040404", "U": "1111111111110E", "V": "11111111110A04",
    "W": "1111111515150A", "X": "11110A040A1111", "Y": "1111110A040404", "Z": "1F01020408101F",
    " ": "00000000000000", ".": "00000000000C0C", ",": "000000000C0408", "-": "0000001F000000",
    "+": "0004041F040400", "/": "00010204081000", "(": "02040808080402", ")": "08040202020408",
    "%": "18190204081303", "@": "0E11010D15150E", ":": "000C0C000C0C00", "=": "00001F001F0000",
    "_": "0000000000001F", "^": "040A1100000000", "*": "0004150E150400", "<": "02040810080402",
    ">": "08040201020408", "[": "0E08080808080E", "]": "0E02020202020E", "?": "0E110102040004",
    "'": "04040800000000", "|": "04040404040404", "#": "0A0A1F0A1F0A0A", "~": "00000815020000",
}
_GLYPHS = {ch: np.array([[(int(code[2 * r:2 * r + 2], 16) >> (4 - c)) & 1 for c in range(5)] for r in range(7)],
                        dtype=bool) for ch, code in _FONT.items()}
#: Line colours (RGB), in the order series are given.
COLORS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207),
          (140, 86, 75), (227, 119, 194), (188, 189, 34), (127, 127, 127))


@dataclass
class Series:
    """One line: ``x``/``y`` values and optional symmetric error bars ``yerr`` (e.g. the std over seeds)."""
    label: str
    x: Sequence[float]
    y: Sequence[float]
    yerr: Optional[Sequence[float]] = None


class Canvas:
    """An RGB raster with the few drawing operations a line plot needs."""

    def __init__(self, width: int, height: int, scale: int = 2):
        self.pixels = np.full((height, width, 3), 255, dtype=np.uint8)
        self.scale = scale  # text magnification

    def dot(self, x: int, y: int, color, size: int = 1) -> None:
        h, w, _ = self.pixels.shape
        r = size // 2
        x0, x1, y0, y1 = max(0, x - r), min(w, x - r + size), max(0, y - r), min(h, y - r + size)
        if x0 < x1 and y0 < y1:
            self.pixels[y0:y1, x0:x1] = color

    def line(self, x0: float, y0: float, x1: float, y1: float, color, width: int = 1) -> None:
        steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        for t in np.linspace(0.0, 1.0, steps + 1):
            self.dot(int(round(x0 + (x1 - x0) * t)), int(round(y0 + (y1 - y0) * t)), color, width)

    def text(self, x: int, y: int, s: str, color=(0, 0, 0), align: str = "left") -> None:
        s = s.upper()
        k = self.scale
        width = self.text_width(s)
        x = x - width if align == "right" else x - width // 2 if align == "center" else x
        for n, ch in enumerate(s):
            glyph = _GLYPHS.get(ch, _GLYPHS["?"])
            for r, c in zip(*np.nonzero(glyph)):
                px, py = x + n * 6 * k + c * k, y + r * k
                h, w, _ = self.pixels.shape
                if 0 <= px < w - k + 1 and 0 <= py < h - k + 1:
                    self.pixels[py:py + k, px:px + k] = color

    def text_width(self, s: str) -> int:
        return max(0, len(s) * 6 * self.scale - self.scale)

    def png(self) -> bytes:
        h, w, _ = self.pixels.shape
        raw = b"".join(b"\x00" + self.pixels[r].tobytes() for r in range(h))

        def chunk(tag: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def nice_ticks(lo: float, hi: float, count: int = 7) -> List[float]:
    """Round tick values covering ``[lo, hi]`` (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    return [round(first + i * step, 12) for i in range(int(math.ceil((hi - first) / step)) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        exp = int(math.floor(math.log10(abs(v))))
        mant = v / 10 ** exp
        return (f"{mant:g}E{exp}" if abs(mant - round(mant)) > 1e-9 else f"{int(round(mant))}E{exp}")
    return f"{v:g}"


def line_plot(path, series: Sequence[Series], title: str = "", xlabel: str = "", ylabel: str = "",
              logx: bool = False, logy: bool = False, size: Tuple[int, int] = (900, 560),
              legend: str = "upper right") -> None:
    """Draws ``series`` (lines, square markers, error bars) on shared axes and writes a PNG to ``path``;
    ``legend``: ``"upper right"``, ``"upper left"``, ``"lower right"`` or ``"lower left"``."""
    if legend not in ("upper right", "upper left", "lower right", "lower left"):
        raise ValueError(f"legend must be upper/lower right/left, got {legend!r}")
    if not series or not any(len(s.x) for s in series):
        raise ValueError("line_plot needs at least one series with points")
    for s in series:
        if len(s.x) != len(s.y) or (s.yerr is not None and len(s.yerr) != len(s.y)):
            raise ValueError(f"series {s.label!r}: x, y (and yerr) must have equal lengths")
        for v, what, log in [(v, "x", logx) for v in s.x] + [(v, "y", logy) for v in s.y]:
            if not math.isfinite(v) or (log and v <= 0):
                raise ValueError(f"series {s.label!r}: {what} value {v} cannot be drawn"
                                 + (" on a log axis" if log else ""))
    fx = (lambda v: math.log10(v)) if logx else float
    fy = (lambda v: math.log10(v)) if logy else float
    lows = [y - (e if s.yerr is not None else 0) for s in series for y, e in zip(s.y, s.yerr or [0] * len(s.y))]
    highs = [y + (e if s.yerr is not None else 0) for s in series for y, e in zip(s.y, s.yerr or [0] * len(s.y))]
    xs = [fx(v) for s in series for v in s.x]
    ys = [fy(v) for v in (lows if not logy else [max(v, 1e-300) for v in lows]) + highs]
    x_lo, x_hi, y_lo, y_hi = min(xs), max(xs), min(ys), max(ys)
    pad_x = (x_hi - x_lo) * 0.05 or 0.5
    pad_y = (y_hi - y_lo) * 0.08 or (abs(y_hi) * 0.1 or 0.5)
    x_lo, x_hi, y_lo, y_hi = x_lo - pad_x, x_hi + pad_x, y_lo - pad_y, y_hi + pad_y

    w, h = size
    canvas = Canvas(w, h)
    left, right, top, bottom = 110, w - 20, 60, h - 70
    px = lambda v: left + (fx(v) - x_lo) / (x_hi - x_lo) * (right - left)  # noqa: E731
    py = lambda v: bottom - (fy(v) - y_lo) / (y_hi - y_lo) * (bottom - top)  # noqa: E731

    grey, black = (225, 225, 225), (0, 0, 0)
    if logx:
        xt = [10.0 ** e for e in range(math.ceil(x_lo), math.floor(x_hi) + 1)]
    else:
        xt = [v for v in nice_ticks(x_lo + pad_x, x_hi - pad_x) if x_lo <= v <= x_hi]
    if logy:
        yt = [10.0 ** e for e in range(math.ceil(y_lo), math.floor(y_hi) + 1)]
    else:
        yt = [v for v in nice_ticks(y_lo, y_hi) if y_lo <= v <= y_hi]
    for v in xt:
        canvas.line(px(v), top, px(v), bottom, grey)
        canvas.text(int(px(v)), bottom + 8, _fmt(v), align="center")
    for v in yt:
        canvas.line(left, py(v), right, py(v), grey)
        canvas.text(left - 8, int(py(v)) - 7, _fmt(v), align="right")
    for a, b, c, d in ((left, top, right, top), (left, bottom, right, bottom), (left, top, left, bottom),
                       (right, top, right, bottom)):
        canvas.line(a, b, c, d, black)
    canvas.text(w // 2, 14, title, align="center")
    canvas.text((left + right) // 2, h - 32, xlabel, align="center")
    canvas.text(left, top - 24, ylabel)

    for n, s in enumerate(series):
        color = COLORS[n % len(COLORS)]
        pts = [(px(x), py(y)) for x, y in zip(s.x, s.y)]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            canvas.line(x0, y0, x1, y1, color, width=2)
        for k, (x, y) in enumerate(pts):
            if s.yerr is not None and s.yerr[k] > 0:
                lo, hi = py(max(s.y[k] - s.yerr[k], 1e-300) if logy else s.y[k] - s.yerr[k]), py(s.y[k] + s.yerr[k])
                canvas.line(x, lo, x, hi, color)
                canvas.line(x - 5, lo, x + 5, lo, color)
                canvas.line(x - 5, hi, x + 5, hi, color)
            canvas.dot(int(round(x)), int(round(y)), color, size=7)
        # legend, one line per series
        ly = (top + 10 if legend.startswith("upper") else bottom - 10 - 22 * len(series)) + n * 22
        lx = (right - 20 - max(canvas.text_width(t.label.upper()) for t in series) - 40
              if legend.endswith("right") else left + 20)
        canvas.line(lx, ly + 7, lx + 28, ly + 7, color, width=2)
        canvas.dot(lx + 14, ly + 7, color, size=7)
        canvas.text(lx + 36, ly, s.label)
    write_with(path, lambda f: f.write(canvas.png()))


def _frame(canvas: Canvas, left: int, top: int, right: int, bottom: int) -> None:
    for a, b, c, d in ((left, top, right, top), (left, bottom, right, bottom), (left, top, left, bottom),
                       (right, top, right, bottom)):
        canvas.line(a, b, c, d, (0, 0, 0))


def scatter_plot(path, points: np.ndarray, groups: Sequence[int], title: str = "", legend: Sequence[str] = (),
                 size: Tuple[int, int] = (700, 640)) -> None:
    """Points ``[n, 2]`` as dots coloured by ``groups`` (ints; colour ``COLORS[g % len(COLORS)]``) on axes without
    ticks (a 2-D embedding's coordinates have no units); ``legend`` names the groups in order."""
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(groups) or len(points) == 0:
        raise ValueError(f"scatter_plot needs points [n, 2] and n groups, got {points.shape} and {len(groups)}")
    if not np.isfinite(points).all():
        raise ValueError("scatter_plot: points must be finite")
    w, h = size
    canvas = Canvas(w, h)
    left, right, top, bottom = 30, w - 30, 50, h - 30 - 22 * ((len(legend) + 4) // 5)
    lo, hi = points.min(0), points.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    xy = (points - lo) / span
    _frame(canvas, left, top, right, bottom)
    canvas.text(w // 2, 14, title, align="center")
    for (x, y), g in zip(xy, groups):
        px = left + 12 + x * (right - left - 24)
        py = bottom - 12 - y * (bottom - top - 24)
        canvas.dot(int(round(px)), int(round(py)), COLORS[int(g) % len(COLORS)], size=9)
    for n, name in enumerate(legend):   # five entries per line under the axes
        lx, ly = left + (n % 5) * ((right - left) // 5), bottom + 10 + 22 * (n // 5)
        canvas.dot(lx + 6, ly + 7, COLORS[n % len(COLORS)], size=9)
        canvas.text(lx + 16, ly, name[:10])
    write_with(path, lambda f: f.write(canvas.png()))


def heatmap(path, matrix: np.ndarray, title: str = "", boundaries: Sequence[int] = (), cell: int = 0,
            size: int = 640) -> None:
    """A square matrix with values in [0, 1] as a white (0) to dark blue (1) raster; ``boundaries`` (row
    indices) are drawn as thin red lines between blocks (e.g. the items of one user)."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"heatmap needs a non-empty square matrix, got shape {m.shape}")
    if not np.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise ValueError("heatmap: values must be finite and in [0, 1]")
    n = m.shape[0]
    cell = cell or max(1, size // n)
    pad_top, pad = 50, 20
    width = max(n * cell + 2 * pad, Canvas(1, 1).text_width(title) + 2 * pad)   # room for the title
    canvas = Canvas(width, n * cell + pad_top + pad)
    dark = np.array((8, 48, 107), dtype=float)
    rgb = (255.0 - m[..., None] * (255.0 - dark)).round().astype(np.uint8)
    canvas.pixels[pad_top:pad_top + n * cell, pad:pad + n * cell] = np.repeat(np.repeat(rgb, cell, 0), cell, 1)
    for b in boundaries:
        if 0 < b < n:
            canvas.line(pad + b * cell, pad_top, pad + b * cell, pad_top + n * cell - 1, (214, 39, 40))
            canvas.line(pad, pad_top + b * cell, pad + n * cell - 1, pad_top + b * cell, (214, 39, 40))
    _frame(canvas, pad - 1, pad_top - 1, pad + n * cell, pad_top + n * cell)
    canvas.text(canvas.pixels.shape[1] // 2, 14, title, align="center")
    write_with(path, lambda f: f.write(canvas.png()))
