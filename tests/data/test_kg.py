"""Knowledge-graph item features against a brute-force reference on a hand-made graph, and on ML-100k."""
import numpy as np
import pytest

from idsf_pyg.data import load_dataset
from idsf_pyg.data.kg import cached_kg_item_features, kg_item_features
from idsf_pyg.errors import DataFormatError
from tests.conftest import need

LINK = "item_id:token\tentity_id:token\n1\tm.a\n2\tm.b\n3\tm.c\n9\tm.z\n"
# m.a and m.b share actor x and genre g; m.c shares genre g; m.d (no item) directs m.a; y appears once
KG = ("head_id:token\trelation_id:token\ttail_id:token\n"
      "m.a\tfilm.actor\tx\nm.b\tfilm.actor\tx\nm.a\tfilm.genre\tg\nm.b\tfilm.genre\tg\nm.c\tfilm.genre\tg\n"
      "m.d\tfilm.directed\tm.a\nm.c\tfilm.actor\ty\n")


def write(tmp_path, kg=KG, link=LINK):
    (tmp_path / "d.kg").write_text(kg)
    (tmp_path / "d.link").write_text(link)
    return tmp_path / "d.kg", tmp_path / "d.link"


def test_features_reproduce_the_normalized_multi_hot_gram_matrix(tmp_path):
    kg, link = write(tmp_path)
    tokens = ["1", "2", "3", "4"]  # item 4 has no entity
    feats, cov = kg_item_features(kg, link, tokens, dim=8)
    # by hand: kept pairs (shared by >= 2 items): (film.actor, x) by 1, 2; (film.genre, g) by 1, 2, 3.
    # (^-1film.directed, m.d) only item 1, (film.actor, y) only item 3: dropped.
    b = np.array([[1, 1], [1, 1], [0, 1], [0, 0]], dtype=float)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-300)
    np.testing.assert_allclose(feats @ feats.T, b @ b.T, atol=1e-6)
    assert feats.shape == (4, 8) and not feats[3].any()
    assert (cov.items, cov.linked, cov.with_triples, cov.with_features) == (4, 3, 3, 3)
    assert (cov.pairs_kept, cov.pairs_total, cov.triples) == (2, 4, 7)
    assert cov.energy_kept == pytest.approx(1.0)
    # dim below the rank keeps the leading singular directions only
    one, cov1 = kg_item_features(kg, link, tokens, dim=1)
    assert one.shape == (4, 1) and 0.5 < cov1.energy_kept < 1.0
    assert one[np.abs(one[:, 0]).argmax(), 0] > 0  # sign fixed: largest entry positive


def test_malformed_files_name_the_line(tmp_path):
    kg, link = write(tmp_path, kg=KG + "m.a\tonly-two-fields\n")
    with pytest.raises(DataFormatError, match=r"d\.kg, line 9: expected 3 tab-separated"):
        kg_item_features(kg, link, ["1", "2", "3"])
    kg, link = write(tmp_path, link="item_id:token\tentity_id:token\n1\tm.q\n")
    with pytest.raises(DataFormatError, match="no triple mentions an item entity"):
        kg_item_features(kg, link, ["1"])


def test_cache_returns_the_same_features(tmp_path):
    kg, link = write(tmp_path)
    a, cov_a = cached_kg_item_features(kg, link, ["1", "2", "3"], tmp_path / "cache", dim=4)
    b, cov_b = cached_kg_item_features(kg, link, ["1", "2", "3"], tmp_path / "cache", dim=4)
    assert np.array_equal(a, b) and cov_a == cov_b and len(list((tmp_path / "cache").glob("kg-*.npy"))) == 1


def test_ml100k_knowledge_graph_modality(shared_data):
    folder = need(shared_data / "ml-100k")
    data = load_dataset(folder, features={"kg_freebase": "item-kg"})
    x = data["item"].x_kg_freebase
    assert tuple(x.shape) == (1682, 128)
    source = data.feature_sources["kg_freebase"]
    assert "1596 of 1682 items have features" in source and "84 not linked" in source
    assert int((x.norm(dim=1) == 0).sum()) == 1682 - 1596


def test_kg_spec_errors():
    from idsf_pyg.errors import ConfigError
    with pytest.raises(DataFormatError, match="'item-kg' needs a RecBole folder with .kg and .link"):
        load_dataset("synthetic", features={"kg": "item-kg"})
    with pytest.raises(ConfigError, match=r"item-kg\[:dim\]"):
        load_dataset("synthetic", features={"kg": "item-kg:zero"})
