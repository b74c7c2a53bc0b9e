"""The error every reader raises (defined with the project's other errors in :mod:`idsf_pyg.errors`)."""
from ..errors import DataFormatError

__all__ = ["DataFormatError"]
