"""A model's configurable arguments read from its signature: type annotations give the type, ``Literal`` the
allowed values, ``Annotated[..., Range(...)]`` the range and ``Annotated[..., Check(fn)]`` any further check;
the config validates every value against them (:mod:`idsf_pyg.train.config`)."""
from __future__ import annotations

import collections.abc
import inspect
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from .errors import ConfigError


@dataclass(frozen=True)
class Range:
    """Allowed interval of a number (each bound optional, closed unless ``*_open``)."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False


@dataclass(frozen=True)
class Check:
    """A further check: ``fn(value)`` raises :class:`ValueError` with the reason when the value is not usable."""

    fn: Callable[[Any], Any]


PositiveInt = typing.Annotated[int, Range(low=1)]
NonNegativeInt = typing.Annotated[int, Range(low=0)]
NonNegativeFloat = typing.Annotated[float, Range(low=0.0)]
PositiveFloat = typing.Annotated[float, Range(low=0.0, low_open=True)]
Probability = typing.Annotated[float, Range(low=0.0, high=1.0, high_open=True)]   # a dropout rate


@dataclass(frozen=True)
class Option:
    """One configurable argument."""

    name: str
    default: Any
    kind: Any                     # bool, int, float, str, list (of ints), dict (of numbers)
    choices: Optional[Tuple[Any, ...]] = None
    range: Optional[Range] = None
    check: Optional[Callable[[Any], Any]] = None
    nullable: bool = False


def options_of(fn: Callable, skip: Sequence[str] = ()) -> Dict[str, Option]:
    """The arguments of ``fn`` that have defaults (less ``skip``), as :class:`Option` s, in signature order."""
    hints = typing.get_type_hints(fn, include_extras=True)
    out: Dict[str, Option] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name in ("self", "cls") or p.name in skip or p.default is inspect.Parameter.empty \
                or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out[p.name] = _option(p.name, p.default, hints.get(p.name, type(p.default)))
    return out


def _option(name: str, default: Any, hint: Any) -> Option:
    rng, check, nullable = None, None, False
    for _ in range(2):  # Optional[Annotated[...]] or Annotated[Optional/Union[...], ...]
        if typing.get_origin(hint) is typing.Annotated:
            hint, *extras = typing.get_args(hint)
            rng = next((e for e in extras if isinstance(e, Range)), rng)
            check = next((e.fn for e in extras if isinstance(e, Check)), check)
        if typing.get_origin(hint) is typing.Union:
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            nullable = nullable or len(args) < len(typing.get_args(hint))
            hint = args[0] if len(args) == 1 else str   # Union[str, Type[...]]: a config names it by a string
    if typing.get_origin(hint) is typing.Literal:
        choices = typing.get_args(hint)
        return Option(name, default, type(choices[0]), choices, rng, check, nullable)
    origin = typing.get_origin(hint) or hint
    if origin in (list, tuple, collections.abc.Sequence):
        item = (typing.get_args(hint) or (int,))[0]
        if typing.get_origin(item) is typing.Annotated:
            rng = rng or next((e for e in typing.get_args(item)[1:] if isinstance(e, Range)), None)
        return Option(name, default, list, None, rng, check, nullable)
    if origin in (dict, collections.abc.Mapping):
        return Option(name, default, dict, None, rng, check, nullable)
    if hint in (bool, int, float, str):
        return Option(name, default, hint, None, rng, check, nullable)
    return Option(name, default, type(default) if default is not None else str, None, rng, check, nullable)


def check_option(option: Option, value: Any, key: str, source: str) -> Any:
    """``value`` converted to the option's type; :class:`ConfigError` naming ``key`` and ``source`` otherwise."""
    if value is None and (option.nullable or option.default is None):
        return None
    kind = option.kind
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"must be true or false, got {value!r}", key, source)
        out: Any = value
    elif kind is int:
        out = check_integer(value, key, source, option.range or Range(low=0))
    elif kind is float:
        out = check_number(value, key, source, option.range or Range(low=0.0))
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"must be a string, got {value!r}", key, source)
        out = value
    elif kind is list:
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"must be a non-empty list, e.g. {list(option.default or [])}, got {value!r}", key,
                              source)
        out = [check_integer(v, key, source, option.range or Range(low=1)) for v in value]
    elif kind is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"must be a mapping or null, got {value!r}", key, source)
        out = {str(k): check_number(v, f"{key}.{k}", source, Range(low=0.0)) for k, v in value.items()}
    else:
        out = value
    if option.choices is not None and out not in option.choices:
        raise ConfigError(f"must be one of {', '.join(map(str, option.choices))}, got {value!r}", key, source)
    if option.check is not None:
        try:
            option.check(out)
        except ValueError as e:
            raise ConfigError(str(e), key, source) from None
    return out


def check_integer(value: Any, key: str, source: str, rng: Range) -> int:
    """``value`` as an integer in ``rng`` (a float with an integer value is accepted)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"must be an integer, got {value!r}", key, source)
    if rng.low is not None and value < rng.low:
        raise ConfigError(f"must be >= {rng.low:g}, got {value}", key, source)
    if rng.high is not None and value > rng.high:
        raise ConfigError(f"must be <= {rng.high:g}, got {value}", key, source)
    return value


def check_number(value: Any, key: str, source: str, rng: Range) -> float:
    """``value`` as a finite float in ``rng`` (a string such as YAML 1.1's ``1e-4`` is read as a number)."""
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"must be a number, got {value!r}", key, source)
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"must be finite, got {value}", key, source)
    if rng.low is not None and (value < rng.low or (rng.low_open and value == rng.low)):
        raise ConfigError(f"must be {'>' if rng.low_open else '>='} {rng.low:g}, got {value:g}", key, source)
    if rng.high is not None and (value > rng.high or (rng.high_open and value == rng.high)):
        raise ConfigError(f"must be {'<' if rng.high_open else '<='} {rng.high:g}, got {value:g}", key, source)
    return value
