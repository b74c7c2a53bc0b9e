"""Speed and memory of IDSF training and evaluation (a benchmark: it prints figures, asserts nothing).

    python -m experiments.bench                                  # Baby, random features, CPU, each scope
    python -m experiments.bench --device cuda --scopes all,batch --epochs 1

For each contrastive scope it reports seconds per training epoch, seconds per full evaluation (all
validation users, all items) and peak memory, each configuration in its own process so the peaks
do not mix. A scope too slow for a full epoch is timed over --max-steps steps and extrapolated to
the epoch's number of steps (marked "est."). The features are random stand-ins shaped like the real
ones (4096-d image, 384-d text): timings do not depend on their values.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Optional

import torch

from idsf_pyg.cli import DEBUG_HELP, entry_point


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def live_tensor_peak_mb(step) -> Optional[float]:
    """Peak bytes held by live tensors during one call of ``step`` (PyTorch's memory profiler), which
    separates what the model needs from what the process keeps (imported libraries, allocator reuse).
    ``None`` where this torch version's profiler does not expose the timeline."""
    try:
        from torch.profiler import ProfilerActivity, profile
        from torch.profiler._memory_profiler import Action
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                     with_stack=True) as prof:
            step()
        live, total, peak = {}, 0, 0
        for _, action, (key, _version), size in prof._memory_profile().timeline:
            if action in (Action.PREEXISTING, Action.CREATE) and key not in live:
                live[key] = size
                total += size
            elif action == Action.DESTROY and key in live:
                total -= live.pop(key)
            peak = max(peak, total)
        return peak / 2 ** 20
    except Exception:  # a private API: report nothing rather than fail the benchmark
        return None


def worker(args: argparse.Namespace) -> dict:
    from idsf_pyg.data import EDGE, ITEM, load_dataset
    from idsf_pyg.eval import evaluator_for
    from idsf_pyg.models import IDSF
    from idsf_pyg.train import BPRSampler, set_seed
    from idsf_pyg.train.run import dataset_path

    device = torch.device(args.device)
    gen = set_seed(0)
    rss_import = peak_rss_mb()
    data = load_dataset(dataset_path(args.dataset), discover_features=False,
                        features={"random_image": "random:4096", "random_text": "random:384"})
    rss_data = peak_rss_mb()
    model = IDSF.from_graph(data, contrast_scope=args.scope).to(device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    sampler = BPRSampler(data[EDGE].edge_index, int(data[ITEM].num_nodes), 1024, gen)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    steps, epoch_seconds = 0, []
    limit = args.max_steps if args.max_steps > 0 else None
    for _ in range(args.epochs):
        sync()
        t0 = time.perf_counter()
        for users, pos, neg in sampler:
            loss, _ = model.loss(users.to(device), pos.to(device), neg.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            if limit is not None and steps >= limit:
                break
        sync()
        epoch_seconds.append(time.perf_counter() - t0)
        if limit is not None and steps >= limit:
            break

    def one_step():
        model.train()
        users, pos, neg = next(iter(sampler))
        loss, _ = model.loss(users.to(device), pos.to(device), neg.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    full = limit is None or steps >= len(sampler) * args.epochs
    per_epoch = sum(epoch_seconds) / len(epoch_seconds) if full else sum(epoch_seconds) / steps * len(sampler)

    ev = evaluator_for(data, "val")
    model.eval()
    eval_times, val = [], None
    for _ in range(args.eval_repeats):
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            u, i = model.embed()
            val = ev.evaluate(u, i)
        sync()
        eval_times.append(time.perf_counter() - t0)
    out = {"scope": args.scope, "device": str(device), "steps": steps, "steps_per_epoch": len(sampler),
           "epoch_seconds": per_epoch, "epoch_measured": full, "eval_seconds": min(eval_times),
           "val_recall@20_after_run": float(val["recall@20"]), "peak_rss_mb": peak_rss_mb(),
           "rss_after_import_mb": rss_import, "rss_after_data_mb": rss_data, "threads": torch.get_num_threads()}
    # After peak RSS is read: the profiler's own records must not count in it.
    out["live_tensor_peak_mb"] = live_tensor_peak_mb(one_step) if device.type == "cpu" else None
    if device.type == "cuda":
        out["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="amazon2014/baby", help="dataset (default: %(default)s)")
    p.add_argument("--scopes", default="batch,sample,all", help="contrastive scopes to time (default: %(default)s)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cpu, and cuda too when available)")
    p.add_argument("--epochs", type=int, default=1, help="training epochs to time per scope")
    p.add_argument("--max-steps", type=int, default=0,
                   help="stop after this many steps and extrapolate (0: full epochs); "
                        "the 'all' scope on CPU uses 3 unless set")
    p.add_argument("--eval-repeats", type=int, default=3, help="full evaluations to time (the fastest counts)")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--scope", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return

    devices = [args.device] if args.device else (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    for device in devices:
        for scope in args.scopes.split(","):
            steps = args.max_steps or (3 if scope == "all" and device == "cpu" else 0)
            cmd = [sys.executable, "-m", "experiments.bench", "--worker", "--scope", scope, "--device", device,
                   "--dataset", args.dataset, "--epochs", str(args.epochs), "--max-steps", str(steps),
                   "--eval-repeats", str(args.eval_repeats)]
            print(f"[bench] {scope} on {device} ...", flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                raise RuntimeError(f"bench worker for {scope} on {device} failed (its output is above)")
            rows.append(json.loads(line[7:]))
            print("[bench] " + line[7:], flush=True)
    print(f"\nIDSF on {args.dataset}, random features (4096-d + 384-d), d=128, K=2, batch 1024, "
          f"torch {torch.__version__}, {os.cpu_count()} CPU cores")
    print("| device | contrastive scope | s / epoch | s / full evaluation | peak memory (MB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        epoch = f"{r['epoch_seconds']:.1f}" + ("" if r["epoch_measured"] else f" (est. from {r['steps']} steps)")
        mem = (f"{r['cuda_peak_allocated_mb']:.0f} GPU / {r['peak_rss_mb']:.0f} RSS" if "cuda_peak_allocated_mb" in r
               else f"{r['peak_rss_mb']:.0f} RSS ({r['rss_after_import_mb']:.0f} after imports"
               + (f", live tensors at most {r['live_tensor_peak_mb']:.0f} in a step)"
                  if r.get("live_tensor_peak_mb") is not None else ")"))
        print(f"| {r['device']} | {r['scope']} | {epoch} | {r['eval_seconds']:.2f} | {mem} |")


if __name__ == "__main__":
    entry_point(main)
