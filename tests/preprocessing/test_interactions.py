import gzip
import json

import pytest

from idsf_pyg.data import DataFormatError, EDGE, load_dataset
from preprocessing import interactions

from .raw_fixtures import ASINS, review, write_reviews


def run(tmp_path, *extra):
    return interactions.main(["--reviews", str(tmp_path / "r.json.gz"), "--out", str(tmp_path / "toy"), *extra])


def test_kcore_ids_split_and_manifest(tmp_path):
    write_reviews(tmp_path / "r.json.gz")
    manifest = run(tmp_path)
    out = tmp_path / "toy"
    # ZZ (2 reviews) and the 1-review item are removed; ids follow sorted original ids.
    users = [ln.split("\t") for ln in (out / "user_list.txt").read_text().splitlines()]
    items = [ln.split("\t") for ln in (out / "item_list.txt").read_text().splitlines()]
    assert users == [[f"U{u:02d}", str(u)] for u in range(12)]
    assert items == [[a, str(k)] for k, a in enumerate(ASINS)]
    c = manifest["counts"]
    assert (c["review_lines"], c["duplicates_dropped"], c["interactions_after_kcore"]) == (76, 1, 72)
    # 6 interactions per user (< 10): 1 valid + 1 test each.
    assert (c["train_edges"], c["val_edges"], c["test_edges"]) == (48, 12, 12)
    assert manifest["inputs"][0]["sha256"] and len(manifest["outputs"]) == 6
    # Both written formats load to the same split.
    a = load_dataset(out)
    b = load_dataset(out / "toy.inter")
    for key in ("edge_index", "val_edge_index", "test_edge_index"):
        assert sorted(map(tuple, a[EDGE][key].t().tolist())) == sorted(map(tuple, b[EDGE][key].t().tolist()))
    # Every user's interactions are exactly its rotating 6 items.
    for u in range(12):
        got = set()
        for key in ("edge_index", "val_edge_index", "test_edge_index"):
            e = a[EDGE][key]
            got |= set(e[1][e[0] == u].tolist())
        assert got == {(u + j) % 8 for j in range(6)}


def test_kcore_cascade(tmp_path):
    # k=2: D has one review -> removed; then item 3 has only C -> removed; then C has one -> removed.
    rows = [review("A", "I1", 1), review("A", "I2", 2), review("B", "I1", 3), review("B", "I2", 4),
            review("C", "I2", 5), review("C", "I3", 6), review("D", "I3", 7)]
    with gzip.open(tmp_path / "r.json.gz", "wt") as f:
        f.write("\n".join(json.dumps(r) for r in rows))
    res = interactions.build(tmp_path / "r.json.gz", k=2, seed=0, skip_bad=False)
    assert res["user_names"] == ["A", "B"] and res["item_names"] == ["I1", "I2"]
    assert sorted(zip(res["users"].tolist(), res["items"].tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_refuses_to_overwrite(tmp_path):
    write_reviews(tmp_path / "r.json.gz")
    run(tmp_path)
    with pytest.raises(FileExistsError, match="--overwrite"):
        run(tmp_path)
    run(tmp_path, "--overwrite", "--seed", "3")


def test_bad_line_and_truncated_gzip(tmp_path):
    write_reviews(tmp_path / "r.json.gz")
    with gzip.open(tmp_path / "r.json.gz", "rt") as f:
        lines = f.read().splitlines()
    lines.insert(4, '{"reviewerID": "U99", "asin": ')
    with gzip.open(tmp_path / "r.json.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"r\.json\.gz, line 5: not a JSON object"):
        run(tmp_path)
    manifest = run(tmp_path, "--skip-bad")
    assert manifest["skipped_bad_records"] == 1
    data = write_reviews(tmp_path / "r.json.gz").read_bytes()
    (tmp_path / "r.json.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="corrupt or truncated compressed file"):
        run(tmp_path, "--overwrite")


def test_missing_field(tmp_path):
    with gzip.open(tmp_path / "r.json.gz", "wt") as f:
        f.write(json.dumps({"reviewerID": "A", "asin": "I1"}) + "\n" + json.dumps({"reviewerID": "A"}) + "\n")
    with pytest.raises(DataFormatError, match="line 2, field 'asin'"):
        run(tmp_path)
