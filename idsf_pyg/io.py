"""Atomic file writes: a reader sees the old file or the complete new one, never half a file.

Each write goes to a unique temporary file in the destination's folder, is flushed and fsync'ed, and is
renamed over the destination (``os.replace`` is atomic on POSIX and Windows); the folder is then fsync'ed
so that the rename itself survives a power cut. A failed write leaves the destination untouched and
removes its temporary file.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Union

PathLike = Union[str, Path]


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None
                ) -> Iterator[IO]:
    """``with atomic_open(p) as f: f.write(...)``: ``p`` appears only when the block ends without error."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": encoding, "newline": newline})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: folders cannot be opened; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: PathLike, obj: Any) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.write("\n")


def write_with(path: PathLike, writer: Callable[[IO[bytes]], None]) -> None:
    """Atomic binary write through ``writer(file)``: ``write_with(p, lambda f: np.save(f, a))``,
    ``write_with(p, lambda f: torch.save(obj, f))``."""
    with atomic_open(path, "wb") as f:
        writer(f)
