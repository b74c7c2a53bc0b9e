"""Readers and the graph builder on small files written at test time, bad input included."""
import json

import numpy as np
import pytest
import torch

from idsf_pyg.data import (DataFormatError, EDGE, REV_EDGE, build_graph, load_dataset, modality_names,
                           read_atomic_inter, read_feature_matrix, read_lattice_json, split_fingerprint)
from idsf_pyg.data.readers import Interactions


def write_lattice(folder, train, val, test):
    d = folder / "5-core"
    d.mkdir(parents=True)
    for name, obj in (("train", train), ("val", val), ("test", test)):
        (d / f"{name}.json").write_text(json.dumps(obj))
    return folder


def test_lattice_folder_loads_with_schema_and_features(tmp_path):
    write_lattice(tmp_path, {"0": [0, 1], "1": [1, 2]}, {"0": [2], "1": [3]}, {"0": [4], "1": [0]})
    np.save(tmp_path / "text_feat.npy", np.arange(15, dtype=np.float32).reshape(5, 3))
    data = load_dataset(tmp_path)
    assert data["user"].num_nodes == 2 and data["item"].num_nodes == 5
    assert data[EDGE].edge_index.tolist() == [[0, 0, 1, 1], [0, 1, 1, 2]]
    assert data[EDGE].val_edge_index.tolist() == [[0, 1], [2, 3]]
    assert data[EDGE].test_edge_index.tolist() == [[0, 1], [4, 0]]
    assert torch.equal(data[REV_EDGE].edge_index, data[EDGE].edge_index.flip(0))
    assert modality_names(data) == ["text"]
    assert data["item"].x_text[4].tolist() == [12.0, 13.0, 14.0]
    assert data.feature_sources["text"].startswith("file:")


def test_items_only_in_held_out_splits_stay_in_graph(tmp_path):
    write_lattice(tmp_path, {"0": [0]}, {"0": [5]}, {"0": [1]})
    data = load_dataset(tmp_path)
    assert data["item"].num_nodes == 6  # item 5 has no training edge but is a node


@pytest.mark.parametrize("header,rows", [
    ("userID\titemID\tx_label", ["0\t0\t0", "0\t1\t1", "1\t1\t0", "1\t0\t2", "0\t2\t2", "1\t2\t1"]),
    ("userID:token\titemID:token\trating:float\ttimestamp:float\tx_label:token",
     ["0\t0\t5\t10\t0", "0\t1\t4\t11\t1", "1\t1\t3\t12\t0", "1\t0\t5\t13\t2", "0\t2\t5\t14\t2",
      "1\t2\t1\t15\t1"]),
])
def test_atomic_inter_three_and_five_columns(tmp_path, header, rows):
    f = tmp_path / "toy.inter"
    f.write_text(header + "\n" + "\n".join(rows) + "\n")
    data = load_dataset(f)
    assert data[EDGE].edge_index.tolist() == [[0, 1], [0, 1]]
    assert data[EDGE].val_edge_index.tolist() == [[0, 1], [1, 2]]
    assert data[EDGE].test_edge_index.tolist() == [[1, 0], [0, 2]]
    assert data.name == tmp_path.name


def test_atomic_without_labels_is_split_with_seed(tmp_path):
    lines = ["user_id:token\titem_id:token\trating:float"]
    lines += [f"u{u}\t{100 + i}\t1" for u in range(4) for i in range(12)]
    (tmp_path / "x.inter").write_text("\n".join(lines) + "\n")
    a, b = load_dataset(tmp_path, split_seed=1), load_dataset(tmp_path, split_seed=1)
    c = load_dataset(tmp_path, split_seed=2)
    assert split_fingerprint(a) == split_fingerprint(b) != split_fingerprint(c)
    # 12 interactions per user: int(0.2*12) = 2 held out, 1 test + 1 valid.
    assert a[EDGE].edge_index.size(1) == 40
    assert a[EDGE].val_edge_index.size(1) == 4 and a[EDGE].test_edge_index.size(1) == 4


def test_fingerprint_ignores_edge_order():
    tr = Interactions(np.array([0, 1, 1]), np.array([0, 1, 2]))
    rv = Interactions(np.array([1, 0, 1]), np.array([2, 0, 1]))
    va = Interactions(np.array([0]), np.array([2]))
    te = Interactions(np.array([1]), np.array([0]))
    g1 = build_graph({"train": tr, "val": va, "test": te})
    g2 = build_graph({"train": rv, "val": va, "test": te})
    assert split_fingerprint(g1) == split_fingerprint(g2)


def test_random_features_must_be_named_random(tmp_path):
    write_lattice(tmp_path, {"0": [0], "1": [1]}, {"0": [2]}, {"0": [1]})
    data = load_dataset(tmp_path, features={"random1": "random:8"})
    assert data["item"].x_random1.shape == (3, 8)
    assert "not real" in data.feature_sources["random1"]
    scaled = load_dataset(tmp_path, features={"random1": "random:4000:0.05"})["item"].x_random1
    assert abs(float(scaled.std()) - 0.05) < 0.005
    with pytest.raises(ValueError, match="must start with 'random'"):
        load_dataset(tmp_path, features={"text": "random"})


# ---------------------------------------------------------------- bad input
def test_unreadable_and_invalid_json(tmp_path):
    with pytest.raises(DataFormatError, match="cannot read file"):
        read_lattice_json(tmp_path / "absent.json")
    f = tmp_path / "train.json"
    f.write_text('{"0": [1, 2],\n "1": [3,, 4]}')
    with pytest.raises(DataFormatError, match=r"train\.json, line 2: not valid JSON"):
        read_lattice_json(f)


def test_non_integer_and_negative_ids_name_the_line(tmp_path):
    f = tmp_path / "train.json"
    f.write_text('{\n"0": [1, 2],\n"1": [3, "x4"]\n}')
    with pytest.raises(DataFormatError, match=r"train\.json, line 3.*'x4' is not an integer"):
        read_lattice_json(f)
    f.write_text('{\n"0": [1, 2],\n"-1": [3]\n}')
    with pytest.raises(DataFormatError, match=r"line 3, field 'user id': id -1 is negative"):
        read_lattice_json(f)
    g = tmp_path / "a.inter"
    g.write_text("userID\titemID\tx_label\n0\t1\t0\n0\tbad\t1\n")
    with pytest.raises(DataFormatError, match=r"a\.inter, line 3, field 'itemID'.*'bad'"):
        load_dataset(g)


def test_wrong_header_column_count_and_label(tmp_path):
    f = tmp_path / "a.inter"
    f.write_text("user\titem\tx_label\n0\t1\t0\n")
    with pytest.raises(DataFormatError, match="line 1: header"):
        read_atomic_inter(f)
    f.write_text("userID\titemID\tx_label\n0\t1\t0\n0\t1\n")
    with pytest.raises(DataFormatError, match="line 3: expected 3 columns"):
        read_atomic_inter(f)
    f.write_text("userID\titemID\tx_label\n0\t1\t7\n")
    with pytest.raises(DataFormatError, match="line 2, field 'x_label'"):
        read_atomic_inter(f)
    f.write_text("")
    with pytest.raises(DataFormatError, match="empty file"):
        read_atomic_inter(f)


def test_feature_matrix_rows_nan_and_shape(tmp_path):
    f = tmp_path / "image_feat.npy"
    np.save(f, np.ones((4, 3), dtype=np.float32))
    with pytest.raises(DataFormatError, match=r"image_feat\.npy.*4 rows but the graph has 5 items"):
        read_feature_matrix(f, 5, "image")
    bad = np.ones((5, 3), dtype=np.float32)
    bad[3, 1] = np.nan
    np.save(f, bad)
    with pytest.raises(DataFormatError, match="NaN/inf values in 1 rows \\(first: row 3\\)"):
        read_feature_matrix(f, 5, "image")
    np.save(f, np.ones(5))
    with pytest.raises(DataFormatError, match="must be 2-D"):
        read_feature_matrix(f, 5)
    f.write_bytes(b"not an npy file")
    with pytest.raises(DataFormatError, match="not a .npy file"):
        read_feature_matrix(f, 5)


def test_feature_file_with_wrong_rows_fails_loading(tmp_path):
    write_lattice(tmp_path, {"0": [0], "1": [1]}, {"0": [2]}, {"0": [1]})
    np.save(tmp_path / "text_feat.npy", np.ones((7, 2), dtype=np.float32))
    (tmp_path / "item_list.txt").write_text("a\t0\nb\t1\nc\t2\n")
    with pytest.raises(DataFormatError, match="7 rows but the graph has 3 items"):
        load_dataset(tmp_path)


def test_held_out_id_that_cannot_be_indexed(tmp_path):
    write_lattice(tmp_path, {"0": [0, 1]}, {"0": [2]}, {"0": [9]})
    (tmp_path / "item_list.txt").write_text("a\t0\nb\t1\nc\t2\n")
    with pytest.raises(DataFormatError, match="item id 9 in the 'test' split cannot be indexed: "
                                              "the dataset has 3 items"):
        load_dataset(tmp_path)


def test_empty_split(tmp_path):
    write_lattice(tmp_path, {"0": [0, 1]}, {}, {"0": [1]})
    with pytest.raises(DataFormatError, match="the 'val' split is empty"):
        load_dataset(tmp_path)


def test_unknown_path(tmp_path):
    with pytest.raises(DataFormatError, match="no such file"):
        load_dataset(tmp_path / "nothing")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataFormatError, match="unknown format"):
        load_dataset(tmp_path / "x.csv")


def test_edge_weights_from_ratings_and_timestamps(tmp_path):
    day = 86400
    f = tmp_path / "toy.inter"
    f.write_text("userID\titemID\trating\ttimestamp\tx_label\n"
                 f"0\t0\t5\t{10 * day}\t0\n0\t1\t2\t{9 * day}\t0\n1\t1\t4\t{0 * day}\t0\n"
                 f"0\t2\t1\t{11 * day}\t1\n1\t0\t3\t{12 * day}\t2\n1\t2\t3\t{1 * day}\t0\n")
    plain = load_dataset(f)
    assert "edge_weight" not in plain["user", "interacts", "item"]
    rated = load_dataset(f, edge_weight="rating")
    store = rated["user", "interacts", "item"]
    assert store.edge_index.t().tolist() == [[0, 0], [0, 1], [1, 1], [1, 2]]
    assert store.edge_weight.tolist() == [5.0, 2.0, 4.0, 3.0]  # training rows only, in edge order
    assert rated["item", "rev_interacts", "user"].edge_weight.tolist() == store.edge_weight.tolist()
    recent = load_dataset(f, edge_weight="recency:2")["user", "interacts", "item"].edge_weight
    # t_max = day 10, the latest *training* timestamp (the val/test ones are later and not looked at).
    expected = [0.5 ** (0 / 2), 0.5 ** (1 / 2), 0.5 ** (10 / 2), 0.5 ** (9 / 2)]
    assert recent.tolist() == pytest.approx(expected)
    from idsf_pyg.data import describe
    assert describe(rated)["edge_weight"].startswith("rating column")
    assert describe(rated)["fingerprint"] == describe(plain)["fingerprint"]


def test_edge_weight_errors(tmp_path):
    from idsf_pyg.errors import ConfigError
    f = tmp_path / "toy.inter"
    f.write_text("userID\titemID\tx_label\n0\t0\t0\n0\t1\t1\n0\t2\t2\n")
    with pytest.raises(DataFormatError, match="toy.inter, line 1, field 'edge_weight'.*'rating' column"):
        load_dataset(f, edge_weight="rating")
    with pytest.raises(ConfigError, match="recency:<half-life in days>"):
        load_dataset(f, edge_weight="recency:-3")
    write_lattice(tmp_path / "lat", {"0": [0], "1": [1]}, {"0": [2]}, {"0": [1]})
    with pytest.raises(ConfigError, match="no ratings or timestamps"):
        load_dataset(tmp_path / "lat", edge_weight="rating")
    g = tmp_path / "neg.inter"
    g.write_text("userID\titemID\trating\tx_label\n0\t0\t-1\t0\n0\t1\t2\t1\n0\t2\t2\t2\n")
    with pytest.raises(DataFormatError, match="neg.inter, line 2, field 'rating'.*negative"):
        load_dataset(g, edge_weight="rating")
