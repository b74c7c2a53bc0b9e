"""Atomic writes: the destination holds the old file or the whole new one, never a part."""
import json

import numpy as np
import pytest

from idsf_pyg.io import atomic_open, write_json, write_text, write_with


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    f = tmp_path / "results.json"
    write_json(f, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(f) as h:
            h.write('{"a": 2, "half')
            raise RuntimeError("killed mid-write")
    assert json.loads(f.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_writes_create_folders_and_replace_whole_files(tmp_path):
    f = tmp_path / "deep" / "x.txt"
    write_text(f, "first, longer content\n")
    write_text(f, "second\n")
    assert f.read_text() == "second\n"
    g = tmp_path / "a.npy"
    write_with(g, lambda h: np.save(h, np.arange(3)))
    assert np.load(g).tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "deep"]
    with pytest.raises(ValueError, match="whole files"):
        with atomic_open(f, "a"):
            pass
