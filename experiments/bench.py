"""Speed and memory of IDSF training and evaluation (a benchmark: it prints figures, asserts nothing).

    python -m experiments.bench                              # Baby, random features, the default device
    python -m experiments.bench --scopes all --amp none,bf16 # the paper's all-item loss, float32 and bf16
    python -m experiments.bench --dataset amazon2014/clothing --scopes all --max-steps 2
    python -m experiments.bench --scale --plot scale.png     # synthetic graphs, 1e5 -> 1e7 edges
    python -m experiments.bench --device cuda --json-out bench.json

For each configuration (device x contrastive scope x precision) it reports seconds per training step and
per epoch, seconds per full evaluation (all validation users, all items), and peak memory, each in its
own process so that the peaks do not mix. A configuration too slow for a full epoch is timed over
--max-steps steps (after one untimed warm-up step) and extrapolated to the epoch's number of steps
(marked "est."). The features are random stand-ins shaped like the real ones (4096-d image, 384-d text):
timings do not depend on their values.

For the all-item scope it also counts the floating-point work of the similarity products of one step
(the floor: forward and backward products no implementation avoids, IDSF.contrast_gemm_flops), measures
this device's matrix-product rate in the same process (float32, or bf16 with --amp bf16, on the kernel's
block shapes and on 1,024-row blocks, the faster counts), and prints the achieved GFLOP/s and the step time
as a multiple of that floor.

--scale trains on make_scale_graph graphs of growing size instead (users / items / edges from 1e4 / 1e3 /
1e5 to 1e6 / 1e5 / 1e7 by default) and reports time per epoch (extrapolated from --max-steps) and peak
memory above the process's baseline, for the sample and batch scopes, and the all-item scope up to
--scale-all-max-items items (its time grows as items squared: larger ones are for a GPU).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from idsf_pyg.cli import DEBUG_HELP, entry_point
from idsf_pyg.errors import ConfigError, TrainingError
from idsf_pyg.io import write_json

#: users, items, edges of the --scale grid (default)
SCALE_GRID = ((10_000, 1_000, 100_000), (30_000, 3_000, 300_000), (100_000, 10_000, 1_000_000),
              (300_000, 30_000, 3_000_000), (1_000_000, 100_000, 10_000_000))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gemm_rate(n: int, d: int, device: torch.device, dtype: torch.dtype, block: int) -> float:
    """This device's matrix-product rate (FLOP/s, the best of the similarity kernel's three shapes: scores
    [block, d] x [d, n], gradient [block, n] x [n, d] and [n, block] x [block, d])."""
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(block, d, generator=g).to(device, dtype)
    y = torch.randn(n, d, generator=g).to(device, dtype)
    s = torch.randn(block, n, generator=g).to(device, dtype)
    out_s, out_d = torch.empty(block, n, device=device, dtype=dtype), torch.empty(block, d, device=device, dtype=dtype)
    out_y = torch.empty(n, d, device=device, dtype=dtype)
    best = 0.0
    for fn in (lambda: torch.mm(x, y.t(), out=out_s), lambda: torch.mm(s, y, out=out_d),
               lambda: torch.mm(s.t(), x, out=out_y)):
        for _ in range(2):
            fn()
        reps = 5
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        _sync(device)
        best = max(best, reps * 2.0 * block * n * d / (time.perf_counter() - t0))
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _load(args: argparse.Namespace):
    from idsf_pyg.data import load_dataset, make_scale_graph
    from idsf_pyg.train.run import dataset_path
    if args.scale_size:
        users, items, edges = (int(v) for v in args.scale_size.split(","))
        return make_scale_graph(users, items, edges, feature_dims=(64, 64))
    features = dict(f.split("=", 1) for f in args.feature) if args.feature else \
        {"random_image": "random:4096", "random_text": "random:384"}
    return load_dataset(dataset_path(args.dataset), discover_features=False, features=features)


def worker(args: argparse.Namespace) -> dict:
    from idsf_pyg.data import EDGE, ITEM
    from idsf_pyg.eval import evaluator_for
    from idsf_pyg.models import IDSF
    from idsf_pyg.train import BPRSampler, set_seed
    from idsf_pyg.train.run import resolve_device
    from idsf_pyg.train.trainer import autocast

    device = resolve_device(args.device)
    gen = set_seed(0)
    rss_import = peak_rss_mb()
    data = _load(args)
    rss_data = peak_rss_mb()
    num_items, num_edges = int(data[ITEM].num_nodes), int(data[EDGE].edge_index.size(1))
    from experiments.train import parse_assignments, parse_value
    model_args = {k: parse_value(v) for k, v in parse_assignments(args.set, "--set").items()}
    model = IDSF.from_graph(data, contrast_scope=args.scope, **model_args).to(device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    sampler = BPRSampler(data[EDGE].edge_index, num_items, 1024, gen)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step(users, pos, neg):
        with autocast(device, args.amp):
            loss, _ = model.loss(users.to(device), pos.to(device), neg.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    limit = args.max_steps if args.max_steps > 0 else None
    batches = iter(sampler)
    losses = [step(*next(batches))]  # warm-up (allocator, kernel selection): not timed
    timed_steps, seconds = 0, 0.0
    for epoch in range(args.epochs):
        _sync(device)
        t0 = time.perf_counter()
        for users, pos, neg in (batches if epoch == 0 else iter(sampler)):
            losses.append(step(users, pos, neg))
            timed_steps += 1
            if limit is not None and timed_steps >= limit:
                break
        _sync(device)
        seconds += time.perf_counter() - t0
        if limit is not None and timed_steps >= limit:
            break
    per_step = seconds / max(timed_steps, 1)
    out = {"scope": args.scope, "amp": args.amp, "device": str(device), "items": num_items,
           "train_edges": num_edges, "users": int(model.num_users), "steps_timed": timed_steps,
           "steps_per_epoch": len(sampler), "step_seconds": per_step, "epoch_seconds": per_step * len(sampler),
           "epoch_measured": limit is None,
           "loss_first_last": [float(losses[0]), float(losses[-1])], "threads": torch.get_num_threads()}
    if args.scope == "all":
        flops = model.contrast_gemm_flops(num_items, device)
        dtype = torch.bfloat16 if args.amp == "bf16" else torch.float32
        block = min(flops["block"], num_items)
        # the machine's rate: the kernel's block shapes and 1,024-row ones, whichever is faster (the floor
        # must not depend on the block size the kernel happens to use)
        rate = max(gemm_rate(num_items, model.embedding_dim, device, dtype, rows)
                   for rows in sorted({block, min(1024, num_items)}))
        out.update({"similarity_gflop_floor": flops["floor"] / 1e9, "similarity_gflop_executed":
                    flops["executed"] / 1e9, "gemm_gflops": rate / 1e9, "block_rows": block,
                    "achieved_gflops": flops["floor"] / per_step / 1e9,
                    "floor_seconds": flops["floor"] / rate, "step_over_floor": per_step / (flops["floor"] / rate)})
    if args.eval_repeats > 0:
        ev = evaluator_for(data, "val")
        model.eval()
        eval_times, val = [], None
        for _ in range(args.eval_repeats):
            _sync(device)
            t0 = time.perf_counter()
            with torch.no_grad():
                u, i = model.embed()
                val = ev.evaluate(u, i)
            _sync(device)
            eval_times.append(time.perf_counter() - t0)
        out["eval_seconds"] = min(eval_times)
        out["val_recall@20_after_run"] = float(val["recall@20"])
    out.update({"peak_rss_mb": peak_rss_mb(), "rss_after_import_mb": rss_import, "rss_after_data_mb": rss_data})
    if device.type == "cuda":
        out["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def run_worker(args: argparse.Namespace, scope: str, amp: str, device: str, max_steps: int,
               scale_size: Optional[str] = None, eval_repeats: Optional[int] = None) -> dict:
    cmd = [sys.executable, "-m", "experiments.bench", "--worker", "--scope", scope, "--amp", amp, "--device", device,
           "--dataset", args.dataset, "--epochs", str(args.epochs), "--max-steps", str(max_steps),
           "--eval-repeats", str(args.eval_repeats if eval_repeats is None else eval_repeats)]
    cmd += [a for f in args.feature for a in ("--feature", f)]
    cmd += [a for f in args.set for a in ("--set", f)]
    if scale_size:
        cmd += ["--scale-size", scale_size]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    what = f"{scope} / {amp} on {device}" + (f" ({scale_size} users,items,edges)" if scale_size else "")
    print(f"[bench] {what} ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
        raise TrainingError(f"bench worker for {what} failed (its output is above)")
    row = json.loads(line[7:])
    print("[bench] " + line[7:], flush=True)
    return row


def _memory(r: dict) -> str:
    if "cuda_peak_allocated_mb" in r:
        return f"{r['cuda_peak_allocated_mb']:.0f} GPU"
    return f"{r['peak_rss_mb']:.0f} RSS ({r['peak_rss_mb'] - r['rss_after_import_mb']:.0f} above imports)"


def print_table(rows: List[dict]) -> None:
    print("| device | scope | amp | s / step | s / epoch | s / full evaluation | peak memory (MiB) "
          "| GEMM rate (GFLOP/s) | achieved (GFLOP/s) | step / floor |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        epoch = f"{r['epoch_seconds']:.1f}" + ("" if r["epoch_measured"] else f" (est. from {r['steps_timed']} steps)")
        ev = f"{r['eval_seconds']:.3f}" if "eval_seconds" in r else "-"
        floor = (f"| {r['gemm_gflops']:.0f} | {r['achieved_gflops']:.0f} | {r['step_over_floor']:.2f}x "
                 f"(floor {r['floor_seconds']:.2f} s) |") if "gemm_gflops" in r else "| - | - | - |"
        print(f"| {r['device']} | {r['scope']} | {r['amp']} | {r['step_seconds']:.3f} | {epoch} | {ev} "
              f"| {_memory(r)} " + floor)


def print_scale_table(rows: List[dict]) -> None:
    print("| users | items | train edges | scope | s / step | s / epoch (est.) | peak RSS above imports (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        mem = (f"{r['cuda_peak_allocated_mb']:.0f} GPU" if "cuda_peak_allocated_mb" in r
               else f"{r['peak_rss_mb'] - r['rss_after_import_mb']:.0f}")
        print(f"| {r['users']:,} | {r['items']:,} | {r['train_edges']:,} | {r['scope']} | {r['step_seconds']:.3f} "
              f"| {r['epoch_seconds']:.0f} | {mem} |")


def scale_plot(rows: List[dict], path: Path):
    from experiments.plot import Series, line_plot
    series = []
    for scope in sorted({r["scope"] for r in rows}):
        pts = sorted((r["train_edges"], r) for r in rows if r["scope"] == scope)
        xs = [e for e, _ in pts]
        # at least 1 MiB on the log axis: the smallest graphs may not raise the peak above the imports'
        mem = [max(1.0, r["cuda_peak_allocated_mb"] if "cuda_peak_allocated_mb" in r
                   else r["peak_rss_mb"] - r["rss_after_import_mb"]) for _, r in pts]
        series.append(Series(f"{scope} scope", xs, mem))
    # a reference of slope 1 (linear growth) through the largest graph's point
    anchor = max(series, key=lambda s: max(s.x))
    top = max(anchor.x)
    ref_y = anchor.y[anchor.x.index(top)]
    xs = sorted({x for s in series for x in s.x})
    series.append(Series("linear (slope 1)", xs, [ref_y * x / top for x in xs]))
    return line_plot(path, series, title="IDSF peak memory vs graph size (users = 10 x items = edges / 10)",
              xlabel="training edges", ylabel="peak memory above imports (MiB)", logx=True, logy=True,
              legend="upper left")


def main(argv=None) -> Dict[str, object]:
    p = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="amazon2014/baby", help="dataset (default: %(default)s)")
    p.add_argument("--feature", action="append", default=[], metavar="NAME=SPEC",
                   help="item modalities (default: random_image=random:4096, random_text=random:384)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an IDSF argument for every configuration, e.g. --set contrast_kernel=dense")
    p.add_argument("--scopes", default=None,
                   help="contrastive scopes to time (default: batch,sample,all; with --scale sample,batch,all)")
    p.add_argument("--amp", default="none", help="precisions to time, comma-separated: none, bf16 (default: none)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N; "
                                                    "comma-separated for several (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=1, help="training epochs to time per configuration")
    p.add_argument("--max-steps", type=int, default=None,
                   help="timed steps, then extrapolate (0: full epochs; default: 3 for the all-item scope on "
                        "the CPU and with --scale, else 0)")
    p.add_argument("--eval-repeats", type=int, default=3, help="full evaluations to time (the fastest counts)")
    p.add_argument("--threads", type=int, help="torch CPU threads in each worker")
    p.add_argument("--scale", action="store_true", help="the synthetic scaling run (see above)")
    p.add_argument("--scale-grid", help="users,items,edges;users,items,edges;... (default: 1e4,1e3,1e5 ... "
                                        "1e6,1e5,1e7)")
    p.add_argument("--scale-all-max-items", type=int, default=None,
                   help="largest catalogue timed with the all-item scope in --scale (default: 10000 on the CPU, "
                        "all on a GPU)")
    p.add_argument("--plot", type=Path, help="--scale: write the memory curve to this figure (.png, .pdf, .svg)")
    p.add_argument("--replot", type=Path, metavar="JSON",
                   help="train nothing: draw --plot from the rows of an earlier --scale --json-out file")
    p.add_argument("--json-out", type=Path, help="also write every row (and the machine) to this JSON file")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--scope", help=argparse.SUPPRESS)
    p.add_argument("--scale-size", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return {}

    from idsf_pyg.train.run import resolve_device
    devices = [str(resolve_device(d.strip())) for d in args.device.split(",")]
    amps = [a.strip() for a in args.amp.split(",")]
    for a in amps:
        if a not in ("none", "bf16"):
            raise ConfigError(f"unknown precision {a!r}: use none or bf16", "--amp")
    scopes = [s.strip() for s in (args.scopes or ("sample,batch,all" if args.scale else "batch,sample,all")).split(",")]
    for s in scopes:
        if s not in ("all", "batch", "sample"):
            raise ConfigError(f"unknown scope {s!r}: use all, batch or sample", "--scopes")
    rows = []
    if args.replot is not None:
        if args.plot is None:
            raise ConfigError("--replot draws the memory curve: give --plot FILE", "--plot")
        rows = json.loads(args.replot.read_text())["rows"]
        figure = scale_plot(rows, args.plot)
        print(f"wrote {args.plot} from {args.replot}")
        return {"rows": rows, "figure": figure}
    if args.scale:
        grid = SCALE_GRID if not args.scale_grid else \
            [tuple(int(float(v)) for v in g.split(",")) for g in args.scale_grid.split(";")]
        for device in devices:
            cap = args.scale_all_max_items if args.scale_all_max_items is not None else \
                (10_000 if device == "cpu" else 10 ** 9)
            for users, items, edges in grid:
                for scope in scopes:
                    if scope == "all" and items > cap:
                        continue
                    steps = args.max_steps if args.max_steps is not None else 3
                    for amp in amps:
                        rows.append(run_worker(args, scope, amp, device, steps, f"{users},{items},{edges}",
                                               eval_repeats=0))
        print(f"\nIDSF on make_scale_graph graphs (two 64-d modalities), d=128, K=2, batch 1024, "
              f"torch {torch.__version__}, {os.cpu_count()} CPU cores")
        print_scale_table(rows)
        if args.plot:
            scale_plot(rows, args.plot)
            print(f"wrote {args.plot}")
    else:
        for device in devices:
            for scope in scopes:
                for amp in amps:
                    steps = args.max_steps if args.max_steps is not None else \
                        (3 if scope == "all" and device == "cpu" else 0)
                    rows.append(run_worker(args, scope, amp, device, steps))
        print(f"\nIDSF on {args.dataset}, features {args.feature or 'random 4096-d + 384-d'}, d=128, K=2, batch 1024, "
              f"torch {torch.__version__}, {os.cpu_count()} CPU cores")
        print_table(rows)
    result = {"rows": rows, "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                                        "torch": torch.__version__, "processor": platform.processor()}}
    if args.json_out:
        write_json(args.json_out, result)
        print(f"wrote {args.json_out}")
    return result


if __name__ == "__main__":
    entry_point(main)
