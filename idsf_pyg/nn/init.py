r"""The two initialization schemes of IDSF's linear layers and attention units."""
from __future__ import annotations

from torch import nn

from .attention import ModalityAttention

#: ``"xavier"``: section 4.1 (Xavier for every weight, zero biases); ``"torch"``: PyTorch's defaults, as the
#: official code leaves its ``nn.Linear`` layers.
LINEAR_INITS = ("xavier", "torch")


def reset_linear(lin: nn.Linear, scheme: str) -> None:
    """Re-initializes ``lin`` by ``scheme`` (one of :data:`LINEAR_INITS`)."""
    if scheme == "xavier":
        nn.init.xavier_uniform_(lin.weight)
        nn.init.zeros_(lin.bias)
    else:
        lin.reset_parameters()


def reset_attention(att: ModalityAttention, scheme: str) -> None:
    """Re-initializes an attention unit by ``scheme``; ``"torch"`` initializes :math:`\\mathbf{q}` as the official
    ``Linear(d, 1, bias=False)`` that holds it."""
    if scheme == "xavier":
        att.reset_parameters()
    else:
        att.lin.reset_parameters()
        nn.init.kaiming_uniform_(att.q.data.view(1, -1), a=5 ** 0.5)


def check_scheme(scheme: str) -> str:
    if scheme not in LINEAR_INITS:
        raise ValueError(f"linear_init must be one of {LINEAR_INITS}, got {scheme!r}")
    return scheme
