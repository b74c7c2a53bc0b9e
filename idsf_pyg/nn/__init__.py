"""Neural building blocks: the IDSF propagation layer and the attention unit."""
from .attention import ModalityAttention
from .idsf_conv import IDSFConv, as_bipartite_edges, idsf_norm

__all__ = ["IDSFConv", "ModalityAttention", "as_bipartite_edges", "idsf_norm"]
