import numpy as np
import pytest

from idsf_pyg.data import EDGE, held_out_counts, make_synthetic, modality_names, random_split_per_user


@pytest.mark.parametrize("n,val,test", [(1, 0, 0), (2, 0, 0), (3, 1, 1), (9, 1, 1), (10, 1, 1),
                                        (14, 1, 1), (15, 2, 1), (20, 2, 2), (37, 4, 3), (100, 10, 10)])
def test_held_out_counts_follow_the_paper_rule(n, val, test):
    # n < 10: 1 + 1; else k = int(0.2 n), test = k // 2, valid = k - k // 2 (n < 3: all train).
    v, t = held_out_counts(np.array([n]))
    assert (int(v[0]), int(t[0])) == (val, test)


def test_split_partitions_each_users_items():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(30), rng.integers(3, 40, size=30))
    items = np.concatenate([rng.permutation(100)[:c] for c in np.bincount(users)])
    parts = random_split_per_user(users, items, seed=3)
    for u in range(30):
        got = [set(p.items[p.users == u]) for p in parts.values()]
        assert set().union(*got) == set(items[users == u])
        assert sum(len(g) for g in got) == int((users == u).sum())
        v, t = held_out_counts(np.array([(users == u).sum()]))
        assert len(got[1]) == v[0] and len(got[2]) == t[0]


def test_synthetic_is_deterministic_and_follows_schema():
    a, b, c = make_synthetic(seed=0), make_synthetic(seed=0), make_synthetic(seed=1)
    assert (a[EDGE].edge_index == b[EDGE].edge_index).all()
    assert not (a[EDGE].edge_index.shape == c[EDGE].edge_index.shape
                and bool((a[EDGE].edge_index == c[EDGE].edge_index).all()))
    assert modality_names(a) == ["view_a", "view_b"]
    assert a["item"].x_view_a.shape == (a["item"].num_nodes, 64)
    # The planted signal: view_a is a cleaner view of the item factors than view_b.
    assert "0.2" in a.feature_sources["view_a"] and "1.0" in a.feature_sources["view_b"]
