r"""The user–item graph schema shared by every loader, model and evaluator.

A dataset is a :class:`torch_geometric.data.HeteroData` with

* ``data['user'].num_nodes`` and ``data['item'].num_nodes``;
* ``data['item'].x_<modality>``: one float feature matrix ``[num_items, d_m]``
  per item modality (``x_text``, ``x_image``, ...), in a stable order;
* ``data['user', 'interacts', 'item'].edge_index``: the **training** edges
  ``[2, E_train]`` (row 0 = user, row 1 = item) — the only edges any model sees;
* ``...val_edge_index`` / ``...test_edge_index``: held-out edges, same layout;
* ``data['item', 'rev_interacts', 'user'].edge_index``: the reverse of the
  training edges, for PyG's heterogeneous operators;
* ``data.name`` and ``data.feature_sources`` (modality -> a description of
  where its features come from, e.g. ``"file:text_feat.npy"``, ``"random"``).

Items (and users) without any training edge stay in the graph.
"""
from __future__ import annotations

import hashlib
from typing import Dict, List, Mapping, Optional

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..errors import ConfigError
from .errors import DataFormatError
from .readers import MAX_ID, Interactions, check_feature_matrix

USER, ITEM = "user", "item"
EDGE = (USER, "interacts", ITEM)
REV_EDGE = (ITEM, "rev_interacts", USER)
FEATURE_PREFIX = "x_"


def _edges(inter: Interactions) -> Tensor:
    return torch.from_numpy(np.stack([inter.users, inter.items]).astype(np.int64))


#: Inferred node counts (``max id + 1``) may exceed the ids actually used by at most this factor (plus
#: :data:`SPARSE_SLACK`); beyond that the ids are not 0-based indices and would waste memory silently.
SPARSE_FACTOR, SPARSE_SLACK = 10, 10_000


def build_graph(splits: Mapping[str, Interactions], num_users: Optional[int] = None,
                num_items: Optional[int] = None, features: Optional[Mapping[str, np.ndarray]] = None,
                feature_sources: Optional[Mapping[str, str]] = None, name: str = "dataset",
                source: Optional[str] = None) -> HeteroData:
    """Builds the :mod:`idsf_pyg.data.graph` schema from split interactions, checking them first.

    Checks, each an error naming ``source``: every split present and non-empty; ids inside the given
    counts (or, when counts are inferred as ``max id + 1``, in a plausible range: see
    :data:`~idsf_pyg.data.readers.MAX_ID`, :data:`SPARSE_FACTOR`); **no pair in two splits** (a test
    pair that is also a training pair would be masked and scored as a leak; validation equal to test
    would select on test).
    Repeated pairs inside one split are dropped (counted in ``data.split_report``). Users and items that
    appear in validation or test but have no training edge are kept (they are ranked with whatever
    the model gives them without training signal: their ID embeddings stay at initialization) and
    counted in ``data.split_report``.

    Args:
        splits: ``{"train": ..., "val": ..., "test": ...}``.
        num_users / num_items: Node counts; inferred as ``max id + 1`` over all
            splits if not given. An id at or above a given count is an error.
        features: Item feature matrices by modality name.
        feature_sources: Modality name -> where its features come from.
        name: The dataset name stored as ``data.name``.
        source: The file or folder the splits came from (for error messages).
    """
    for split in ("train", "val", "test"):
        if split not in splits:
            raise DataFormatError(source, f"the '{split}' split is missing")
        if len(splits[split]) == 0:
            raise DataFormatError(source, f"the '{split}' split is empty")
    sizes = {}
    for kind, count, attr in (("user", num_users, "users"), ("item", num_items, "items")):
        top = max(int(getattr(splits[s], attr).max()) for s in splits)
        split = next(s for s in splits if int(getattr(splits[s], attr).max()) == top)
        if count is not None and top >= count:
            raise DataFormatError(source, f"{kind} id {top} in the '{split}' split cannot be indexed: "
                                  f"the dataset has {count} {kind}s (ids 0..{count - 1})",
                                  field=f"{kind} id")
        if count is None:
            if top > MAX_ID:  # the readers refuse these; in-memory splits come here directly
                raise DataFormatError(source, f"{kind} id {top} in the '{split}' split is beyond the supported "
                                      f"range (ids must be 0-based indices up to {MAX_ID})", field=f"{kind} id")
            used = int(np.unique(np.concatenate([getattr(splits[s], attr) for s in splits])).size)
            if top + 1 > SPARSE_FACTOR * used + SPARSE_SLACK:
                raise DataFormatError(source, f"{kind} id {top} in the '{split}' split, but only {used} distinct "
                                      f"{kind} ids are used: the ids are not 0-based indices (the graph would "
                                      f"need {top + 1} {kind} nodes). Re-index them (preprocessing.interactions "
                                      f"writes 0..n-1) or give {kind}_list.txt", field=f"{kind} id")
            count = top + 1
        sizes[kind] = count
    num_users, num_items = sizes["user"], sizes["item"]

    cleaned, report = _check_splits(splits, num_items, source)
    data = HeteroData()
    data.name = name
    data[USER].num_nodes = num_users
    data[ITEM].num_nodes = num_items
    train = _edges(cleaned["train"])
    data[EDGE].edge_index = train
    data[EDGE].val_edge_index = _edges(cleaned["val"])
    data[EDGE].test_edge_index = _edges(cleaned["test"])
    data[REV_EDGE].edge_index = train.flip(0)
    if cleaned["train"].values is not None:  # edge weights of the training edges (see load_dataset)
        w = torch.from_numpy(np.ascontiguousarray(cleaned["train"].values, dtype=np.float32))
        data[EDGE].edge_weight = w
        data[REV_EDGE].edge_weight = w
    data.split_report = report
    data.feature_sources = {}
    for mod, arr in (features or {}).items():
        src = (feature_sources or {}).get(mod, "user-supplied array")
        add_item_features(data, mod, arr, src)
    return data


def _check_splits(splits: Mapping[str, Interactions], num_items: int, source: Optional[str]
                  ) -> tuple:
    """Drops repeated pairs inside each split, refuses pairs shared by two splits, counts cold ids."""
    keys, cleaned, report = {}, {}, {"duplicates_dropped": {}, "held_out_without_train": {}}
    for split in ("train", "val", "test"):
        inter = splits[split]
        k = inter.users.astype(np.int64) * num_items + inter.items.astype(np.int64)
        uniq, first = np.unique(k, return_index=True)
        report["duplicates_dropped"][split] = int(k.size - uniq.size)
        keep = np.sort(first)  # the first occurrence of each pair, in file order
        cleaned[split] = inter.take(keep)
        keys[split] = uniq
    if np.array_equal(keys["val"], keys["test"]):
        raise DataFormatError(source, "the 'val' and 'test' splits hold the same pairs: model selection would "
                              "happen on the test split. Give a validation split of its own")
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = np.intersect1d(keys[a], keys[b], assume_unique=True)
        if shared.size:
            u, i = divmod(int(shared[0]), num_items)
            raise DataFormatError(source, f"{shared.size} (user, item) pairs are in both the '{a}' and the '{b}' "
                                  f"split (first: user {u}, item {i}); a pair must be in one split only, "
                                  f"otherwise held-out pairs leak into {a}")
    train_users = np.unique(cleaned["train"].users)
    train_items = np.unique(cleaned["train"].items)
    for split in ("val", "test"):
        inter = cleaned[split]
        report["held_out_without_train"][split] = {
            "users": int(np.setdiff1d(np.unique(inter.users), train_users).size),
            "items": int(np.setdiff1d(np.unique(inter.items), train_items).size)}
    return cleaned, report


def add_item_features(data: HeteroData, modality: str, features, source: str) -> HeteroData:
    """Attaches one item modality as ``data['item'].x_<modality>``.

    Args:
        modality: A name such as ``"text"``, ``"image"`` or ``"random1"``; it
            must say what the features are (never call random features "text").
        features: ``[num_items, d]`` array or tensor, finite.
        source: Where the features come from, recorded in ``data.feature_sources``.
    """
    if not modality.isidentifier():
        raise ConfigError(f"modality name {modality!r} must be a Python identifier (e.g. text, random_image)",
                          "features")
    if isinstance(features, Tensor):
        features = features.detach().cpu().numpy()
    arr = check_feature_matrix(features, data[ITEM].num_nodes, None, f"feature matrix '{modality}' ({source})")
    data[ITEM][FEATURE_PREFIX + modality] = torch.from_numpy(np.ascontiguousarray(arr))
    sources = dict(getattr(data, "feature_sources", {}) or {})
    sources[modality] = source
    data.feature_sources = sources
    return data


def modality_names(data: HeteroData) -> List[str]:
    """The item modalities of a graph, in the order they were added."""
    return [k[len(FEATURE_PREFIX):] for k in data[ITEM].keys() if k.startswith(FEATURE_PREFIX)]


def split_fingerprint(data: HeteroData) -> str:
    """sha256 over node counts and the (sorted) train/val/test edges.

    Independent of edge order, so two loaders of the same split agree.
    """
    h = hashlib.sha256()
    h.update(f"users={data[USER].num_nodes};items={data[ITEM].num_nodes};".encode())
    store = data[EDGE]
    for split, attr in (("train", "edge_index"), ("val", "val_edge_index"), ("test", "test_edge_index")):
        e = getattr(store, attr).cpu().numpy().astype(np.int64)
        order = np.lexsort((e[1], e[0]))
        h.update(split.encode())
        h.update(np.ascontiguousarray(e[:, order]).tobytes())
    return h.hexdigest()


def describe(data: HeteroData) -> Dict[str, object]:
    """Counts and feature provenance of a graph, for logs and results files."""
    store = data[EDGE]
    return {
        "name": getattr(data, "name", "dataset"),
        "users": int(data[USER].num_nodes),
        "items": int(data[ITEM].num_nodes),
        "train_edges": int(store.edge_index.size(1)),
        "val_edges": int(store.val_edge_index.size(1)),
        "test_edges": int(store.test_edge_index.size(1)),
        "modalities": {m: {"dim": int(data[ITEM][FEATURE_PREFIX + m].size(1)),
                           "source": data.feature_sources.get(m, "?")} for m in modality_names(data)},
        "fingerprint": split_fingerprint(data),
        "split_report": getattr(data, "split_report", {}),
        "edge_weight": getattr(data, "edge_weight_source", None),
        "notes": split_notes(data),
    }


def split_notes(data: HeteroData) -> List[str]:
    """Plain sentences for the log about what the loader dropped or found (empty when nothing)."""
    report = getattr(data, "split_report", {}) or {}
    notes = []
    dups = {s: n for s, n in report.get("duplicates_dropped", {}).items() if n}
    if dups:
        notes.append("repeated (user, item) pairs dropped: " + ", ".join(f"{n} in {s}" for s, n in dups.items()))
    for split, c in report.get("held_out_without_train", {}).items():
        if c.get("users") or c.get("items"):
            notes.append(f"{split}: {c['users']} users and {c['items']} items have no training edge (kept; "
                         "their ID embeddings get no training signal)")
    return notes
