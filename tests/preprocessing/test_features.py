import json

import numpy as np
import pytest
import torch

from idsf_pyg.data import DataFormatError
from idsf_pyg.errors import ConfigError
from preprocessing import image_features, interactions, text_features
from preprocessing.text_features import item_text, parse_meta_line

from .raw_fixtures import ASINS, EXPECTED_TEXT, META_LINES, b_vector, write_b, write_images, write_meta, write_reviews


@pytest.fixture()
def dataset(tmp_path):
    write_reviews(tmp_path / "r.json.gz")
    interactions.main(["--reviews", str(tmp_path / "r.json.gz"), "--out", str(tmp_path / "toy")])
    return tmp_path / "toy"


def test_meta_parsing_both_releases_and_text_fields():
    fields = ("title", "brand", "categories", "description")
    for k, line in enumerate(META_LINES[:7]):
        meta = parse_meta_line(line, None, k + 1)
        if "category" in meta:  # the 2018 release names the field 'category'
            meta["categories"] = meta.pop("category")
        assert item_text(meta, fields) == EXPECTED_TEXT[k]
    with pytest.raises(DataFormatError, match="line 3: neither JSON nor a Python literal"):
        parse_meta_line("{'asin': 'x', __import__('os')}", "meta.json.gz", 3)
    with pytest.raises(DataFormatError, match="field 'asin'"):
        parse_meta_line("{'title': 'x'}", "meta.json.gz", 1)


def test_text_features_with_minilm(dataset, tmp_path):
    from idsf_pyg.data.text import load_sentence_model
    write_meta(tmp_path / "meta.json.gz", [ln.replace('"category"', '"categories"') for ln in META_LINES])
    manifest = text_features.main(["--meta", str(tmp_path / "meta.json.gz"), "--data", str(dataset)])
    feats = np.load(dataset / "text_feat.npy")
    assert feats.shape == (8, 384) and manifest["dim"] == 384
    assert manifest["items_without_text"] == 1 and manifest["missing_asins"] == [ASINS[7]]
    expected = load_sentence_model().encode([EXPECTED_TEXT[k] for k in range(7)], convert_to_numpy=True)
    np.testing.assert_allclose(feats[:7], expected, atol=1e-5)
    np.testing.assert_allclose(feats[7], expected.mean(0), atol=1e-6)
    with pytest.raises(FileExistsError):
        text_features.main(["--meta", str(tmp_path / "meta.json.gz"), "--data", str(dataset)])


def test_text_features_need_item_map(tmp_path):
    write_meta(tmp_path / "meta.json.gz")
    with pytest.raises(DataFormatError, match="item_list.txt.*run `python -m preprocessing.interactions`"):
        text_features.main(["--meta", str(tmp_path / "meta.json.gz"), "--data", str(tmp_path)])


def test_b_file_route(dataset, tmp_path):
    write_b(tmp_path / "img.b")
    manifest = image_features.main(["--from-b", str(tmp_path / "img.b"), "--data", str(dataset)])
    feats = np.load(dataset / "image_feat.npy")
    assert feats.shape == (8, 4096) and manifest["records_read"] == 8
    for k in range(7):
        np.testing.assert_array_equal(feats[k], b_vector(k))
    np.testing.assert_allclose(feats[7], np.mean([b_vector(k) for k in range(7)], 0), rtol=1e-6)
    assert manifest["items_without_image"] == 1


def test_truncated_b_file(dataset, tmp_path):
    data = write_b(tmp_path / "img.b").read_bytes()
    (tmp_path / "img.b").write_bytes(data[:-100])
    with pytest.raises(DataFormatError, match=r"img\.b: truncated record 7 \(byte offset 114758\)"):
        image_features.main(["--from-b", str(tmp_path / "img.b"), "--data", str(dataset)])
    manifest = image_features.main(["--from-b", str(tmp_path / "img.b"), "--data", str(dataset), "--skip-bad"])
    assert manifest["skipped_bad_records"] == 1 and manifest["items_without_image"] == 2


def test_cnn_route_random_and_file_weights(dataset, tmp_path):
    import torchvision
    images = write_images(tmp_path / "images")
    (images / f"{ASINS[3]}.png").write_bytes(b"not an image")
    args = ["--images", str(images), "--data", str(dataset), "--arch", "resnet18"]
    with pytest.raises(ConfigError, match="exactly one of --weights"):
        image_features.main(args)
    with pytest.raises(DataFormatError, match=f"{ASINS[3]}.png: unreadable image"):
        image_features.main(args + ["--random-weights"])
    manifest = image_features.main(args + ["--random-weights", "--skip-bad"])
    assert manifest["weights"].startswith("RANDOM") and manifest["skipped_bad_records"] == 1
    assert np.load(dataset / "image_feat.npy").shape == (8, 512)

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    (images / f"{ASINS[3]}.png").unlink()
    manifest = image_features.main(args + ["--weights", str(tmp_path / "w.pth"), "--overwrite"])
    feats = np.load(dataset / "image_feat.npy")
    assert manifest["items_without_image"] == 5 and manifest["inputs"][0]["sha256"]
    # The features are the network's pooled output for the preprocessed image.
    from PIL import Image
    from torchvision import transforms
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    net.fc = torch.nn.Identity()
    with torch.no_grad():
        ref = net.eval()(tf(Image.open(images / f"{ASINS[1]}.png").convert("RGB"))[None])[0].numpy()
    np.testing.assert_allclose(feats[1], ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats[5], feats[:3].mean(0), rtol=1e-5)
    assert json.loads((dataset / "manifest_image.json").read_text())["arch"] == "resnet18"
