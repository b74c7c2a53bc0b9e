"""The export to the authors' data layout: their loader's view of the files is the graph idsf-pyg trains on."""
import json
from pathlib import Path

import numpy as np
import pytest

from experiments import export_official
from idsf_pyg.data import EDGE, ITEM, USER
from idsf_pyg.errors import ConfigError, OutputExistsError
from idsf_pyg.train.config import resolve_run_config
from idsf_pyg.train.run import load_run_data

SYNTHETIC = Path("experiments/configs/synthetic.yaml")


def authors_view(folder):
    """What the authors' utility/load_data.py reads from the files: sizes from the largest ids, and the pairs."""
    splits = {s: json.loads((folder / "5-core" / f"{s}.json").read_text()) for s in ("train", "val", "test")}
    users = 1 + max(int(u) for u in splits["train"])
    items = 1 + max(i for lists in splits.values() for lst in lists.values() for i in lst)
    pairs = {s: sorted((int(u), i) for u, lst in lists.items() for i in lst) for s, lists in splits.items()}
    return users, items, pairs


def test_export_writes_the_graph_the_authors_loader_reads(tmp_path):
    record = export_official.main(["--config", str(SYNTHETIC), "--image", "view_a", "--text", "view_b",
                                   "--out", str(tmp_path / "data" / "syn")])
    data = load_run_data(resolve_run_config(SYNTHETIC))
    users, items, pairs = authors_view(tmp_path / "data" / "syn")
    assert (users, items) == (data[USER].num_nodes, data[ITEM].num_nodes) == (record["users"], record["items"])
    for split, attr in (("train", "edge_index"), ("val", "val_edge_index"), ("test", "test_edge_index")):
        assert pairs[split] == sorted(map(tuple, getattr(data[EDGE], attr).t().tolist()))
    for filename, modality in (("image_feat.npy", "view_a"), ("text_feat.npy", "view_b")):
        x = np.load(tmp_path / "data" / "syn" / filename)
        assert x.dtype == np.float32 and np.array_equal(x, data[ITEM][f"x_{modality}"].numpy())
    assert json.loads((tmp_path / "data" / "syn" / "export.json").read_text())["text_feat.npy"] == "view_b"


def test_export_refuses_an_existing_folder_and_an_unknown_modality(tmp_path):
    (tmp_path / "old").mkdir()
    with pytest.raises(OutputExistsError, match="old exists: the authors' code would reuse a cached adjacency"):
        export_official.main(["--config", str(SYNTHETIC), "--image", "view_a", "--text", "view_a",
                              "--out", str(tmp_path / "old")])
    with pytest.raises(ConfigError, match="option --text: no modality 'title' in this dataset; it has view_a, view_b"):
        export_official.main(["--config", str(SYNTHETIC), "--image", "view_a", "--text", "title",
                              "--out", str(tmp_path / "new")])
    assert not (tmp_path / "new").exists()


def test_a_graph_the_authors_loader_would_size_otherwise_is_refused(tmp_path):
    data = load_run_data(resolve_run_config(SYNTHETIC)).clone()   # a copy: the loader caches the graph
    last = data[ITEM].num_nodes - 1
    for attr in ("edge_index", "val_edge_index", "test_edge_index"):   # the last item in no split
        e = getattr(data[EDGE], attr)
        setattr(data[EDGE], attr, e[:, e[1] != last])
    with pytest.raises(ConfigError, match=f"would see {data[USER].num_nodes} users and {last} items"):
        export_official.export(data, "view_a", "view_b", tmp_path / "x")
    assert not (tmp_path / "x").exists()
