"""The optional libraries of the ``[experiments]`` extra (search, figures, UMAP, TensorBoard), imported on demand.

``pip install idsf-pyg`` stays lean; ``bash experiments/setup.sh`` (the README's commands) installs the extra.
A command that needs one of them and does not find it says so in one line.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from idsf_pyg.errors import IDSFError


class MissingExtra(IDSFError):
    """An optional library a command needs is not installed."""


def require(module: str, purpose: str) -> ModuleType:
    """``importlib.import_module(module)``, or a one-line error naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0].replace("_", "-")
        raise MissingExtra(f"{purpose} needs the optional package {package!r}: pip install -e '.[experiments]' "
                           "(bash experiments/setup.sh installs it)") from None
