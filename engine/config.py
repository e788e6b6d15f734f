"""Typed dataclass configs built from plain dicts: unknown keys and wrong types fail early,
with one line naming the key, the value and what is allowed. Also `TrainConfig`, the `train:`
section every run has. Nothing here imports torch, so a config typo is reported at once."""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal


class ConfigError(ValueError):
    """A config key, type or value is not allowed."""


def build(cls, data: dict | None, where: str, base: Any = None) -> Any:
    """Instantiate dataclass `cls` from `data`, checking keys and types recursively.

    Keys `data` leaves out take their value from `base` (an instance of `cls`) when given, else the
    class defaults. A nested section starts from its field's own default: a backend that declares
    `distill: ContinuousRecipe = field(default_factory=lambda: ContinuousRecipe(divergence=...))` keeps
    its defaults for every key a config does not set."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"config section {where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(f"unknown config key {where}.{key}{_moved(hints, key, where)}; "
                              f"allowed: {', '.join(fields)}")
    kwargs = {}
    for k, v in data.items():
        default = getattr(base, k) if base is not None else _default(fields[k])
        kwargs[k] = _coerce(hints[k], v, f"{where}.{k}", default)
    if base is not None:
        kwargs.update({k: copy.deepcopy(getattr(base, k)) for k, f in fields.items() if k not in kwargs and f.init})
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config section {where}: {e}") from None


def _moved(hints: dict, key: str, where: str) -> str:
    """' (did you mean where.section.key?)' when a nested section has that key, else ''."""
    for name, tp in hints.items():
        for cand in (tp, *typing.get_args(tp)):
            if dataclasses.is_dataclass(cand) and key in {f.name for f in dataclasses.fields(cand)}:
                return f" (did you mean {where}.{name}.{key}?)"
    return ""


def _default(f: dataclasses.Field) -> Any:
    """A field's default value (calling its factory), or None when it has none."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _coerce(tp, value, where: str, default: Any = None):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where, default)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"config key {where} cannot be {value!r}")
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where, base=default if isinstance(default, tp) else None)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {where} must be a mapping, got {value!r}")
        if isinstance(default, dict) and "name" in default and "name" not in value:
            value = {**default, **value}  # {name, option} section: options without a name adjust the default
        vt = args[1] if args else Any
        return {str(k): _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {where} must be a list, got {value!r}")
        vt = args[0] if args else Any
        return [_coerce(vt, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is typing.Literal:
        if isinstance(value, bool):  # YAML 1.1 reads a bare no/off/yes/on as a boolean
            value = next((w for w in (("no", "off", "false") if not value else ("yes", "on", "true")) if w in args),
                         value)
        if value not in args:
            choices = ", ".join(map(str, args))
            raise ConfigError(f"config key {where} = {value!r} is not allowed; choose one of: {choices}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {where} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key {where} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key {where} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key {where} must be a string, got {value!r}")
    return value


def to_dict(obj) -> Any:
    """A dataclass config back to plain data (for the resolved config in the run directory)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to a nested dict, in place."""
    import yaml

    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


@dataclass
class TrainConfig:
    """The `train:` section: the loop's settings, the same for every modality."""

    steps: int = 1000  # generator updates in total
    batch_size: int = 256  # global batch, split evenly over processes
    aux_steps: int = 1  # auxiliary (fake score / discriminator) updates per generator update
    # learning rate per module ("generator", "fake", ...; missing -> generator's); a key "module.prefix"
    # gives the module's parameters whose names start with that prefix a group with its own rate
    lr: dict[str, float] = field(default_factory=lambda: {"generator": 1e-4})
    betas: list[float] = field(default_factory=lambda: [0.0, 0.999])  # Adam betas (SiD/DMD use beta1 = 0)
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    warmup_steps: int = 0  # linear learning-rate warm-up
    schedule: Literal["constant", "cosine"] = "constant"  # learning-rate decay after warm-up
    grad_clip: float = 10.0  # max global grad norm per module (0 = off)
    ema_decay: float = 0.999  # EMA of generator weights, used for evaluation and sampling
    mixed_precision: Literal["no", "bf16"] = "no"  # autocast dtype for the forward passes
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where to train
    seed: int = 0  # seeds all randomness
    max_skipped: int = 20  # abort after this many consecutive non-finite steps
    log_every: int = 10  # CSV/TensorBoard row every N steps
    eval_every: int = 0  # evaluate (EMA) every N steps; 0 = only at the end
    checkpoint_every: int = 500  # checkpoint every N steps (and at the end)
    keep_checkpoints: int = 2  # newest checkpoints kept on disk
    progress: bool = True  # show a progress bar

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("aux_steps", "eval_every", "warmup_steps", "max_skipped"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if any(v <= 0 for v in self.lr.values()):
            raise ValueError(f"train.lr values must be > 0, got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if len(self.betas) != 2:
            raise ValueError(f"train.betas must have two numbers, got {self.betas}")
