"""``load_dataset``: a folder or file path -> the graph schema, format detected."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

import numpy as np
from torch_geometric.data import HeteroData

from ..errors import ConfigError
from ..io import sha256_file
from .errors import DataFormatError
from .graph import add_item_features, build_graph
from .readers import (Interactions, SPLIT_LABELS, atomic_integer_ids, index_tokens, read_atomic_inter,
                      feature_matrix_shape, read_feature_matrix, read_id_map, read_lattice_split)
from .split import random_split_per_user
from .synthetic import make_synthetic

PathLike = Union[str, Path]
FeatureSpec = Union[str, Path, np.ndarray]


def default_data_root() -> Path:
    """``$IDSF_DATA`` or ``../shared/data`` relative to the repository."""
    env = os.environ.get("IDSF_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _find_lattice(folder: Path) -> Optional[Path]:
    for cand in (folder / "5-core", folder):
        if (cand / "train.json").is_file():
            return cand
    return None


def load_dataset(path: PathLike, features: Optional[Mapping[str, FeatureSpec]] = None,
                 discover_features: bool = True, split_seed: int = 0, name: Optional[str] = None,
                 edge_weight: Optional[str] = None, root: Optional[PathLike] = None,
                 processed: bool = True) -> HeteroData:
    r"""The graph of a dataset: ``InteractionDataset(path, root, ...)[0]``
    (:class:`~idsf_pyg.data.datasets.InteractionDataset`), i.e. :func:`parse_dataset` the first time, the saved
    graph under ``root/processed/<key>/`` (default ``$IDSF_CACHE/datasets/<name>``) afterwards. The arguments are
    :func:`parse_dataset`'s; ``processed=False`` parses every time and saves nothing."""
    if not processed:
        return parse_dataset(path, features, discover_features, split_seed, name, edge_weight)
    from .datasets import InteractionDataset
    return InteractionDataset(path, root, features=features, discover_features=discover_features,
                              split_seed=split_seed, edge_weight=edge_weight, name=name)[0]


def parse_dataset(path: PathLike, features: Optional[Mapping[str, FeatureSpec]] = None,
                  discover_features: bool = True, split_seed: int = 0, name: Optional[str] = None,
                  edge_weight: Optional[str] = None) -> HeteroData:
    r"""Parses interactions (and item features) into the graph schema.

    Detected formats:

    * ``"synthetic"``: the built-in synthetic dataset (:func:`make_synthetic`);
    * a folder with ``5-core/{train,val,test}.json`` (or those files directly),
      optionally ``item_list.txt`` / ``user_list.txt`` giving the id counts;
    * an atomic ``.inter`` file, or a folder holding exactly one: with an
      ``x_label`` column its split is used, otherwise the interactions are split
      per user with :func:`random_split_per_user` and ``split_seed``.

    Args:
        path: The dataset folder or file.
        features: Modality name -> spec. A spec is a ``.npy`` path, an array,
            ``"random[:<dim>[:<std>]]"`` (seeded Gaussian features: the
            modality name must start with ``random``), or ``"item-text-minilm"``
            (the item file's text encoded by all-MiniLM-L6-v2, for RecBole
            folders such as ML-100k).
        discover_features: Also attach every ``<modality>_feat.npy`` found next
            to the interactions (``image_feat.npy`` -> ``x_image``).
        split_seed: Seed of the per-user split for files without one.
        name: Dataset name (default: the folder name).
        edge_weight: Weights of the training edges, as ``data['user', 'interacts', 'item'].edge_weight``
            (and on the reverse relation), from a ``.inter`` file's columns: ``"rating"`` (the rating
            itself) or ``"recency:<days>"`` (:math:`0.5^{(t_{max} - t)/h}`, half-life :math:`h` days,
            :math:`t_{max}` the latest training timestamp). ``None`` (default): no weights. Models use
            them only when asked (``use_edge_weight``).
    """
    weight_kind, half_life = parse_edge_weight(edge_weight)
    if str(path) == "synthetic":
        if weight_kind is not None:
            raise ConfigError("the synthetic dataset has no ratings or timestamps to weight edges by", "edge_weight")
        data = make_synthetic(seed=split_seed)
        for mod, spec in (features or {}).items():
            _attach(data, mod, spec, None, None, split_seed)
        return data
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "no such file or folder")
    folder = path if path.is_dir() else path.parent
    name = name or (folder.parent.name if folder.name == "5-core" else folder.name)
    item_tokens = None
    id_maps = {"user": None, "item": None}  # original ids by integer id, where the dataset has them
    item_file = None

    lattice = _find_lattice(path) if path.is_dir() else (path.parent if path.name == "train.json" else None)
    if lattice is not None:
        if weight_kind is not None:
            raise ConfigError(f"{lattice}: the LATTICE split (train/val/test.json) has no ratings or timestamps; "
                              "edge weights need a .inter file with those columns", "edge_weight")
        splits = read_lattice_split(lattice)
        root = lattice.parent if lattice.name == "5-core" else lattice
        id_maps = _id_maps(root)
        num_users, num_items = _id_counts(id_maps)
        folder = root
        source = str(lattice)
    else:
        inter = path
        if path.is_dir():
            cands = sorted(path.glob("*.inter"))
            if len(cands) != 1:
                raise DataFormatError(path, f"expected a 5-core/ split or exactly one .inter file, found "
                                      f"{len(cands)} .inter files")
            inter = cands[0]
        elif path.suffix != ".inter":
            raise DataFormatError(path, "unknown format: pass a dataset folder, train.json or a .inter file")
        atomic = read_atomic_inter(inter)
        source = str(inter)
        values = None
        if weight_kind is not None:
            values = atomic.ratings if weight_kind == "rating" else atomic.timestamps
            if values is None:
                raise DataFormatError(inter, f"edge weights by {weight_kind} need a '{weight_kind}' column; the header "
                                      "has none", 1, "edge_weight")
            if weight_kind == "rating" and (values < 0).any():
                row = int(np.argmax(values < 0))
                raise DataFormatError(inter, f"rating {values[row]:g} is negative: edge weights must be >= 0",
                                      row + 2, "rating")
            if weight_kind == "rating":
                with np.errstate(over="ignore"):
                    over = ~np.isfinite(values.astype(np.float32))
                if over.any():
                    row = int(np.argmax(over))
                    raise DataFormatError(inter, f"rating {values[row]:g} overflows float32 (edge weights are "
                                          "float32): rescale the ratings", row + 2, "rating")
        if atomic.labels is not None:
            users = atomic_integer_ids(inter, atomic.user_tokens, "userID")
            items = atomic_integer_ids(inter, atomic.item_tokens, "itemID")
            rows = Interactions(users, items, values)
            splits = {SPLIT_LABELS[lab]: rows.take(np.flatnonzero(atomic.labels == lab)) for lab in SPLIT_LABELS}
            id_maps = _id_maps(inter.parent)
            num_users, num_items = _id_counts(id_maps)
        else:
            users, user_tokens = index_tokens(atomic.user_tokens)
            items, item_tokens = index_tokens(atomic.item_tokens)
            # repeated ratings count once (the first one's value is kept)
            pairs, first = np.unique(np.stack([users, items]), axis=1, return_index=True)
            splits = random_split_per_user(pairs[0], pairs[1], seed=split_seed,
                                           values=None if values is None else values[first])
            num_users, num_items = int(users.max()) + 1, len(item_tokens)
            id_maps = {"user": list(user_tokens), "item": list(item_tokens)}
            cand_item = inter.with_suffix(".item")
            item_file = cand_item if cand_item.is_file() else None

    # Feature files fix the item count when no id map does.
    found: Dict[str, Path] = {}
    if discover_features:
        for f in sorted(folder.glob("*_feat.npy")):
            found[f.name[: -len("_feat.npy")]] = f
    if num_items is None and found:
        first_mod, first_file = next(iter(found.items()))
        shape = feature_matrix_shape(first_file, f"feature matrix '{first_mod}'")
        if len(shape) != 2 or shape[0] < 1:
            raise DataFormatError(first_file, f"feature matrix '{first_mod}' must be 2-D [num_items, dim] (its rows "
                                  f"give the item count when there is no item_list.txt), got shape {shape}")
        num_items = int(shape[0])
    if weight_kind is not None:
        splits = {k: Interactions(v.users, v.items, None if k != "train" else _weights(v.values, weight_kind,
                                                                                        half_life))
                  for k, v in splits.items()}
        train_weights = splits["train"].values
        if train_weights is not None and len(train_weights) and not (train_weights > 0).any():
            raise DataFormatError(source, f"every training edge gets weight 0 from its {weight_kind} (all "
                                  f"{len(train_weights)} of them): weighted propagation would carry nothing",
                                  field=weight_kind)
    data = build_graph(splits, num_users, num_items, name=name, source=source)
    data.source = source
    data.user_ids, data.item_ids = id_maps["user"], id_maps["item"]
    if weight_kind is not None:
        data.edge_weight_source = (f"rating column of {Path(source).name}" if weight_kind == "rating" else
                                   f"recency: 0.5^((t_max - t) / {half_life:g} days), t_max = latest training "
                                   f"timestamp of {Path(source).name}")
    for mod, f in found.items():
        if features and mod in features:
            continue
        _attach(data, mod, f, item_tokens, item_file, split_seed)
    for mod, spec in (features or {}).items():
        _attach(data, mod, spec, item_tokens, item_file, split_seed)
    return data


def _id_maps(folder: Path) -> Dict[str, Optional[list]]:
    """``user_list.txt`` / ``item_list.txt`` (``original_id<TAB>integer_id``) of a dataset folder, if there."""
    return {kind: read_id_map(folder / f"{kind}_list.txt") if (folder / f"{kind}_list.txt").is_file() else None
            for kind in ("user", "item")}


def _id_counts(id_maps: Dict[str, Optional[list]]):
    """Node counts fixed by the id maps (``None`` where there is no map)."""
    return tuple(None if id_maps[k] is None else len(id_maps[k]) for k in ("user", "item"))


def parse_edge_weight(spec: Optional[str]):
    """``None``, ``"rating"`` or ``"recency:<days>"`` -> ``(kind, half-life days)``."""
    if spec is None:
        return None, None
    if spec == "rating":
        return "rating", None
    kind, _, days = str(spec).partition(":")
    if kind == "recency":
        try:
            h = float(days)
        except ValueError:
            h = float("nan")
        if np.isfinite(h) and h > 0:
            return "timestamp", h
    raise ConfigError(f"{spec!r}: an edge-weight spec is 'rating' or 'recency:<half-life in days>' (e.g. "
                      "recency:180)", "edge_weight")


def _weights(values: np.ndarray, kind: str, half_life: Optional[float]) -> np.ndarray:
    if kind == "rating":
        return values.astype(np.float32)
    age_days = (values.max() - values) / 86400.0
    return np.power(0.5, age_days / half_life).astype(np.float32)


def _attach(data: HeteroData, modality: str, spec: FeatureSpec, item_tokens, item_file, seed: int) -> None:
    num_items = data["item"].num_nodes
    if isinstance(spec, np.ndarray):
        add_item_features(data, modality, spec, "user-supplied array")
        return
    text = str(spec)
    if text == "random" or text.startswith("random:"):
        if not modality.startswith("random"):
            raise ConfigError(f"modality {modality!r} gets random features: its name must start with "
                              f"'random' (e.g. 'random1') so no table mistakes it for real features", "features")
        parts = text.split(":")
        try:
            if len(parts) > 3:
                raise ValueError
            dim = int(parts[1]) if len(parts) > 1 else 128
            std = float(parts[2]) if len(parts) > 2 else 1.0
        except ValueError:
            raise ConfigError(f"random feature spec {text!r} of modality {modality!r} must be random[:dim[:std]], "
                              "e.g. random:384:0.05", "features") from None
        if not 1 <= dim <= 1_000_000 or not (np.isfinite(std) and std > 0):
            raise ConfigError(f"random feature spec {text!r} of modality {modality!r}: dim must be 1..1000000 and "
                              "std a positive number", "features")
        rng = np.random.default_rng([seed, sum(map(ord, modality))])
        arr = rng.standard_normal((num_items, dim), dtype=np.float32)
        if std != 1.0:
            arr *= np.float32(std)
        add_item_features(data, modality, arr, f"random: N(0,{std:g}^2), dim {dim}, seed {seed} (not real features)")
    elif text == "item-text-minilm":
        if item_file is None or item_tokens is None:
            raise DataFormatError(data.source if hasattr(data, "source") else None,
                                  "'item-text-minilm' needs a RecBole folder with a .item file (e.g. ml-100k)")
        from .text import encode_texts, item_texts_from_atomic
        texts = item_texts_from_atomic(item_file, item_tokens)
        missing = sum(1 for t in texts if not t)
        arr = encode_texts(texts)
        add_item_features(data, modality, arr, f"all-MiniLM-L6-v2 over title/year/genres of {item_file.name}"
                          f" ({missing} items without text)")
    elif text == "item-kg" or text.startswith("item-kg:"):
        try:
            dim = int(text.split(":", 1)[1]) if ":" in text else 128
            if dim < 1:
                raise ValueError
        except ValueError:
            raise ConfigError(f"knowledge-graph spec {text!r} of modality {modality!r} must be item-kg[:dim], "
                              "e.g. item-kg:128", "features") from None
        kg, link = (None, None) if item_file is None else (item_file.with_suffix(".kg"), item_file.with_suffix(".link"))
        if kg is None or not kg.is_file() or not link.is_file() or item_tokens is None:
            raise DataFormatError(getattr(data, "source", None), "'item-kg' needs a RecBole folder with .kg and .link "
                                  "files next to the .inter and .item files (e.g. ml-100k)")
        from .kg import cached_kg_item_features
        from .text import cache_dir
        arr, coverage = cached_kg_item_features(kg, link, item_tokens, cache_dir(), dim=dim)
        add_item_features(data, modality, arr, f"knowledge graph {kg.name} + {link.name}: multi-hot of (relation, "
                          f"entity) pairs shared by >= 2 items, {dim}-d truncated SVD; {coverage.describe()}")
    else:
        p = Path(text)
        arr = read_feature_matrix(p, num_items, modality)
        add_item_features(data, modality, arr, f"file:{p} sha256:{sha256_file(p)[:16]}")
