"""Recommenders sharing one interface (see :mod:`idsf_pyg.models.base`)."""
from .base import Recommender
from .bpr import BPRMF
from .idsf import IDSF

MODELS = {"idsf": IDSF, "bpr": BPRMF}

__all__ = ["BPRMF", "IDSF", "MODELS", "Recommender"]
