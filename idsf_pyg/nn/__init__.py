"""Neural building blocks: the IDSF propagation layer, the attention unit and the shared normalization."""
from .attention import ModalityAttention
from .idsf_conv import IDSFConv, as_bipartite_edges, idsf_norm
from .norm import symmetric_norm, symmetric_norm_csr

__all__ = ["IDSFConv", "ModalityAttention", "as_bipartite_edges", "idsf_norm", "symmetric_norm",
           "symmetric_norm_csr"]
