"""The project's own errors: one base class, so every entry point can turn them into a message.

Anything raised as an :class:`IDSFError` is the user's to fix (a file, a config key, an option, a run
folder); the command-line entry points print it as one or two lines on stderr and exit with status 2
(see :mod:`idsf_pyg.cli`). Anything else is a bug of ours and keeps its traceback.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union


class IDSFError(Exception):
    """Base class of the errors a user can fix without reading our code."""


class DataFormatError(IDSFError, ValueError):
    r"""Malformed or inconsistent input data.

    The message always names the file (and line or field where there is one),
    so that a user can open the file at the right place.
    """

    def __init__(self, path: Union[str, Path, None], message: str,
                 line: Optional[int] = None, field: Optional[str] = None):
        where = str(path) if path is not None else "<in-memory data>"
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.field = field


class ConfigError(IDSFError, ValueError):
    """An unknown, mistyped or out-of-range setting; the message names the key and where it came from."""

    def __init__(self, message: str, key: Optional[str] = None, source: Optional[str] = None):
        named = (f"option {key}" if key.startswith("-") else f"key '{key}'") if key else None
        where = ", ".join(x for x in (source, named) if x)
        super().__init__(f"{where}: {message}" if where else message)
        self.key = key
        self.source = source


class RunFolderError(IDSFError):
    """A run folder that cannot be written, or holds results or a checkpoint of another configuration."""


class TrainingError(IDSFError):
    """Training cannot go on (e.g. the loss became NaN); the last checkpoint is kept."""


class DownloadError(IDSFError):
    """A download failed or its content does not match the expected checksum."""


class OutputExistsError(IDSFError, FileExistsError):
    """A command's output exists already and ``--overwrite`` was not given."""
