"""What every preprocessing step shares: line readers with located errors, manifests, overwrite guards."""
from __future__ import annotations

import gzip
import time
import zlib
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from idsf_pyg.errors import ConfigError, DataFormatError, OutputExistsError
from idsf_pyg.io import sha256_file, write_json, write_with

PathLike = Union[str, Path]


def describe_input(path: PathLike) -> Dict[str, Any]:
    p = Path(path)
    return {"path": str(p), "bytes": p.stat().st_size, "sha256": sha256_file(p)}


def open_text(path: PathLike):
    """Opens ``.gz`` or plain text as UTF-8."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            return gzip.open(path, "rt", encoding="utf-8")
        return open(path, encoding="utf-8")
    except OSError as e:
        raise DataFormatError(path, f"cannot read file ({e.strerror or e})") from None


def iter_lines(path: PathLike) -> Iterator[Tuple[int, str]]:
    """``(line number, text)`` of non-empty lines; a truncated or corrupt gzip is a located error."""
    line_no = 0
    with open_text(path) as handle:
        try:
            for line_no, raw in enumerate(handle, start=1):
                if raw.strip():
                    yield line_no, raw
        except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as e:
            raise DataFormatError(path, f"corrupt or truncated compressed file after line {line_no} ({e})",
                                  line_no + 1) from None
        except UnicodeDecodeError as e:
            raise DataFormatError(path, f"not UTF-8 text ({e.reason})", line_no + 1) from None


def check_outputs(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuses to replace existing outputs unless ``overwrite`` (checked before any work)."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"outputs exist already: {', '.join(existing)} (pass --overwrite to replace them)")


def check_positive(name: str, value: int) -> int:
    """A count option (``--k``, ``--batch-size``) that must be at least 1."""
    if value < 1:
        raise ConfigError(f"must be >= 1, got {value}", name)
    return value


def write_manifest(path: Path, step: str, inputs: List[Dict[str, Any]], outputs: List[Path],
                   details: Dict[str, Any]) -> Dict[str, Any]:
    manifest = {
        "step": step,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": inputs,
        "outputs": [{"path": str(p), "bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in outputs],
        **details,
    }
    write_json(path, manifest)
    return manifest


def read_item_map(data_dir: Path) -> List[str]:
    """ASINs by item id, from the ``item_list.txt`` the interactions step wrote."""
    from idsf_pyg.data.readers import read_id_map
    f = data_dir / "item_list.txt"
    if not f.is_file():
        raise DataFormatError(f, "missing: run `python -m preprocessing.interactions` first (it writes the id maps)")
    return read_id_map(f)


class BadRecords:
    """Counts skipped bad records (``--skip-bad``) or raises on the first one."""

    def __init__(self, skip: bool):
        self.skip = skip
        self.count = 0
        self.examples: List[str] = []

    def __call__(self, error: DataFormatError) -> None:
        if not self.skip:
            raise error
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(str(error))

    def report(self) -> Dict[str, Any]:
        return {"skipped_bad_records": self.count, "skipped_examples": self.examples}


def save_npy(path: Path, array) -> None:
    """Writes a ``.npy`` atomically (a killed run never leaves a truncated feature file)."""
    import numpy as np
    write_with(path, lambda f: np.save(f, array))


def optional(value: Optional[Any], default: Any) -> Any:
    return default if value is None else value
