"""The one error type every reader raises, so callers can catch bad input."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union


class DataFormatError(ValueError):
    r"""Raised for malformed or inconsistent input data.

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
