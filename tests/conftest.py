import os
from pathlib import Path

import pytest

from idsf_pyg.data import default_data_root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real datasets: $IDSF_DATA, default ../shared/data next to the repo."""
    root = default_data_root()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set IDSF_DATA to the folder holding "
                    f"amazon2014/ and ml-100k/)")
    return root


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not available on this machine")
    return path


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    # Feature caches and processed graphs of tests never touch the user's ~/.cache. Session-scoped, so that it is
    # in place before any module-scoped fixture loads a dataset.
    with pytest.MonkeyPatch.context() as patch:
        if "IDSF_CACHE" not in os.environ:
            patch.setenv("IDSF_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        yield
