"""Estimators by name. A class registers itself with ``@register`` beside its definition; a
composite family (names ``prefix:argument``, e.g. ``taskshop:roe``) registers the factory that
builds it from the argument with ``@register_composite``. Adding a method touches its own module
(and its test) only: ``taskrank.estimators`` imports every family module, which registers it.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import TaskrankError
from ..models import BaseModel
from .base import Composite, Estimator

ESTIMATORS: dict[str, type[Estimator]] = {}
# prefix -> factory(argument, model, defaults=..., **params) for names like "taskshop:roe"
COMPOSITES: dict[str, Callable[..., Estimator]] = {}


class UnknownEstimator(TaskrankError):
    """A method name, or a parameter of one, that taskrank does not know."""


def register(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if cls.name in ESTIMATORS and ESTIMATORS[cls.name] is not cls:
        raise RuntimeError(f"two estimators are named '{cls.name}': {ESTIMATORS[cls.name].__qualname__} and "
                           f"{cls.__qualname__}")
    ESTIMATORS[cls.name] = cls
    return cls


def register_composite(prefix: str, example: str, summary: str = ""):
    """Function decorator: make ``factory`` build the estimators named ``prefix:argument``;
    ``example`` is the argument ``taskrank methods`` shows."""
    def decorate(factory):
        if prefix in COMPOSITES and COMPOSITES[prefix] is not factory:
            raise RuntimeError(f"two composite factories for the prefix '{prefix}'")
        factory.example = example
        factory.summary = summary or getattr(factory, "summary", "")
        COMPOSITES[prefix] = factory
        return factory
    return decorate


def method_names() -> list[str]:
    """Every name usable with --method (composites shown with their default argument)."""
    return sorted(ESTIMATORS) + sorted(f"{prefix}:{getattr(f, 'example', '...')}" for prefix, f in COMPOSITES.items())


def get_estimator(name: str, model: BaseModel | None = None, defaults: dict | None = None, **params) -> Estimator:
    """An estimator by its name (see ``taskrank methods``). ``defaults`` maps method names (or a
    composite's prefix) to parameters a pool prefers (``Pool.method_params``, e.g. TaskWeb's RoE
    inputs on the TaskWeb pool); they reach a composite's members too; ``params`` override them."""
    defaults = defaults or {}
    prefix, _, argument = name.partition(":")
    if argument and prefix in COMPOSITES:
        return COMPOSITES[prefix](argument, model, defaults=defaults, **{**defaults.get(prefix, {}), **params})
    name, *settings = name.split(",")  # 'roe,inputs=examples': parameters ride in the name
    if name not in ESTIMATORS:
        raise UnknownEstimator(f"unknown method '{name}' (available: {', '.join(method_names())})")
    for piece in settings:
        key, eq, value = piece.partition("=")
        if not eq or not key.strip():
            raise UnknownEstimator(f"{name}: cannot read parameter {piece!r}; use {name},key=value")
        params[key.strip()] = _value(value.strip())
    if issubclass(ESTIMATORS[name], Composite):  # e.g. tupate-ensemble: its members take the defaults
        params["defaults"] = defaults
    try:
        return ESTIMATORS[name](model=model, **{**defaults.get(name, {}), **params})
    except TypeError as e:  # an unknown keyword
        raise UnknownEstimator(f"{name}: {str(e).split(': ', 1)[-1]}") from None


def _value(text: str):
    """A parameter written in a method name: int, float, bool or string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)
