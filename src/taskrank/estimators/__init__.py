"""Estimators by name. Each family lives in its own module; all follow :class:`Estimator`.

Plain names map to classes (``ESTIMATORS``); composite names ``prefix:argument`` (for example
``taskshop:roe``) map to factories in ``COMPOSITES`` that build an estimator from the argument.
"""

from __future__ import annotations

from collections.abc import Callable

from ..models import BaseModel
from .base import Composite, Estimator
from .baselines import RandomEstimator, SizeEstimator
from .esm import EsmLogme
from .source_models import LeepEstimator, LogmeEstimator, NceEstimator
from .text import SEmb, TextEmb
from .tuned import TUNED_ESTIMATORS
from .fisher import TaskEmb
from .baselines import CurveGrad, VocabOverlap

ESTIMATORS: dict[str, type[Estimator]] = {cls.name: cls for cls in (
    RandomEstimator, SizeEstimator, TextEmb, SEmb,
    EsmLogme, LogmeEstimator, LeepEstimator, NceEstimator,
    *TUNED_ESTIMATORS, TaskEmb, CurveGrad, VocabOverlap,
)}
# prefix -> factory(argument, model) for names like "taskshop:roe"
COMPOSITES: dict[str, Callable[[str, BaseModel | None], Estimator]] = {}


class UnknownEstimator(ValueError):
    pass


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


__all__ = ["COMPOSITES", "ESTIMATORS", "Composite", "Estimator", "UnknownEstimator", "get_estimator", "method_names"]


# --- RoE, TaskShop and ensembles (registered here, after get_estimator, which their factories use)
from .ensemble import ensemble_factory, meanrank_factory  # noqa: E402
from .roe import RoE  # noqa: E402
from .taskshop import taskshop_factory  # noqa: E402

ESTIMATORS[RoE.name] = RoE
COMPOSITES.update({"taskshop": taskshop_factory, "ensemble": ensemble_factory, "meanrank": meanrank_factory})

from .learned import SameType, learned_factory  # noqa: E402

ESTIMATORS[SameType.name] = SameType
COMPOSITES["learned"] = learned_factory
