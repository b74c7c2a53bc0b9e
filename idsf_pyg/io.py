"""Atomic file writes: a reader sees the old file or the complete new one, never half a file.

Each write goes to a unique temporary file in the destination's folder, is flushed and fsync'ed, and is
renamed over the destination (``os.replace`` is atomic on POSIX and Windows); the folder is then fsync'ed
so that the rename itself survives a power cut. A failed write leaves the destination untouched and
removes its temporary file; a write killed outright (SIGKILL, power cut) leaves its temporary file, named
``.<name>.<random>.tmp``, which :func:`remove_temp_files` clears on the folder's next use.

Files get the mode ``open()`` would give them (0666 less the process umask), not ``mkstemp``'s 0600: a
run store shared with a group stays readable by it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Callable, Iterator, List, Union

from .errors import ConfigError

PathLike = Union[str, Path]

#: How :func:`atomic_open` names its temporary files (``mkstemp``'s random part is 8 characters).
TEMP_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
_umask_lock = threading.Lock()


def file_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less the process umask (read without changing it for good)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def remove_temp_files(folder: PathLike) -> List[Path]:
    """Removes the temporary files that killed :func:`atomic_open` writes left in ``folder``; returns them.
    Call it only while no other process writes there (e.g. holding the run folder's lock)."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if TEMP_PATTERN.match(p.name) and p.is_file():
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None,
                before_replace: Callable[[Path], None] | None = None) -> Iterator[IO]:
    """``with atomic_open(p) as f: f.write(...)``: ``p`` appears only when the block ends without error.

    ``before_replace(tmp)`` is called with the complete temporary file just before it is renamed over ``p``
    (e.g. to record its digest first); if it raises, ``p`` is left as it was."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": encoding, "newline": newline})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace(Path(tmp))
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


def write_with(path: PathLike, writer: Callable[[IO[bytes]], None],
               before_replace: Callable[[Path], None] | None = None) -> None:
    """Atomic binary write through ``writer(file)``: ``write_with(p, lambda f: np.save(f, a))``,
    ``write_with(p, lambda f: torch.save(obj, f))``."""
    with atomic_open(path, "wb", before_replace=before_replace) as f:
        writer(f)


def writable_folder(path: PathLike, option: str) -> Path:
    """Creates ``path`` if needed and proves a file can be written there; a :class:`ConfigError` naming
    ``option`` otherwise (a file in the way, a file above it, no permission)."""
    path = Path(path)
    for above in (path, *path.parents):
        if above.exists() and not above.is_dir():
            why = "exists and is not a folder" if above == path else f"cannot write there: {above} is a file"
            raise ConfigError(f"{path}: {why}", option)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{path}: cannot write there ({e.strerror or e})", option) from None
    return path


def sha256_file(path: PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
