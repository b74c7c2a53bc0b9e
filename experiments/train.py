"""Train a recommender on one dataset and write a run folder (results.json, config.yaml, best.pt).

    python -m experiments.train                                  # IDSF on the built-in synthetic dataset
    python -m experiments.train --config experiments/configs/baby_random.yaml --device cuda --out runs/baby
    python -m experiments.train --config experiments/configs/ml100k.yaml --model bpr --set embedding_dim=64

Several processes (data-parallel, torch.distributed; see idsf_pyg/train/distributed.py):

    torchrun --standalone --nproc_per_node=4 -m experiments.train --config ... --device cuda --out runs/x
    torchrun --nnodes=2 --node_rank=0 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 --nproc_per_node=8 \\
        -m experiments.train ...      # the same command on every node, --node_rank 0 and 1

With --out, the run is checkpointed after every epoch; running the same command again after a crash
continues from the checkpoint (same configuration only) and ends with the numbers an uninterrupted run
would give. A finished run folder is not overwritten without --overwrite. Errors in the data, the
config or the options are reported in one line with exit status 2 (--debug shows the traceback).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from idsf_pyg.cli import DEBUG_HELP, entry_point
from idsf_pyg.errors import ConfigError
from idsf_pyg.logs import console
from idsf_pyg.models import MODELS
from idsf_pyg.train import RunConfig, resolve_run_config, run
from idsf_pyg.train.config import MODEL_FILE_KEYS, read_yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "synthetic.yaml"


def parse_value(text: str) -> Any:
    """``--set k=v`` values: YAML scalars (1e-4, true, [10, 20], batch)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{text!r} is not a YAML value", "--set") from None
    if isinstance(value, str):
        # YAML 1.1 reads 1e-4 (no dot) as a string; a hyper-parameter that looks like a number is one.
        try:
            return float(value)
        except ValueError:
            pass
    return value


def parse_assignments(items: List[str], option: str) -> Dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``, each checked for its ``=``."""
    out: Dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{item!r}: expected KEY=VALUE", option)
        out[key.strip()] = value.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="YAML config (dataset, features, model, model_args, train); default: %(default)s")
    add_config_options(p)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--out", type=Path, help="run folder: results.json, config.yaml, best.pt, checkpoint.pt")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run or a checkpoint in --out")
    p.add_argument("--no-resume", action="store_true",
                   help="refuse to continue from a checkpoint in --out (default: continue when it is of the "
                        "same configuration)")
    p.add_argument("--checkpoint-every", type=int, default=1, metavar="N",
                   help="epochs between checkpoints in --out (default: %(default)s)")
    p.add_argument("--save-topk", action="store_true",
                   help="write each test user's top-20 items (training items excluded) to OUT/topk.csv")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--deterministic", action="store_true",
                   help="torch.use_deterministic_algorithms: bit-identical CUDA runs, somewhat slower "
                        "(CPU runs are deterministic without it)")
    p.add_argument("--no-progress", action="store_true",
                   help="no tqdm progress bars (they are shown only when stderr is a terminal)")
    p.add_argument("--tensorboard", type=Path, metavar="DIR",
                   help="also write each validation's losses and metrics as TensorBoard event files to DIR")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    return p


def add_config_options(p: argparse.ArgumentParser) -> None:
    """The options that change a run's configuration (shared with table2's and search's --extra)."""
    p.add_argument("--dataset", help="override the config's dataset: 'synthetic', a path, or a path relative "
                                     "to $IDSF_DATA (default ../shared/data)")
    p.add_argument("--feature", action="append", default=[], metavar="NAME=SPEC",
                   help="add/replace an item modality: SPEC is a .npy path, 'random[:dim[:std]]' (NAME must start "
                        "with 'random') or 'item-text-minilm' (RecBole .item text)")
    p.add_argument("--model", choices=sorted(MODELS),
                   help="train another model on the config's dataset, with that model's defaults from "
                        "experiments/configs/models/<model>.yaml")
    p.add_argument("--preset", metavar="NAME", action="append",
                   help="apply experiments/configs/presets/NAME.yaml after the model's defaults (repeatable, applied "
                        "in order): 'official' = every behaviour of the authors' IDSF model and training code (see "
                        "the file, one comment per line); 'official_stopping' = their stopping rule (validate every 5 "
                        "epochs, stop 30 epochs after the best): --preset official --preset official_stopping is "
                        "their whole protocol")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting: a training one (lr, batch_size, epochs, patience, ...) or a model "
                        "option, part.option for a part of IDSF, e.g. --set structure.gamma=1.0 --set "
                        "contrast.scope=batch --set structure.conv=my_layers:MyConv --set lr=1e-3")
    p.add_argument("--modalities", help="comma-separated subset of the graph's modalities (Table 4)")
    p.add_argument("--edge-weight", metavar="SPEC",
                   help="weights of the training edges from a .inter file: 'rating' or 'recency:<half-life days>'; "
                        "IDSF and LightGCN use them with --set use_edge_weight=true (default: none)")
    p.add_argument("--seed", type=int, help="training seed (initialization and sampling)")
    p.add_argument("--split-seed", type=int, help="seed of the per-user split for files without one")
    p.add_argument("--epochs", type=int, help="maximum number of epochs")
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, help="BPR triples per step")
    p.add_argument("--eval-every", type=int, help="validate every N epochs")
    p.add_argument("--patience", type=int, help="early stopping: evaluations without improvement")
    p.add_argument("--max-seconds", type=float, help="stop training after this many seconds (then test once)")
    p.add_argument("--mask-val-in-test", action="store_true", help="also mask validation items when testing")
    p.add_argument("--amp", choices=["none", "bf16"],
                   help="bf16: bfloat16 matrix products under torch.autocast, losses in float32 (default: none)")


def model_config_file(model: str) -> Path:
    return CONFIG_DIR / "models" / f"{model}.yaml"


def preset_file(name: str) -> Path:
    """A preset by name (a file of experiments/configs/presets/), or a YAML file given as a path on purpose
    (ending in .yaml or .yml); anything else, such as ``../../x``, is refused."""
    known = sorted(p.stem for p in (CONFIG_DIR / "presets").glob("*.yaml"))
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"no preset file {path}", "--preset")
        return path
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ConfigError(f"{name!r} is not a preset name (letters, digits, '-' and '_'; known: {', '.join(known)}); "
                          "a preset file of your own is given as a path ending in .yaml", "--preset")
    path = CONFIG_DIR / "presets" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no preset {name!r} ({path}); known: {', '.join(known)}", "--preset")
    return path


def model_defaults(model: str) -> Dict[str, Any]:
    """A model's default config file (``model``, ``model_args``, ``train``), its keys checked."""
    return read_yaml(model_config_file(model), MODEL_FILE_KEYS)


def config_from_args(config: Path, args: argparse.Namespace, sets: Optional[Dict[str, Any]] = None) -> RunConfig:
    """The run's configuration: the config file, the model's defaults, then the options (and ``sets``, settings
    given as data, e.g. an experiment cell's)."""
    if args.model is not None and not model_config_file(args.model).is_file():
        raise ConfigError(f"no default config for model {args.model!r} at {model_config_file(args.model)}", "--model")
    sets = {**{k: parse_value(v) for k, v in parse_assignments(args.set, "--set").items()}, **(sets or {})}
    train = {"seed": args.seed, "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
             "eval_every": args.eval_every, "patience": args.patience, "max_seconds": args.max_seconds,
             "mask_val_in_test": True if args.mask_val_in_test else None, "amp": args.amp}
    return resolve_run_config(config, model=args.model,
                              model_file=model_config_file(args.model) if args.model else None,
                              dataset=args.dataset, features=parse_assignments(args.feature, "--feature"),
                              sets=sets, train=train, split_seed=args.split_seed,
                              modalities=[m.strip() for m in args.modalities.split(",") if m.strip()]
                              if args.modalities else None, edge_weight=args.edge_weight,
                              preset_file=[preset_file(name) for name in args.preset or []])


def print_table(rows: List[Dict[str, Any]], ks) -> None:
    cols = [f"{m}@{k}" for k in ks for m in ("recall", "precision", "ndcg")]
    print("\n| model | split | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for r in rows:
        print(f"| {r['model']} | {r['split']} | " + " | ".join(f"{100 * r[c]:.3f}" for c in cols) + " |")
    print("(values in %, as in the paper's tables)")


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args.config, args)
    if args.save_topk and args.out is None:
        raise ConfigError("--save-topk needs --out DIR (the top-k lists go to DIR/topk.csv)", "--save-topk")
    board = None
    if args.tensorboard is not None:
        from experiments.curves import TensorBoardCurves
        board = TensorBoardCurves(args.tensorboard)
    try:
        with console():
            result = run(cfg, args.out, device=args.device, threads=args.threads, progress=not args.no_progress,
                         save_topk=args.save_topk, overwrite=args.overwrite, resume=not args.no_resume,
                         deterministic=args.deterministic, checkpoint_every=args.checkpoint_every, on_validation=board)
    finally:
        if board is not None:
            board.close()
    print(f"\n{result['stopped']}; best validation epoch {result['best_epoch']} of {result['epochs_run']}; "
          f"{result['seconds']['per_epoch_mean']:.2f}s per epoch, {result['seconds']['per_eval_mean']:.2f}s "
          f"per evaluation")
    print_table([{"model": cfg.model, "split": "val", **result["val"]},
                 {"model": cfg.model, "split": "test", **result["test"]}], cfg.train.ks)
    if args.out:
        print(f"wrote {args.out / 'results.json'}" + (" and topk.csv" if args.save_topk else ""))
    return result


# ------------------------------------------------------------------ shared by table2 and search
def add_run_options(p: argparse.ArgumentParser) -> None:
    """The per-run options of the drivers that train many runs (table2, search)."""
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N "
                                                    "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--max-seconds", type=float, help="per-run cap on training time")
    p.add_argument("--extra", default="", help="extra experiments.train options for every run, quoted, e.g. "
                                               "\"--set patience=10 --epochs 50\"")
    p.add_argument("--overwrite", action="store_true",
                   help="retrain runs whose folder holds results or a checkpoint of another configuration")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)


#: The dedicated options of add_config_options, by the setting each sets (``--set KEY=...`` sets KEY too).
SETTING_OPTIONS = {"dataset": "--dataset", "model": "--model", "preset": "--preset", "modalities": "--modalities",
                   "edge_weight": "--edge-weight", "seed": "--seed", "split_seed": "--split-seed", "epochs": "--epochs",
                   "lr": "--lr", "batch_size": "--batch-size", "eval_every": "--eval-every", "patience": "--patience",
                   "max_seconds": "--max-seconds", "mask_val_in_test": "--mask-val-in-test", "amp": "--amp"}


def parse_config_options(argv: List[str], what: str) -> argparse.Namespace:
    """``argv`` as the configuration options of experiments.train (``what`` names them in errors)."""
    parser = argparse.ArgumentParser(prog=what, add_help=False)
    add_config_options(parser)
    try:
        return parser.parse_args(argv)
    except SystemExit:
        raise ConfigError(f"cannot parse {' '.join(argv)!r} as experiments.train options", what) from None


def settings_of(ns: argparse.Namespace) -> Dict[str, str]:
    """The settings parsed options set, each with the option that sets it (``{"epochs": "--epochs"}``)."""
    out = {key: opt for key, opt in SETTING_OPTIONS.items() if getattr(ns, key) not in (None, False)}
    out.update({k: f"--set {k}=..." for k in parse_assignments(ns.set, "--set")})
    out.update({f"feature {k}": f"--feature {k}=..." for k in parse_assignments(ns.feature, "--feature")})
    return out


if __name__ == "__main__":
    entry_point(main)
