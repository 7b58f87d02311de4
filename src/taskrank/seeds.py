"""Seed variance of rankings (a finding of 2407.16245: tuned task embeddings, and so the rankings
they give, change with the tuning seed).

``seed_variance`` ranks the same sources for one target once per seed with any estimator that has a
``seed`` parameter (the tuned ones: tupate-*, prompt-*, taskemb, curvegrad; composites such as
tupate-ensemble pass it to their members) and reports, per source, the mean score, its spread and
rank statistics, plus how often the top-k changes between seeds.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from .estimators import Estimator, get_estimator
from . import resolve
from .models import BaseModel
from .ordering import best_first
from .store import Store
from .tasks import Task


@dataclass
class SeedVariance:
    """``table``: one row per source, best mean score first (mean, std, min, max of the score; mean
    and std of its rank; ``top_k_share``: share of seeds with the source in the top k).
    ``scores``: seeds x sources. ``top_k``: each seed's top-k, best first."""

    table: pd.DataFrame
    scores: pd.DataFrame
    top_k: dict[int, list[str]]
    k: int
    summary: dict = field(default_factory=dict)


def with_seed(estimator: Estimator, seed: int) -> Estimator:
    """The same estimator (same parameters and base model) with another seed."""
    params = estimator.get_params()
    if "seed" not in params:
        raise ValueError(f"{estimator.name} has no seed parameter, so it has no seed variance")
    accepted = inspect.signature(type(estimator).__init__).parameters
    return type(estimator)(model=estimator.model, **{k: v for k, v in {**params, "seed": seed}.items() if k in accepted})


def _scores(estimator: Estimator, target: Task, sources: list[Task], store: Store | None) -> np.ndarray:
    """One seed's scores; sources' artefacts under the source id and the target's under the target
    id in ``store`` (found there, else prepared and kept), as ranking files them."""
    metas = [s.metadata() for s in sources]
    return resolve.score_sources(estimator, target, metas, resolve.prepared(store, sources), cache=store, store=store)


def seed_variance(estimator: Estimator | str, target: Task, sources: list[Task], seeds=(0, 1, 2), k: int = 3,
                  store: Store | None = None, model: BaseModel | None = None, **params) -> SeedVariance:
    """Rank ``sources`` for ``target`` once per tuning seed; ``store`` caches the artefacts (a tuned
    artefact per task and seed), so a later call with more seeds only tunes the new ones."""
    from scipy.stats import spearmanr

    if isinstance(estimator, str):
        estimator = get_estimator(estimator, model=model, **params)
    names = [s.name for s in sources]
    seeds = list(seeds)
    matrix = np.stack([_scores(with_seed(estimator, seed), target, sources, store) for seed in seeds])
    ranks = np.zeros_like(matrix)
    top_k: dict[int, list[str]] = {}
    for row, seed in enumerate(seeds):
        idx = best_first(names, matrix[row])
        ranks[row, idx] = np.arange(1, len(names) + 1)
        top_k[seed] = [names[i] for i in idx[:k]]
    in_top = np.array([[name in top_k[seed] for name in names] for seed in seeds])
    table = pd.DataFrame({
        "source": names,
        "mean": matrix.mean(0),
        "std": matrix.std(0, ddof=1) if len(seeds) > 1 else np.zeros(len(names)),
        "min": matrix.min(0),
        "max": matrix.max(0),
        "mean_rank": ranks.mean(0),
        "rank_std": ranks.std(0, ddof=1) if len(seeds) > 1 else np.zeros(len(names)),
        "top_k_share": in_top.mean(0),
    })
    table = table.iloc[best_first(names, table["mean"].to_numpy())].reset_index(drop=True)
    pairs = list(combinations(range(len(seeds)), 2))
    sets = [frozenset(top_k[s]) for s in seeds]
    modal = max(set(sets), key=lambda s: (sets.count(s), sorted(s)))
    summary = {
        "estimator": estimator.name,
        "target": target.name,
        "seeds": seeds,
        "k": k,
        # share of seed pairs whose top-k sets differ ("how often the top-k changes")
        "top_k_changed": float(np.mean([sets[a] != sets[b] for a, b in pairs])) if pairs else 0.0,
        # share of seeds whose top-k set differs from the most common one
        "top_k_off_modal": float(np.mean([s != modal for s in sets])),
        "distinct_top_k": len(set(sets)),
        "top1_changed": float(np.mean([top_k[seeds[a]][0] != top_k[seeds[b]][0] for a, b in pairs])) if pairs else 0.0,
        "mean_spearman": float(np.mean([spearmanr(matrix[a], matrix[b])[0] for a, b in pairs])) if pairs and len(names) > 2 else float("nan"),
    }
    return SeedVariance(table, pd.DataFrame(matrix, index=seeds, columns=names), top_k, k, summary)
