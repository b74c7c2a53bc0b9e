"""Item features from a knowledge graph (RecBole's ``.kg`` triples and ``.link`` item -> entity map).

For ML-100k these are Freebase facts about the movies (actors, directors, writers, producers, genres,
awards, language, country): a real, structured second modality beside the title text.

Construction (deterministic, no training):

1. every item linked to an entity gets the **(relation, neighbour entity)** pairs of the triples it is in:
   ``(r, t)`` for ``(e, r, t)`` and ``(r^-1, h)`` for ``(h, r, e)``;
2. pairs shared by fewer than ``min_items`` items are dropped (they cannot relate two items);
3. each item's multi-hot row over the kept pairs is L2-normalized (:math:`A`, items x pairs, sparse);
4. :math:`A` is reduced to ``dim`` dense columns by its truncated SVD, through the eigendecomposition of
   the item Gram matrix :math:`AA^\\top = U\\Lambda U^\\top` (items x items, exact): the features are
   :math:`U_{:,1..dim}\\,\\Lambda_{1..dim}^{1/2}`, each column's sign fixed so that its largest entry is
   positive. Items without a kept pair get a zero row (counted in the coverage report). The items x items
   Gram matrix is dense: fine for catalogues of a few ten thousand items, not for millions.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..io import write_with
from .errors import DataFormatError


@dataclass
class KGCoverage:
    """How much of the catalogue the knowledge graph describes."""
    items: int
    linked: int            # items with an entity in the .link file
    with_triples: int      # linked items in at least one triple
    with_features: int     # items with at least one kept (relation, entity) pair
    pairs_kept: int
    pairs_total: int
    triples: int
    energy_kept: float = 1.0  # share of sum_i ||a_i||^2 the dim columns keep (1 when dim >= the rank)

    def describe(self) -> str:
        return (f"{self.with_features} of {self.items} items have features ({self.items - self.linked} not linked, "
                f"{self.linked - self.with_triples} linked without triples, "
                f"{self.with_triples - self.with_features} with only rare pairs); "
                f"{self.pairs_kept} of {self.pairs_total} (relation, entity) pairs kept, {self.triples} triples; "
                f"the SVD keeps {100 * self.energy_kept:.0f}% of the rows' energy")


def _read_tsv(path: Path, columns: int) -> List[Tuple[int, List[str]]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataFormatError(path, f"cannot read: {e}") from None
    if not lines:
        raise DataFormatError(path, "the file is empty")
    rows = []
    for number, line in enumerate(lines[1:], start=2):  # line 1: RecBole's name:type header
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != columns or not all(f.strip() for f in fields):
            raise DataFormatError(path, f"expected {columns} tab-separated non-empty fields, got {len(fields)}: "
                                        f"{line[:80]!r}", line=number)
        rows.append((number, [f.strip() for f in fields]))
    return rows


def kg_item_features(kg_file: Path, link_file: Path, item_tokens: Sequence[str], dim: int = 128,
                     min_items: int = 2) -> Tuple[np.ndarray, KGCoverage]:
    """``[len(item_tokens), dim]`` float32 features of the items (see the module docstring) and the coverage.

    ``item_tokens[i]`` is the dataset's token of item ``i`` (the ``.link`` file's ``item_id``).
    """
    if dim < 1 or min_items < 1:
        raise ValueError(f"dim and min_items must be >= 1, got {dim}, {min_items}")
    index = {tok: i for i, tok in enumerate(item_tokens)}
    entity_items: Dict[str, List[int]] = {}
    linked = set()
    for _, (item, entity) in _read_tsv(Path(link_file), 2):
        if item in index:  # links of items outside the interactions are ignored
            entity_items.setdefault(entity, []).append(index[item])
            linked.add(index[item])
    pair_id: Dict[Tuple[str, str], int] = {}
    rows: List[int] = []
    cols: List[int] = []
    triples = 0
    for _, (head, rel, tail) in _read_tsv(Path(kg_file), 3):
        triples += 1
        for entity, pair in ((head, (rel, tail)), (tail, ("^-1" + rel, head))):
            for item in entity_items.get(entity, ()):
                rows.append(item)
                cols.append(pair_id.setdefault(pair, len(pair_id)))
    n = len(item_tokens)
    with_triples = len(set(rows))
    if not rows:
        raise DataFormatError(kg_file, f"no triple mentions an item entity of {link_file}")
    # one entry per (item, pair); keep pairs of >= min_items items
    pairs = np.unique(np.asarray(rows, dtype=np.int64) * len(pair_id) + np.asarray(cols, dtype=np.int64))
    items_of, pair_of = pairs // len(pair_id), pairs % len(pair_id)
    counts = np.bincount(pair_of, minlength=len(pair_id))
    keep = counts[pair_of] >= min_items
    items_of, pair_of = items_of[keep], pair_of[keep]
    kept_ids, pair_col = np.unique(pair_of, return_inverse=True)
    # Gram matrix of the L2-normalized binary rows: G = D^-1/2 (B B^T) D^-1/2, B binary items x pairs, kept
    # sparse (ML-100k: 1,682 x 10,665 with ~0.3 % nonzero); B B^T counts shared pairs, exactly, in float64.
    per_item = np.bincount(items_of, minlength=n).astype(np.float64)
    b = torch.sparse_coo_tensor(torch.from_numpy(np.stack([items_of, pair_col])),
                                torch.ones(len(items_of), dtype=torch.float64), (n, len(kept_ids))).coalesce()
    shared = torch.sparse.mm(b, b.t().coalesce()).to_dense().numpy()
    scale = np.where(per_item > 0, 1.0 / np.sqrt(np.maximum(per_item, 1.0)), 0.0)
    gram = shared * scale[:, None] * scale[None, :]
    values, vectors = np.linalg.eigh(gram)               # ascending
    order = np.argsort(-values, kind="stable")[:dim]
    values, vectors = np.clip(values[order], 0.0, None), vectors[:, order]
    signs = np.sign(vectors[np.abs(vectors).argmax(0), np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    feats = (vectors * signs * np.sqrt(values)).astype(np.float32)
    feats[per_item == 0] = 0.0   # exactly: eigenvectors are 0 there up to rounding
    trace = float(np.trace(gram))
    if feats.shape[1] < dim:  # fewer items than dim: pad with zero columns
        feats = np.hstack([feats, np.zeros((n, dim - feats.shape[1]), dtype=np.float32)])
    coverage = KGCoverage(items=n, linked=len(linked), with_triples=with_triples,
                          with_features=int((per_item > 0).sum()), pairs_kept=int(len(kept_ids)),
                          pairs_total=len(pair_id), triples=triples,
                          energy_kept=float(values.sum() / trace) if trace > 0 else 0.0)
    return feats, coverage


def cached_kg_item_features(kg_file: Path, link_file: Path, item_tokens: Sequence[str], cache: Path,
                            dim: int = 128, min_items: int = 2) -> Tuple[np.ndarray, KGCoverage]:
    """:func:`kg_item_features`, cached under ``cache`` by the files' contents, the items and the settings."""
    h = hashlib.sha256()
    for p in (kg_file, link_file):
        h.update(Path(p).read_bytes())
    h.update("\n".join(item_tokens).encode())
    h.update(f"{dim}:{min_items}:v3".encode())
    stem = cache / f"kg-{h.hexdigest()[:24]}"
    npy, meta = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if npy.is_file() and meta.is_file():
        try:
            arr = np.load(npy)
            cov = KGCoverage(**json.loads(meta.read_text()))
            if arr.shape == (len(item_tokens), dim):
                return arr, cov
        except (OSError, ValueError, TypeError):
            pass  # a damaged cache entry is recomputed
    arr, cov = kg_item_features(kg_file, link_file, item_tokens, dim, min_items)
    cache.mkdir(parents=True, exist_ok=True)
    write_with(npy, lambda f: np.save(f, arr))
    write_with(meta, lambda f: f.write(json.dumps(cov.__dict__).encode()))
    return arr, cov
