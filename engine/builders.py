"""Turn `{name: ..., option: value}` config sections into objects from a registry, checking the
name and every option against the constructor's signature before anything runs."""
from __future__ import annotations

import inspect
import typing
from typing import Any

from .config import ConfigError, OptionError
from .registry import Registry


def options_of(factory, exclude=()) -> list[str]:
    """Keyword options a registered class or factory function accepts (its constructor signature)."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    return [name for name, p in inspect.signature(target).parameters.items()
            if name not in ("self", *exclude) and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def build_named(registry: Registry, section: dict[str, Any] | str, where: str, **extra):
    """registry[section['name']](**options, **extra); a bare string is a name with no options."""
    if isinstance(section, str):
        section = {"name": section}
    if not isinstance(section, dict) or "name" not in section:
        raise ConfigError(f"config key {where} needs a 'name'; choose one of: {', '.join(registry.names())}")
    options = {k: v for k, v in section.items() if k != "name"}
    try:
        factory = registry.get(section["name"])
    except KeyError as e:
        raise ConfigError(f"config key {where}.name: {e.args[0]}") from None
    check_options(factory, options, where, repr(section["name"]), exclude=extra)
    options = coerce_options(factory, options, where)
    try:
        return factory(**options, **extra)
    except OptionError as e:
        raise ConfigError(f"config key {where}.{e.option} {e}") from None
    except (TypeError, ValueError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise ConfigError(f"config key {where}: {msg}") from None


def check_options(factory, options: dict[str, Any], where: str, what: str, exclude=()) -> None:
    """Every key of `options` must be a keyword option of `factory` (or one of a tuple of option names),
    else a one-line ConfigError."""
    allowed = list(factory) if isinstance(factory, (tuple, list)) else options_of(factory, exclude)
    for k in options:
        if k not in allowed:
            raise ConfigError(f"config key {where}.{k} is not an option of {what}; "
                              f"allowed: {', '.join(allowed) or 'none'}")


def coerce_options(factory, options: dict[str, Any], where: str) -> dict[str, Any]:
    """Options converted to the types the factory's signature declares (numbers finite, lists as lists), with
    the config layer's one-line errors: a string where a number is expected fails here, not in a loss."""
    from .config import _coerce

    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # annotations that do not resolve: take the options as given
        return dict(options)
    return {k: _coerce(hints[k], v, f"{where}.{k}") if k in hints else v for k, v in options.items()}
