"""The PyG dataset classes: the same graph as the parser, parsed once, keyed by what defines it."""
import numpy as np
import pytest
import torch

from idsf_pyg.data import (EDGE, ITEM, AmazonDataset, InteractionDataset, MovieLens100K, SyntheticDataset, describe,
                           load_dataset, make_synthetic, parse_dataset)
from idsf_pyg.data import datasets as datasets_module
from idsf_pyg.data.errors import DataFormatError
from tests.conftest import need


def same_graph(a, b):
    """Every tensor of every node and edge store, and the graph-level attributes, equal."""
    assert a.node_types == b.node_types and a.edge_types == b.edge_types
    for store_a, store_b in zip(a.stores, b.stores):
        assert set(store_a.keys()) == set(store_b.keys())
        for key in store_a.keys():
            va, vb = store_a[key], store_b[key]
            assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb, key
    assert describe(a)["fingerprint"] == describe(b)["fingerprint"]


@pytest.fixture
def parses(monkeypatch):
    """Counts the parser's calls made through the dataset classes."""
    calls = []
    real = datasets_module.parse_dataset

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)
    monkeypatch.setattr(datasets_module, "parse_dataset", counting)
    return calls


def write_inter(path, rows):
    path.write_text("userID:token\titemID:token\trating:float\n" + "".join(f"u{u}\ti{i}\t{r}\n" for u, i, r in rows))


def test_synthetic_is_parsed_once_and_equals_the_generator(tmp_path, parses):
    first = SyntheticDataset(root=tmp_path, seed=3)
    same_graph(first[0], make_synthetic(seed=3))
    again = SyntheticDataset(root=tmp_path, seed=3)
    same_graph(again[0], first[0])
    assert parses == ["synthetic"]                     # the second one read processed/, it did not parse
    SyntheticDataset(root=tmp_path, seed=4)
    assert parses == ["synthetic", "synthetic"]        # another seed, another graph
    assert len(list((tmp_path / "processed").glob("*/graph.pt"))) == 2


def test_transform_at_access_pre_transform_once_and_in_the_key(tmp_path, parses):
    def drop_features(data):
        for key in [k for k in data[ITEM].keys() if k.startswith("x_")]:
            del data[ITEM][key]
        return data

    plain = SyntheticDataset(root=tmp_path)
    pre = SyntheticDataset(root=tmp_path, pre_transform=drop_features)
    assert pre.key != plain.key and len(parses) == 2
    assert not [k for k in pre[0][ITEM].keys() if k.startswith("x_")]
    assert [k for k in plain[0][ITEM].keys() if k.startswith("x_")]
    marked = SyntheticDataset(root=tmp_path, transform=lambda d: (setattr(d, "seen", True), d)[1])
    assert marked[0].seen is True and not hasattr(plain[0], "seen") and len(parses) == 2


def test_an_edited_raw_file_is_parsed_again_and_load_dataset_equals_the_parser(tmp_path, parses):
    folder = tmp_path / "toy"
    folder.mkdir()
    rows = [(u, i, 1.0 + (u + i) % 5) for u in range(12) for i in range(u % 4, u % 4 + 6)]
    write_inter(folder / "toy.inter", rows)
    a = load_dataset(folder, root=tmp_path / "cache", edge_weight="rating")
    same_graph(a, parse_dataset(folder, edge_weight="rating"))
    same_graph(load_dataset(folder, root=tmp_path / "cache", edge_weight="rating"), a)
    assert len(parses) == 1
    write_inter(folder / "toy.inter", rows + [(12, 0, 5.0), (12, 1, 5.0), (12, 2, 4.0), (12, 3, 4.0)])
    b = load_dataset(folder, root=tmp_path / "cache", edge_weight="rating")
    assert len(parses) == 2 and b["user"].num_nodes == a["user"].num_nodes + 1
    # split seed and features are part of the key; an in-memory array is keyed by its bytes
    load_dataset(folder, root=tmp_path / "cache", edge_weight="rating", split_seed=1)
    x = np.random.default_rng(0).normal(size=(int(a[ITEM].num_nodes), 4)).astype(np.float32)
    c = load_dataset(folder, root=tmp_path / "cache", features={"extra": x})
    assert len(parses) == 4 and torch.equal(c[ITEM].x_extra, torch.from_numpy(x))
    load_dataset(folder, root=tmp_path / "cache", features={"extra": x.copy()})
    assert len(parses) == 4
    x[0, 0] += 1
    load_dataset(folder, root=tmp_path / "cache", features={"extra": x})
    assert len(parses) == 5


def test_a_missing_dataset_is_one_clear_error(tmp_path):
    with pytest.raises(DataFormatError, match="nowhere: no such file or folder"):
        InteractionDataset(tmp_path / "nowhere", root=tmp_path / "cache")


def test_the_shared_datasets_load_as_their_parser_reads_them(shared_data, tmp_path):
    need(shared_data / "amazon2014" / "baby" / "5-core" / "train.json")
    baby = AmazonDataset("baby", root=tmp_path / "baby", data_root=shared_data)
    same_graph(baby[0], parse_dataset(shared_data / "amazon2014" / "baby"))
    assert baby[0][EDGE].edge_index.size(1) > 100_000
    need(shared_data / "ml-100k")
    ml = MovieLens100K(root=tmp_path / "ml", data_root=shared_data, features={})
    same_graph(ml[0], parse_dataset(shared_data / "ml-100k"))
