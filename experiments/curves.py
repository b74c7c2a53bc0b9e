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
writes the overlaid values as one table (epoch, then one column per curve). ``--table FILE.md`` writes per curve
the validation metric after ``--table-epochs``, the best validation (its epoch), the epochs trained (where a
stopping rule ended the run), the test metric at that epoch (a
finished run's results.json; the authors' log's test line after that validation) and the seconds per epoch;
``--group NAME=LABEL,...`` adds the mean of some curves (e.g. the seeds of one code), and with several groups, how
far each later group's mean curve is from the first's (epochs within ±0.5 and ±1 points, the mean and largest
difference): the first group is the reference.

    python -m experiments.curves --official off0.log --label off0 --run ours0 --label ours0 ... \\
        --group official=off0,off1,off2 --group ours=ours0,ours1,ours2 --table parity.md --out parity.png

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

#: One epoch's line of the authors' log: epoch, training seconds, the summed loss, then (when the epoch was
#: validated) the named lists.
OFFICIAL_LINE = re.compile(r"Epoch (\d+) \[([\d.]+)s[^\]]*\]: train==\[([-\d.eE+na]+)=[^\]]*\](?:, (.*))?$")
OFFICIAL_LIST = re.compile(r"(recall|precision|hit|ndcg)=\[([^\]]*)\]")
#: The test the authors' code runs right after a validation that improved on the best so far.
OFFICIAL_TEST = re.compile(r"Test_Recall@(\d+): ([-\d.eE+na]+)")
#: How the authors' code ends a run: its early stop, or the final test metrics it logs after the last epoch.
OFFICIAL_END = re.compile(r"#####Early stop! #####|\{'precision': array\(")


class Curve:
    """One run's curve: its label and ``{epoch: {column: value}}`` with columns as in curves.csv (``seconds``,
    ``loss``, ``loss_<part>``, ``val_<metric>@<k>``); ``test`` the test metrics at the best validation epoch when the
    source has them (a finished run's results.json; for the authors' log, the ``test_<metric>`` its code logs
    after each validation that improved). ``finished``: the run has ended (results.json written; the log's early
    stop or final test line); ``epochs``: how many epochs it trained (while ``finished`` is
    false, the last epoch its source holds: a run folder's last validated one, the log's last one)."""

    def __init__(self, label: str, rows: Dict[int, Dict[str, float]], source: str,
                 test: Optional[Dict[str, float]] = None, finished: bool = False, epochs: Optional[int] = None):
        self.label, self.rows, self.source, self.test = label, rows, source, test
        self.finished = finished
        self.epochs = epochs if epochs is not None else max(rows, default=0)

    def series(self, column: str) -> Tuple[List[int], List[float]]:
        epochs = [e for e in sorted(self.rows) if column in self.rows[e]]
        return epochs, [self.rows[e][column] for e in epochs]

    def best(self, metric: str) -> Tuple[int, float]:
        """The best validation epoch and value: the first epoch with the highest value (a later equal value is no
        improvement, in idsf-pyg as in the authors' code)."""
        epochs, values = self.series(f"val_{metric}")
        if not epochs:
            raise ConfigError(f"{self.label}: no validation {metric!r}", "--metric")
        i = max(range(len(values)), key=lambda n: (values[n], -n))
        return epochs[i], values[i]

    def test_at_best(self, metric: str) -> Optional[float]:
        """The test ``metric`` of the best validation epoch, or ``None`` when the source does not have it."""
        if self.test is not None:
            return self.test.get(metric)
        return self.rows[self.best(metric)[0]].get(f"test_{metric}")

    def seconds_per_epoch(self) -> Optional[float]:
        _, seconds = self.series("seconds")
        return sum(seconds) / len(seconds) if seconds else None


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
        return Curve(label, rows, str(path), *_finished(folder))
    results = folder / RESULTS
    if not results.is_file():
        raise ConfigError(f"{folder}: neither {CURVES} nor {RESULTS} (not a run folder, or no validation yet)", "--run")
    curve = json.loads(results.read_text()).get("val_curve")
    if not isinstance(curve, list):
        raise DataFormatError(results, "no val_curve list", field="val_curve")
    return Curve(label, {int(e["epoch"]): {k: float(v) for k, v in e.items() if k != "epoch"} for e in curve},
                 str(results), *_finished(folder))


def _finished(folder: Path) -> Tuple[Optional[Dict[str, float]], bool, Optional[int]]:
    """``(test metrics, True, epochs trained)`` for a finished run, read from its results.json (test read once,
    at its best validation epoch); ``(None, False, None)`` while it trains."""
    path = folder / RESULTS
    if not path.is_file():
        return None, False, None
    results = json.loads(path.read_text())
    test = results.get("test")
    if not isinstance(test, dict):
        raise DataFormatError(path, "no test metrics", field="test")
    epochs = results.get("epochs_run")
    if isinstance(epochs, bool) or not isinstance(epochs, int):
        raise DataFormatError(path, "no epochs_run count", field="epochs_run")
    return {k: float(v) for k, v in test.items()}, True, epochs


def read_official_log(path: Path, label: Optional[str] = None, ks: Sequence[int] = (10, 20),
                      batches: Optional[int] = None) -> Curve:
    """The epochs of the authors' ``main.py`` log (shifted to count from 1, as here): training seconds and loss of
    every epoch, the validation lists of the validated ones, and the test Recall its code logs after a validation
    that improved (``test_recall@K``, on that epoch). Its loss is the sum over the epoch's batches: with ``batches``
    it becomes the mean per batch (``loss``, as idsf-pyg logs it), else it stays ``loss_sum``."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file", "--official")
    rows: Dict[int, Dict[str, float]] = {}
    last: Optional[int] = None
    ended = False
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        ended = ended or OFFICIAL_END.search(line) is not None
        t = OFFICIAL_TEST.search(line)
        if t is not None:
            if last is None or not any(k.startswith("val_") for k in rows[last]):
                raise DataFormatError(path, "a Test_Recall line that follows no validated epoch", line=n)
            rows[last][f"test_recall@{t.group(1)}"] = _number(t.group(2), f"{path}, line {n}", "Test_Recall")
            continue
        m = OFFICIAL_LINE.search(line)
        if m is None:
            continue
        total = _number(m.group(3), f"{path}, line {n}", "train")
        row = {"seconds": _number(m.group(2), f"{path}, line {n}", "seconds"),
               **({"loss": total / batches} if batches else {"loss_sum": total})}
        for name, values in OFFICIAL_LIST.findall(m.group(4) or ""):
            parts = [v.strip() for v in values.split(",")]
            if len(parts) != len(ks):
                raise DataFormatError(path, f"{name} has {len(parts)} values, --official-ks names {len(ks)}", line=n)
            for k, v in zip(ks, parts):
                row[f"val_{name}@{k}"] = _number(v, f"{path}, line {n}", name)
        last = int(m.group(1)) + 1
        rows[last] = row
    if not any(k.startswith("val_") for r in rows.values() for k in r):
        raise DataFormatError(path, "no 'Epoch E [...]: train==[...], recall=[...]' line: not a log of the authors' "
                                    "main.py run with --verbose N")
    return Curve(label or path.stem, rows, str(path), finished=ended)


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


def _pct(v: Optional[float]) -> str:
    return "" if v is None else f"{100 * v:.2f}"


def curve_table(curves: Sequence[Curve], metric: str, epochs: Sequence[int]) -> str:
    """A markdown row per curve: validation ``metric`` (%) after each of ``epochs``, the best validation (its
    epoch), the epochs trained (where a stopping rule ended the run; "so far" while it has not ended), the test
    ``metric`` at the best validation epoch, and the mean training seconds per epoch."""
    column = f"val_{metric}"
    lines = [f"| validation {metric} (%) after epoch | " + " | ".join(map(str, epochs))
             + f" | best validation (epoch) | epochs trained | test {metric} at best validation | s / epoch |",
             "|---" * (len(epochs) + 5) + "|"]
    for c in curves:
        best_epoch, best = c.best(metric)
        secs = c.seconds_per_epoch()
        lines.append(f"| {c.label} | " + " | ".join(_pct(c.rows.get(e, {}).get(column)) for e in epochs)
                     + f" | {_pct(best)} ({best_epoch}) | {c.epochs}{'' if c.finished else ' so far'}"
                     + f" | {_pct(c.test_at_best(metric))} | "
                     + ("" if secs is None else f"{secs:.0f}") + " |")
    return "\n".join(lines) + "\n"


def mean_curve(curves: Sequence[Curve], metric: str) -> Dict[int, float]:
    """The mean validation ``metric`` over ``curves`` at each epoch all of them validated."""
    column = f"val_{metric}"
    common = set.intersection(*(set(c.series(column)[0]) for c in curves))
    return {e: sum(c.rows[e][column] for c in curves) / len(curves) for e in sorted(common)}


def agreement(a: Sequence[Curve], b: Sequence[Curve], metric: str) -> Dict[str, Any]:
    """How far group ``b``'s mean validation curve is from group ``a``'s (points of %, over the epochs both
    validated)."""
    ma, mb = mean_curve(a, metric), mean_curve(b, metric)
    epochs = [e for e in ma if e in mb]
    if not epochs:
        raise ConfigError("the two groups have no validated epoch in common", "--group")
    diff = [100 * (mb[e] - ma[e]) for e in epochs]
    return {"epochs": len(epochs), "within_0.5": sum(abs(d) <= 0.5 for d in diff),
            "within_1": sum(abs(d) <= 1.0 for d in diff), "mean_difference": sum(diff) / len(diff),
            "largest_difference": max(diff, key=abs)}


def _groups(specs: Sequence[str], curves: Sequence[Curve]) -> List[Tuple[str, List[Curve]]]:
    by_label = {c.label: c for c in curves}
    groups = []
    for spec in specs:
        name, sep, labels = spec.partition("=")
        if not sep or not name or not labels:
            raise ConfigError(f"{spec!r}: expected NAME=LABEL,LABEL,...", "--group")
        missing = [lab for lab in labels.split(",") if lab not in by_label]
        if missing:
            raise ConfigError(f"{spec!r}: no curve labelled {', '.join(map(repr, missing))} (the labels are "
                              f"{', '.join(map(repr, by_label))})", "--group")
        groups.append((name, [by_label[lab] for lab in labels.split(",")]))
    return groups


def group_summary(groups: Sequence[Tuple[str, List[Curve]]], metric: str, epochs: Sequence[int]) -> str:
    """The mean row of each group (validation at ``epochs``, test at best validation as mean ± std) and how far each
    later group's mean curve is from the first's (the reference)."""
    from experiments.grid import fmt, mean_std
    lines = ["| mean over the group | " + " | ".join(map(str, epochs)) + f" | test {metric} at best validation |",
             "|---" * (len(epochs) + 2) + "|"]
    for name, members in groups:
        mean = mean_curve(members, metric)
        tests = [c.test_at_best(metric) for c in members]
        test = fmt(*mean_std([100 * t for t in tests]), digits=2) if all(t is not None for t in tests) else ""
        lines.append(f"| {name} ({len(members)}) | " + " | ".join(_pct(mean.get(e)) for e in epochs) + f" | {test} |")
    text = "\n".join(lines) + "\n"
    (na, a), later = groups[0], groups[1:]
    if later:
        text += "\n"
    for nb, b in later:
        g = agreement(a, b, metric)
        text += (f"{nb} − {na}, mean validation {metric} curves: within ±0.5 points at {g['within_0.5']} and within "
                 f"±1 at {g['within_1']} of {g['epochs']} epochs; mean difference {g['mean_difference']:+.2f}, "
                 f"largest {g['largest_difference']:+.2f}.\n")
    return text


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
    p.add_argument("--table", type=Path, help="also write a markdown table: per curve the validation metric after "
                                              "--table-epochs, the best validation (epoch), the epochs trained, the test metric there, "
                                              "seconds per epoch; then the --group means")
    p.add_argument("--table-epochs", default="1,5,10,15,20,25,30,35,40",
                   help="the epochs of --table's columns (default: %(default)s)")
    p.add_argument("--group", action="append", default=[], metavar="NAME=LABEL,LABEL,...",
                   help="curves (by label; labels without commas) averaged into one row of --table, e.g. the seeds of "
                        "one code; with several groups, how far each later group's mean curve is from the first's")
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
    try:
        table_epochs = [int(e) for e in args.table_epochs.split(",")]
    except ValueError:
        raise ConfigError(f"{args.table_epochs!r}: expected epochs, e.g. 1,5,10", "--table-epochs") from None
    groups = _groups(args.group, curves)
    if groups and not args.table:
        raise ConfigError("--group adds rows to --table: give --table FILE.md", "--group")
    plot_curves(curves, args.metric, args.out, args.losses, args.title)
    if args.csv:
        write_csv(curves, args.metric, args.csv)
    if args.table:
        text = curve_table(curves, args.metric, table_epochs)
        if groups:
            text += "\n" + group_summary(groups, args.metric, table_epochs)
        with atomic_open(args.table, "w", encoding="utf-8") as f:
            f.write(text)
        print(text)
    for c in curves:
        epochs, values = c.series(f"val_{args.metric}")
        if epochs:
            best = max(range(len(values)), key=lambda i: (values[i], -i))
            print(f"{c.label}: {len(epochs)} validations, best {args.metric} {100 * values[best]:.2f} at epoch "
                  f"{epochs[best]} ({c.source})")
    print(f"wrote {args.out}" + "".join(f" and {p}" for p in (args.csv, args.table) if p))
    return curves


if __name__ == "__main__":
    entry_point(main)
