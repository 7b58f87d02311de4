"""Estimators by name. Each family lives in its own module, follows :class:`Estimator`, and
registers itself (``@register`` beside a class, ``@register_composite`` beside a factory for the
names ``prefix:argument`` such as ``taskshop:roe``; see :mod:`.registry`). Importing this package
imports every family module, so ``ESTIMATORS`` and ``COMPOSITES`` are complete.
"""

from __future__ import annotations

from . import (  # noqa: F401  (imported to register their estimators)
    baselines,
    ensemble,
    esm,
    fisher,
    frozen,
    learned,
    llm,
    roe,
    source_models,
    taskshop,
    text,
    tuned,
)
from .base import Composite, Estimator
from .registry import (COMPOSITES, ESTIMATORS, UnknownEstimator, get_estimator, method_names, register,
                       register_composite)

__all__ = ["COMPOSITES", "ESTIMATORS", "Composite", "Estimator", "UnknownEstimator", "get_estimator", "method_names",
           "register", "register_composite"]
