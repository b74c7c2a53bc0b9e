"""A small synthetic multimodal dataset with a planted signal.

Latent user and item factors drive the interactions; each item modality is a
noisy linear view of the item factors, ``view_a`` more informative than
``view_b``. A model that reads the features can therefore recover what IDs
alone only learn from (few) interactions. Used as the built-in default
dataset and in tests; deterministic by seed.
"""
from __future__ import annotations

import numpy as np
from torch_geometric.data import HeteroData

from .graph import build_graph
from .split import random_split_per_user


def make_synthetic(num_users: int = 600, num_items: int = 800, latent_dim: int = 16,
                   min_per_user: int = 8, max_per_user: int = 24,
                   feature_dims: tuple = (64, 48), feature_noise: tuple = (0.2, 1.0),
                   sharpness: float = 3.0, seed: int = 0) -> HeteroData:
    r"""Generates the synthetic graph in the :mod:`idsf_pyg.data.graph` schema.

    Each user :math:`u` picks :math:`n_u \sim U[\text{min},\text{max}]` distinct
    items by Gumbel-top-:math:`n_u` sampling from
    :math:`\text{softmax}(s \cdot \mathbf{p}_u^\top \mathbf{q}_i)` with unit-norm
    factors. Modality :math:`m` is
    :math:`\mathbf{X}_m = \mathbf{Q}\mathbf{A}_m + \sigma_m \mathbf{N}`, with a
    random projection :math:`\mathbf{A}_m` and standard normal noise.
    The split follows :func:`~idsf_pyg.data.split.random_split_per_user`.
    """
    if not 0 < min_per_user <= max_per_user <= num_items:
        raise ValueError("need 0 < min_per_user <= max_per_user <= num_items")
    rng = np.random.default_rng(seed)
    p = rng.standard_normal((num_users, latent_dim))
    q = rng.standard_normal((num_items, latent_dim))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    logits = sharpness * np.sqrt(latent_dim) * (p @ q.T)
    gumbel = -np.log(-np.log(rng.random(logits.shape)))
    ranked = np.argsort(-(logits + gumbel), axis=1)
    n_u = rng.integers(min_per_user, max_per_user + 1, size=num_users)
    mask = np.arange(num_items)[None, :] < n_u[:, None]
    users = np.repeat(np.arange(num_users), n_u)
    items = ranked[mask]
    splits = random_split_per_user(users, items, seed=seed)

    features, sources = {}, {}
    for name, dim, noise in zip(("view_a", "view_b"), feature_dims, feature_noise):
        proj = rng.standard_normal((latent_dim, dim)) / np.sqrt(latent_dim)
        x = q @ proj * np.sqrt(latent_dim) + noise * rng.standard_normal((num_items, dim))
        features[name] = x.astype(np.float32)
        sources[name] = f"synthetic: item factors x random projection + N(0, {noise}^2) noise"
    return build_graph(splits, num_users, num_items, features, sources, name=f"synthetic(seed={seed})")


def make_scale_graph(num_users: int, num_items: int, num_edges: int, feature_dims: tuple = (64,),
                     latent_dim: int = 16, min_per_user: int = 3, popularity_exponent: float = 0.8,
                     seed: int = 0) -> HeteroData:
    r"""A large synthetic graph for scaling benchmarks, built in memory linear in users, items and edges
    (no ``[num_users, num_items]`` array, unlike :func:`make_synthetic`): up to 10⁶ users, 10⁵ items,
    10⁷ edges on a laptop.

    Each user's degree is :math:`\text{min} + \text{Geometric}` with mean ``num_edges / num_users``
    (a long tail, as in real 5-core data); items are drawn with Zipf-like popularity
    :math:`\propto r^{-\text{popularity\_exponent}}` over a random ranking :math:`r`. Repeated (user, item)
    draws are merged, so the graph holds slightly fewer than ``num_edges`` edges (``data.split_report``
    counts none: they are removed before the split). Features are noisy linear views of latent item
    factors, as in :func:`make_synthetic`. The split is :func:`~idsf_pyg.data.split.random_split_per_user`.
    """
    if not (num_users >= 1 and num_items >= min_per_user + 2 and num_edges >= num_users * min_per_user):
        raise ValueError(f"need num_items >= {min_per_user + 2} and num_edges >= num_users * {min_per_user} "
                         f"(every user needs a training, a validation and a test item), got "
                         f"{num_users} users, {num_items} items, {num_edges} edges")
    rng = np.random.default_rng(seed)
    extra_mean = num_edges / num_users - min_per_user
    extra = rng.geometric(1.0 / (1.0 + extra_mean), size=num_users) - 1 if extra_mean > 0 else 0
    degree = np.minimum(min_per_user + extra, num_items).astype(np.int64)
    weights = (1.0 + rng.permutation(num_items)) ** -popularity_exponent
    cdf = np.cumsum(weights / weights.sum())
    users = np.repeat(np.arange(num_users, dtype=np.int64), degree)
    items = np.minimum(np.searchsorted(cdf, rng.random(users.size)), num_items - 1).astype(np.int64)
    pairs = np.unique(users * num_items + items)   # merges repeats; sorted by user, then item
    users, items = pairs // num_items, pairs % num_items
    splits = random_split_per_user(users, items, seed=seed)

    q = rng.standard_normal((num_items, latent_dim)).astype(np.float32)
    features, sources = {}, {}
    for k, dim in enumerate(feature_dims):
        name = f"view_{chr(ord('a') + k)}"
        proj = rng.standard_normal((latent_dim, dim)).astype(np.float32) / np.sqrt(latent_dim)
        features[name] = q @ proj + 0.5 * rng.standard_normal((num_items, dim)).astype(np.float32)
        sources[name] = "synthetic-scale: item factors x random projection + N(0, 0.5^2) noise"
    return build_graph(splits, num_users, num_items, features, sources,
                       name=f"synthetic-scale({num_users}u,{num_items}i,{num_edges}e,seed={seed})")
