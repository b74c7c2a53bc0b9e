"""Recommenders sharing one interface (see :mod:`idsf_pyg.models.base`)."""
from .base import Recommender
from .bm3 import BM3
from .bpr import BPRMF
from .freedom import FREEDOM
from .grcn import GRCN
from .idsf import IDSF
from .lightgcn import LightGCN
from .micro import MICRO
from .mmgcn import MMGCN
from .ngcf import NGCF
from .slmrec import SLMRec
from .vbpr import VBPR

MODELS = {"idsf": IDSF, "bpr": BPRMF, "lightgcn": LightGCN, "ngcf": NGCF, "vbpr": VBPR, "mmgcn": MMGCN,
          "grcn": GRCN, "slmrec": SLMRec, "micro": MICRO, "bm3": BM3, "freedom": FREEDOM}

__all__ = ["BM3", "BPRMF", "FREEDOM", "GRCN", "IDSF", "LightGCN", "MICRO", "MMGCN", "MODELS", "NGCF",
           "Recommender", "SLMRec", "VBPR"]
