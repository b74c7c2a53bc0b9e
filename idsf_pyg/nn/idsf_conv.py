r"""The IDSF propagation layer, eq. (7)–(8) of the paper."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.utils import is_torch_sparse_tensor, spmm

PairTensor = Tuple[Tensor, Optional[Tensor]]
NORMALIZATIONS = ("sym", "row_self_loop")


def _degrees_from_edge_index(edge_index: Tensor, num_src: int, num_dst: int) -> Tuple[Tensor, Tensor]:
    deg_src = torch.bincount(edge_index[0], minlength=num_src)
    deg_dst = torch.bincount(edge_index[1], minlength=num_dst)
    return deg_src, deg_dst


def bipartite_norm(edge_index: Tensor, num_src: int, num_dst: int, normalization: str = "sym",
                   dtype: torch.dtype = torch.float32) -> Tensor:
    r"""Per-edge weights of a directed bipartite graph ``src -> dst``.

    * ``"sym"`` (eq. (7)–(8)): :math:`1/\sqrt{|\mathcal{N}(dst)|\,|\mathcal{N}(src)|}`;
    * ``"row_self_loop"`` (the official code): :math:`1/(|\mathcal{N}(dst)|+1)`,
      the self loop's share being added by :class:`IDSFConv`.

    Degrees count edges, so a repeated edge counts twice.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    deg_src, deg_dst = _degrees_from_edge_index(edge_index, num_src, num_dst)
    if normalization == "sym":
        # Every endpoint of an edge has degree >= 1, so no division by zero.
        w = deg_src[edge_index[0]].to(dtype).rsqrt() * deg_dst[edge_index[1]].to(dtype).rsqrt()
    else:
        w = 1.0 / (deg_dst[edge_index[1]].to(dtype) + 1.0)
    return w


def _csr_to_edge_index(adj_t: Tensor) -> Tensor:
    """``[2, nnz]`` (row 0 = src = column, row 1 = dst = row) of a CSR ``[n_dst, n_src]``."""
    crow = adj_t.crow_indices()
    rows = torch.repeat_interleave(torch.arange(adj_t.size(0), device=crow.device), crow[1:] - crow[:-1])
    return torch.stack([adj_t.col_indices(), rows])


class IDSFConv(MessagePassing):
    r"""The ID-enhanced light graph convolution of IDSF, eq. (7)–(8) of
    "ID Embedding as Subtle Features of Content and Structure for Multimodal
    Recommendation" (Liu et al.).

    For one direction ``src -> dst`` of a bipartite user–item graph (users to
    items for eq. (7), items to users for eq. (8)):

    .. math::
        \mathbf{x}^{\prime}_i = \sum_{j \in \mathcal{N}(i)}
        \frac{1}{\sqrt{|\mathcal{N}(i)|}\sqrt{|\mathcal{N}(j)|}} \mathbf{x}_j
        + \gamma\, \mathbf{x}^{id}_i

    where :math:`\mathbf{x}_j` are the source embeddings of the previous layer
    and :math:`\mathbf{x}^{id}_i` the target's ID embedding (the modality-
    specific item ID for items, the user ID for users). :math:`\gamma = 0`
    gives the "structure w/o ID" ablation (plain LightGCN propagation).
    Target nodes without neighbours get only :math:`\gamma\,\mathbf{x}^{id}_i`.

    With ``normalization="row_self_loop"`` (the official implementation) the
    neighbour term becomes the mean over the neighbours and the target itself,
    :math:`(\sum_{j \in \mathcal{N}(i)} \mathbf{x}_j + \mathbf{x}_i)/(|\mathcal{N}(i)|+1)`,
    which needs the target's previous embedding: pass ``x=(x_src, x_dst)``.

    Args:
        gamma (float): Weight :math:`\gamma` of the ID self term.
        normalization (str, optional): ``"sym"`` (the paper, default) or
            ``"row_self_loop"`` (the official code).
        cached (bool, optional): If :obj:`True`, the normalized adjacency is
            computed on the first call and reused (as in
            :class:`~torch_geometric.nn.conv.GCNConv`); only for a fixed graph
            such as the training graph. (default: :obj:`False`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          source features :math:`(|\mathcal{V}_{src}|, F)` (or the pair
          ``(x_src, x_dst)``),
          edges :math:`(2, |\mathcal{E}|)` with row 0 = source, row 1 = target,
          or a ``torch.sparse`` CSR adjacency :math:`(|\mathcal{V}_{dst}|, |\mathcal{V}_{src}|)`
          holding the structure (its values are ignored),
          target ID embeddings :math:`(|\mathcal{V}_{dst}|, F)` *(optional if* ``gamma == 0`` *)*
        - **output:** target features :math:`(|\mathcal{V}_{dst}|, F)`
    """

    def __init__(self, gamma: float, normalization: str = "sym", cached: bool = False, **kwargs):
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self.gamma = float(gamma)
        self.normalization = normalization
        self.cached = cached
        self._cached_adj: Optional[Union[Tensor, Tuple[Tensor, Tensor]]] = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Clears the cached normalization (the layer has no weights)."""
        super().reset_parameters()
        self._cached_adj = None

    def _normalized(self, edge_index: Tensor, num_src: int, num_dst: int,
                    dtype: torch.dtype) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        if self.cached and self._cached_adj is not None:
            return self._cached_adj
        if is_torch_sparse_tensor(edge_index):
            if edge_index.layout != torch.sparse_csr:
                edge_index = edge_index.to_sparse_csr()
            ei = _csr_to_edge_index(edge_index)
            w = bipartite_norm(ei, num_src, num_dst, self.normalization, dtype)
            adj: Union[Tensor, Tuple[Tensor, Tensor]] = torch.sparse_csr_tensor(
                edge_index.crow_indices(), edge_index.col_indices(), w, (num_dst, num_src),
                check_invariants=False)
        else:
            adj = (edge_index, bipartite_norm(edge_index, num_src, num_dst, self.normalization, dtype))
        if self.cached:
            self._cached_adj = adj
        return adj

    def forward(self, x: Union[Tensor, PairTensor], edge_index: Tensor, x_id: Optional[Tensor] = None,
                size: Optional[Tuple[int, int]] = None) -> Tensor:
        r"""
        Args:
            x: Source embeddings ``[n_src, F]``, or ``(x_src, x_dst)``
                (``x_dst`` is needed by ``normalization="row_self_loop"``).
            edge_index: ``[2, E]`` edges (row 0 = source) or a sparse CSR
                adjacency ``[n_dst, n_src]``.
            x_id: Target ID embeddings ``[n_dst, F]``; required if ``gamma != 0``.
            size: ``(n_src, n_dst)``; inferred from a sparse adjacency, else
                from ``x_id`` / ``x_dst`` (a square graph if neither is given).
        """
        x_src, x_dst = (x, None) if isinstance(x, Tensor) else x
        if is_torch_sparse_tensor(edge_index):
            n_dst, n_src = edge_index.size(0), edge_index.size(1)
            if size is not None and tuple(size) != (n_src, n_dst):
                raise ValueError(f"size {tuple(size)} does not match the sparse adjacency "
                                 f"[n_dst, n_src] = {tuple(edge_index.shape)}")
        elif size is not None:
            n_src, n_dst = int(size[0]), int(size[1])
        else:
            n_src = x_src.size(0)
            ref = x_id if x_id is not None else x_dst
            n_dst = ref.size(0) if ref is not None else n_src
        if x_src.size(0) != n_src:
            raise ValueError(f"x has {x_src.size(0)} source rows but the graph has {n_src} sources")
        if self.gamma != 0.0:
            if x_id is None:
                raise ValueError("x_id (the targets' ID embeddings) is required when gamma != 0")
            if x_id.shape != (n_dst, x_src.size(1)):
                raise ValueError(f"x_id must have shape {(n_dst, x_src.size(1))}, got {tuple(x_id.shape)}")
        if self.normalization == "row_self_loop" and (x_dst is None or x_dst.size(0) != n_dst):
            raise ValueError("normalization='row_self_loop' needs x=(x_src, x_dst) with n_dst target rows")

        adj = self._normalized(edge_index, n_src, n_dst, x_src.dtype)
        if isinstance(adj, tuple):
            out = self.propagate(adj[0], x=x_src, edge_weight=adj[1], size=(n_src, n_dst))
        else:
            out = self.propagate(adj, x=x_src, edge_weight=None)
        if self.normalization == "row_self_loop":
            deg_dst = _degree_of_targets(adj, n_dst)
            out = out + x_dst / (deg_dst.to(x_dst.dtype) + 1.0).unsqueeze(-1)
        if self.gamma != 0.0:
            out = out + self.gamma * x_id
        return out

    def message(self, x_j: Tensor, edge_weight: Optional[Tensor]) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor) -> Tensor:
        # One sparse-dense product: adj_t [n_dst, n_src] @ x [n_src, F].
        return spmm(adj_t, x, reduce=self.aggr)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(gamma={self.gamma}, normalization='{self.normalization}', "
                f"cached={self.cached})")


def _degree_of_targets(adj: Union[Tensor, Tuple[Tensor, Tensor]], n_dst: int) -> Tensor:
    if isinstance(adj, tuple):
        return torch.bincount(adj[0][1], minlength=n_dst)
    crow = adj.crow_indices()
    return crow[1:] - crow[:-1]
