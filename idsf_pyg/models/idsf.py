r"""IDSF: ID embeddings as subtle features of content and structure (section 3 of the paper)."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.data import HeteroData
from torch_geometric.utils import to_torch_csr_tensor

from ..losses import bpr_loss, fusion_contrastive_loss, l2_penalty, one_direction_contrastive_loss
from ..nn import IDSFConv, ModalityAttention, idsf_norm
from .base import Recommender

CONTRAST_SCOPES = ("all", "batch", "sample")
CONTRAST_PAIRS = ("paper", "one_direction")
ITEM_HEADS = ("sum", "layernorm_mlp")
REG_SCOPES = ("params", "batch")
STRUCTURE_INITS = ("id", "preference")
LINEAR_INITS = ("xavier", "torch")
CONTRAST_KERNELS = ("blockwise", "dense")


class IDSF(Recommender):
    r"""The IDSF recommender.

    * **Item content module** (eq. (1)–(2)): each modality's features are
      projected to :math:`d` (:math:`\mathbf{e}_i^m`), enhanced with a
      modality-specific item ID (:math:`\mathbf{e}_i^{m'} = \mathrm{Att}_m(\mathbf{e}_i^m,
      \mathbf{e}_i^{mid})`), and the enhanced modalities are fused,
      :math:`\mathbf{e}_i^c = \mathrm{Att}_c(\mathbf{e}_i^{t'}, \mathbf{e}_i^{v'}, \dots)`.
    * **Contrastive loss** (eq. (3)–(6)): :math:`\tilde{\mathcal{L}}_C(\mathbf{e}^m, \mathbf{e}^{mid},
      \mathbf{e}^{m'})` per modality plus :math:`\tilde{\mathcal{L}}_C` of the enhanced
      modalities against :math:`\mathbf{e}^c`.
    * **Structural modules** (eq. (7)–(10)): per modality, :math:`K` layers of
      :class:`~idsf_pyg.nn.IDSFConv` starting from :math:`\mathbf{e}_i^{m,(0)} = \mathbf{e}_i^m`
      and :math:`\mathbf{e}_u^{m,(0)} = \mathbf{e}_u^{id}` (the paper leaves the
      users' layer 0 unstated; the user ID is their only representation), with
      self terms :math:`\gamma\mathbf{e}_i^{mid}` and :math:`\gamma\mathbf{e}_u^{id}`;
      the layer mean per modality, then attention across modalities.
    * **Prediction** (eq. (11)): :math:`\hat{y}_{ui} = \mathbf{e}_u^{s\top}(\mathbf{e}_i^c + \mathbf{e}_i^s)`;
      **objective** (eq. (13)): BPR + :math:`\beta\mathcal{L}_C + \lambda\|\Theta\|_2^2`.

    Args:
        num_users, num_items, train_edge_index: The training graph.
        features: Item features by modality name (any number of modalities).
        embedding_dim: :math:`d` (128).
        num_layers: :math:`K` (2).
        gamma: :math:`\gamma` of eq. (7)–(8) (Baby 0.3, Sports 0.3, Clothing 1.0).
        beta: :math:`\beta` of eq. (13) (Baby 0.3, Sports 1.0, Clothing 1.0).
        tau: Temperature :math:`\tau` of eq. (5) (0.5).
        reg_weight: :math:`\lambda` of eq. (13) (1e-4).
        no_content: Ablation "w/o content": the score uses :math:`\mathbf{e}_i^s` only.
        no_contrast: Ablation "content w/o contrast": :math:`\beta = 0`.
        content_no_id: Ablation "content w/o ID": :math:`\mathbf{e}_i^{m'} = \mathbf{e}_i^m`.
        structure_no_id: Ablation "structure w/o ID": :math:`\gamma = 0`.
        normalization: ``"sym"`` (paper) or ``"row_self_loop"`` (official code).
        user_id_self_term: Add :math:`\gamma\mathbf{e}_u^{id}` on the user side
            (eq. (8), default) or not (items only).
        trainable_features: Keep the raw features fixed (paper) or train them
            (official code).
        item_head: ``"sum"`` (eq. (11)) or ``"layernorm_mlp"`` (official code:
            ``LayerNorm(ReLU(Linear(.)))`` on both parts before the sum).
        contrast_pairs: ``"paper"`` (eq. (3), both directions) or
            ``"one_direction"`` (official code: :math:`I(\mathbf{e}^m, \mathbf{e}')` only).
        contrast_scope: Items in :math:`\mathcal{L}_C`: ``"all"`` (eq. (3)'s
            :math:`I`), ``"batch"`` (the batch's positive and negative items) or
            ``"sample"`` (``contrast_sample_size`` items drawn uniformly per step).
        reg_scope: ``"params"`` (eq. (13): all parameters, scaled by :math:`1/|E|` to match
            the batch-mean BPR, see :meth:`loss`) or ``"batch"`` (the batch's final embeddings
            divided by the batch size, as in LightGCN's and LATTICE's code).
        use_edge_weight: Weight the structural propagation by the training edges' weights
            (``data['user', 'interacts', 'item'].edge_weight``, e.g. ratings): the degrees of eq. (7)–(8)
            become weighted sums (see :func:`~idsf_pyg.nn.idsf_norm`). Off by default (the paper).
        train_edge_weight: Those weights ``[E]`` (:meth:`from_graph` passes them).
        structure_init: Layer 0 of eq. (7)–(10): ``"id"`` (the paper's reading: users start from the
            shared user ID embedding, items from the projected features :math:`\mathbf{e}_i^m`) or
            ``"preference"`` (official code: a per-modality user "preference" table for users, and
            every row of :math:`[\mathbf{p}^m; \mathbf{e}^m]` L2-normalized before propagation; the IDs
            enter through the :math:`\gamma` self terms only).
        linear_init: ``"xavier"`` (section 4.1: Xavier for every weight) or ``"torch"`` (official code:
            PyTorch's default ``nn.Linear`` initialization; embeddings stay Xavier).
        layernorm_eps: :math:`\epsilon` of the ``layernorm_mlp`` head's LayerNorm (official: 1e-6).
        contrast_kernel: How the [N, N] similarity sums of eq. (3)–(5) are computed: ``"blockwise"``
            (default: exact, block by block, recomputed in the backward pass, memory
            :math:`O(N \cdot \text{block})`; see :mod:`idsf_pyg.similarity_lse`) or ``"dense"`` (the
            reference: every matrix materialized and kept for the backward pass, :math:`O(N^2)`).
        contrast_block_size: Rows per block of the blockwise kernel; 0 chooses from the device
            (:func:`~idsf_pyg.similarity_lse.auto_block_size`).
    """

    supports_amp = True

    def __init__(self, num_users: int, num_items: int, train_edge_index: Tensor, features: Dict[str, Tensor],
                 embedding_dim: int = 128, num_layers: int = 2, gamma: float = 0.3, beta: float = 0.3,
                 tau: float = 0.5, reg_weight: float = 1e-4, no_content: bool = False, no_contrast: bool = False,
                 content_no_id: bool = False, structure_no_id: bool = False, normalization: str = "sym",
                 user_id_self_term: bool = True, trainable_features: bool = False, item_head: str = "sum",
                 contrast_pairs: str = "paper", contrast_scope: str = "all", contrast_sample_size: int = 2048,
                 reg_scope: str = "params", structure_init: str = "id", linear_init: str = "xavier",
                 layernorm_eps: float = 1e-5, contrast_kernel: str = "blockwise", contrast_block_size: int = 0,
                 use_edge_weight: bool = False,
                 train_edge_weight: Optional[Tensor] = None):
        super().__init__(num_users, num_items, train_edge_index, train_edge_weight)
        if use_edge_weight and train_edge_weight is None:
            raise ValueError("use_edge_weight=true needs the training edges' weights (train_edge_weight)")
        if not features:
            raise ValueError("IDSF needs at least one item modality (data['item'].x_<name>) and the graph has none: "
                             "put image_feat.npy / text_feat.npy next to the interactions, or name substitutes "
                             "explicitly, e.g. --feature random_image=random:4096")
        for name, value, allowed in (("contrast_scope", contrast_scope, CONTRAST_SCOPES),
                                     ("contrast_pairs", contrast_pairs, CONTRAST_PAIRS),
                                     ("item_head", item_head, ITEM_HEADS), ("reg_scope", reg_scope, REG_SCOPES),
                                     ("structure_init", structure_init, STRUCTURE_INITS),
                                     ("linear_init", linear_init, LINEAR_INITS),
                                     ("contrast_kernel", contrast_kernel, CONTRAST_KERNELS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.modalities: List[str] = list(features)
        self.embedding_dim, self.num_layers = embedding_dim, num_layers
        self.gamma, self.beta, self.tau, self.reg_weight = gamma, beta, tau, reg_weight
        self.no_content, self.no_contrast = no_content, no_contrast
        self.content_no_id, self.structure_no_id = content_no_id, structure_no_id
        self.item_head, self.contrast_pairs = item_head, contrast_pairs
        self.contrast_scope, self.contrast_sample_size = contrast_scope, contrast_sample_size
        self.reg_scope = reg_scope
        if contrast_block_size < 0:
            raise ValueError(f"contrast_block_size must be >= 0 (0: automatic), got {contrast_block_size}")
        self.contrast_kernel, self.contrast_block_size = contrast_kernel, contrast_block_size
        self.structure_init, self.linear_init = structure_init, linear_init

        # Fixed features are non-persistent buffers sharing the graph's storage: they move with .to(),
        # but stay out of state_dict (checkpoints and best states hold what training changes only).
        # Trainable ones (official code) are parameters with their own copy.
        self.trainable_features = trainable_features
        if trainable_features:
            self.raw_params = nn.ParameterDict({m: nn.Parameter(x.float().clone()) for m, x in features.items()})
        else:
            for m, x in features.items():
                self.register_buffer(f"feat_{m}", x.float(), persistent=False)
        self.proj = nn.ModuleDict({m: nn.Linear(x.size(1), embedding_dim) for m, x in features.items()})
        self.item_id = nn.ModuleDict({m: nn.Embedding(num_items, embedding_dim) for m in features})
        self.user_id = nn.Embedding(num_users, embedding_dim)
        if structure_init == "preference":
            self.user_pref = nn.ModuleDict({m: nn.Embedding(num_users, embedding_dim) for m in features})
        self.enhance_att = nn.ModuleDict({m: ModalityAttention(embedding_dim) for m in features})
        self.fuse_att = ModalityAttention(embedding_dim)
        self.item_struct_att = ModalityAttention(embedding_dim)
        self.user_struct_att = ModalityAttention(embedding_dim)
        g = 0.0 if structure_no_id else gamma
        self.normalization = normalization
        # The training graph's normalized adjacency, once per direction, as buffers (they move with
        # .to(device)); the convs, shared by all modalities, take it as given (normalize="none").
        weight = train_edge_weight.float() if use_edge_weight else None
        users, items = train_edge_index
        for name, src, dst, n_src, n_dst in (("to_item", users, items, num_users, num_items),
                                             ("to_user", items, users, num_items, num_users)):
            _, w, self_w = idsf_norm(torch.stack([src, dst]), weight, n_src, n_dst, normalization)
            self.register_buffer(f"adj_{name}", to_torch_csr_tensor(torch.stack([dst, src]), w, size=(n_dst, n_src)),
                                 persistent=False)
            self.register_buffer(f"self_weight_{name}", self_w, persistent=False)
        self.conv_to_item = IDSFConv(g, normalize="none")
        self.conv_to_user = IDSFConv(g if user_id_self_term else 0.0, normalize="none")
        if item_head == "layernorm_mlp":
            self.head_c = nn.Sequential(nn.Linear(embedding_dim, embedding_dim), nn.ReLU(),
                                        nn.LayerNorm(embedding_dim, eps=layernorm_eps))
            self.head_s = nn.Sequential(nn.Linear(embedding_dim, embedding_dim), nn.ReLU(),
                                        nn.LayerNorm(embedding_dim, eps=layernorm_eps))
        self.reset_parameters()

    @classmethod
    def from_graph(cls, data: HeteroData, modalities: Optional[Sequence[str]] = None, **config) -> "IDSF":
        """Builds the model from the graph; ``modalities`` selects a subset (Table 4); ``use_edge_weight``
        takes ``data['user', 'interacts', 'item'].edge_weight``."""
        return cls(*cls.graph_sizes(data), features=cls.graph_features(data, modalities),
                   **cls.graph_edge_weight(data, config), **config)

    def reset_parameters(self) -> None:
        """Xavier initialization of every weight (section 4.1), or PyTorch's default for the linear
        layers with ``linear_init="torch"`` (official code); embeddings are Xavier either way."""
        def linear(lin: nn.Linear) -> None:
            if self.linear_init == "xavier":
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)
            else:
                lin.reset_parameters()

        def attention(att: ModalityAttention) -> None:
            if self.linear_init == "xavier":
                att.reset_parameters()
            else:  # as the official Sequential(Linear(d, d), Tanh, Linear(d, 1, bias=False))
                att.lin.reset_parameters()
                nn.init.kaiming_uniform_(att.q.data.view(1, -1), a=5 ** 0.5)

        for m in self.modalities:
            linear(self.proj[m])
            nn.init.xavier_uniform_(self.item_id[m].weight)
            attention(self.enhance_att[m])
        nn.init.xavier_uniform_(self.user_id.weight)
        for att in (self.fuse_att, self.item_struct_att, self.user_struct_att):
            attention(att)
        if self.item_head == "layernorm_mlp":
            for head in (self.head_c, self.head_s):
                linear(head[0])
                head[2].reset_parameters()
        if self.structure_init == "preference":
            for m in self.modalities:
                nn.init.xavier_uniform_(self.user_pref[m].weight)
        self.conv_to_item.reset_parameters()
        self.conv_to_user.reset_parameters()

    def raw_feature(self, modality: str) -> Tensor:
        """The raw item features of one modality (fixed buffer, or parameter with ``trainable_features``)."""
        return self.raw_params[modality] if self.trainable_features else getattr(self, f"feat_{modality}")

    # ------------------------------------------------------------------ modules
    def content(self) -> Tuple[Tensor, Dict[str, Tuple[Tensor, Tensor, Tensor]], Dict[str, Tensor]]:
        """Item content module, eq. (1)–(2).

        Returns ``e_c`` ``[I, d]``, per modality ``(e_m, e_mid, e_m')`` and the
        attention weights (``"<m>"`` over ``[e_m, e_mid]``, ``"fuse"`` over modalities).
        """
        parts, alphas, enhanced = {}, {}, []
        for m in self.modalities:
            e_m = self.proj[m](self.raw_feature(m))
            e_id = self.item_id[m].weight
            if self.content_no_id:
                e_enh = e_m
            else:
                e_enh, alphas[m] = self.enhance_att[m]([e_m, e_id])
            parts[m] = (e_m, e_id, e_enh)
            enhanced.append(e_enh)
        e_c, alphas["fuse"] = self.fuse_att(enhanced)
        return e_c, parts, alphas

    def structure(self, parts: Dict[str, Tuple[Tensor, Tensor, Tensor]]) -> Tuple[Tensor, Tensor]:
        """Item and user structural modules, eq. (7)–(10): returns ``(e_u^s, e_i^s)``."""
        item_reps, user_reps = [], []
        u_id = self.user_id.weight
        for m in self.modalities:
            items, users = parts[m][0], u_id
            i_id = parts[m][1]
            if self.structure_init == "preference":  # official layer 0: normalized [p^m; e^m]
                users = F.normalize(self.user_pref[m].weight, dim=1)
                items = F.normalize(items, dim=1)
            item_sum, user_sum = items, users
            for _ in range(self.num_layers):
                new_items = self.conv_to_item(users, self.adj_to_item, i_id)   # eq. (7)
                new_users = self.conv_to_user(items, self.adj_to_user, u_id)   # eq. (8)
                if self.self_weight_to_item is not None:  # row_self_loop: the target's own share
                    new_items = new_items + self.self_weight_to_item.unsqueeze(-1) * items
                    new_users = new_users + self.self_weight_to_user.unsqueeze(-1) * users
                items, users = new_items, new_users
                item_sum, user_sum = item_sum + items, user_sum + users
            item_reps.append(item_sum / (self.num_layers + 1))
            user_reps.append(user_sum / (self.num_layers + 1))
        e_i_s, _ = self.item_struct_att(item_reps)   # eq. (9)
        e_u_s, _ = self.user_struct_att(user_reps)   # eq. (10)
        return e_u_s, e_i_s

    def forward(self) -> Dict[str, object]:
        e_c, parts, alphas = self.content()
        e_u_s, e_i_s = self.structure(parts)
        if self.no_content:
            items = e_i_s
        elif self.item_head == "layernorm_mlp":
            items = self.head_c(e_c) + self.head_s(e_i_s)
        else:
            items = e_c + e_i_s                      # eq. (11)
        return {"user": e_u_s, "item": items, "content": e_c, "parts": parts, "alphas": alphas}

    def embed(self) -> Tuple[Tensor, Tensor]:
        out = self.forward()
        return out["user"], out["item"]

    # -------------------------------------------------------------------- losses
    def contrastive_loss(self, e_c: Tensor, parts: Dict[str, Tuple[Tensor, Tensor, Tensor]],
                         rows: Optional[Tensor] = None, shard=None) -> Tensor:
        """:math:`\\mathcal{L}_C` of eq. (6), over the items ``rows`` (all if ``None``); with ``shard``, this
        rank's part of the all-item loss (see :func:`~idsf_pyg.losses.fusion_contrastive_loss`)."""
        # float32 inputs even under autocast: normalization and sums at full precision; the similarity
        # products follow autocast's dtype inside the kernel.
        def take(t: Tensor) -> Tensor:
            t = t if rows is None else t.index_select(0, rows)
            return t.to(torch.promote_types(t.dtype, torch.float32))

        loss_fn = fusion_contrastive_loss if self.contrast_pairs == "paper" else one_direction_contrastive_loss
        options = {"dense": self.contrast_kernel == "dense", "block_size": self.contrast_block_size or None,
                   "shard": shard}
        total = e_c.new_zeros(())
        if not self.content_no_id:
            for m in self.modalities:
                e_m, e_id, e_enh = parts[m]
                total = total + loss_fn([take(e_m), take(e_id)], take(e_enh), self.tau, **options)
        if len(self.modalities) > 1:
            total = total + loss_fn([take(parts[m][2]) for m in self.modalities], take(e_c), self.tau, **options)
        return total

    def contrast_gemm_flops(self, n: int, device: torch.device | str = "cpu") -> Dict[str, float]:
        r"""Floating-point work of the similarity products of eq. (3)–(5) in one step over ``n`` items.

        ``"floor"``: the products no implementation avoids: per cross-similarity
        :math:`\hat{X}\hat{Y}^\top`, one forward and two backward (:math:`G\hat{Y}`,
        :math:`G^\top\hat{X}`), :math:`3 \cdot 2n^2d`; per self-similarity :math:`\hat{X}\hat{X}^\top`,
        its upper triangle forward and :math:`(G + G^\top)\hat{X}` backward, :math:`3n^2d`.
        ``"executed"``: what the kernel runs with this model's block size on ``device`` (its backward pass
        recomputes the scores: see :func:`~idsf_pyg.similarity_lse.similarity_gemm_flops`).
        ``"matrices"``: how many [n, n] similarity matrices a step has."""
        from ..similarity_lse import MIN_TAU_FIXED_SHIFT, default_block_size, similarity_gemm_flops
        beta = 0.0 if self.no_contrast or self.no_content else self.beta
        groups = [] if beta <= 0 else ([2] * len(self.modalities) if not self.content_no_id else [])
        if beta > 0 and len(self.modalities) > 1:
            groups.append(len(self.modalities))
        cross = sum(groups)                                   # e^m against the fusion, per part
        selfs = sum(groups) + (len(groups) if self.contrast_pairs == "paper" else 0)   # e^m e^m (+ e'e')
        d = self.embedding_dim
        block = self.contrast_block_size or default_block_size(n, n, 4, torch.device(device))
        fixed = self.tau >= MIN_TAU_FIXED_SHIFT
        executed = (cross * similarity_gemm_flops(n, n, d, block, symmetric=False, fixed=fixed)
                    + selfs * similarity_gemm_flops(n, n, d, block, symmetric=True, fixed=fixed))
        return {"floor": cross * 6.0 * n * n * d + selfs * 3.0 * n * n * d, "executed": executed,
                "matrices": cross + selfs, "block": block}

    def _contrast_rows(self, pos: Tensor, neg: Tensor) -> Optional[Tensor]:
        if self.contrast_scope == "all":
            return None
        if self.contrast_scope == "batch":
            return torch.unique(torch.cat([pos, neg]))
        n = min(self.contrast_sample_size, self.num_items)
        return torch.randperm(self.num_items, device=pos.device)[:n]

    #: In data-parallel training the trainer hands :meth:`loss` the whole global batch and the rank's
    #: :class:`~idsf_pyg.train.distributed.Shard`: the all-item contrastive loss is split by rows.
    supports_shard = True

    def loss(self, users: Tensor, pos: Tensor, neg: Tensor, shard=None) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Eq. (13): BPR + β·L_C + λ‖Θ‖².

        With ``shard`` (data-parallel training: ``users, pos, neg`` are the whole global batch), this rank's
        part: BPR over its slice of the batch and every term it computes whole (L2, the batch or sample
        contrastive scopes) weighted by slice / batch size, and its rows of the all-item contrastive loss;
        the parts of all ranks add up to the one-process loss."""
        from ..train.distributed import batch_share
        batch, weight = batch_share(users.numel(), shard)
        contrast_rows = self._contrast_rows(pos, neg)   # from the global batch: the same on every rank
        users, pos, neg = users[batch], pos[batch], neg[batch]
        out = self.forward()
        # index_select, not out[...][idx]: the backward of advanced indexing (index_put_ with accumulate) is
        # not bit-reproducible on the CPU with more than one thread.
        u = out["user"].index_select(0, users)
        i, j = out["item"].index_select(0, pos), out["item"].index_select(0, neg)
        bpr = bpr_loss((u * i).sum(-1), (u * j).sum(-1)) if users.numel() else u.new_zeros(())
        total = weight * bpr if shard is not None else bpr
        logs = {"bpr": total.detach()}
        beta = 0.0 if self.no_contrast or self.no_content else self.beta
        if beta > 0:
            split = shard is not None and contrast_rows is None
            cl = self.contrastive_loss(out["content"], out["parts"], contrast_rows, shard if split else None)
            if shard is not None and not split:
                cl = weight * cl
            total = total + beta * cl
            logs["contrast"] = cl.detach()
        if self.reg_weight > 0:
            if self.reg_scope == "params":
                # Eq. (12) sums BPR over all |E| training triples and eq. (13) adds λ‖Θ‖² once; with the
                # batch *mean* of BPR used here, the same balance puts λ‖Θ‖² / |E| on each step.
                # (Adding λ‖Θ‖² unscaled to a mean BPR regularizes |E| times more strongly.)
                reg = self.reg_weight * l2_penalty(p for p in self.parameters() if p.requires_grad)
                reg = reg / self.train_edge_index.size(1)
            else:
                reg = self.reg_weight * l2_penalty([u, i, j]) / (2 * max(users.numel(), 1))
            if shard is not None:
                reg = weight * reg
            total = total + reg
            logs["reg"] = reg.detach()
        return total, logs

    def extra_repr(self) -> str:
        return (f"modalities={self.modalities}, d={self.embedding_dim}, K={self.num_layers}, "
                f"gamma={self.gamma}, beta={self.beta}, tau={self.tau}, contrast_scope='{self.contrast_scope}'")
