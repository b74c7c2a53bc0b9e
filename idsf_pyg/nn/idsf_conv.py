r"""The IDSF propagation layer, eq. (7)–(8) of the paper."""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor, scatter, spmm, to_edge_index, to_torch_csr_tensor

from .norm import symmetric_norm

PairTensor = Tuple[Tensor, Optional[Tensor]]
PairOptTensor = Union[Optional[Tensor], Tuple[Optional[Tensor], Optional[Tensor]]]
Adjacency = Union[Tensor, SparseTensor]
NORMALIZATIONS = ("sym", "row_self_loop", "none")


def _check_normalize(normalize: Union[str, bool]) -> str:
    if normalize is True:  # GCNConv's spelling
        return "sym"
    if normalize is False:
        return "none"
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS} (or True/False), got {normalize!r}")
    return normalize


def idsf_norm(edge_index: Tensor, edge_weight: Optional[Tensor], num_src: int, num_dst: int,
              normalize: str = "sym", dtype: Optional[torch.dtype] = None
              ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    r"""Normalized edge weights of a directed bipartite graph ``src -> dst``, in the manner of
    :func:`~torch_geometric.nn.conv.gcn_norm`: with weights :math:`w_{ji}` the degrees are weighted sums,
    :math:`d_i = \sum_{j \in \mathcal{N}(i)} w_{ji}` (a repeated edge counts once per occurrence).

    * ``"sym"`` (eq. (7)–(8); :math:`w = 1` gives the paper's
      :math:`1/\sqrt{|\mathcal{N}(i)|\,|\mathcal{N}(j)|}`):
      :math:`\hat{w}_{ji} = w_{ji} / \sqrt{d_i\, d_j}`; an edge whose endpoint has degree 0 gets 0
      (:func:`~idsf_pyg.nn.norm.symmetric_norm`, the normalization every model of the package shares);
    * ``"row_self_loop"`` (the official code): :math:`\hat{w}_{ji} = w_{ji} / (d_i + 1)`, and the target's
      own previous embedding gets the self-loop weight :math:`1 / (d_i + 1)`;
    * ``"none"``: :math:`\hat{w}_{ji} = w_{ji}`.

    Weights must be non-negative.

    Returns:
        ``(edge_index, normalized edge weight [E], self-loop weight of the targets [num_dst] or None)``.
    """
    normalize = _check_normalize(normalize)
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), dtype=dtype or torch.float, device=edge_index.device)
    elif dtype is not None:
        edge_weight = edge_weight.to(dtype)
    if normalize == "none":
        return edge_index, edge_weight, None
    if normalize == "sym":
        return edge_index, symmetric_norm(edge_index, edge_weight, num_src, num_dst), None
    dst = edge_index[1]
    deg_dst = scatter(edge_weight, dst, dim=0, dim_size=num_dst, reduce="sum")
    inv = 1.0 / (deg_dst + 1.0)
    return edge_index, edge_weight * inv[dst], inv


def as_bipartite_edges(adj: Adjacency, edge_weight: Optional[Tensor] = None
                       ) -> Tuple[Tensor, Optional[Tensor], Optional[Tuple[int, int]]]:
    r"""Any adjacency the layer takes -> ``(edge_index [2, E] with row 0 = source, edge weight, size)``.

    A sparse adjacency (``torch.sparse`` CSR/COO or :class:`torch_sparse.SparseTensor`) is
    :math:`[|\mathcal{V}_{dst}|, |\mathcal{V}_{src}|]` and its values are the edge weights; an
    ``edge_index`` (a plain tensor or PyG's :class:`~torch_geometric.EdgeIndex`) takes them from
    ``edge_weight``. ``size`` is ``(n_src, n_dst)`` where the input says it, else ``None``.
    """
    size = _declared_size(adj)
    if is_torch_sparse_tensor(adj) or isinstance(adj, SparseTensor):
        if edge_weight is not None:
            raise ValueError("a sparse adjacency carries its edge weights in its values: do not pass edge_weight too")
        (dst, src), values = to_edge_index(adj)
        return torch.stack([src, dst]), values, size
    if callable(getattr(adj, "as_tensor", None)):  # torch_geometric.EdgeIndex
        adj = adj.as_tensor()
    if adj.dim() != 2 or adj.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {tuple(adj.shape)}")
    if edge_weight is not None and edge_weight.shape != (adj.size(1),):
        raise ValueError(f"edge_weight must have shape [{adj.size(1)}] (one weight per edge), "
                         f"got {tuple(edge_weight.shape)}")
    return adj, edge_weight, size


class IDSFConv(MessagePassing):
    r"""The ID-enhanced light graph convolution of IDSF, eq. (7)–(8) of
    "ID Embedding as Subtle Features of Content and Structure for Multimodal
    Recommendation" (Liu et al.).

    For one direction ``src -> dst`` of a bipartite user–item graph (users to
    items for eq. (7), items to users for eq. (8)):

    .. math::
        \mathbf{x}^{\prime}_i = \sum_{j \in \mathcal{N}(i)}
        \frac{w_{ji}}{\sqrt{d_i\, d_j}} \mathbf{x}_j
        + \gamma\, \mathbf{x}^{id}_i, \qquad d_i = \sum_{j \in \mathcal{N}(i)} w_{ji}

    where :math:`\mathbf{x}_j` are the source embeddings of the previous layer,
    :math:`\mathbf{x}^{id}_i` the target's ID embedding (the modality-specific
    item ID for items, the user ID for users) and :math:`w_{ji}` optional edge
    weights (:math:`w = 1`, the paper: :math:`d_i = |\mathcal{N}(i)|`).
    :math:`\gamma = 0` gives the "structure w/o ID" ablation (plain LightGCN
    propagation). Targets without neighbours get only :math:`\gamma\,\mathbf{x}^{id}_i`.

    ``normalize="row_self_loop"`` (the official implementation) replaces the
    neighbour term by the weighted mean over the neighbours and the target itself,
    :math:`(\sum_{j} w_{ji}\mathbf{x}_j + \mathbf{x}_i)/(d_i + 1)`, which needs the
    target's previous embedding: pass ``x=(x_src, x_dst)``. ``normalize="none"``
    sums :math:`w_{ji}\mathbf{x}_j` as given (for weights normalized beforehand
    with :func:`idsf_norm`).

    Three ways to extend it: weight the edges (``edge_weight``, or the values of a
    sparse adjacency); subclass and override :meth:`message` (extra keyword
    arguments of :meth:`forward` reach it through :meth:`propagate`, as in any
    PyG layer; a subclass that overrides :meth:`message` is always run message by
    message, also for sparse inputs, so that its :meth:`message` is called); or
    override :meth:`normalize_adjacency`. :class:`~idsf_pyg.models.IDSFStructure`
    takes such a subclass as its ``conv`` (``--set conv=package.module:Class``).

    Args:
        gamma (float): Weight :math:`\gamma` of the ID self term.
        normalize (str or bool, optional): ``"sym"`` (the paper, default),
            ``"row_self_loop"`` (the official code) or ``"none"``; :obj:`True` /
            :obj:`False` mean ``"sym"`` / ``"none"`` as in
            :class:`~torch_geometric.nn.conv.GCNConv`.
        cached (bool, optional): If :obj:`True`, the normalized adjacency is
            computed on the first call and reused until :meth:`reset_parameters`
            (as in :class:`~torch_geometric.nn.conv.GCNConv`; a call in another
            dtype or on another device, e.g. after ``.double()`` or
            ``.to(device)``, normalizes anew); only for a fixed graph, in
            transductive learning. (default: :obj:`False`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          source features :math:`(|\mathcal{V}_{src}|, F)` or the pair
          ``(x_src, x_dst)``;
          edges :math:`(2, |\mathcal{E}|)` with row 0 = source, row 1 = target
          (a tensor or :class:`~torch_geometric.EdgeIndex`), or a sparse adjacency
          :math:`(|\mathcal{V}_{dst}|, |\mathcal{V}_{src}|)` (``torch.sparse`` CSR/COO or
          :class:`torch_sparse.SparseTensor`) whose values are edge weights;
          target ID embeddings :math:`(|\mathcal{V}_{dst}|, F)` or a pair whose second
          entry they are *(optional if* ``gamma == 0`` *)*;
          edge weights :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** target features :math:`(|\mathcal{V}_{dst}|, F)`
    """

    def __init__(self, gamma: float, normalize: Union[str, bool] = "sym", cached: bool = False, **kwargs: Any):
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        self.gamma = float(gamma)
        self.normalize = _check_normalize(normalize)
        self.cached = cached
        # A subclass with its own message() must see every message: no fused sparse product then.
        if type(self).message is not IDSFConv.message:
            self.fuse = False
        self._cached: Optional[Tuple[Any, ...]] = None
        self._cached_for: Optional[Tuple[Any, ...]] = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Clears the cached normalization (the layer has no weights)."""
        super().reset_parameters()
        self._cached, self._cached_for = None, None

    def _normalized(self, adj: Adjacency, edge_weight: Optional[Tensor], n_src: int, n_dst: int,
                    dtype: torch.dtype) -> Tuple[Any, Optional[Tensor], Optional[Tensor]]:
        """:meth:`normalize_adjacency`, or its cached result (``cached=True``)."""
        if self.cached and self._cached is not None and self._cached_from(adj, dtype):
            return self._cached
        out = self.normalize_adjacency(adj, edge_weight, n_src, n_dst, dtype)
        if self.cached:
            self._cached, self._cached_for = out, (dtype, _device_of(adj))
        return out

    def normalize_adjacency(self, adj: Adjacency, edge_weight: Optional[Tensor], n_src: int, n_dst: int,
                            dtype: torch.dtype) -> Tuple[Any, Optional[Tensor], Optional[Tensor]]:
        r"""The graph the layer propagates over, normalized by ``normalize`` (:func:`idsf_norm`) in ``dtype`` (the
        source features'): ``(edge_index [2, E] or sparse [n_dst, n_src] adjacency, edge weight [E] or None,
        self-loop weight [n_dst] or None)``. A sparse input stays a sparse CSR product operand. Override it to
        normalize differently; with ``cached=True`` it runs once (per dtype and device)."""
        sparse_in = is_torch_sparse_tensor(adj) or isinstance(adj, SparseTensor)
        if is_torch_sparse_tensor(adj) and self.fuse and self.normalize == "none":
            # Already the product's operand: one sparse-dense product, no conversion.
            csr = adj if adj.layout == torch.sparse_csr else adj.to_sparse_csr()
            out: Tuple[Any, Optional[Tensor], Optional[Tensor]] = (csr.to(dtype), None, None)
        else:
            ei, w, _ = as_bipartite_edges(adj, edge_weight)
            ei, w, self_w = idsf_norm(ei, w, n_src, n_dst, self.normalize, dtype)
            if sparse_in and self.fuse:
                csr = to_torch_csr_tensor(torch.stack([ei[1], ei[0]]), w, size=(n_dst, n_src))
                out = (csr, None, self_w)
            else:
                out = (ei, w, self_w)
        return out

    def _cached_from(self, adj: Adjacency, dtype: torch.dtype) -> bool:
        """Whether the cache fits the call: the same dtype and device (a model moved by ``.to()`` or ``.double()``
        normalizes anew; any other graph in the same dtype and device gets the cached one, as in ``GCNConv``)."""
        return self._cached_for == (dtype, _device_of(adj))

    def forward(self, x: Union[Tensor, PairTensor], edge_index: Adjacency, x_id: PairOptTensor = None,
                edge_weight: Optional[Tensor] = None, size: Optional[Tuple[int, int]] = None, **kwargs: Any) -> Tensor:
        r"""Eq. (7)–(8): :meth:`neighbors_and_ids`, then :meth:`add_self_loop`.

        Args:
            x: Source embeddings ``[n_src, F]``, or ``(x_src, x_dst)``
                (``x_dst`` is needed by ``normalize="row_self_loop"``).
            edge_index: ``[2, E]`` edges (row 0 = source) or a sparse
                adjacency ``[n_dst, n_src]`` (its values are edge weights).
            x_id: Target ID embeddings ``[n_dst, F]`` (or a ``(source, target)``
                pair, as :class:`~torch_geometric.nn.conv.HeteroConv` passes it);
                required if ``gamma != 0``.
            edge_weight: ``[E]`` non-negative weights of ``edge_index``'s edges.
            size: ``(n_src, n_dst)``; inferred from a sparse adjacency or an
                ``EdgeIndex`` with sizes, else from ``x_dst`` / ``x_id`` (a square
                graph if neither is given).
            **kwargs: Passed on to :meth:`propagate`, for a subclass whose
                :meth:`message` takes more arguments (per edge: in ``edge_index``'s
                order; for a sparse adjacency, in its row-major order).
        """
        return self.add_self_loop(*self.neighbors_and_ids(x, edge_index, x_id, edge_weight, size, **kwargs))

    def neighbors_and_ids(self, x: Union[Tensor, PairTensor], edge_index: Adjacency, x_id: PairOptTensor = None,
                          edge_weight: Optional[Tensor] = None, size: Optional[Tuple[int, int]] = None,
                          **kwargs: Any) -> Tuple[Tensor, Optional[Tuple[Tensor, Tensor]]]:
        r"""The normalized neighbour sum plus :math:`\gamma\,\mathbf{x}^{id}` (same arguments as :meth:`forward`),
        and the self-loop term still to add (``(self-loop weight [n_dst], x_dst)`` with
        ``normalize="row_self_loop"``, else ``None``) for :meth:`add_self_loop`.

        Split from :meth:`forward` for a caller that propagates both directions of a layer and wants both
        neighbour sums before either self-loop term (see :class:`~idsf_pyg.models.IDSFStructure`)."""
        x_src, x_dst = (x, None) if isinstance(x, Tensor) else x
        if x_src.dtype in (torch.bfloat16, torch.float16) and torch.is_autocast_enabled(x_src.device.type):
            x_src = x_src.float()  # autocast's low-precision output: propagate in float32 (see message_and_aggregate)
        if isinstance(x_id, (tuple, list)):
            x_id = x_id[1]
        known = _declared_size(edge_index)
        if known is not None:
            if size is not None and tuple(size) != known:
                raise ValueError(f"size {tuple(size)} does not match the adjacency's (n_src, n_dst) = {known}")
            n_src, n_dst = known
        elif size is not None:
            n_src, n_dst = int(size[0]), int(size[1])
        else:
            n_src = x_src.size(0)
            ref = x_dst if x_dst is not None else x_id
            n_dst = ref.size(0) if ref is not None else n_src
        if x_src.size(0) != n_src:
            raise ValueError(f"x has {x_src.size(0)} source rows but the graph has {n_src} sources")
        if self.gamma != 0.0:
            if x_id is None:
                raise ValueError("x_id (the targets' ID embeddings) is required when gamma != 0")
            if x_id.shape != (n_dst, x_src.size(1)):
                raise ValueError(f"x_id must have shape {(n_dst, x_src.size(1))}, got {tuple(x_id.shape)}")
        if self.normalize == "row_self_loop" and (x_dst is None or x_dst.size(0) != n_dst):
            raise ValueError("normalize='row_self_loop' needs x=(x_src, x_dst) with n_dst target rows")

        adj, weight, self_w = self._normalized(edge_index, edge_weight, n_src, n_dst, x_src.dtype)
        if isinstance(adj, Tensor) and adj.is_sparse_csr:
            out = self.propagate(adj, x=x_src, edge_weight=None, **kwargs)
        else:
            out = self.propagate(adj, x=x_src, edge_weight=weight, size=(n_src, n_dst), **kwargs)
        if self.gamma != 0.0:
            out = out + self.gamma * x_id
        return out, (None if self_w is None else (self_w, x_dst))

    @staticmethod
    def add_self_loop(out: Tensor, self_loop: Optional[Tuple[Tensor, Tensor]]) -> Tensor:
        r"""``out`` plus the self-loop term :meth:`neighbors_and_ids` returned (the target's own previous
        embedding weighted by :math:`1 / (d_i + 1)` with ``normalize="row_self_loop"``; nothing otherwise)."""
        if self_loop is None:
            return out
        self_w, x_dst = self_loop
        return out + self_w.unsqueeze(-1) * x_dst

    def message(self, x_j: Tensor, edge_weight: Optional[Tensor]) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor) -> Tensor:
        # One sparse-dense product: adj_t [n_dst, n_src] @ x [n_src, F], in the adjacency's dtype even under
        # bf16 autocast: sparse bf16 products do not exist on the CPU, and this product is memory-bound.
        if adj_t.dtype != x.dtype and adj_t.dtype.is_floating_point:
            x = x.to(adj_t.dtype)
        with torch.autocast(x.device.type, enabled=False):
            return spmm(adj_t, x, reduce=self.aggr)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(gamma={self.gamma}, normalize='{self.normalize}', cached={self.cached})"


def _device_of(adj: Adjacency) -> torch.device:
    return adj.device() if isinstance(adj, SparseTensor) else adj.device


def _declared_size(adj: Adjacency) -> Optional[Tuple[int, int]]:
    """``(n_src, n_dst)`` of a sparse adjacency or a sized ``EdgeIndex``; ``None`` for a plain ``edge_index``."""
    if isinstance(adj, SparseTensor):
        n_dst, n_src = adj.sparse_sizes()
        return int(n_src), int(n_dst)
    if is_torch_sparse_tensor(adj):
        return int(adj.size(1)), int(adj.size(0))
    sparse_size = getattr(adj, "sparse_size", None)
    if callable(sparse_size):
        s = sparse_size()
        if s[0] is not None and s[1] is not None:
            return int(s[0]), int(s[1])
    return None
