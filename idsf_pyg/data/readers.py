"""Readers for the interaction and feature formats users of this field have.

* the LATTICE / MICRO / IDSF split: ``5-core/{train,val,test}.json``, each a JSON
  object ``{"<user id>": [item id, ...]}``;
* MMRec / RecBole atomic ``.inter`` files: tab-separated, a header with or
  without RecBole's ``name:type`` suffixes, and either 3 columns
  (``user item x_label``), 5 columns (``user item rating timestamp x_label``)
  or, without a split, ``user item [rating [timestamp]]``;
* item feature matrices: ``<modality>_feat.npy`` (``image_feat.npy``,
  ``text_feat.npy``, ...), one row per item id.

Every reader returns plain NumPy arrays and raises :class:`DataFormatError`
naming the file, line and field on bad input.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from .errors import DataFormatError

PathLike = Union[str, Path]
SPLITS = ("train", "val", "test")
#: ``x_label`` values of atomic files (MMRec convention).
SPLIT_LABELS = {0: "train", 1: "val", 2: "test"}
#: Largest id a reader accepts (node counts stay below 2**31).
MAX_ID = 2**31 - 2


@dataclass
class Interactions:
    """User/item id pairs of one split, as int64 arrays of equal length, with an optional
    per-pair value (a rating or a timestamp, from which edge weights are made)."""

    users: np.ndarray
    items: np.ndarray
    values: Optional[np.ndarray] = None

    def take(self, index: np.ndarray) -> "Interactions":
        return Interactions(self.users[index], self.items[index],
                            None if self.values is None else self.values[index])

    def __len__(self) -> int:
        return int(self.users.shape[0])


def _parse_id(token, path: PathLike, line: Optional[int], field: str) -> int:
    """Parses a non-negative integer id, raising a located error otherwise."""
    if isinstance(token, bool):
        raise DataFormatError(path, f"id {token!r} is not an integer", line, field)
    if isinstance(token, int):
        value = token
    else:
        try:
            value = int(str(token).strip())
        except ValueError:
            raise DataFormatError(path, f"id {token!r} is not an integer", line, field) from None
    if value < 0:
        raise DataFormatError(path, f"id {value} is negative", line, field)
    if value > MAX_ID:
        raise DataFormatError(path, f"id {value} is beyond the supported range (ids are 0-based indices up to "
                              f"{MAX_ID})", line, field)
    return value


def _json_line_numbers(text: str) -> Dict[str, int]:
    """Maps each top-level key of a JSON object to the line it starts on."""
    lines: Dict[str, int] = {}
    decoder = json.JSONDecoder()
    # Cheap scan: keys of the LATTICE files are quoted user ids followed by ':'.
    for lineno, raw in enumerate(text.splitlines(), start=1):
        pos = 0
        while True:
            start = raw.find('"', pos)
            if start < 0:
                break
            try:
                key, end = decoder.raw_decode(raw, start)
            except json.JSONDecodeError:
                break
            rest = raw[end:].lstrip()
            if isinstance(key, str) and rest.startswith(":"):
                lines.setdefault(key, lineno)
            pos = end
    return lines


def read_lattice_json(path: PathLike) -> Interactions:
    """Reads one file of the LATTICE/MICRO/IDSF split (``{"user": [items]}``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataFormatError(path, f"cannot read file ({e.strerror or e})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"not valid JSON: {e.msg} (column {e.colno})", e.lineno) from None
    if not isinstance(obj, dict):
        raise DataFormatError(path, "expected a JSON object mapping user id -> list of item ids, "
                              f"got {type(obj).__name__}")
    users: List[int] = []
    items: List[int] = []
    line_of = None
    for key, value in obj.items():
        try:
            user = _parse_id(key, path, None, "user id")
            if not isinstance(value, list):
                raise DataFormatError(path, f"user {key!r}: expected a list of item ids, "
                                      f"got {type(value).__name__}", None, "item ids")
            for it in value:
                items.append(_parse_id(it, path, None, f"item id of user {key}"))
                users.append(user)
        except DataFormatError as e:
            if line_of is None:  # locate the offending line only when needed
                line_of = _json_line_numbers(text)
            raise DataFormatError(path, str(e).split(": ", 1)[1], line_of.get(key), e.field) from None
    return Interactions(np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64))


def read_lattice_split(folder: PathLike) -> Dict[str, Interactions]:
    """Reads ``train.json``, ``val.json`` and ``test.json`` of one folder."""
    folder = Path(folder)
    out = {}
    for split in SPLITS:
        f = folder / f"{split}.json"
        if not f.is_file():
            raise DataFormatError(f, f"missing split file (a LATTICE split folder needs "
                                  f"{', '.join(s + '.json' for s in SPLITS)})")
        out[split] = read_lattice_json(f)
    return out


def read_id_map(path: PathLike) -> List[str]:
    """Reads an ``original_id<TAB>integer_id`` map; returns raw ids by integer id."""
    path = Path(path)
    pairs: Dict[int, str] = {}
    try:
        handle = path.open(encoding="utf-8")
    except OSError as e:
        raise DataFormatError(path, f"cannot read file ({e.strerror or e})") from None
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            raw = raw.rstrip("\n\r")
            if not raw.strip():
                continue
            parts = raw.split("\t") if "\t" in raw else raw.split()
            if len(parts) != 2:
                raise DataFormatError(path, f"expected 'original_id<TAB>integer_id', got {raw!r}", lineno)
            idx = _parse_id(parts[1], path, lineno, "integer id")
            if idx in pairs:
                raise DataFormatError(path, f"integer id {idx} appears twice", lineno)
            pairs[idx] = parts[0]
    n = len(pairs)
    if n and max(pairs) != n - 1:
        raise DataFormatError(path, f"integer ids are not 0..{n - 1} (largest is {max(pairs)})")
    return [pairs[i] for i in range(n)]


@dataclass
class AtomicFile:
    """Content of an atomic ``.inter`` file.

    ``labels`` is ``None`` when the file has no ``x_label`` column (then the
    caller splits it); ``user_tokens`` / ``item_tokens`` hold the raw tokens.
    """

    user_tokens: List[str]
    item_tokens: List[str]
    labels: Optional[np.ndarray]
    timestamps: Optional[np.ndarray]
    ratings: Optional[np.ndarray] = None


_USER_FIELDS = ("userid", "user_id")
_ITEM_FIELDS = ("itemid", "item_id")


def read_atomic_inter(path: PathLike) -> AtomicFile:
    """Reads a MMRec/RecBole atomic interaction file (see the module docstring)."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as e:
        raise DataFormatError(path, f"cannot read file ({e.strerror or e})") from None
    with handle:
        header = handle.readline().rstrip("\n\r")
        if not header.strip():
            raise DataFormatError(path, "empty file: expected a header such as 'userID\\titemID\\tx_label'", 1)
        sep = "\t" if "\t" in header else None
        names = [h.split(":")[0].strip().lower() for h in header.split(sep)]
        try:
            ucol = next(i for i, n in enumerate(names) if n in _USER_FIELDS)
            icol = next(i for i, n in enumerate(names) if n in _ITEM_FIELDS)
        except StopIteration:
            raise DataFormatError(path, f"header {header!r} must name a user column "
                                  f"({'/'.join(_USER_FIELDS)}) and an item column "
                                  f"({'/'.join(_ITEM_FIELDS)})", 1) from None
        lcol = names.index("x_label") if "x_label" in names else None
        tcol = names.index("timestamp") if "timestamp" in names else None
        rcol = names.index("rating") if "rating" in names else None
        ratings = []
        users, items, labels, stamps = [], [], [], []
        for lineno, raw in enumerate(handle, start=2):
            raw = raw.rstrip("\n\r")
            if not raw.strip():
                continue
            parts = raw.split(sep)
            if len(parts) != len(names):
                raise DataFormatError(path, f"expected {len(names)} columns like the header, got "
                                      f"{len(parts)}: {raw!r}", lineno)
            users.append(parts[ucol].strip())
            items.append(parts[icol].strip())
            if lcol is not None:
                lab = _parse_id(parts[lcol], path, lineno, "x_label")
                if lab not in SPLIT_LABELS:
                    raise DataFormatError(path, f"x_label must be 0 (train), 1 (valid) or 2 (test), "
                                          f"got {lab}", lineno, "x_label")
                labels.append(lab)
            for col, out, field in ((tcol, stamps, "timestamp"), (rcol, ratings, "rating")):
                if col is None:
                    continue
                try:
                    value = float(parts[col])
                except ValueError:
                    raise DataFormatError(path, f"{field} {parts[col]!r} is not a number", lineno, field) from None
                if not np.isfinite(value):
                    raise DataFormatError(path, f"{field} {parts[col]!r} is not finite", lineno, field)
                out.append(value)
    if not users:
        raise DataFormatError(path, "no interactions after the header")
    return AtomicFile(users, items,
                      np.asarray(labels, dtype=np.int64) if lcol is not None else None,
                      np.asarray(stamps, dtype=np.float64) if tcol is not None else None,
                      np.asarray(ratings, dtype=np.float64) if rcol is not None else None)


def atomic_integer_ids(path: PathLike, tokens: List[str], field: str) -> np.ndarray:
    """Parses the id tokens of an already-indexed file (MMRec style) as integers."""
    out = np.empty(len(tokens), dtype=np.int64)
    for k, tok in enumerate(tokens):
        out[k] = _parse_id(tok, path, k + 2, field)  # +2: 1-based and after the header
    return out


def index_tokens(tokens: List[str]) -> Tuple[np.ndarray, List[str]]:
    """Maps raw tokens to 0..n-1 deterministically (numeric order if all are integers)."""
    uniq = sorted(set(tokens))
    if all(t.lstrip("-").isdigit() for t in uniq):
        uniq.sort(key=int)
    lookup = {t: i for i, t in enumerate(uniq)}
    return np.fromiter((lookup[t] for t in tokens), dtype=np.int64, count=len(tokens)), uniq


def read_feature_matrix(path: PathLike, num_items: Optional[int] = None,
                        name: Optional[str] = None) -> np.ndarray:
    """Reads an item feature matrix (``.npy``) and checks it (see :func:`check_feature_matrix`).

    Args:
        path: The ``.npy`` file, one row per item id.
        num_items: If given, the number of rows it must have.
        name: The modality name, used in error messages.
    """
    path = Path(path)
    label = f"feature matrix '{name}'" if name else "feature matrix"
    feature_matrix_shape(path, label)  # header first: a clear message before reading a large bad file
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataFormatError(path, f"cannot read {label} as .npy ({e})") from None
    return check_feature_matrix(arr, num_items, path, label)


def feature_matrix_shape(path: PathLike, label: str = "feature matrix") -> Tuple[int, ...]:
    """Shape of a ``.npy`` file from its header alone, with the file's dtype checked
    (a pickled object array or a truncated header is a located error)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise DataFormatError(path, f"cannot read {label} ({e.strerror or e})") from None
    if magic != b"\x93NUMPY":
        raise DataFormatError(path, f"{label} is not a .npy file (no NumPy header; save it with np.save)")
    try:
        header = np.load(path, mmap_mode="r", allow_pickle=False)  # maps the file: reads the header only
    except OSError as e:
        raise DataFormatError(path, f"cannot read {label} ({e.strerror or e})") from None
    except ValueError as e:
        if "allow_pickle" in str(e) or "object" in str(e).lower():
            raise DataFormatError(path, f"{label} holds Python objects (a pickled object array); save a numeric "
                                  "array, e.g. np.save(path, features.astype(np.float32))") from None
        raise DataFormatError(path, f"{label} is not a readable .npy file ({e})") from None
    except EOFError as e:
        raise DataFormatError(path, f"{label} is empty or truncated ({e})") from None
    if not isinstance(header, np.ndarray):
        raise DataFormatError(path, f"{label} is an .npz archive, not one .npy array")
    shape, dtype = header.shape, header.dtype
    del header
    _check_dtype(dtype, path, label)
    return tuple(shape)


def _check_dtype(dtype: np.dtype, path: Optional[PathLike], label: str) -> None:
    if dtype.hasobject:
        raise DataFormatError(path, f"{label} holds Python objects (dtype {dtype}); save a numeric array, "
                              "e.g. np.save(path, features.astype(np.float32))")
    if dtype.kind == "c":
        raise DataFormatError(path, f"{label} is complex (dtype {dtype}); features must be real numbers")
    if dtype.kind not in "fiub":
        raise DataFormatError(path, f"{label} must be real numbers (float or integer), got dtype {dtype}")


def check_feature_matrix(arr: np.ndarray, num_items: Optional[int], path: Optional[PathLike],
                         label: str = "feature matrix") -> np.ndarray:
    """Validates an item feature matrix and returns it as float32.

    It must be 2-D ``[num_items, d]`` with ``d >= 1``, of real numbers (float, integer or bool; not
    complex, strings or objects), and finite *after* the conversion to float32 (values beyond
    float32's range are reported as an overflow, not as NaN).
    """
    arr = np.asarray(arr)
    _check_dtype(arr.dtype, path, label)
    if arr.ndim != 2:
        raise DataFormatError(path, f"{label} must be 2-D [num_items, dim], got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise DataFormatError(path, f"{label} has no columns (shape {arr.shape}); each item needs >= 1 feature")
    if num_items is not None and arr.shape[0] != num_items:
        raise DataFormatError(path, f"{label} has {arr.shape[0]} rows but the graph has "
                              f"{num_items} items (one row per item id is required)")
    if arr.dtype.kind == "f" and arr.dtype != np.float32:
        bad_src = ~np.isfinite(arr)
        if bad_src.any():
            _raise_not_finite(bad_src, path, label, "")
        with np.errstate(over="ignore"):
            out = arr.astype(np.float32)
        over = ~np.isfinite(out)
        if over.any():
            row = int(np.argwhere(over)[0, 0])
            raise DataFormatError(path, f"{label} overflows float32 when converted from {arr.dtype}: "
                                  f"{int(over.any(axis=1).sum())} rows have values beyond +-3.4e38 (first: row "
                                  f"{row}, value {arr[row][over[row]][0]:.3g}); rescale the features")
        return out
    out = arr.astype(np.float32, copy=False)
    bad = ~np.isfinite(out)
    if bad.any():
        _raise_not_finite(bad, path, label, "")
    return out


def _raise_not_finite(bad: np.ndarray, path, label: str, extra: str) -> None:
    bad_row = int(np.argwhere(bad)[0, 0])
    n_bad = int(bad.any(axis=1).sum())
    raise DataFormatError(path, f"{label} has NaN/inf values in {n_bad} rows (first: row {bad_row}){extra}")
