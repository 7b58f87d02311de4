"""Rank a pool's sources for one target with one estimator."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .estimators import Estimator
from .estimators.base import Composite
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


def order(sources: list[str], scores: np.ndarray) -> np.ndarray:
    """Indices best first; ties broken by source name so every ranking is deterministic; a NaN
    score (a method undefined for that source) ranks last."""
    keys = np.where(np.isnan(scores), np.inf, -np.asarray(scores, dtype=np.float64))
    return np.array(sorted(range(len(sources)), key=lambda i: (keys[i], sources[i])), dtype=int)


def target_artefact(estimator: Estimator, target: Task, cache: Store | None, pool: Pool | None = None):
    """The target side's artefact: the pool's own when the target is a pool task and the method
    prepares targets as it prepares sources (so evaluating on a pool's tasks tunes nothing again),
    else from the user's cache, else prepared now."""
    estimator.check_task(target)
    if pool is not None and estimator.target_is_source:
        artefact = pool.store.load(estimator.artefact_id, estimator.model.model_id, target.fingerprint)
        if artefact is not None:
            return artefact
    key = (estimator.target_artefact_id, estimator.model.model_id, target.fingerprint)
    artefact = cache.load(*key) if cache is not None else None
    if artefact is None:
        artefact = estimator.prepare_target(target)
        if cache is not None:
            cache.save(*key, artefact)
    return artefact


def score_sources(target: Task, pool: Pool, estimator: Estimator, sources: list[dict],
                  cache: Store | None = None) -> np.ndarray:
    """One score per pool task in ``sources``; composites score their members first."""
    if isinstance(estimator, Composite):
        member_scores = [score_sources(target, pool, m, sources, cache) for m in estimator.members]
        scores = estimator.combine(target.name, [t["name"] for t in sources], member_scores)
    else:
        usable = [i for i, t in enumerate(sources) if estimator.supports(t.get("type", "classification"))]
        scores = np.full(len(sources), np.nan)
        if usable:
            artefacts = pool.artefacts(estimator, [sources[i] for i in usable])
            scores[usable] = estimator.score(target_artefact(estimator, target, cache, pool), artefacts)
    return np.asarray(scores, dtype=np.float64)


def rank(target: Task, pool: Pool, estimator: Estimator, cache: Store | None = None) -> Ranking:
    """Score every pool task except the target itself (same fingerprint or name)."""
    keep = [t for t in pool.tasks if t["fingerprint"] != target.fingerprint and t["name"] != target.name]
    excluded = [t["name"] for t in pool.tasks if t not in keep]
    scores = score_sources(target, pool, estimator, keep, cache)
    idx = order([t["name"] for t in keep], scores)
    table = pd.DataFrame({
        "rank": np.arange(1, len(idx) + 1),
        "source": [keep[i]["name"] for i in idx],
        "score": scores[idx],
        "group": [keep[i].get("group") or "" for i in idx],
        "size": [keep[i]["size"] for i in idx],
    })
    unscored = [t["name"] for t, s in zip(keep, scores) if np.isnan(s)]
    return Ranking(table, estimator.name, excluded, unscored)
