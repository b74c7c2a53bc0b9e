"""The real interaction graphs of ../shared/data load with the documented counts."""
import pytest

from idsf_pyg.data import EDGE, load_dataset, split_fingerprint

from ..conftest import need

COUNTS = {  # users, items, train, valid, test (shared/data/README.md)
    "amazon2014/baby": (19445, 7050, 118551, 21682, 20559),
    "amazon2014/sports": (35598, 18357, 218409, 40029, 37899),
    "amazon2014/clothing": (39387, 23033, 197338, 41189, 40150),
}


@pytest.mark.parametrize("rel", sorted(COUNTS))
def test_amazon_counts(shared_data, rel):
    data = load_dataset(need(shared_data / rel))
    store = data[EDGE]
    got = (data["user"].num_nodes, data["item"].num_nodes, store.edge_index.size(1),
           store.val_edge_index.size(1), store.test_edge_index.size(1))
    assert got == COUNTS[rel]
    assert store.edge_index.size(1) + store.test_edge_index.size(1) == sum(COUNTS[rel][2:]) - COUNTS[rel][3]


def test_ml100k_seeded_split(shared_data):
    path = need(shared_data / "ml-100k")
    a, b = load_dataset(path, split_seed=0), load_dataset(path, split_seed=0)
    assert (a["user"].num_nodes, a["item"].num_nodes) == (943, 1682)
    total = sum(a[EDGE][k].size(1) for k in ("edge_index", "val_edge_index", "test_edge_index"))
    assert total == 100000
    assert split_fingerprint(a) == split_fingerprint(b)
    assert split_fingerprint(a) != split_fingerprint(load_dataset(path, split_seed=1))
