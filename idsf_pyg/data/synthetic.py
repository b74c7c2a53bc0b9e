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
