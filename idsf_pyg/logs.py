"""The package's log: stdlib :mod:`logging`, one logger named ``"idsf_pyg"`` (:data:`logger`). A library user
routes or silences it as any logger; the commands show it on the console (:func:`console`), and every run folder
keeps its own copy in ``train.log`` (:func:`log_file`)."""
from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import IO, Iterator, Optional

LOGGER = "idsf_pyg"
#: The package's logger: progress and notes at INFO, things to look at at WARNING.
logger = logging.getLogger(LOGGER)
logger.addHandler(logging.NullHandler())


@contextlib.contextmanager
def _handler(handler: logging.Handler) -> Iterator[logging.Handler]:
    """``handler`` on the package logger, which passes INFO records while it is attached."""
    logger = logging.getLogger(LOGGER)
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()


@contextlib.contextmanager
def console(stream: Optional[IO[str]] = None) -> Iterator[logging.Handler]:
    """The log's lines, as plain text, on ``stream`` (default: the current ``sys.stdout``) while inside."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    with _handler(handler) as h:
        yield h


@contextlib.contextmanager
def log_file(path: Path) -> Iterator[logging.Handler]:
    """The log's lines, each with its time, appended to ``path`` while inside."""
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s  %(message)s", "%Y-%m-%d %H:%M:%S"))
    with _handler(handler) as h:
        yield h


@contextlib.contextmanager
def silenced(enabled: bool = True) -> Iterator[None]:
    """No log lines from this process while inside (the other ranks of a torchrun job: rank 0 logs)."""
    logger = logging.getLogger(LOGGER)
    was = logger.disabled
    logger.disabled = was or enabled
    try:
        yield
    finally:
        logger.disabled = was
