"""Rank a pool's sources for one target with one estimator."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import resolve
from .estimators import Estimator
from .ordering import best_first
from .pool import Pool
from .store import Store
from .tasks import Task


@dataclass
class Ranking:
    """Sources best first, with scores; ``excluded`` names pool tasks that are the target itself,
    ``unscored`` the sources of a type the method is not defined for (NaN scores, ranked last)."""

    table: pd.DataFrame
    method: str
    excluded: list[str] = field(default_factory=list)
    unscored: list[str] = field(default_factory=list)


def score_sources(target: Task, pool: Pool, estimator: Estimator, sources: list[dict],
                  cache: Store | None = None) -> np.ndarray:
    """One score per pool task in ``sources`` (NaN where the method is undefined for a source);
    composites score their members first."""
    return resolve.score_sources(estimator, target, sources, pool.artefacts, cache, pool.store)


def rank(target: Task, pool: Pool, estimator: Estimator, cache: Store | None = None) -> Ranking:
    """Score every pool task except the target itself (same fingerprint or name)."""
    keep = [t for t in pool.tasks if t["fingerprint"] != target.fingerprint and t["name"] != target.name]
    excluded = [t["name"] for t in pool.tasks if t not in keep]
    scores = score_sources(target, pool, estimator, keep, cache)
    idx = best_first([t["name"] for t in keep], scores)
    table = pd.DataFrame({
        "rank": np.arange(1, len(idx) + 1),
        "source": [keep[i]["name"] for i in idx],
        "score": scores[idx],
        "group": [keep[i].get("group") or "" for i in idx],
        "size": [keep[i]["size"] for i in idx],
    })
    unscored = [t["name"] for t, s in zip(keep, scores) if np.isnan(s)]
    return Ranking(table, estimator.name, excluded, unscored)
