r"""IDSF's item content module, eq. (1)–(2) of the paper: projection, ID enhancement, fusion."""
from __future__ import annotations

from typing import Dict, Literal, NamedTuple

from torch import Tensor, nn

from ..nn import ModalityAttention
from ..nn.init import check_scheme, reset_attention, reset_linear
from ..options import PositiveInt


class ModalityContent(NamedTuple):
    """One modality's item representations, each ``[I, d]``."""

    projected: Tensor   #: :math:`\mathbf{e}^m`, the projected raw features
    id: Tensor          #: :math:`\mathbf{e}^{mid}`, the modality's item ID embedding
    enhanced: Tensor    #: :math:`\mathbf{e}^{m'}` of eq. (1) (:math:`\mathbf{e}^m` itself without enhancement)


class Content(NamedTuple):
    """What :class:`IDSFContent` computes."""

    fused: Tensor                              #: :math:`\mathbf{e}^c` of eq. (2), ``[I, d]``
    modalities: Dict[str, ModalityContent]     #: by modality name
    #: Attention weights: ``"<m>"`` ``[I, 2]`` over :math:`[\mathbf{e}^m, \mathbf{e}^{mid}]` (eq. (1); absent
    #: without enhancement), ``"fuse"`` ``[I, M]`` over the modalities (eq. (2)).
    attention: Dict[str, Tensor]


class IDSFContent(nn.Module):
    r"""The item content module of IDSF, eq. (1)–(2).

    Each modality's raw features are projected to :math:`d`, :math:`\mathbf{e}_i^m = \mathbf{W}_m\mathbf{x}_i^m
    + \mathbf{b}_m`, enhanced with a modality-specific item ID,

    .. math::
        \mathbf{e}_i^{m'} = \mathrm{Att}_m(\mathbf{e}_i^m, \mathbf{e}_i^{mid}) \qquad (1)

    and the enhanced modalities are fused, :math:`\mathbf{e}_i^c = \mathrm{Att}_c(\mathbf{e}_i^{t'},
    \mathbf{e}_i^{v'}, \dots)` (2), with :class:`~idsf_pyg.nn.ModalityAttention` units.

    Args:
        features: Raw item features by modality name, each ``[I, F_m]``.
        num_items: :math:`|I|`.
        embedding_dim: :math:`d`.
        enhance: Eq. (1) (default); :obj:`False` is the "content w/o ID" ablation,
            :math:`\mathbf{e}_i^{m'} = \mathbf{e}_i^m` (the ID tables stay: the structural module uses them).
        trainable_features: Keep the raw features fixed (the paper) or train them (the official code).
        linear_init: ``"xavier"`` (section 4.1) or ``"torch"`` (the official code; embeddings stay Xavier).
        initialize: Call :meth:`reset_parameters` now (default); :class:`IDSF` passes :obj:`False` and
            initializes all its parts in one fixed order, so that a seed gives the same numbers.

    Shapes:
        - **output:** :class:`Content`: fused ``[I, d]``, per modality three ``[I, d]`` tensors.
    """

    #: Arguments that change memory or speed only, left out of a run's key (none here).
    non_key_arguments: tuple = ()

    def __init__(self, features: Dict[str, Tensor], num_items: int, embedding_dim: PositiveInt = 128,
                 enhance: bool = True, trainable_features: bool = False,
                 linear_init: Literal["xavier", "torch"] = "xavier", initialize: bool = True):
        super().__init__()
        if not features:
            raise ValueError("the content module needs at least one item modality")
        for m, x in features.items():
            if x.dim() != 2 or x.size(0) != num_items:
                raise ValueError(f"features[{m!r}] must have shape [num_items={num_items}, F], got {tuple(x.shape)}")
        self.modalities = list(features)
        self.embedding_dim, self.enhance = embedding_dim, enhance
        self.trainable_features, self.linear_init = trainable_features, check_scheme(linear_init)
        # Fixed features are non-persistent buffers sharing the graph's storage: they move with .to(), but stay
        # out of state_dict (checkpoints hold what training changes only). Trainable ones get their own copy.
        if trainable_features:
            self.raw_params = nn.ParameterDict({m: nn.Parameter(x.float().clone()) for m, x in features.items()})
        else:
            for m, x in features.items():
                self.register_buffer(f"feat_{m}", x.float(), persistent=False)
        self.proj = nn.ModuleDict({m: nn.Linear(x.size(1), embedding_dim) for m, x in features.items()})
        self.item_id = nn.ModuleDict({m: nn.Embedding(num_items, embedding_dim) for m in features})
        # Built with enhance=False too: the ablation changes the function, not the parameters or their draws.
        self.enhance_att = nn.ModuleDict({m: ModalityAttention(embedding_dim) for m in features})
        self.fuse_att = ModalityAttention(embedding_dim)
        if initialize:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        self.reset_modalities()
        self.reset_fusion()

    def reset_modalities(self) -> None:
        """Per modality, in this order: projection, item ID table (Xavier), ID attention."""
        for m in self.modalities:
            reset_linear(self.proj[m], self.linear_init)
            nn.init.xavier_uniform_(self.item_id[m].weight)
            reset_attention(self.enhance_att[m], self.linear_init)

    def reset_fusion(self) -> None:
        reset_attention(self.fuse_att, self.linear_init)

    def raw_feature(self, modality: str) -> Tensor:
        """The raw item features of one modality (a fixed buffer, or a parameter with ``trainable_features``)."""
        return self.raw_params[modality] if self.trainable_features else getattr(self, f"feat_{modality}")

    def forward(self) -> Content:
        modalities, attention, enhanced = {}, {}, []
        for m in self.modalities:
            e_m = self.proj[m](self.raw_feature(m))
            e_id = self.item_id[m].weight
            if self.enhance:
                e_enh, attention[m] = self.enhance_att[m]([e_m, e_id])   # eq. (1)
            else:
                e_enh = e_m
            modalities[m] = ModalityContent(e_m, e_id, e_enh)
            enhanced.append(e_enh)
        fused, attention["fuse"] = self.fuse_att(enhanced)               # eq. (2)
        return Content(fused, modalities, attention)

    def extra_repr(self) -> str:
        return f"modalities={self.modalities}, d={self.embedding_dim}, enhance={self.enhance}"
