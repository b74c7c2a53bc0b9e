"""Recommenders sharing one interface (see :mod:`idsf_pyg.models.base`)."""
from .base import Recommender
from .bm3 import BM3
from .bpr import BPRMF
from .freedom import FREEDOM
from .grcn import GRCN
from .idsf import IDSF, IDSFOutput
from .idsf_content import Content, IDSFContent, ModalityContent
from .idsf_contrast import IDSFContrast
from .idsf_structure import IDSFStructure, Structure
from .lightgcn import LightGCN
from .micro import MICRO
from .mmgcn import MMGCN
from .ngcf import NGCF
from .slmrec import SLMRec
from .vbpr import VBPR

MODELS = {"idsf": IDSF, "bpr": BPRMF, "lightgcn": LightGCN, "ngcf": NGCF, "vbpr": VBPR, "mmgcn": MMGCN,
          "grcn": GRCN, "slmrec": SLMRec, "micro": MICRO, "bm3": BM3, "freedom": FREEDOM}

__all__ = ["BM3", "BPRMF", "Content", "FREEDOM", "GRCN", "IDSF", "IDSFContent", "IDSFContrast", "IDSFOutput",
           "IDSFStructure", "LightGCN", "ModalityContent", "Structure", "MICRO", "MMGCN", "MODELS", "NGCF",
           "Recommender", "SLMRec", "VBPR"]
