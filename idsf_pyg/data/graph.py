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

from .errors import DataFormatError
from .readers import Interactions, check_feature_matrix

USER, ITEM = "user", "item"
EDGE = (USER, "interacts", ITEM)
REV_EDGE = (ITEM, "rev_interacts", USER)
FEATURE_PREFIX = "x_"


def _edges(inter: Interactions) -> Tensor:
    return torch.from_numpy(np.stack([inter.users, inter.items]).astype(np.int64))


def build_graph(splits: Mapping[str, Interactions], num_users: Optional[int] = None,
                num_items: Optional[int] = None, features: Optional[Mapping[str, np.ndarray]] = None,
                feature_sources: Optional[Mapping[str, str]] = None, name: str = "dataset",
                source: Optional[str] = None) -> HeteroData:
    """Builds the :mod:`idsf_pyg.data.graph` schema from split interactions.

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
    for kind, count, attr in (("user", num_users, "users"), ("item", num_items, "items")):
        top = max(int(getattr(splits[s], attr).max()) for s in splits)
        if count is not None and top >= count:
            split = next(s for s in splits if int(getattr(splits[s], attr).max()) >= count)
            raise DataFormatError(source, f"{kind} id {top} in the '{split}' split cannot be indexed: "
                                  f"the dataset has {count} {kind}s (ids 0..{count - 1})",
                                  field=f"{kind} id")
    num_users = num_users if num_users is not None else max(int(s.users.max()) for s in splits.values()) + 1
    num_items = num_items if num_items is not None else max(int(s.items.max()) for s in splits.values()) + 1

    data = HeteroData()
    data.name = name
    data[USER].num_nodes = num_users
    data[ITEM].num_nodes = num_items
    train = _edges(splits["train"])
    data[EDGE].edge_index = train
    data[EDGE].val_edge_index = _edges(splits["val"])
    data[EDGE].test_edge_index = _edges(splits["test"])
    data[REV_EDGE].edge_index = train.flip(0)
    data.feature_sources = {}
    for mod, arr in (features or {}).items():
        src = (feature_sources or {}).get(mod, "user-supplied array")
        add_item_features(data, mod, arr, src)
    return data


def add_item_features(data: HeteroData, modality: str, features, source: str) -> HeteroData:
    """Attaches one item modality as ``data['item'].x_<modality>``.

    Args:
        modality: A name such as ``"text"``, ``"image"`` or ``"random1"``; it
            must say what the features are (never call random features "text").
        features: ``[num_items, d]`` array or tensor, finite.
        source: Where the features come from, recorded in ``data.feature_sources``.
    """
    if not modality.isidentifier():
        raise ValueError(f"modality name {modality!r} must be a Python identifier")
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
    }
