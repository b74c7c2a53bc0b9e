"""The ID-embedding analysis of the paper's section 2 (Figures 2–5) on trained runs, with numbers beside the pictures.

    python -m experiments.id_analysis --run runs/store/ml-100k/idsf-seed0-... --run ...seed1-... --run ...seed2-...
    python -m experiments.id_analysis --run RUN --users 10 --max-items 8 --sample-seed 0 --out runs/id_analysis

For each run (an IDSF run folder; other models give their final item embeddings only) the item
representations are

* ``id:<m>``: the modality-specific item ID embedding :math:`\\mathbf{e}_i^{mid}` (the paper's "pre-trained IDs"),
* ``raw:<m>``: the modality's input features (Sentence-BERT text, knowledge-graph reduction, ...),
* ``content:<m>`` / ``enhanced:<m>``: the projected features :math:`\\mathbf{e}_i^m` before and the
  enhanced :math:`\\mathbf{e}_i^{m'}` after the ID attention of eq. (1) (Figure 5's "before/after"),
* ``fused``: :math:`\\mathbf{e}_i^c` of eq. (2); ``item``: the final item embedding of eq. (11).

Two measurements, both against a chance level, so that the pictures' claim ("items of the same user lie
together") is a number with a spread over the runs (seeds):

* **catalog co-interaction@10**: over all items, the share of each item's 10 nearest items (cosine) that are
  among its 10 most co-interacted items (most training users in common, ties included); chance = the share of
  such items among all other items;
* **sample same-user@k**: the appendix's sample (``--users`` random training users with 2..``--max-items``
  training items each, no item shared between them, or with ``--shared first`` each shared item kept with the
  first sampled user); the share of each sampled item's k = min(10, n-1)
  most similar sampled items that belong to its user; chance = (own group - 1) / (n - 1).

And how much each modality's enhanced representation takes from its ID embedding: the attention weights
of eq. (2), :math:`\\alpha_i^{mid}` of the Text/Visual Attention averaged over the items (and the share of items
where the ID gets more than half), and the VT Attention's :math:`\\alpha_i^m` over the modalities, per run, as
mean ± std over the runs (``id_analysis_attention.csv``; the paper reports none of them).

Figures (first run only, the sample; matplotlib, ``--format png|pdf|svg``): ``fig2_<rep>`` 2-D maps coloured by
user (UMAP on cosine geometry, as the paper's appendix; ``--embedding tsne`` for scikit-learn's t-SNE) for the IDs
and for before/after enhancement (Figure 5), ``fig3_<rep>`` / ``fig4_<rep>`` the paper's heat maps (cosine
similarity of the sampled items ordered by user, all but each row's top 10 set to 0, min-max normalized) of the
IDs and of the raw features. Writes OUT/id_analysis.md, id_analysis.csv, id_analysis.json and the figures.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from experiments.grid import fmt, markdown, mean_std
from experiments.extras import require
from experiments.plot import add_format_option, heatmap, scatter_plot
from idsf_pyg.cli import DEBUG_HELP, entry_point
from idsf_pyg.data.graph import EDGE
from idsf_pyg.errors import ConfigError
from idsf_pyg.io import atomic_open, write_json, write_text
from idsf_pyg.models import IDSF
from idsf_pyg.trained import load_run

TOP = 10


# ------------------------------------------------------------------------------------- representations
@torch.no_grad()
def representations(trained) -> Dict[str, np.ndarray]:
    """Item representations of a trained run by name (see the module docstring)."""
    model = trained.model.eval()
    out: Dict[str, np.ndarray] = {}
    if isinstance(model, IDSF):
        content = model.content()
        for m, part in content.modalities.items():
            out[f"id:{m}"] = part.id
            out[f"raw:{m}"] = model.raw_feature(m)
            out[f"content:{m}"] = part.projected
            if model.content.enhance:
                out[f"enhanced:{m}"] = part.enhanced
        out["fused"] = content.fused
    out["item"] = model.embed()[1]
    return {k: v.detach().cpu().double().numpy() for k, v in out.items()}


@torch.no_grad()
def attention_weights(trained) -> Dict[str, float]:
    r"""The content module's attention weights of eq. (2), averaged over the items: per modality ``m``
    ``"id weight:<m>"`` (mean :math:`\alpha_i^{mid}` against :math:`\alpha_i^m` in eq. (1)) and
    ``"id majority:<m>"`` (share of items with :math:`\alpha_i^{mid} > 0.5`); with several modalities
    ``"fusion weight:<m>"`` (mean weight of :math:`\mathbf{e}_i^{m'}` in the VT Attention). Empty for a
    model without ID-enhanced content (another model, ``no_content``/``content_no_id`` variants)."""
    model = trained.model.eval()
    if not isinstance(model, IDSF) or not model.content.enhance or model.item_score == "structure":
        return {}
    alphas = model.content().attention
    out: Dict[str, float] = {}
    for m in model.modalities:
        id_weight = alphas[m][:, 1]        # eq. (1)'s inputs are [e^m, e^mid], in that order
        out[f"id weight:{m}"] = float(id_weight.mean())
        out[f"id majority:{m}"] = float((id_weight > 0.5).double().mean())
    if len(model.modalities) > 1:
        for j, m in enumerate(model.modalities):
            out[f"fusion weight:{m}"] = float(alphas["fuse"][:, j].mean())
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# -------------------------------------------------------------------------------------------- measures
def co_interaction(train_edge_index: torch.Tensor, num_users: int, num_items: int, k: int = TOP) -> torch.Tensor:
    """``[I, I]`` bool: ``j`` is among ``i``'s ``k`` most co-interacted items (most training users in common,
    ties included, at least one user), ``i != j``. (Any shared user would be too weak a link on dense data:
    on ML-100k 61 % of all item pairs share one.)"""
    # Users x items as a sparse matrix (Baby's dense one would be 0.5 GB); the item x item counts are dense.
    pairs = torch.unique(train_edge_index, dim=1)          # a user's repeated pair counts once
    a = torch.sparse_coo_tensor(pairs, torch.ones(pairs.size(1)), (num_users, num_items)).coalesce()
    counts = torch.sparse.mm(a.t().coalesce(), a).to_dense()
    counts.fill_diagonal_(0.0)
    kth = counts.topk(min(k, num_items - 1), dim=1).values[:, -1].clamp(min=1.0)
    return counts >= kth.unsqueeze(1)


def catalog_neighbour_rate(x: np.ndarray, co: torch.Tensor, k: int = TOP, block: int = 2048) -> Tuple[float, float]:
    """(share of each item's k nearest items by cosine that are ``co``-linked to it, the chance share)."""
    xu = torch.from_numpy(_unit(x)).float()
    n = xu.size(0)
    hits = 0.0
    for start in range(0, n, block):
        sim = xu[start:start + block] @ xu.t()
        rows = torch.arange(start, min(start + block, n))
        sim[rows - start, rows] = -float("inf")      # not its own neighbour
        top = sim.topk(k, dim=1).indices
        hits += co[rows.unsqueeze(1), top].float().sum().item()
    chance = co.float().sum().item() / (n * (n - 1))
    return hits / (n * k), chance


def sample_users(train_edge_index: torch.Tensor, num_users: int, users: int, max_items: int, seed: int,
                 shared: str = "refuse") -> List[Tuple[int, List[int]]]:
    """The appendix's sample: random training users (2..max_items training items each), in random order;
    ``[(user, items)]``. ``shared="refuse"`` (the paper) skips a user who shares an item with one already
    chosen; ``"first"`` (dense data such as ML-100k, where ten disjoint users rarely exist) keeps the user
    with the items not taken yet, if at least two are left, so that the groups still partition the items."""
    if shared not in ("refuse", "first"):
        raise ConfigError(f"must be 'refuse' or 'first', got {shared!r}", "--shared")
    by_user: Dict[int, List[int]] = {}
    for u, i in train_edge_index.t().tolist():
        by_user.setdefault(u, []).append(i)
    rng = np.random.default_rng(seed)
    chosen, taken = [], set()
    for u in rng.permutation(num_users).tolist():
        items = sorted(by_user.get(u, []))
        if not 2 <= len(items) <= max_items:
            continue
        free = [i for i in items if i not in taken]
        if len(free) == len(items) or (shared == "first" and len(free) >= 2):
            chosen.append((u, free))
            taken.update(free)
            if len(chosen) == users:
                return chosen
    raise ConfigError(f"only {len(chosen)} users with 2..{max_items} training items"
                      + (" and no item in common" if shared == "refuse" else " and two items not taken")
                      + f" were found (asked for {users}): raise --max-items, lower --users"
                      + (" or pass --shared first" if shared == "refuse" else ""), "--users")


def same_user_rate(x: np.ndarray, groups: np.ndarray) -> Tuple[float, float]:
    """(share of each sampled item's k most similar sampled items in its own group, chance share)."""
    n = len(groups)
    k = min(TOP, n - 1)
    unit = _unit(x)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    rate = float((groups[top] == groups[:, None]).mean())
    sizes = np.bincount(groups)[groups]
    return rate, float(((sizes - 1) / (n - 1)).mean())


def topk_heat(x: np.ndarray, k: int = TOP) -> np.ndarray:
    """The paper's heat map matrix: cosine similarity, all but each row's top k set to 0, then min-max
    normalized over the kept values to [0, 1] (0 where dropped)."""
    unit = _unit(x)
    sim = unit @ unit.T
    keep = np.zeros_like(sim, dtype=bool)
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :min(k, len(sim))]
    np.put_along_axis(keep, idx, True, axis=1)
    vals = sim[keep]
    lo, hi = vals.min(), vals.max()
    out = np.zeros_like(sim)
    out[keep] = (sim[keep] - lo) / (hi - lo) if hi > lo else 1.0
    return out


EMBEDDINGS = ("umap", "tsne")
EMBEDDING_NAMES = {"umap": "UMAP", "tsne": "t-SNE"}


def embed_2d(x: np.ndarray, method: str = "umap", seed: int = 0) -> np.ndarray:
    """A few hundred representations to 2-D on cosine geometry: UMAP (umap-learn), as the paper's appendix did for
    Figures 2 and 5, or scikit-learn's exact t-SNE (perplexity 5, PCA initialization)."""
    n = len(x)
    if method == "umap":
        umap = require("umap", "the UMAP maps of Figures 2 and 5 (or --embedding tsne)")
        reducer = umap.UMAP(n_neighbors=min(15, n - 1), metric="cosine", random_state=seed, n_jobs=1)
        return np.asarray(reducer.fit_transform(_unit(x)), dtype=float)
    if method == "tsne":
        manifold = require("sklearn.manifold", "the t-SNE maps of Figures 2 and 5")
        tsne = manifold.TSNE(n_components=2, perplexity=min(5.0, (n - 1) / 3.0), metric="cosine", init="pca",
                             method="exact", random_state=seed)
        return np.asarray(tsne.fit_transform(_unit(x)), dtype=float)
    raise ConfigError(f"{method!r}: expected one of {', '.join(EMBEDDINGS)}", "--embedding")


# ------------------------------------------------------------------------------------------------ main
def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.id_analysis", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", type=Path, required=True,
                   help="a finished run folder (repeat for several seeds: the numbers become mean ± std)")
    p.add_argument("--users", type=int, default=10, help="sampled users (default: %(default)s, the appendix's)")
    p.add_argument("--max-items", type=int, default=8,
                   help="most training items a sampled user may have (default: %(default)s; the paper's Baby sample "
                        "had 43 items for 10 users)")
    p.add_argument("--shared", choices=["refuse", "first"], default="refuse",
                   help="a sampled user sharing items with an earlier one: skip the user (refuse, the paper's check) "
                        "or keep the items not taken yet (first; for dense data such as ML-100k)")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the user sample (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("runs") / "id_analysis", help="output folder")
    p.add_argument("--no-figures", action="store_true", help="numbers only")
    p.add_argument("--embedding", choices=EMBEDDINGS, default="umap",
                   help="2-D map of Figures 2 and 5: UMAP as the paper's appendix, or t-SNE (default: %(default)s)")
    add_format_option(p)
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = p.parse_args(argv)
    if args.users < 2 or args.max_items < 2:
        raise ConfigError("--users and --max-items must be >= 2", "--users")

    per_run: List[Dict[str, Dict[str, float]]] = []
    weights: List[Dict[str, float]] = []
    names: List[str] = []
    sample = None
    for n_run, folder in enumerate(args.run):
        trained = load_run(folder)
        data, model = trained.data, trained.model
        ei = data[EDGE].edge_index
        reps = representations(trained)
        if n_run == 0:
            names = list(reps)
            co = co_interaction(ei, model.num_users, model.num_items)
            sample = sample_users(ei, model.num_users, args.users, args.max_items, args.sample_seed, args.shared)
            order = np.array([i for _, items in sample for i in items])
            groups = np.array([g for g, (_, items) in enumerate(sample) for _ in items])
            first_data = trained.config.dataset
        elif list(reps) != names or trained.config.dataset != first_data:
            raise ConfigError(f"{folder}: not the same model and dataset as {args.run[0]} (compare seeds of one "
                              "configuration)", "--run")
        row = {}
        for name, x in reps.items():
            rate, chance = catalog_neighbour_rate(x, co)
            srate, schance = same_user_rate(x[order], groups)
            row[name] = {"catalog": rate, "catalog_chance": chance, "sample": srate, "sample_chance": schance}
        per_run.append(row)
        weights.append(attention_weights(trained))
        if n_run == 0 and not args.no_figures:
            bounds = np.cumsum([len(items) for _, items in sample])[:-1].tolist()
            legend = [f"user {u}" for u, _ in sample]
            for name, x in reps.items():
                slug = name.replace(":", "_")
                if name.startswith(("id:", "content:", "enhanced:")):
                    scatter_plot(args.out / f"fig2_{slug}.{args.format}",
                                 embed_2d(x[order], args.embedding, seed=args.sample_seed), groups,
                                 title=f"{name} ({EMBEDDING_NAMES[args.embedding]}), {len(order)} items of "
                                       f"{len(sample)} users", legend=legend)
                if name.startswith(("id:", "raw:")):
                    fig = "fig3" if name.startswith("id:") else "fig4"
                    heatmap(args.out / f"{fig}_{slug}.{args.format}", topk_heat(x[order]), boundaries=bounds,
                            title=f"{name}: top-{TOP} cosine, items by user")

    summary = {name: {k: mean_std([r[name][k] * 100 for r in per_run]) for k in per_run[0][name]} for name in names}
    header = ["representation", "catalog co-interaction@10 (%)", "chance (%)", f"sample same-user@{TOP} (%)",
              "chance (%)"]
    rows = [header] + [[name, fmt(*s["catalog"], 2), fmt(*s["catalog_chance"], 2), fmt(*s["sample"], 2),
                        fmt(*s["sample_chance"], 2)] for name, s in summary.items()]
    with atomic_open(args.out / "id_analysis.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    weight_rows = [["attention weight (eq. 2)", "mean over items, % (runs: mean ± std)"]]
    weight_rows += [[name, fmt(*mean_std([w[name] * 100 for w in weights]), 2)] for name in weights[0]]
    if len(weight_rows) > 1:
        with atomic_open(args.out / "id_analysis_attention.csv", "w", newline="") as f:
            csv.writer(f).writerows(weight_rows)
    write_json(args.out / "id_analysis.json", {"runs": [str(r) for r in args.run], "sample_seed": args.sample_seed,
                                               "sample": [{"user": u, "items": items} for u, items in sample],
                                               "per_run": per_run, "attention_weights": weights})
    notes = [f"Runs: {', '.join(str(r) for r in args.run)} (mean ± std over them).",
             f"Sample: {len(sample)} users, {sum(len(i) for _, i in sample)} items (users with 2..{args.max_items} "
             f"training items; " + ("no item shared" if args.shared == "refuse" else "an item shared with an earlier "
                                    "sampled user kept with that user only") + f"), sample seed {args.sample_seed}."]
    text = markdown(rows) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    if len(weight_rows) > 1:
        text += ("\n" + markdown(weight_rows) + "\n\n- id weight: the ID embedding's weight against the projected "
                 "features in each modality's attention (eq. 1); id majority: the share of items where it is above "
                 "one half; fusion weight: each enhanced modality's weight in the fusion.\n")
    write_text(args.out / "id_analysis.md", text)
    print((args.out / "id_analysis.md").read_text())
    return summary


if __name__ == "__main__":
    entry_point(main)
