"""Learning curves: overlay the validation curves (and, optionally, the training loss) of any runs, including the
authors' IDSF code from its log, so that a side-by-side comparison is a picture.

    python -m experiments.curves --run runs/a --run runs/b --out curves.png
    python -m experiments.curves --run runs/ours --label "idsf-pyg --preset official" \\
        --official /path/to/official/run.log --label "official code" --metric recall@20 --losses --out parity.pdf

A run folder is read from its ``curves.csv`` (written after every validation, so a run still training or a pruned
trial can be plotted) or, for a folder written before that file existed, from ``results.json``. ``--official``
reads the log the authors' ``main.py`` writes with ``--verbose 1`` (``Epoch E [...]: train==[...], recall=[r@10,
r@20], ..., ndcg=[...]``, E counted from 0; ``--official-ks`` names its two cut-offs, default its parser's 10,20).
Labels go in the order of ``--run``/``--official`` options (default: the folder or file name). ``--csv`` also
writes the overlaid values as one table (epoch, then one column per curve).

While training, ``python -m experiments.train --tensorboard DIR`` writes the same curves as TensorBoard event
files (``tensorboard --logdir DIR``).
"""
from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from experiments.extras import require
from experiments.plot import PALETTE, pyplot, save, style
from idsf_pyg.cli import DEBUG_HELP, entry_point
from idsf_pyg.errors import ConfigError, DataFormatError
from idsf_pyg.io import atomic_open
from idsf_pyg.train.run_folder import CURVES, RESULTS

#: One line of the authors' log with a validation: epoch, then the named lists.
OFFICIAL_LINE = re.compile(r"Epoch (\d+) \[[^\]]*\]: train==\[([-\d.eE+na]+)=[^\]]*\], (.*)$")
OFFICIAL_LIST = re.compile(r"(recall|precision|hit|ndcg)=\[([^\]]*)\]")


class Curve:
    """One run's curve: its label and ``{epoch: {column: value}}`` with columns as in curves.csv (``loss``,
    ``loss_<part>``, ``val_<metric>@<k>``)."""

    def __init__(self, label: str, rows: Dict[int, Dict[str, float]], source: str):
        self.label, self.rows, self.source = label, rows, source

    def series(self, column: str) -> Tuple[List[int], List[float]]:
        epochs = [e for e in sorted(self.rows) if column in self.rows[e]]
        return epochs, [self.rows[e][column] for e in epochs]


def _number(text: str, where: str, column: str) -> Optional[float]:
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise DataFormatError(where, f"{text!r} is not a number", field=column) from None


def read_run(folder: Path, label: Optional[str] = None) -> Curve:
    """A run folder's curve, from curves.csv or else results.json."""
    label = label or folder.name
    path = folder / CURVES
    if path.is_file():
        rows: Dict[int, Dict[str, float]] = {}
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "epoch" not in reader.fieldnames:
                raise DataFormatError(path, "no 'epoch' column: not a curves.csv of idsf-pyg", line=1)
            for n, row in enumerate(reader, start=2):
                epoch = _number(row["epoch"], f"{path}, line {n}", "epoch")
                rows[int(epoch)] = {k: v for k, v in ((k, _number(v, f"{path}, line {n}", k)) for k, v in row.items()
                                                      if k != "epoch") if v is not None}
        return Curve(label, rows, str(path))
    results = folder / RESULTS
    if not results.is_file():
        raise ConfigError(f"{folder}: neither {CURVES} nor {RESULTS} (not a run folder, or no validation yet)", "--run")
    curve = json.loads(results.read_text()).get("val_curve")
    if not isinstance(curve, list):
        raise DataFormatError(results, "no val_curve list", field="val_curve")
    return Curve(label, {int(e["epoch"]): {k: float(v) for k, v in e.items() if k != "epoch"} for e in curve},
                 str(results))


def read_official_log(path: Path, label: Optional[str] = None, ks: Sequence[int] = (10, 20),
                      batches: Optional[int] = None) -> Curve:
    """The validations of the authors' ``main.py`` log (epochs shifted to count from 1, as here). Its loss is the
    sum over the epoch's batches: with ``batches`` it becomes the mean per batch (``loss``, as idsf-pyg logs it),
    else it stays ``loss_sum``."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file", "--official")
    rows: Dict[int, Dict[str, float]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        m = OFFICIAL_LINE.search(line)
        if m is None:
            continue
        total = _number(m.group(2), f"{path}, line {n}", "train")
        row = {"loss": total / batches} if batches else {"loss_sum": total}
        for name, values in OFFICIAL_LIST.findall(m.group(3)):
            parts = [v.strip() for v in values.split(",")]
            if len(parts) != len(ks):
                raise DataFormatError(path, f"{name} has {len(parts)} values, --official-ks names {len(ks)}", line=n)
            for k, v in zip(ks, parts):
                row[f"val_{name}@{k}"] = _number(v, f"{path}, line {n}", name)
        rows[int(m.group(1)) + 1] = row
    if not rows:
        raise DataFormatError(path, "no 'Epoch E [...]: train==[...], recall=[...]' line: not a log of the authors' "
                                    "main.py run with --verbose N")
    return Curve(label or path.stem, rows, str(path))


LOSS_PANELS = ("total", "parts")
#: Line styles of the loss parts, in the order the parts are first seen (the colour stays the run's).
PART_STYLES = ("-", "--", ":", "-.")


def plot_curves(curves: Sequence[Curve], metric: str, path: Path, losses: Optional[str] = None, title: str = ""):
    """The validation curves (a circle at each one's best), and with ``losses`` a second panel: ``"total"`` the
    training objective per batch, ``"parts"`` each logged part of it (``loss_<part>`` columns: BPR, contrastive,
    L2, ...) on a log axis, the parts told apart by line style. Returns the saved figure."""
    if losses not in (None, *LOSS_PANELS):
        raise ConfigError(f"{losses!r}: expected one of {', '.join(LOSS_PANELS)}", "--losses")
    plt = pyplot()
    column = f"val_{metric}"
    fig, axes = plt.subplots(2 if losses else 1, 1, figsize=(6.8, 6.4 if losses else 4.0), sharex=True, squeeze=False)
    ax = axes[0][0]
    drawn = 0
    for k, c in enumerate(curves):
        epochs, values = c.series(column)
        if not epochs:
            continue
        drawn += 1
        ax.plot(epochs, [100 * v for v in values], label=c.label, linewidth=1.4, markersize=3,
                linestyle="--" if c.source.endswith(".log") else "-", **style(k))
        best = max(range(len(values)), key=lambda i: (values[i], -i))
        ax.scatter([epochs[best]], [100 * values[best]], s=80, facecolors="none", edgecolors=PALETTE[k % len(PALETTE)])
    if not drawn:
        raise ConfigError(f"no curve has validation {metric!r}: the columns are "
                          f"{sorted({k for c in curves for r in c.rows.values() for k in r})}", "--metric")
    ax.set(ylabel=f"validation {metric} (%)", title=title or f"Validation {metric} per epoch (circle: best)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    if losses == "total":
        _total_losses(axes[1][0], curves)
    elif losses == "parts":
        _loss_parts(axes[1][0], curves)
    axes[-1][0].set_xlabel("epoch")
    save(fig, path)
    return fig


def _total_losses(ax, curves: Sequence[Curve]) -> None:
    for k, c in enumerate(curves):
        col = "loss" if any("loss" in r for r in c.rows.values()) else "loss_sum"
        epochs, values = c.series(col)
        if epochs:
            ax.plot(epochs, values, label=c.label + (" (sum over batches)" if col == "loss_sum" else ""),
                    linewidth=1.2, markersize=3, linestyle="--" if c.source.endswith(".log") else "-", **style(k))
    ax.set(ylabel="training loss per batch")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)


def _loss_parts(ax, curves: Sequence[Curve]) -> None:
    parts = list(dict.fromkeys(key for c in curves for r in c.rows.values() for key in r
                               if key.startswith("loss_") and key != "loss_sum"))
    if not parts:
        raise ConfigError("no curve has logged loss parts (loss_<part> columns): the official log has none; "
                          "use --losses total", "--losses")
    for k, c in enumerate(curves):
        for j, part in enumerate(parts):
            epochs, values = c.series(part)
            if epochs and all(v > 0 for v in values):   # a part that is 0 throughout (β = 0) has no log-axis line
                ax.plot(epochs, values, label=f"{c.label}: {part[5:]}", linewidth=1.2, marker=None,
                        linestyle=PART_STYLES[j % len(PART_STYLES)], color=PALETTE[k % len(PALETTE)])
    ax.set(ylabel="loss part per batch", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=7, ncol=2)


def write_csv(curves: Sequence[Curve], metric: str, path: Path) -> None:
    column = f"val_{metric}"
    epochs = sorted({e for c in curves for e in c.series(column)[0]})
    with atomic_open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", *[c.label for c in curves]])
        for e in epochs:
            w.writerow([e, *[(c.rows.get(e, {}).get(column, "")) for c in curves]])


class TensorBoardCurves:
    """An ``on_validation`` callback (:func:`idsf_pyg.train.run`) that writes each validation's losses, metrics and
    epoch time as TensorBoard scalars under ``log_dir`` (needs the ``tensorboard`` package)."""

    def __init__(self, log_dir: Path):
        require("tensorboard", "--tensorboard")
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def __call__(self, entry: Dict[str, Any], final: bool) -> None:
        step = int(entry["epoch"])
        for key, value in entry.items():
            if key == "epoch" or not isinstance(value, (int, float)):
                continue
            tag = (f"val/{key[4:]}" if key.startswith("val_") else f"loss/{key[5:] or 'total'}"
                   if key.startswith("loss") else f"time/{key}")
            self.writer.add_scalar(tag, float(value), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def main(argv=None) -> List[Curve]:
    p = argparse.ArgumentParser(prog="python -m experiments.curves", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # Both options append to one list, so that the --label options line up with the sources in their order.
    p.add_argument("--run", dest="sources", action="append", default=[], type=lambda v: ("run", Path(v)),
                   metavar="DIR", help="a run folder (repeatable)")
    p.add_argument("--official", dest="sources", action="append", type=lambda v: ("official", Path(v)),
                   metavar="LOG", help="a log of the authors' main.py (repeatable)")
    p.add_argument("--label", action="append", default=[], help="one label per --run/--official, in their order")
    p.add_argument("--metric", default="recall@20", help="validation metric to draw (default: %(default)s)")
    p.add_argument("--official-ks", default="10,20", help="the two cut-offs of the official log's lists (default: "
                                                           "%(default)s, its parser's --Ks)")
    p.add_argument("--official-batches", type=int, help="batches per epoch of the official runs: their logged loss "
                                                         "(a sum) is divided by it (ML-100k: 79)")
    p.add_argument("--losses", nargs="?", const="total", choices=LOSS_PANELS,
                   help="a second panel: the training loss per batch (--losses, or --losses total), or each logged "
                        "part of it, BPR, contrastive, L2, ... (--losses parts)")
    p.add_argument("--title", default="")
    p.add_argument("--out", type=Path, required=True, help="the figure: .png, .pdf or .svg")
    p.add_argument("--csv", type=Path, help="also write the overlaid validation values as a CSV table")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = p.parse_args(argv)
    if not args.sources:
        raise ConfigError("give at least one --run or --official", "--run")
    if args.label and len(args.label) != len(args.sources):
        raise ConfigError(f"{len(args.label)} labels for {len(args.sources)} curves: give one per --run/--official, "
                          "in their order", "--label")
    try:
        ks = [int(k) for k in args.official_ks.split(",")]
    except ValueError:
        raise ConfigError(f"{args.official_ks!r}: expected two integers, e.g. 10,20", "--official-ks") from None
    curves = []
    for n, (kind, path) in enumerate(args.sources):
        label = args.label[n] if args.label else None
        curves.append(read_run(path, label) if kind == "run" else
                      read_official_log(path, label, ks, args.official_batches))
    plot_curves(curves, args.metric, args.out, args.losses, args.title)
    if args.csv:
        write_csv(curves, args.metric, args.csv)
    for c in curves:
        epochs, values = c.series(f"val_{args.metric}")
        if epochs:
            best = max(range(len(values)), key=lambda i: (values[i], -i))
            print(f"{c.label}: {len(epochs)} validations, best {args.metric} {100 * values[best]:.2f} at epoch "
                  f"{epochs[best]} ({c.source})")
    print(f"wrote {args.out}" + (f" and {args.csv}" if args.csv else ""))
    return curves


if __name__ == "__main__":
    entry_point(main)
