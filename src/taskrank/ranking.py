"""Rank a pool's sources for one target with one estimator."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .estimators import Estimator
from .pool import Pool
from .store import Store
from .tasks import Task


@dataclass
class Ranking:
    """Sources best first, with scores; ``excluded`` names pool tasks that are the target itself."""

    table: pd.DataFrame
    method: str
    excluded: list[str] = field(default_factory=list)


def order(sources: list[str], scores: np.ndarray) -> np.ndarray:
    """Indices best first; ties broken by source name so every ranking is deterministic."""
    return np.array(sorted(range(len(sources)), key=lambda i: (-scores[i], sources[i])), dtype=int)


def target_artefact(estimator: Estimator, target: Task, cache: Store | None):
    key = (estimator.artefact_id, estimator.model.model_id, target.fingerprint)
    artefact = cache.load(*key) if cache is not None else None
    if artefact is None:
        artefact = estimator.prepare_target(target)
        if cache is not None:
            cache.save(*key, artefact)
    return artefact


def rank(target: Task, pool: Pool, estimator: Estimator, cache: Store | None = None) -> Ranking:
    """Score every pool task except the target itself (same fingerprint or name)."""
    keep = [t for t in pool.tasks if t["fingerprint"] != target.fingerprint and t["name"] != target.name]
    excluded = [t["name"] for t in pool.tasks if t not in keep]
    sources = pool.artefacts(estimator, keep)
    scores = np.asarray(estimator.score(target_artefact(estimator, target, cache), sources), dtype=np.float64)
    idx = order([t["name"] for t in keep], scores)
    table = pd.DataFrame({
        "rank": np.arange(1, len(idx) + 1),
        "source": [keep[i]["name"] for i in idx],
        "score": scores[idx],
        "group": [keep[i].get("group") or "" for i in idx],
        "size": [keep[i]["size"] for i in idx],
    })
    return Ranking(table, estimator.name, excluded)
