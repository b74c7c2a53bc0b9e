r"""The datasets as PyG :class:`~torch_geometric.data.InMemoryDataset` s: parsed once, loaded from ``processed/`` after.

Each dataset holds one graph in the package's schema (:mod:`idsf_pyg.data.graph`): ``dataset[0]`` is the
``HeteroData`` that :func:`~idsf_pyg.data.parse_dataset` builds from the raw files. The first use parses the raw
files and saves the graph under ``root/processed/<key>/``; ``<key>`` hashes what defines the graph (the source
files' names, sizes and modification times, the feature specs, the split seed, the edge weights, the name and the
``pre_transform``), so another split or feature set gets its own folder and an edited raw file is parsed again.
``transform`` is applied at every access, ``pre_transform`` once before saving, as in PyG.

    ds = MovieLens100K(root="~/.cache/idsf_pyg/datasets/ml-100k")        # text (MiniLM) + knowledge-graph features
    data = ds[0]
    baby = AmazonDataset("baby", root=..., features={"image": "image_feat.npy", "text": "text_feat.npy"})

The raw files are never written: ``raw_dir`` is the dataset's own folder (``$IDSF_DATA`` or ``../shared/data``
for the named datasets), and nothing is downloaded (``preprocessing/`` builds raw files from Amazon's).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, Union

import numpy as np
from torch_geometric.data import HeteroData, InMemoryDataset

from ..logs import logger
from .load import FeatureSpec, default_data_root, parse_dataset
from .text import cache_dir

#: Bumped when the parser's output for the same raw files changes: old processed graphs are then not reused.
PROCESSED_FORMAT = 1


def default_root(name: str) -> Path:
    """``$IDSF_CACHE/datasets/<name>``: where a dataset's processed graphs go unless ``root`` is given."""
    return cache_dir() / "datasets" / name


def _feature_key(spec: FeatureSpec) -> str:
    if isinstance(spec, np.ndarray):  # an array given in memory: its bytes define it
        return f"array:{spec.dtype}:{spec.shape}:{hashlib.sha256(np.ascontiguousarray(spec).tobytes()).hexdigest()}"
    return str(spec)


def _file_stats(paths: List[Path]) -> List[List[Any]]:
    stats = [(p, p.stat()) for p in sorted(set(paths)) if p.is_file()]
    return [[str(p), st.st_size, st.st_mtime_ns] for p, st in stats]


class InteractionDataset(InMemoryDataset):
    r"""A user–item interaction dataset from any source :func:`~idsf_pyg.data.parse_dataset` reads (a folder with
    the LATTICE split ``5-core/{train,val,test}.json``, an atomic ``.inter`` file or its folder, or
    ``"synthetic"``), as an in-memory PyG dataset of one graph.

    Args:
        path: The dataset folder or file, or ``"synthetic"``.
        root: Where ``processed/`` goes (default: :func:`default_root` of the dataset's name).
        features: Modality name -> spec, as for :func:`~idsf_pyg.data.parse_dataset` (``.npy`` path, array,
            ``"random[:dim[:std]]"``, ``"item-text-minilm"``, ``"item-kg"``).
        discover_features: Also attach every ``<modality>_feat.npy`` next to the interactions.
        split_seed: Seed of the per-user split for files without one (and of the synthetic data).
        edge_weight: ``None``, ``"rating"`` or ``"recency:<days>"``.
        name: The dataset's name (default: its folder's).
        transform: Applied to the graph at every access.
        pre_transform: Applied once, before the graph is saved (part of the processed key).
        force_reload: Parse the raw files again even if a processed graph exists.
    """

    def __init__(self, path: Union[str, Path], root: Optional[Union[str, Path]] = None,
                 features: Optional[Mapping[str, FeatureSpec]] = None, discover_features: bool = True,
                 split_seed: int = 0, edge_weight: Optional[str] = None, name: Optional[str] = None,
                 transform: Optional[Callable] = None, pre_transform: Optional[Callable] = None,
                 force_reload: bool = False):
        self.source = "synthetic" if str(path) == "synthetic" else Path(path)
        self.options = {"features": dict(features or {}), "discover_features": discover_features,
                        "split_seed": split_seed, "edge_weight": edge_weight, "name": name}
        self.dataset_name = name or self._default_name()
        self.key = self._key(pre_transform)
        root = Path(root).expanduser() if root is not None else default_root(self.dataset_name)
        (root / "processed").mkdir(parents=True, exist_ok=True)
        # One process parses, the others wait and load its graph (workers of a study start together).
        with open(root / "processed" / f"{self.key}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                super().__init__(str(root), transform, pre_transform, log=False, force_reload=force_reload)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        self.load(self.processed_paths[0], data_cls=HeteroData)

    def _default_name(self) -> str:
        if self.source == "synthetic":
            return "synthetic"
        folder = self.source if self.source.is_dir() else self.source.parent
        return folder.parent.name if folder.name == "5-core" else folder.name

    def _defining_files(self) -> List[Path]:
        """The files the graph is parsed from: the dataset folder's files (and its ``5-core/``), and feature files
        given by path."""
        if self.source == "synthetic":
            return []
        folder = self.source if self.source.is_dir() else self.source.parent
        files = [p for d in (folder, folder / "5-core", folder.parent if folder.name == "5-core" else folder)
                 if d.is_dir() for p in d.iterdir()]
        files += [Path(s) for s in self.options["features"].values()
                  if not isinstance(s, np.ndarray) and str(s).endswith(".npy")]
        return files

    def _key(self, pre_transform: Optional[Callable]) -> str:
        material = {"format": PROCESSED_FORMAT, "source": str(self.source if self.source == "synthetic"
                                                                  else self.source.resolve()),
                    "files": _file_stats(self._defining_files()),
                    "features": {k: _feature_key(v) for k, v in sorted(self.options["features"].items())},
                    **{k: v for k, v in self.options.items() if k != "features"},
                    "pre_transform": repr(pre_transform)}
        return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def raw_dir(self) -> str:
        if self.source == "synthetic":
            return str(Path(self.root) / "raw")
        return str(self.source if self.source.is_dir() else self.source.parent)

    @property
    def raw_file_names(self) -> List[str]:
        return []  # the parser checks (and names) its own input files; nothing is downloaded

    @property
    def processed_dir(self) -> str:
        return str(Path(self.root) / "processed" / self.key)

    @property
    def processed_file_names(self) -> List[str]:
        return ["graph.pt"]

    def download(self) -> None:
        pass

    def process(self) -> None:
        logger.info(f"processing {self.source} into {self.processed_dir}")
        data = parse_dataset(self.source, **self.options)
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        self.save([data], self.processed_paths[0])

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.dataset_name}, key={self.key})"


class AmazonDataset(InteractionDataset):
    r"""An Amazon review dataset of the paper (``"baby"``, ``"sports"``, ``"clothing"``) from
    ``<data root>/amazon2014/<name>/``: the LATTICE split (``5-core/*.json``, the paper's) when there, else the
    atomic ``<name>.inter`` with its ``x_label`` split. Its ``*_feat.npy`` (image, text) are attached when present;
    these machines do not have them (see the data README), so give ``features`` for stand-ins, named as such."""

    def __init__(self, name: str, root: Optional[Union[str, Path]] = None, data_root: Optional[Path] = None, **kwargs):
        super().__init__(Path(data_root or default_data_root()) / "amazon2014" / name, root, name=name, **kwargs)


class MovieLens100K(InteractionDataset):
    r"""MovieLens-100k (RecBole's atomic files in ``<data root>/ml-100k/``) with its two real modalities by default:
    each movie's title, year and genres encoded by the offline all-MiniLM-L6-v2 (``title_minilm``, 384-d) and its
    Freebase knowledge-graph facts as a 128-d reduction (``kg_freebase``). Split per user with ``split_seed``."""

    DEFAULT_FEATURES = {"title_minilm": "item-text-minilm", "kg_freebase": "item-kg"}

    def __init__(self, root: Optional[Union[str, Path]] = None, data_root: Optional[Path] = None,
                 features: Optional[Mapping[str, FeatureSpec]] = None, **kwargs):
        super().__init__(Path(data_root or default_data_root()) / "ml-100k", root, name="ml-100k",
                         features=self.DEFAULT_FEATURES if features is None else features, **kwargs)


class SyntheticDataset(InteractionDataset):
    r"""The built-in synthetic multimodal graph (:func:`~idsf_pyg.data.make_synthetic`) for seed ``seed``."""

    def __init__(self, root: Optional[Union[str, Path]] = None, seed: int = 0, **kwargs):
        super().__init__("synthetic", root, split_seed=seed, **kwargs)
