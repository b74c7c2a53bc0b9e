r"""IDSF's structural modules, eq. (7)–(10) of the paper, built on a pluggable propagation layer."""
from __future__ import annotations

import importlib
from typing import Annotated, Dict, Literal, NamedTuple, Optional, Sequence, Tuple, Type, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.utils import to_torch_csr_tensor

from ..nn import ModalityAttention
from ..nn.init import check_scheme, reset_attention
from ..options import Check, NonNegativeFloat, NonNegativeInt, PositiveInt

#: How the structural module starts its layer 0: ``"id"`` (the paper) or ``"preference"`` (the official code).
STRUCTURE_INITS = ("id", "preference")
#: The default propagation layer, as a config names it.
DEFAULT_CONV = "idsf_pyg.nn:IDSFConv"


class Structure(NamedTuple):
    """What :class:`IDSFStructure` computes."""

    user: Tensor   #: :math:`\mathbf{e}_u^s` of eq. (10), ``[U, d]``
    item: Tensor   #: :math:`\mathbf{e}_i^s` of eq. (9), ``[I, d]``


def resolve_conv(conv: Union[str, Type[nn.Module]]) -> Type[nn.Module]:
    """A propagation layer class from itself or from ``"package.module:Class"`` (as a config or ``--set`` names
    it); :class:`ValueError` naming the spec when it cannot be imported or is not a layer class."""
    if isinstance(conv, type):
        cls = conv
    else:
        if not isinstance(conv, str) or conv.count(":") != 1 or not all(conv.split(":")):
            raise ValueError(f"conv must be a layer class or 'package.module:Class', got {conv!r}")
        module_name, _, name = conv.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ValueError(f"conv {conv!r}: cannot import module {module_name!r} ({e})") from None
        cls = getattr(module, name, None)
        if cls is None:
            raise ValueError(f"conv {conv!r}: module {module_name!r} has no {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"conv {conv!r} is not a torch.nn.Module class")
    return cls


def conv_spec(conv: Union[str, Type[nn.Module]]) -> str:
    """``"package.module:Class"`` of a layer class (what a config records), or the spec itself."""
    if isinstance(conv, str):
        return conv
    return f"{conv.__module__}:{conv.__qualname__}"


class IDSFStructure(nn.Module):
    r"""The item and user structural modules of IDSF, eq. (7)–(10).

    Per modality :math:`m`, :math:`K` layers of a propagation layer (by default
    :class:`~idsf_pyg.nn.IDSFConv`) over the training graph, users to items (eq. (7)) and items to users
    (eq. (8)), each adding the target's ID as a self term:

    .. math::
        \mathbf{e}_i^{m,(k+1)} = \sum_{u \in \mathcal{N}(i)} \frac{\mathbf{e}_u^{m,(k)}}{\sqrt{|\mathcal{N}(i)|
        |\mathcal{N}(u)|}} + \gamma\,\mathbf{e}_i^{mid}, \qquad
        \mathbf{e}_u^{m,(k+1)} = \sum_{i \in \mathcal{N}(u)} \frac{\mathbf{e}_i^{m,(k)}}{\sqrt{|\mathcal{N}(u)|
        |\mathcal{N}(i)|}} + \gamma\,\mathbf{e}_u^{id}

    from :math:`\mathbf{e}_i^{m,(0)} = \mathbf{e}_i^m` and :math:`\mathbf{e}_u^{m,(0)} = \mathbf{e}_u^{id}` (the
    paper leaves the users' layer 0 unstated; the user ID is their only representation). The layer mean
    :math:`\frac{1}{K+1}\sum_k` per modality is then fused across modalities by attention, eq. (9) for items
    and (10) for users.

    The layers own their normalization: each gets the raw training adjacency (a sparse CSR tensor, values
    = edge weights or ones) and normalizes it once (``cached=True``).

    Args:
        num_users, num_items: :math:`|U|`, :math:`|I|`.
        edge_index: Training edges ``[2, E]`` (row 0 users, row 1 items).
        modalities: The modality names (one structural pass each).
        embedding_dim: :math:`d`.
        num_layers: :math:`K`.
        gamma: :math:`\gamma` of eq. (7)–(8); 0 is the "structure w/o ID" ablation.
        normalization: The layers' ``normalize``: ``"sym"`` (the paper) or ``"row_self_loop"`` (the official
            code: :math:`D^{-1}(A + I)`).
        user_id_self_term: Add :math:`\gamma\mathbf{e}_u^{id}` on the user side (eq. (8), default) or not.
        init: Layer 0: ``"id"`` (above) or ``"preference"`` (the official code: a per-modality user preference
            table for the users, every row of :math:`[\mathbf{p}^m; \mathbf{e}^m]` L2-normalized; the IDs
            enter through the :math:`\gamma` self terms only).
        edge_weight: Weights ``[E]`` of the training edges (e.g. ratings): the layers' degrees become
            weighted sums. ``None``: the paper's unweighted graph.
        conv: The propagation layer: a class, or ``"package.module:Class"``. It is built as
            ``conv(gamma, normalize=normalization, cached=True)`` and called as ``conv((x_src, x_dst),
            adjacency, x_id)`` with a sparse ``[n_dst, n_src]`` adjacency, like
            :class:`~idsf_pyg.nn.IDSFConv` (subclass it to change :meth:`~idsf_pyg.nn.IDSFConv.message`).
        linear_init: Initialization of the attention units: ``"xavier"`` or ``"torch"``.
        initialize: Call :meth:`reset_parameters` now (default); see :class:`IDSFContent`.

    Shapes:
        - **input:** per modality the projected item features :math:`\mathbf{e}^m` and the item IDs
          :math:`\mathbf{e}^{mid}`, each ``[I, d]``
        - **output:** :class:`Structure`: users ``[U, d]``, items ``[I, d]``
    """

    #: Arguments that change memory or speed only, left out of a run's key (none here).
    non_key_arguments: tuple = ()

    def __init__(self, num_users: int, num_items: int, edge_index: Tensor, modalities: Sequence[str],
                 embedding_dim: PositiveInt = 128, num_layers: NonNegativeInt = 2, gamma: NonNegativeFloat = 0.3,
                 normalization: Literal["sym", "row_self_loop"] = "sym", user_id_self_term: bool = True,
                 init: Literal["id", "preference"] = "id", edge_weight: Optional[Tensor] = None,
                 conv: Annotated[Union[str, Type[nn.Module]], Check(lambda c: resolve_conv(c))] = DEFAULT_CONV,
                 linear_init: Literal["xavier", "torch"] = "xavier", initialize: bool = True):
        super().__init__()
        if init not in STRUCTURE_INITS:
            raise ValueError(f"structure_init must be one of {STRUCTURE_INITS}, got {init!r}")
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        self.modalities = list(modalities)
        self.num_layers, self.init, self.linear_init = num_layers, init, check_scheme(linear_init)
        self.conv_spec = conv_spec(conv)
        conv_cls = resolve_conv(conv)
        self.user_id = nn.Embedding(num_users, embedding_dim)
        if init == "preference":
            self.user_pref = nn.ModuleDict({m: nn.Embedding(num_users, embedding_dim) for m in self.modalities})
        self.item_att = ModalityAttention(embedding_dim)
        self.user_att = ModalityAttention(embedding_dim)
        self.conv_to_item = conv_cls(gamma, normalize=normalization, cached=True)
        self.conv_to_user = conv_cls(gamma if user_id_self_term else 0.0, normalize=normalization, cached=True)
        users, items = edge_index
        w = torch.ones(edge_index.size(1)) if edge_weight is None else edge_weight.float()
        # The raw adjacency of each direction, [n_dst, n_src], as buffers (they move with .to(device)).
        self.register_buffer("adj_to_item", to_torch_csr_tensor(torch.stack([items, users]), w,
                                                                size=(num_items, num_users)), persistent=False)
        self.register_buffer("adj_to_user", to_torch_csr_tensor(torch.stack([users, items]), w,
                                                                size=(num_users, num_items)), persistent=False)
        if initialize:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        self.reset_user_ids()
        self.reset_attention()
        self.reset_preferences()

    def reset_user_ids(self) -> None:
        nn.init.xavier_uniform_(self.user_id.weight)

    def reset_attention(self) -> None:
        reset_attention(self.item_att, self.linear_init)
        reset_attention(self.user_att, self.linear_init)
        self.conv_to_item.reset_parameters()
        self.conv_to_user.reset_parameters()

    def reset_preferences(self) -> None:
        if self.init == "preference":
            for m in self.modalities:
                nn.init.xavier_uniform_(self.user_pref[m].weight)

    def forward(self, items: Dict[str, Tensor], item_ids: Dict[str, Tensor]) -> Structure:
        """``items``: :math:`\\mathbf{e}^m` by modality; ``item_ids``: :math:`\\mathbf{e}^{mid}` by modality."""
        u_id = self.user_id.weight
        item_reps, user_reps = [], []
        for m in self.modalities:
            x_item, x_user, i_id = items[m], u_id, item_ids[m]
            if self.init == "preference":  # official layer 0: normalized [p^m; e^m]
                x_user = F.normalize(self.user_pref[m].weight, dim=1)
                x_item = F.normalize(x_item, dim=1)
            item_sum, user_sum = x_item, x_user
            for _ in range(self.num_layers):
                x_item, x_user = self.layer(x_user, x_item, u_id, i_id)
                item_sum, user_sum = item_sum + x_item, user_sum + x_user
            item_reps.append(item_sum / (self.num_layers + 1))
            user_reps.append(user_sum / (self.num_layers + 1))
        e_i_s, _ = self.item_att(item_reps)   # eq. (9)
        e_u_s, _ = self.user_att(user_reps)   # eq. (10)
        return Structure(e_u_s, e_i_s)

    def layer(self, x_user: Tensor, x_item: Tensor, u_id: Tensor, i_id: Tensor) -> Tuple[Tensor, Tensor]:
        """One layer of eq. (7) (users to items) and eq. (8) (items to users): ``(items, users)``."""
        to_item, to_user = self.conv_to_item, self.conv_to_user
        if not (hasattr(to_item, "neighbors_and_ids") and hasattr(to_user, "neighbors_and_ids")):
            return (to_item((x_user, x_item), self.adj_to_item, i_id),
                    to_user((x_item, x_user), self.adj_to_user, u_id))
        # Both directions' neighbour sums before either self-loop term: autograd then adds the gradients of a
        # layer's inputs in the same order for every version of this module, so a seed's numbers stay the same.
        items, item_loop = to_item.neighbors_and_ids((x_user, x_item), self.adj_to_item, i_id)   # eq. (7)
        users, user_loop = to_user.neighbors_and_ids((x_item, x_user), self.adj_to_user, u_id)   # eq. (8)
        return to_item.add_self_loop(items, item_loop), to_user.add_self_loop(users, user_loop)

    def extra_repr(self) -> str:
        return f"modalities={self.modalities}, K={self.num_layers}, init='{self.init}', conv='{self.conv_spec}'"
