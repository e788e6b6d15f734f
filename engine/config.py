"""Typed dataclass configs built from plain dicts: unknown keys and wrong types fail early,
with one line naming the key, the value and what is allowed. Also `TrainConfig`, the `train:`
section every run has. Nothing here imports torch, so a config typo is reported at once."""
from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal


class ConfigError(ValueError):
    """A config key, type or value is not allowed."""


class OptionError(ValueError):
    """A registry option's value is not allowed; `option` names it, so the error can name its config key
    (`config key distill.divergence.c must be > 0, got -1.0`)."""

    def __init__(self, option: str, message: str):
        self.option = option
        super().__init__(message)


def build(cls, data: dict | None, where: str, base: Any = None) -> Any:
    """Instantiate dataclass `cls` from `data`, checking keys and types recursively.

    Keys `data` leaves out take their value from `base` (an instance of `cls`) when given, else the
    class defaults. A nested section starts from its field's own default: a backend that declares
    `distill: ContinuousRecipe = field(default_factory=lambda: ContinuousRecipe(divergence=...))` keeps
    its defaults for every key a config does not set."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"config section {where or 'top level'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(f"unknown config key {_key(where, key)}{_moved(hints, key, where)}; "
                              f"allowed: {', '.join(fields)}")
    kwargs = {}
    for k, v in data.items():
        default = getattr(base, k) if base is not None else _default(fields[k])
        kwargs[k] = _coerce(hints[k], v, _key(where, k), default)
        check_bounds(fields[k], kwargs[k], _key(where, k))
    if base is not None:
        kwargs.update({k: copy.deepcopy(getattr(base, k)) for k, f in fields.items() if k not in kwargs and f.init})
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config section {where or 'top level'}: {e}") from None


def bounded(default: Any = dataclasses.MISSING, lo: float | None = None, hi: float | None = None, *,
            lo_open: bool = False, hi_open: bool = False, factory: Any = dataclasses.MISSING,
            length: int | None = None, meaning: str = "") -> Any:
    """A dataclass field whose value (each value, for lists and dicts) must lie in [lo, hi] (open ends with
    lo_open / hi_open) and, for a list, hold `length` values (described as `meaning`, e.g. "[start, end]");
    `build` checks it, and a config outside it fails naming the key and the range."""
    bounds = {"bounds": (lo, hi, lo_open, hi_open), "length": (length, meaning)}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=bounds)
    return field(default=default, metadata=bounds)


def check_bounds(f: dataclasses.Field, value: Any, where: str) -> None:
    """Raise a one-line ConfigError when `value` (or an element of it) lies outside the field's bounds."""
    if "bounds" not in f.metadata or value is None:
        return
    lo, hi, lo_open, hi_open = f.metadata["bounds"]
    length, meaning = f.metadata["length"]
    if length is not None and isinstance(value, (list, tuple)) and len(value) != length:
        raise ConfigError(f"config key {where} must be {meaning or 'a list'} ({length} numbers), got {list(value)}")
    values = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if v is None:
            continue
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or \
                (lo is not None and (v < lo or (lo_open and v == lo))) or \
                (hi is not None and (v > hi or (hi_open and v == hi))):
            lower = "" if lo is None else f"{'>' if lo_open else '>='} {lo:g}"
            upper = "" if hi is None else f"{'<' if hi_open else '<='} {hi:g}"
            rule = " and ".join(r for r in (lower, upper) if r)
            raise ConfigError(f"config key {where} must be {rule}, got {value!r}")


def _moved(hints: dict, key: str, where: str) -> str:
    """' (did you mean where.section.key?)' when a nested section has that key, else ''."""
    for name, tp in hints.items():
        for cand in (tp, *typing.get_args(tp)):
            if dataclasses.is_dataclass(cand) and key in {f.name for f in dataclasses.fields(cand)}:
                return f" (did you mean {_key(_key(where, name), key)}?)"
    return ""


def _yaml_number(text: str) -> Any:
    """A number written without the dot YAML 1.1 wants (`1e-4`, `3E5`), else the text unchanged."""
    import re

    if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text.strip()):
        number = float(text)
        return int(number) if number.is_integer() and "e" not in text.lower() and "." not in text else number
    return text


def _key(where: str, key: str) -> str:
    """The dotted key a user writes (and passes to --set): `where` is "" for a backend's own section."""
    return f"{where}.{key}" if where else key


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
    if tp in (int, float) and isinstance(value, str):
        value = _yaml_number(value)  # PyYAML reads 1e-4 (no dot) as a string; YAML 1.2 and JSON read a number
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
            return int(value)
        raise ConfigError(f"config key {where} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"config key {where} must be a finite number, got {value!r}")
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
        if not all(parts):
            raise ConfigError(f"--set {item!r}: the key {key!r} has an empty part; write --set section.key=value")
        try:
            value = yaml.load(raw, Loader=UniqueKeyLoader)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: {raw!r} is not valid YAML ({' '.join(str(e).split())[:120]})") from None
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p} is not a section")
        node[parts[-1]] = value
    return data


try:
    import yaml as _yaml

    class UniqueKeyLoader(_yaml.SafeLoader):
        """safe_load that refuses a key given twice in one mapping (YAML would silently keep the last)."""

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise _yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                             key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)
except ImportError:  # pragma: no cover - pyyaml is a dependency
    UniqueKeyLoader = None


@dataclass
class TrainConfig:
    """The `train:` section: the loop's settings, the same for every modality."""

    steps: int = bounded(1000, lo=1)  # generator updates in total
    batch_size: int = bounded(256, lo=1)  # global batch, split evenly over processes
    aux_steps: int = bounded(1, lo=0, hi=1000)  # auxiliary (fake score / discriminator) updates per generator step
    # learning rate per module ("generator", "fake", ...; missing -> generator's); a key "module.prefix"
    # gives the module's parameters whose names start with that prefix a group with its own rate
    lr: dict[str, float] = bounded(lo=0, hi=10, lo_open=True, factory=lambda: {"generator": 1e-4})
    betas: list[float] = bounded(lo=0, hi=1, hi_open=True, factory=lambda: [0.0, 0.999], length=2,
                                 meaning="[beta1, beta2]")  # Adam betas
    weight_decay: float = bounded(0.0, lo=0)  # AdamW decoupled weight decay
    warmup_steps: int = bounded(0, lo=0)  # linear learning-rate warm-up
    schedule: Literal["constant", "cosine"] = "constant"  # learning-rate decay after warm-up
    grad_clip: float = bounded(10.0, lo=0)  # max global grad norm per module (0 = off)
    ema_decay: float = bounded(0.999, lo=0, hi=1, hi_open=True)  # EMA of generator weights (evaluation, sampling)
    # autocast dtype for the forward passes; fp16 adds a dynamic loss scale per optimised module
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    # how the trained networks are spread over processes: every process holds them whole and gradients are
    # all-reduced ("replicated"), or each holds a shard of weights, gradients and optimizer state (FSDP2)
    parallel: Literal["replicated", "fsdp"] = "replicated"
    shard_teacher: bool = False  # with parallel fsdp: also shard the frozen teacher (else every process holds it)
    activation_checkpointing: bool = False  # recompute the blocks' activations in backward instead of storing them
    compile: bool = False  # torch.compile the generator's and the teacher's forward passes
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where to train
    threads: int | None = bounded(None, lo=1)  # intra-op CPU threads (torch.set_num_threads); None = torch's
    seed: int = bounded(0, lo=0, hi=2**63 - 1)  # seeds all randomness
    max_skipped: int = bounded(20, lo=0)  # abort after this many consecutive non-finite steps
    log_every: int = bounded(10, lo=1)  # CSV/TensorBoard row every N steps
    eval_every: int = bounded(0, lo=0)  # evaluate (EMA) every N steps; 0 = only at the end
    checkpoint_every: int = bounded(500, lo=1)  # checkpoint every N steps (and at the end, and on SIGINT/SIGTERM)
    keep_checkpoints: int = bounded(2, lo=1)  # newest checkpoints kept on disk
    progress: bool = True  # show a progress bar
    # start from another run (its directory, or a checkpoint folder): the generator from its EMA, the other
    # modules it has from their weights; optimiser state and step start fresh (reward post-training)
    init_from: str | None = None

    def __post_init__(self):
        for f in dataclasses.fields(self):  # also when built in Python rather than from a config
            check_bounds(f, getattr(self, f.name), f"train.{f.name}")
        if self.shard_teacher and self.parallel != "fsdp":
            raise ConfigError("config key train.shard_teacher = true needs train.parallel = fsdp (a replicated run "
                              "holds the teacher whole on every process)")


# keys a resume may change: how long, how often and how a run reports, not what it trains
RESUMABLE = ("train.steps", "train.log_every", "train.eval_every", "train.checkpoint_every", "train.keep_checkpoints",
             "train.progress", "train.max_skipped", "train.device", "train.threads", "train.init_from",
             "train.parallel", "train.shard_teacher", "train.activation_checkpointing", "train.compile", "eval")


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and scalars are leaves."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


def changed_keys(old: dict, new: dict, keep: tuple[str, ...] = RESUMABLE) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two resolved configs, except those under `keep`."""
    a, b = flatten(old), flatten(new)
    out = {}
    for k in sorted(set(a) | set(b)):
        if any(k == p or k.startswith(p + ".") for p in keep):
            continue
        if a.get(k, "<absent>") != b.get(k, "<absent>"):
            out[k] = (a.get(k, "<absent>"), b.get(k, "<absent>"))
    return out
