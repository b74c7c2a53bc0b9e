"""Neural building blocks: the IDSF propagation layer and the attention unit."""
from .attention import ModalityAttention
from .idsf_conv import IDSFConv, bipartite_norm

__all__ = ["IDSFConv", "ModalityAttention", "bipartite_norm"]
