"""A run's configuration, resolved and validated in one place, and the key that identifies it.

Resolution order (later wins): the trainer's and the model's defaults -> the dataset YAML -> the model
YAML (when another model than the dataset config's is asked for) -> a preset (e.g. ``official``: the
authors' code's behaviours) -> command-line overrides. Every level
is checked: an unknown key is an error naming the key and the file (with the closest known key as a
hint), values are checked for type and range, and ``--set KEY=VALUE`` goes to the trainer when KEY is a
training setting (``lr``, ``batch_size``, ...) and to the model otherwise.

:func:`run_key` hashes what defines a run's numbers (model and its arguments with defaults filled in,
training settings, seed, split seed, the data's fingerprint and the features' sources); the run folder,
``table2`` and ``search`` compare it before reusing or resuming anything.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import inspect
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import yaml

from ..errors import ConfigError
from ..options import Range, check_integer, check_number, check_option

PathLike = Union[str, Path]

#: Keys a dataset config file may hold.
DATASET_FILE_KEYS = ("dataset", "split_seed", "features", "discover_features", "edge_weight", "model", "model_args",
                     "train")
#: Keys a model config file (configs/models/<model>.yaml) or a preset (configs/presets/<name>.yaml) may hold.
MODEL_FILE_KEYS = ("model", "model_args", "train")
#: Training settings that define the numbers (everything but the evaluation batch size; and LATER_TRAIN_FIELDS).
KEY_TRAIN_FIELDS = ("lr", "batch_size", "epochs", "eval_every", "patience", "select_metric", "ks",
                    "mask_val_in_test", "seed", "max_seconds", "sampler", "lr_decay", "amp")
#: Training settings added after runs were stored, with the behaviour those runs had: in the key only when set
#: otherwise, so that every stored run keeps its key.
LATER_TRAIN_FIELDS = {"sampler_stream": "shared"}
SAMPLERS = ("edges", "users")
#: How the sampler's generator is seeded from ``seed`` (:func:`~idsf_pyg.train.trainer.sampler_seed`).
SAMPLER_STREAMS = ("shared", "independent")
AMP_MODES = ("none", "bf16")
METRIC_NAMES = ("recall", "precision", "ndcg", "hit", "map", "ndcg_legacy")


@dataclass
class TrainConfig:
    """Optimization and protocol settings (the paper's defaults)."""

    lr: float = 5e-4
    batch_size: int = 1024
    epochs: int = 1000
    eval_every: int = 1
    # Evaluations without a better validation score before stopping: 20 at one evaluation per epoch, as MMRec
    # runs every model (why not fewer: experiments/RESULTS.md, "Measurements behind the defaults").
    patience: int = 20
    select_metric: str = "recall@20"
    ks: List[int] = field(default_factory=lambda: [10, 20])
    mask_val_in_test: bool = False
    eval_batch_size: int = 1024
    seed: int = 0
    max_seconds: Optional[float] = None  # wall-clock cap on training (the run stops cleanly)
    # "edges": every training edge once per epoch, shuffled (heavy users weigh more); "users" (official IDSF
    # and LATTICE code): each batch draws users uniformly, one positive and one negative each.
    sampler: str = "edges"
    lr_decay: float = 1.0  # the learning rate of epoch e is lr * lr_decay ** ((e - 1) / 50); official: 0.96
    sampler_stream: str = "shared"  # SAMPLER_STREAMS; the official code's sampler and initialization are independent
    # "bf16": bfloat16 matrix products under torch.autocast (losses accumulated in float32); "none": float32.
    amp: str = "none"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, source: Optional[str] = None) -> "TrainConfig":
        """Checks types and ranges; raises :class:`ConfigError` naming the key."""
        src = source or "train settings"
        self.lr = _number("lr", self.lr, src, low=0.0, low_open=True)
        for name, low in (("batch_size", 1), ("epochs", 1), ("eval_every", 1), ("patience", 0),
                          ("eval_batch_size", 1), ("seed", 0)):
            setattr(self, name, _integer(name, getattr(self, name), src, low=low))
        self.mask_val_in_test = _boolean("mask_val_in_test", self.mask_val_in_test, src)
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}", "sampler", src)
        if self.sampler_stream not in SAMPLER_STREAMS:
            raise ConfigError(f"must be one of {', '.join(SAMPLER_STREAMS)}, got {self.sampler_stream!r}",
                              "sampler_stream", src)
        if self.amp not in AMP_MODES:
            raise ConfigError(f"must be one of {', '.join(AMP_MODES)}, got {self.amp!r}", "amp", src)
        self.lr_decay = _number("lr_decay", self.lr_decay, src, low=0.0, low_open=True, high=1.0)
        if self.max_seconds is not None:
            self.max_seconds = _number("max_seconds", self.max_seconds, src, low=0.0, low_open=True)
        if not isinstance(self.ks, (list, tuple)) or not self.ks:
            raise ConfigError(f"must be a non-empty list of cut-offs, e.g. [10, 20], got {self.ks!r}", "ks", src)
        self.ks = [_integer("ks", k, src, low=1) for k in self.ks]
        metric, _, k = str(self.select_metric).partition("@")
        if metric not in METRIC_NAMES or not k.isdigit() or int(k) not in self.ks:
            raise ConfigError(f"must be <metric>@<k> with metric one of {', '.join(METRIC_NAMES)} and k in "
                              f"ks={self.ks}, got {self.select_metric!r}", "select_metric", src)
        return self


TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


@dataclass
class RunConfig:
    """Everything that defines one training run (see the module docstring for how it is resolved)."""

    dataset: str
    model: str
    model_args: Dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    features: Dict[str, str] = field(default_factory=dict)
    split_seed: int = 0
    discover_features: bool = True
    edge_weight: Optional[str] = None  # "rating" or "recency:<days>" (load_dataset); models use it if asked
    sources: List[str] = field(default_factory=list)  # the files it was resolved from (not part of the key)

    def to_dict(self) -> Dict[str, Any]:
        """The config as plain data (what ``config.yaml`` and ``results.json`` hold)."""
        return {"dataset": self.dataset, "split_seed": self.split_seed, "features": dict(self.features),
                "discover_features": self.discover_features, "edge_weight": self.edge_weight, "model": self.model,
                "model_args": copy.deepcopy(self.model_args), "train": asdict(self.train)}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], source: str = "config") -> "RunConfig":
        """Builds and validates a config from plain data (e.g. a run folder's ``config.yaml``)."""
        if not isinstance(obj, Mapping):
            raise ConfigError(f"must be a mapping of settings, got a {type(obj).__name__}", source=source)
        _check_keys(obj, DATASET_FILE_KEYS, source)
        for sub in ("model_args", "train", "features"):
            if obj.get(sub) is not None and not isinstance(obj[sub], Mapping):
                raise ConfigError(f"must be a mapping, got {obj[sub]!r}", sub, source)
        train = _train_config(obj.get("train") or {}, source)
        cfg = cls(dataset=obj.get("dataset"), model=obj.get("model"), model_args=dict(obj.get("model_args") or {}),
                  train=train, features=dict(obj.get("features") or {}), split_seed=obj.get("split_seed", 0),
                  discover_features=obj.get("discover_features", True), edge_weight=obj.get("edge_weight"),
                  sources=[source])
        return cfg.validate()

    def validate(self) -> "RunConfig":
        src = " <- ".join(self.sources) or "config"
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError("missing: name a dataset ('synthetic', a folder or a .inter file)", "dataset", src)
        from ..models import MODELS
        if self.model not in MODELS:
            hint = _hint(str(self.model), MODELS)
            raise ConfigError(f"unknown model {self.model!r}{hint}; known: {', '.join(sorted(MODELS))}", "model", src)
        self.split_seed = _integer("split_seed", self.split_seed, src, low=0)
        self.discover_features = _boolean("discover_features", self.discover_features, src)
        if self.edge_weight is not None:
            from ..data.load import parse_edge_weight
            try:
                parse_edge_weight(self.edge_weight)
            except ConfigError as e:
                raise ConfigError(str(e).split(": ", 1)[-1], "edge_weight", src) from None
        if not isinstance(self.features, dict):
            raise ConfigError("must be a mapping modality -> spec", "features", src)
        for name, spec in self.features.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ConfigError(f"modality name {name!r} must be a Python identifier (e.g. text, random_image)",
                                  "features", src)
            if not isinstance(spec, str) or not spec:
                raise ConfigError(f"the spec of modality {name!r} must be a string (a .npy path, "
                                  f"'random:<dim>[:<std>]' or 'item-text-minilm'), got {spec!r}", "features", src)
        self.model_args = validate_model_args(self.model, self.model_args, src)
        if self.edge_weight is not None and not full_model_args(self.model, self.model_args).get("use_edge_weight"):
            users = ", ".join(sorted(m for m in MODELS if "use_edge_weight" in model_arg_defaults(m)))
            why = ("add --set use_edge_weight=true to use them" if "use_edge_weight" in model_arg_defaults(self.model)
                   else f"only {users} can use them (with use_edge_weight=true)")
            raise ConfigError(f"{self.edge_weight!r} loads edge weights that model {self.model!r} would ignore "
                              f"(they would change the run key, not the run): {why}", "edge_weight", src)
        self.train.validate(src)
        if self.train.amp != "none" and not MODELS[self.model].supports_amp:
            amp_models = ", ".join(sorted(m for m, cls in MODELS.items() if cls.supports_amp))
            raise ConfigError(f"amp={self.train.amp} is implemented for {amp_models} only, not {self.model!r} "
                              f"(its sparse propagation has no bf16 kernel on the CPU; nothing to gain)",
                              "train.amp", src)
        return self

    def key(self, fingerprint: str, feature_sources: Mapping[str, str]) -> str:
        return run_key(self, fingerprint, feature_sources)


# ---------------------------------------------------------------------------------------------- resolution
def read_yaml(path: PathLike, allowed: Sequence[str]) -> Dict[str, Any]:
    """Reads a config file that must be a YAML mapping holding only ``allowed`` keys."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file ({e.strerror or e})", source=str(path)) from None
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(e, 'problem', None) or e}", source=str(path)) from None
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise ConfigError(f"a config file must be a YAML mapping (key: value lines), got a {type(obj).__name__}",
                          source=str(path))
    _check_keys(obj, allowed, str(path))
    for sub in ("model_args", "train", "features"):
        if sub in obj and obj[sub] is not None and not isinstance(obj[sub], dict):
            raise ConfigError(f"must be a mapping, got {type(obj[sub]).__name__}", sub, str(path))
    return obj


def resolve_run_config(config_file: PathLike, *, model: Optional[str] = None, model_file: Optional[PathLike] = None,
                       dataset: Optional[str] = None, features: Optional[Mapping[str, str]] = None,
                       sets: Optional[Mapping[str, Any]] = None, train: Optional[Mapping[str, Any]] = None,
                       split_seed: Optional[int] = None, modalities: Optional[Sequence[str]] = None,
                       edge_weight: Optional[str] = None,
                       preset_file: Union[PathLike, Sequence[PathLike], None] = None) -> RunConfig:
    """Resolves a run's configuration: defaults <- dataset YAML <- model YAML <- overrides.

    Args:
        config_file: The dataset config (``experiments/configs/<dataset>.yaml``).
        model: Train this model instead of the config's; its defaults come from ``model_file``, which
            replaces the model arguments and updates the training settings.
        dataset, split_seed: Override the config's.
        features: Modality -> spec, added to / replacing the config's.
        sets: ``--set`` overrides: training settings by name go to the trainer, the rest to the model.
        train: Explicit training overrides (``--lr``, ``--epochs``, ...); ``None`` values are ignored.
        modalities: Subset of the graph's modalities for multimodal models (Table 4).
        edge_weight: Override the config's edge-weight spec (``rating``, ``recency:<days>``).
        preset_file: A preset (or a list of them, applied in order) applied after the model's defaults: its
            ``model_args`` and ``train`` entries override them; its ``model`` (if any) must be the run's model.
    """
    src = str(config_file)
    raw = read_yaml(config_file, DATASET_FILE_KEYS)
    sources = [src]
    layers = [(raw.get("model_args") or {}, src)]   # the model's options, each file over the one before
    train_dict = dict(raw.get("train") or {})
    chosen = raw.get("model")
    if model is not None and model != chosen:
        chosen = model
        layers = []
        if model_file is not None:
            mraw = read_yaml(model_file, MODEL_FILE_KEYS)
            if mraw.get("model") not in (None, model):
                raise ConfigError(f"is for model {mraw.get('model')!r}, not {model!r}", "model", str(model_file))
            layers = [(mraw.get("model_args") or {}, str(model_file))]
            train_dict.update(mraw.get("train") or {})
            sources.append(str(model_file))
    presets = [] if preset_file is None else [preset_file] if isinstance(preset_file, (str, Path)) else preset_file
    for preset in presets:  # in the order given, each over the one before
        praw = read_yaml(preset, MODEL_FILE_KEYS)
        if praw.get("model") not in (None, chosen):
            raise ConfigError(f"is a preset for model {praw.get('model')!r}, and this run trains {chosen!r}", "model",
                              str(preset))
        layers.append((praw.get("model_args") or {}, str(preset)))
        train_dict.update(praw.get("train") or {})
        sources.append(str(preset))
    feats = dict(raw.get("features") or {})
    feats.update(features or {})
    command_line = {}
    for key, value in (sets or {}).items():
        if key in TRAIN_FIELDS:
            train_dict[key] = value
        else:
            command_line[key] = value
    train_dict.update({k: v for k, v in (train or {}).items() if v is not None})
    if modalities:
        command_line["modalities"] = list(modalities)
    layers.append((command_line, "command line"))
    model_args: Dict[str, Any] = {}
    from ..models import MODELS
    for layer, layer_source in layers:
        if not isinstance(layer, Mapping):
            raise ConfigError(f"must be a mapping, got {type(layer).__name__}", "model_args", layer_source)
        model_args = (merge_model_args(chosen, model_args, layer, layer_source) if chosen in MODELS
                      else {**model_args, **layer})   # an unknown model is reported by validate()
    if sets or train or features or modalities or dataset or split_seed is not None or edge_weight:
        sources.append("command line")
    cfg = RunConfig(dataset=dataset or raw.get("dataset"), model=chosen, model_args=model_args,
                    train=_train_config(train_dict, " <- ".join(sources)), features=feats,
                    split_seed=raw.get("split_seed", 0) if split_seed is None else split_seed,
                    discover_features=raw.get("discover_features", True),
                    edge_weight=edge_weight or raw.get("edge_weight"), sources=sources)
    return cfg.validate()


def _train_config(values: Mapping[str, Any], source: str) -> TrainConfig:
    if not isinstance(values, Mapping):
        raise ConfigError(f"must be a mapping, got {type(values).__name__}", "train", source)
    unknown = [k for k in values if k not in TRAIN_FIELDS]
    if unknown:
        raise ConfigError(f"unknown training setting{_hint(unknown[0], TRAIN_FIELDS)}; known: "
                          f"{', '.join(TRAIN_FIELDS)}", f"train.{unknown[0]}", source)
    cfg = TrainConfig.__new__(TrainConfig)  # validate with the source named, not in __post_init__
    for f in dataclasses.fields(TrainConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        setattr(cfg, f.name, values.get(f.name, default))
    return cfg.validate(source)


# ---------------------------------------------------------------------------------------------- model args
def model_arg_defaults(model: str) -> Dict[str, Any]:
    """A model's options with their defaults, nested by part for a composed model (``modalities`` for
    multimodal ones)."""
    from ..models import MODELS
    cls = MODELS[model]
    out = _defaults(cls.option_schema())
    if "features" in inspect.signature(getattr(cls, "from_options", cls.__init__)).parameters:
        out["modalities"] = None
    return out


def _defaults(schema: Mapping[str, Any]) -> Dict[str, Any]:
    return {name: _defaults(o) if isinstance(o, Mapping) else (list(o.default) if isinstance(o.default, tuple)
                                                               else o.default)
            for name, o in schema.items()}


def validate_model_args(model: str, args: Mapping[str, Any], source: str) -> Dict[str, Any]:
    """A model's options in its canonical form, each checked against the type, choices and range its signature
    declares (:mod:`idsf_pyg.options`); :class:`ConfigError` naming the option otherwise."""
    from ..models import MODELS
    if not isinstance(args, Mapping):
        raise ConfigError(f"must be a mapping, got {type(args).__name__}", "model_args", source)
    cls = MODELS[model]
    schema = cls.option_schema()
    defaults = model_arg_defaults(model)
    out: Dict[str, Any] = {}
    for name, value in cls.canonical_options(args, source).items():
        key = f"model_args.{name}"
        if name not in defaults:
            known = [k for k in defaults if not isinstance(schema.get(k), Mapping)]
            parts = [k for k in defaults if isinstance(schema.get(k), Mapping)]
            also = f"; its parts: {', '.join(parts)} (set as part.option)" if parts else ""
            raise ConfigError(f"model {model!r} has no argument {name!r}{_hint(str(name), defaults)}; its "
                              f"arguments: {', '.join(known)}{also} (training settings: {', '.join(TRAIN_FIELDS)})",
                              key, source)
        if name == "modalities":
            if value is not None and (not isinstance(value, (list, tuple)) or not value
                                      or not all(isinstance(v, str) and v for v in value)):
                raise ConfigError(f"must be a non-empty list of modality names, got {value!r}", key, source)
            out[name] = list(value) if value is not None else None
        elif isinstance(schema[name], Mapping):
            if not isinstance(value, Mapping):
                raise ConfigError(f"must be a mapping of {name} options, got {value!r}", key, source)
            section = {}
            for sub, v in value.items():
                if sub not in schema[name]:
                    raise ConfigError(f"the {name} part has no option {sub!r}{_hint(str(sub), schema[name])}; its "
                                      f"options: {', '.join(schema[name])}", f"{key}.{sub}", source)
                section[sub] = check_option(schema[name][sub], v, f"{key}.{sub}", source)
            out[name] = section
        else:
            out[name] = check_option(schema[name], value, key, source)
    return out


def full_model_args(model: str, args: Mapping[str, Any]) -> Dict[str, Any]:
    """``args`` with every unset option at its default (so equal runs get equal keys)."""
    return _merge(model_arg_defaults(model), args)


def model_arg_value(model: str, args: Mapping[str, Any], name: str) -> Any:
    """The value of option ``name`` (``"gamma"``, ``"structure.gamma"``, ``"beta"``) in ``args``, defaults filled;
    :class:`KeyError` if the model has no such option."""
    from ..models import MODELS
    value: Any = full_model_args(model, args)
    for step in MODELS[model].option_path(name):
        if not isinstance(value, Mapping) or step not in value:
            raise KeyError(name)
        value = value[step]
    return value


def merge_model_args(model: str, base: Mapping[str, Any], layer: Mapping[str, Any], source: str) -> Dict[str, Any]:
    """``layer`` (any accepted spelling) over ``base`` (canonical), part by part."""
    from ..models import MODELS
    return _merge(base, MODELS[model].canonical_options(layer, source))


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


# ---------------------------------------------------------------------------------------------- the key
def key_material(cfg: RunConfig, fingerprint: str, feature_sources: Mapping[str, str]) -> Dict[str, Any]:
    """What defines a run's numbers (not where its files are, the device, threads or progress bars)."""
    from ..models import MODELS
    train = asdict(cfg.train)
    args = MODELS[cfg.model].key_options(full_model_args(cfg.model, cfg.model_args))
    keyed = {k: train[k] for k in KEY_TRAIN_FIELDS}
    for name, legacy in LATER_TRAIN_FIELDS.items():   # added since runs were stored: keyed when not as before
        if train[name] != legacy:
            keyed[name] = train[name]
    return {"model": cfg.model, "model_args": args,
            "train": keyed, "split_seed": cfg.split_seed,
            "edge_weight": cfg.edge_weight,
            "data_fingerprint": fingerprint, "features": dict(sorted(feature_sources.items()))}


def run_key(cfg: RunConfig, fingerprint: str, feature_sources: Mapping[str, str]) -> str:
    """sha256 of :func:`key_material` as canonical JSON."""
    text = json.dumps(key_material(cfg, fingerprint, feature_sources), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def key_differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> List[str]:
    """``["train.seed: 0 -> 7", ...]``: where two key materials differ."""
    diffs: List[str] = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diffs += key_differences(a, b, f"{prefix}{k}.")
        elif a != b:
            diffs.append(f"{prefix}{k}: {_short(a)} -> {_short(b)}")
    return diffs


# ---------------------------------------------------------------------------------------------- checks
def _check_keys(obj: Mapping[str, Any], allowed: Sequence[str], source: str) -> None:
    for k in obj:
        if k not in allowed:
            raise ConfigError(f"unknown key{_hint(str(k), allowed)}; a config file may hold: {', '.join(allowed)}",
                              str(k), source)


def _hint(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _short(v: Any) -> str:
    s = json.dumps(v, default=str) if not isinstance(v, str) else v
    return s if len(s) <= 60 else s[:57] + "..."


def _boolean(name: str, value: Any, source: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"must be true or false, got {value!r}", name, source)
    return value


def _integer(name: str, value: Any, source: str, low: Optional[int] = None) -> int:
    return check_integer(value, name, source, Range(low=low))


def _number(name: str, value: Any, source: str, low: Optional[float] = None, low_open: bool = False,
            high: Optional[float] = None, high_open: bool = False) -> float:
    return check_number(value, name, source, Range(low, high, low_open, high_open))
