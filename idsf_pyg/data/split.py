"""Per-user random split with the rule of the LATTICE/MICRO/IDSF preprocessing."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from .readers import Interactions


def held_out_counts(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Validation and test sizes for users with ``n`` interactions.

    The paper's preprocessing rule: a user with fewer than 10 interactions
    holds out 1 validation and 1 test item; otherwise
    :math:`k = \lfloor 0.2\,n \rfloor` items are held out, ``test = k // 2`` and
    ``valid = k - k // 2``. Users with fewer than 3 interactions (not present
    in 5-core data) keep everything in training, so that no user is left
    without a training edge.
    """
    n = np.asarray(n, dtype=np.int64)
    k = (n * 2) // 10  # int(0.2 * n) without float rounding
    test = np.where(n < 10, 1, k // 2)
    val = np.where(n < 10, 1, k - k // 2)
    few = n < 3
    return np.where(few, 0, val), np.where(few, 0, test)


def random_split_per_user(users: np.ndarray, items: np.ndarray, seed: int = 0,
                          values: Optional[np.ndarray] = None) -> Dict[str, Interactions]:
    """Splits interactions per user at random with :func:`held_out_counts`.

    Deterministic for a given ``seed`` and input order. ``values`` (one per pair,
    e.g. ratings) follow their pairs. The items of a user are shuffled; the
    first ``test`` go to test, the next ``valid`` to validation and the rest to
    training.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if users.shape != items.shape or users.ndim != 1:
        raise ValueError(f"users and items must be 1-D of equal length, got {users.shape} and {items.shape}")
    rng = np.random.default_rng(seed)
    key = rng.random(users.shape[0])
    order = np.lexsort((key, users))  # grouped by user, random inside a user
    u_sorted = users[order]
    n_users = int(users.max()) + 1 if users.size else 0
    counts = np.bincount(u_sorted, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(users.shape[0]) - starts[u_sorted]
    n_val, n_test = held_out_counts(counts)
    is_test = rank < n_test[u_sorted]
    is_val = ~is_test & (rank < (n_test + n_val)[u_sorted])
    is_train = ~(is_test | is_val)
    out = {}
    for name, mask in (("train", is_train), ("val", is_val), ("test", is_test)):
        idx = np.sort(order[mask])  # keep the file's order inside each split
        out[name] = Interactions(users[idx], items[idx], None if values is None else np.asarray(values)[idx])
    return out
