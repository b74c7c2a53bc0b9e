r"""IDSF: ID embeddings as subtle features of content and structure (section 3 of the paper), composed of its
content module, its structural modules and its contrastive loss."""
from __future__ import annotations

from typing import Any, Dict, Iterator, Literal, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from ..errors import ConfigError
from ..losses import bpr_batch, l2_penalty
from ..nn.init import reset_linear
from ..options import NonNegativeFloat, PositiveInt, options_of
from ..parallel import Shard, batch_share
from .base import Recommender
from .idsf_content import Content, IDSFContent
from .idsf_contrast import IDSFContrast
from .idsf_structure import DEFAULT_CONV, IDSFStructure, Structure

ITEM_HEADS = ("sum", "layernorm_mlp")
ITEM_SCORES = ("content_and_structure", "structure")
REG_SCOPES = ("params", "batch")

#: The parts a config configures, each with the arguments it gets from the graph or from IDSF itself.
PARTS = {"content": (IDSFContent, ("features", "num_items", "embedding_dim", "linear_init", "initialize")),
         "structure": (IDSFStructure, ("num_users", "num_items", "edge_index", "modalities", "embedding_dim",
                                       "edge_weight", "linear_init", "initialize")),
         "contrast": (IDSFContrast, ())}
#: Flat option names of earlier versions -> where the option lives now (accepted in configs and ``--set``).
FLAT_OPTIONS = {"num_layers": ("structure", "num_layers"), "gamma": ("structure", "gamma"),
                "normalization": ("structure", "normalization"),
                "user_id_self_term": ("structure", "user_id_self_term"), "structure_init": ("structure", "init"),
                "conv": ("structure", "conv"), "trainable_features": ("content", "trainable_features"),
                "tau": ("contrast", "tau"), "contrast_pairs": ("contrast", "pairs"),
                "contrast_scope": ("contrast", "scope"), "contrast_sample_size": ("contrast", "sample_size"),
                "contrast_kernel": ("contrast", "kernel"), "contrast_block_size": ("contrast", "block_size")}
#: Ablation switches of earlier versions -> (option, value when true, value when false; None: unchanged).
SWITCHES = {"no_content": (("item_score",), "structure", "content_and_structure"),
            "content_no_id": (("content", "enhance"), False, True),
            "structure_no_id": (("structure", "gamma"), 0.0, None),
            "no_contrast": (("beta",), 0.0, None)}

#: Parameter names of earlier versions (one flat module) -> today's; :meth:`IDSF.upgrade_state_dict` renames
#: them, so run folders and checkpoints written before the modules existed still load.
FLAT_NAMES = {"raw_params.": "content.raw_params.", "proj.": "content.proj.", "item_id.": "content.item_id.",
              "enhance_att.": "content.enhance_att.", "fuse_att.": "content.fuse_att.",
              "user_id.": "structure.user_id.", "user_pref.": "structure.user_pref.",
              "item_struct_att.": "structure.item_att.", "user_struct_att.": "structure.user_att."}


class IDSFOutput(NamedTuple):
    """What :meth:`IDSF.forward` computes."""

    user: Tensor        #: :math:`\mathbf{e}_u^s`, the users' final representations ``[U, d]``
    item: Tensor        #: the items' final representations ``[I, d]`` (eq. (11): :math:`\mathbf{e}_i^c + \mathbf{e}_i^s`)
    content: Content    #: the content module's output
    structure: Structure  #: the structural modules' output


class IDSF(Recommender):
    r"""The IDSF recommender, a composition of three parts:

    * **content** (:class:`~idsf_pyg.models.IDSFContent`, eq. (1)–(2)): each modality projected, enhanced with
      its item ID, fused into :math:`\mathbf{e}_i^c`;
    * **structure** (:class:`~idsf_pyg.models.IDSFStructure`, eq. (7)–(10)): per modality :math:`K` layers of a
      propagation layer (:class:`~idsf_pyg.nn.IDSFConv` or a subclass) with :math:`\gamma`-weighted ID self
      terms, then attention across modalities: :math:`\mathbf{e}_u^s`, :math:`\mathbf{e}_i^s`;
    * **contrast** (:class:`~idsf_pyg.models.IDSFContrast`, eq. (3)–(6)): :math:`\mathcal{L}_C` on the content.

    **Prediction** (eq. (11)): :math:`\hat{y}_{ui} = \mathbf{e}_u^{s\top}(\mathbf{e}_i^c + \mathbf{e}_i^s)`;
    **objective** (eq. (13)): BPR (eq. (12)) :math:`+ \beta\mathcal{L}_C + \lambda\|\Theta\|_2^2`.

    Build it from its parts to swap one (e.g. ``IDSFStructure(..., conv=MyConv)``), or from the flat options
    a config holds with :meth:`from_options` / :meth:`from_graph`.

    Args:
        num_users, num_items, train_edge_index: The training graph.
        content, structure, contrast: The three parts (``contrast`` is only needed when ``beta > 0``).
        beta: :math:`\beta` of eq. (13) (Baby 0.3, Sports 1.0, Clothing 1.0); 0 is "content w/o contrast".
        reg_weight: :math:`\lambda` of eq. (13) (1e-4).
        reg_scope: ``"params"`` (eq. (13): all parameters, scaled by :math:`1/|E|` to match the batch-mean BPR,
            see :meth:`loss`) or ``"batch"`` (the batch's final embeddings divided by the batch size, as in
            LightGCN's and LATTICE's code).
        item_head: ``"sum"`` (eq. (11)) or ``"layernorm_mlp"`` (the official code: ``LayerNorm(ReLU(Linear(.)))``
            on both parts before the sum).
        item_score: ``"content_and_structure"`` (eq. (11)) or ``"structure"`` (the "w/o content" ablation:
            :math:`\mathbf{e}_i^s` only, and no :math:`\mathcal{L}_C`: ``beta`` is then unused).
        layernorm_eps: :math:`\epsilon` of the ``layernorm_mlp`` head's LayerNorm (official: 1e-6).
        train_edge_weight: The training edges' weights ``[E]``, if the structure uses them.
    """

    supports_amp = True
    supports_shard = True

    def __init__(self, num_users: int, num_items: int, train_edge_index: Tensor, content: IDSFContent,
                 structure: IDSFStructure, contrast: Optional[IDSFContrast] = None, beta: NonNegativeFloat = 0.3,
                 reg_weight: NonNegativeFloat = 1e-4, reg_scope: Literal["params", "batch"] = "params",
                 item_head: Literal["sum", "layernorm_mlp"] = "sum",
                 item_score: Literal["content_and_structure", "structure"] = "content_and_structure",
                 layernorm_eps: NonNegativeFloat = 1e-5, train_edge_weight: Optional[Tensor] = None):
        super().__init__(num_users, num_items, train_edge_index, train_edge_weight)
        for name, value, allowed in (("item_head", item_head, ITEM_HEADS), ("item_score", item_score, ITEM_SCORES),
                                     ("reg_scope", reg_scope, REG_SCOPES)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if list(structure.modalities) != list(content.modalities):
            raise ValueError(f"the structure's modalities {structure.modalities} differ from the content's "
                             f"{content.modalities}")
        # Without the content in the score, its contrastive loss goes too (β unused), as in Table 3's "w/o content".
        self.contrast_weight = 0.0 if item_score == "structure" else beta
        if self.contrast_weight > 0 and contrast is None:
            raise ValueError("beta > 0 needs a contrast module (IDSFContrast)")
        self.content, self.structure, self.contrast = content, structure, contrast
        self.modalities = list(content.modalities)
        self.embedding_dim = content.embedding_dim
        self.beta, self.reg_weight, self.reg_scope = beta, reg_weight, reg_scope
        self.item_head, self.item_score = item_head, item_score
        if item_head == "layernorm_mlp":
            d = self.embedding_dim
            self.head_c = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.LayerNorm(d, eps=layernorm_eps))
            self.head_s = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.LayerNorm(d, eps=layernorm_eps))
        self.register_load_state_dict_pre_hook(_upgrade_hook)
        self.reset_parameters()

    @classmethod
    def from_options(cls, num_users: int, num_items: int, train_edge_index: Tensor, features: Dict[str, Tensor],
                     embedding_dim: PositiveInt = 128, linear_init: Literal["xavier", "torch"] = "xavier",
                     use_edge_weight: bool = False, train_edge_weight: Optional[Tensor] = None,
                     **options: Any) -> "IDSF":
        r"""IDSF from the options a config holds (``model_args``): ``embedding_dim``, ``linear_init`` and
        ``use_edge_weight`` (propagate over ``train_edge_weight``) here; :class:`IDSF`'s own (``beta``,
        ``reg_weight``, ...); and one mapping per part, ``content`` (:class:`IDSFContent`), ``structure``
        (:class:`IDSFStructure`, e.g. ``{"gamma": 0.3, "conv": "package.module:Class"}``) and ``contrast``
        (:class:`IDSFContrast`). The flat names of earlier versions are accepted (:data:`FLAT_OPTIONS`,
        :data:`SWITCHES`: ``gamma=0.3``, ``no_content=True``, ...)."""
        if use_edge_weight and train_edge_weight is None:
            raise ValueError("use_edge_weight=true needs the training edges' weights (train_edge_weight)")
        if not features:
            raise ValueError("IDSF needs at least one item modality (data['item'].x_<name>) and the graph has none: "
                             "put image_feat.npy / text_feat.npy next to the interactions, or name substitutes "
                             "explicitly, e.g. --feature random_image=random:4096")
        opts = cls.canonical_options(options)
        unknown = sorted(set(opts) - set(cls.option_schema()))
        if unknown:
            raise ValueError(f"IDSF has no option {unknown[0]!r}")
        content = IDSFContent(features, num_items, embedding_dim, linear_init=linear_init, initialize=False,
                              **opts.pop("content", {}))
        structure = IDSFStructure(num_users, num_items, train_edge_index, list(features), embedding_dim,
                                  edge_weight=train_edge_weight if use_edge_weight else None, linear_init=linear_init,
                                  initialize=False, **opts.pop("structure", {}))
        contrast = IDSFContrast(**opts.pop("contrast", {}))
        return cls(num_users, num_items, train_edge_index, content, structure, contrast,
                   train_edge_weight=train_edge_weight, **opts)

    # ------------------------------------------------------------------ options
    @classmethod
    def option_schema(cls) -> Dict[str, Any]:
        """The configurable options, read from the signatures of :meth:`from_options`, :class:`IDSF` and each
        part: top-level :class:`~idsf_pyg.options.Option` s and one mapping of them per part."""
        schema: Dict[str, Any] = options_of(cls.from_options.__func__, skip=("train_edge_weight",))
        schema.update(options_of(cls.__init__, skip=("train_edge_weight", *PARTS)))
        for section, (part, graph_args) in PARTS.items():
            schema[section] = options_of(part.__init__, skip=graph_args)
        return schema

    @classmethod
    def canonical_options(cls, options: Mapping[str, Any], source: str = "IDSF options") -> Dict[str, Any]:
        """``options`` in today's nested form: ``"structure.gamma"`` keys nested, the flat names of earlier
        versions moved to their part, the ablation switches turned into the values they set. Later entries win,
        switches after the rest."""
        out: Dict[str, Any] = {}
        switches = []
        for name, value in options.items():
            if name in SWITCHES:
                switches.append((name, value))
            elif name in PARTS:
                if not isinstance(value, Mapping):
                    raise ConfigError(f"must be a mapping of {name} options, got {value!r}", f"model_args.{name}",
                                      source)
                out.setdefault(name, {}).update(value)
            else:
                _put(out, cls.option_path(name), value)
        for name, value in switches:
            if not isinstance(value, bool):
                raise ConfigError(f"must be true or false, got {value!r}", f"model_args.{name}", source)
            path, on, off = SWITCHES[name]
            setting = on if value else off
            if setting is not None:
                _put(out, path, setting)
        return out

    @classmethod
    def option_path(cls, name: str) -> Tuple[str, ...]:
        """Where an option lives: ``("structure", "gamma")`` for ``"structure.gamma"`` or the flat ``"gamma"``,
        ``("beta",)`` for a top-level one."""
        if name in FLAT_OPTIONS:
            return FLAT_OPTIONS[name]
        section, dot, sub = name.partition(".")
        return (section, sub) if dot else (name,)

    @classmethod
    def key_options(cls, options: Mapping[str, Any]) -> Dict[str, Any]:
        """The run key's form of a full canonical option set: the flat names of earlier versions, so that a run
        trained before the parts existed keeps its key. Options that change memory or speed only (the
        contrast's kernel and block size) are left out; so is ``conv`` at its default, and γ = 0 and β = 0 are
        keyed as their zero weights whichever way they were asked for."""
        flat: Dict[str, Any] = {k: v for k, v in options.items() if k not in PARTS and k != "item_score"}
        for name, path in FLAT_OPTIONS.items():
            if path[1] not in PARTS[path[0]][0].non_key_arguments:
                flat[name] = options[path[0]][path[1]]
        if flat.get("conv") == DEFAULT_CONV:
            flat.pop("conv")
        mapped = {path for path in FLAT_OPTIONS.values()} | {("content", "enhance")}
        for section, (part, graph_args) in PARTS.items():   # options added since: keyed when set
            for name, option in options_of(part.__init__, skip=graph_args).items():
                if (section, name) not in mapped and name not in part.non_key_arguments \
                        and options[section][name] != option.default:
                    flat[f"{section}.{name}"] = options[section][name]
        flat.update(no_content=options["item_score"] == "structure", content_no_id=not options["content"]["enhance"],
                    structure_no_id=False, no_contrast=False)
        if flat["gamma"] == 0:
            flat["gamma"] = 0.0
        if flat["beta"] == 0:
            flat["beta"] = 0.0
        return flat

    @classmethod
    def from_graph(cls, data: HeteroData, modalities: Optional[Sequence[str]] = None, **options) -> "IDSF":
        """Builds the model from the graph and the flat options of :meth:`from_options`; ``modalities`` selects a
        subset (Table 4); ``use_edge_weight`` takes ``data['user', 'interacts', 'item'].edge_weight``."""
        return cls.from_options(*cls.graph_sizes(data), features=cls.graph_features(data, modalities),
                                **cls.graph_edge_weight(data, options), **options)

    def reset_parameters(self) -> None:
        """Xavier initialization of every weight (section 4.1), or PyTorch's default for the linear layers with
        ``linear_init="torch"`` (the official code); embeddings are Xavier either way."""
        # One fixed order of draws across the parts, so that a seed gives the same parameters as it always has.
        self.content.reset_modalities()
        self.structure.reset_user_ids()
        self.content.reset_fusion()
        self.structure.reset_attention()
        if self.item_head == "layernorm_mlp":
            for head in (self.head_c, self.head_s):
                reset_linear(head[0], self.content.linear_init)
                head[2].reset_parameters()
        self.structure.reset_preferences()

    @classmethod
    def upgrade_state_dict(cls, state: Dict[str, Any]) -> Dict[str, Any]:
        """A state dict of an earlier version (one flat module) with today's names, in its order."""
        return {_upgraded_name(k): v for k, v in state.items()}

    def raw_feature(self, modality: str) -> Tensor:
        """The raw item features of one modality (see :meth:`IDSFContent.raw_feature`)."""
        return self.content.raw_feature(modality)

    # ------------------------------------------------------------------ forward
    def forward(self) -> IDSFOutput:
        content = self.content()
        structure = self.structure({m: p.projected for m, p in content.modalities.items()},
                                   {m: p.id for m, p in content.modalities.items()})
        if self.item_score == "structure":
            items = structure.item
        elif self.item_head == "layernorm_mlp":
            items = self.head_c(content.fused) + self.head_s(structure.item)
        else:
            items = content.fused + structure.item                    # eq. (11)
        return IDSFOutput(structure.user, items, content, structure)

    def embed(self) -> Tuple[Tensor, Tensor]:
        out = self.forward()
        return out.user, out.item

    # -------------------------------------------------------------------- losses
    def loss(self, users: Tensor, pos: Tensor, neg: Tensor, shard: Optional[Shard] = None
             ) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Eq. (13): BPR + β·L_C + λ‖Θ‖².

        With ``shard`` (data-parallel training: ``users, pos, neg`` are the whole global batch), this rank's
        part: BPR over its slice of the batch and every term it computes whole (L2, the batch or sample
        contrastive scopes) weighted by slice / batch size, and its rows of the all-item contrastive loss;
        the parts of all ranks add up to the one-process loss."""
        batch, weight = batch_share(users.numel(), shard)
        # Drawn from the global batch (the same on every rank), also when β = 0: the same draws either way.
        rows = self.contrast.rows(pos, neg, self.num_items) if self.contrast is not None else None
        users, pos, neg = users[batch], pos[batch], neg[batch]
        out = self.forward()
        bpr, u, i, j = bpr_batch(out.user, out.item, users, pos, neg)
        if not users.numel():   # a rank's empty slice of a last, short batch
            bpr = u.new_zeros(())
        total = weight * bpr if shard is not None else bpr
        logs = {"bpr": total.detach()}
        if self.contrast_weight > 0:
            split = shard is not None and rows is None
            cl = self.contrast(out.content, rows, shard if split else None, id_pairs=self.content.enhance)
            if shard is not None and not split:
                cl = weight * cl
            total = total + self.contrast_weight * cl
            logs["contrast"] = cl.detach()
        if self.reg_weight > 0:
            if self.reg_scope == "params":
                # Eq. (12) sums BPR over all |E| training triples and eq. (13) adds λ‖Θ‖² once; with the batch
                # *mean* of BPR used here, the same balance puts λ‖Θ‖² / |E| on each step.
                reg = self.reg_weight * l2_penalty(self.penalized_parameters())
                reg = reg / self.train_edge_index.size(1)
            else:
                reg = self.reg_weight * l2_penalty([u, i, j]) / (2 * max(users.numel(), 1))
            if shard is not None:
                reg = weight * reg
            total = total + reg
            logs["reg"] = reg.detach()
        return total, logs

    def penalized_parameters(self) -> Iterator[nn.Parameter]:
        r""":math:`\Theta` of eq. (13), every trainable parameter once: input tables (raw features, projections,
        ID tables) first, then the attention units, the layers and the head, then anything else a part holds
        (the order of the float sum, kept so that logged losses stay the same)."""
        c, s = self.content, self.structure
        ordered = [getattr(c, "raw_params", None), c.proj, c.item_id, s.user_id, getattr(s, "user_pref", None),
                   c.enhance_att, c.fuse_att, s.item_att, s.user_att, s.conv_to_item, s.conv_to_user,
                   getattr(self, "head_c", None), getattr(self, "head_s", None)]
        seen = set()
        for part in [p for p in ordered if p is not None] + [self]:
            for p in part.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    yield p

    def contrast_gemm_flops(self, n: int, device: torch.device | str = "cpu") -> Dict[str, float]:
        """Floating-point work of one step's similarity products over ``n`` items
        (:meth:`IDSFContrast.gemm_flops`; zero without :math:`\\mathcal{L}_C`)."""
        if self.contrast_weight <= 0:
            return {"floor": 0.0, "executed": 0.0, "matrices": 0, "block": 0}
        return self.contrast.gemm_flops(n, self.embedding_dim, len(self.modalities), self.content.enhance, device)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, reg_weight={self.reg_weight}, item_score='{self.item_score}'"


def _put(options: Dict[str, Any], path: Tuple[str, ...], value: Any) -> None:
    """``options[path] = value`` for a top-level path ``(name,)`` or a part's ``(part, name)``."""
    if len(path) == 2:
        options.setdefault(path[0], {})[path[1]] = value
    else:
        options[path[0]] = value


def _upgraded_name(name: str) -> str:
    for old, new in FLAT_NAMES.items():
        if name.startswith(old):
            return new + name[len(old):]
    return name


def _upgrade_hook(module: nn.Module, state_dict: Dict[str, Any], prefix: str, *args: Any) -> None:
    """Renames an earlier version's parameters in place before :meth:`~torch.nn.Module.load_state_dict`."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        new = prefix + _upgraded_name(key[len(prefix):])
        if new != key and new not in state_dict:
            state_dict[new] = state_dict.pop(key)
