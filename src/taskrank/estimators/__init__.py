"""Estimators by name. Each family lives in its own module; all follow :class:`Estimator`."""

from __future__ import annotations

from ..models import BaseModel
from .base import Estimator
from .baselines import RandomEstimator, SizeEstimator
from .text import SEmb, TextEmb

ESTIMATORS: dict[str, type[Estimator]] = {cls.name: cls for cls in (RandomEstimator, SizeEstimator, TextEmb, SEmb)}


class UnknownEstimator(ValueError):
    pass


def get_estimator(name: str, model: BaseModel | None = None, **params) -> Estimator:
    """An estimator by its name (see ``taskrank methods``)."""
    if name not in ESTIMATORS:
        raise UnknownEstimator(f"unknown method '{name}' (available: {', '.join(sorted(ESTIMATORS))})")
    return ESTIMATORS[name](model=model, **params)


__all__ = ["ESTIMATORS", "Estimator", "get_estimator", "UnknownEstimator"]
