"""End to end: raw Amazon-format files -> preprocessing -> loader -> a short IDSF training run."""
import math

from idsf_pyg.data import EDGE, load_dataset, modality_names
from idsf_pyg.models import IDSF
from idsf_pyg.train import TrainConfig, train
from preprocessing import image_features, interactions, text_features

from .raw_fixtures import write_b, write_meta, write_reviews


def test_raw_files_to_trained_model(tmp_path):
    out = tmp_path / "toy"
    interactions.main(["--reviews", str(write_reviews(tmp_path / "r.json.gz")), "--out", str(out)])
    text_features.main(["--meta", str(write_meta(tmp_path / "meta.json.gz")), "--data", str(out)])
    image_features.main(["--from-b", str(write_b(tmp_path / "img.b")), "--data", str(out)])
    data = load_dataset(out)
    assert modality_names(data) == ["image", "text"]
    assert data["item"].x_image.shape == (8, 4096) and data["item"].x_text.shape == (8, 384)
    assert data[EDGE].edge_index.size(1) == 48
    model = IDSF.from_graph(data, embedding_dim=16)
    res = train(model, data, TrainConfig(epochs=3, batch_size=16), progress=False)
    assert res.epochs_run == 3 and all(math.isfinite(v) for v in res.test.values())
    assert 0.0 <= res.test["recall@20"] <= 1.0
