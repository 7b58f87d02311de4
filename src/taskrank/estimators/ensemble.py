"""Ensembles: combine any estimators' scores for one target.

* ``ensemble:a+b+...`` — mean of the members' z-scores. Each member's scores are standardised
  over the sources of this target, (x − mean) / std with the population std (a member whose
  scores are all equal contributes 0), then averaged. Scales that differ by orders of magnitude
  (cosines near 1, LogME evidence, log sizes) then weigh the same.
* ``meanrank:a+b+...`` — mean rank: each member ranks the sources (1 = best, ties get their
  average rank), the ensemble scores a source by minus its mean rank, so higher is still better.

Members are any names ``taskrank methods`` lists, composites included
(``ensemble:taskshop:roe+textemb``). A member score that is NaN is an error: it would
otherwise silently drop a source from one member's vote.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from ..models import BaseModel
from .base import Composite
from .registry import UnknownEstimator, get_estimator, register_composite


def zscore(x) -> np.ndarray:
    """(x − mean) / std (population std); all zeros when x is constant."""
    x = np.asarray(x, dtype=np.float64)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def ranks(x) -> np.ndarray:
    """Rank 1 = highest score; ties share their average rank."""
    return rankdata(-np.asarray(x, dtype=np.float64), method="average")


class _Combination(Composite):
    prefix: str

    def __init__(self, model: BaseModel | None = None, members: tuple[str, ...] = (), defaults: dict | None = None):
        super().__init__(model)
        names = [m.strip() for m in members]
        if not names or any(not n for n in names):
            raise UnknownEstimator(f"{self.prefix}: name the members joined by '+', e.g. {self.prefix}:textemb+roe")
        self.members_names = tuple(names)
        self.members = [get_estimator(n, model=self.model, defaults=defaults) for n in names]
        self.name = f"{self.prefix}:{'+'.join(names)}"

    def get_params(self) -> dict:
        return {"members": list(self.members_names)}

    def _checked(self, sources: list[str], member_scores: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for name, scores in zip(self.members_names, member_scores):
            s = np.asarray(scores, dtype=np.float64).ravel()
            if len(s) != len(sources):
                raise ValueError(f"{self.name}: member '{name}' gave {len(s)} scores for {len(sources)} sources")
            if np.isnan(s).any():
                bad = [src for src, v in zip(sources, s) if np.isnan(v)]
                raise ValueError(f"{self.name}: member '{name}' gave no score (NaN) for sources {bad}")
            out.append(s)
        return out

    def combine(self, target: str, sources: list[str], member_scores: list[np.ndarray]) -> np.ndarray:
        return self.aggregate(self._checked(sources, member_scores))

    def aggregate(self, scores: list[np.ndarray]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class Ensemble(_Combination):
    """Mean of per-target z-scores of the members."""

    prefix = "ensemble"
    summary = "mean z-score (per target) of several methods, e.g. ensemble:textemb+roe"

    def aggregate(self, scores: list[np.ndarray]) -> np.ndarray:
        return np.mean([zscore(s) for s in scores], axis=0)


class MeanRank(_Combination):
    """Minus the mean rank of each source over the members (higher = better)."""

    prefix = "meanrank"
    summary = "mean rank over several methods (score = −mean rank), e.g. meanrank:textemb+roe"

    def aggregate(self, scores: list[np.ndarray]) -> np.ndarray:
        return -np.mean([ranks(s) for s in scores], axis=0)


def _factory(cls):
    def make(argument: str, model: BaseModel | None = None, defaults: dict | None = None, **params):
        return cls(model, members=tuple(argument.split("+")), defaults=defaults, **params)

    make.__name__ = f"{cls.prefix}_factory"
    return register_composite(cls.prefix, example="textemb+roe", summary=cls.summary)(make)


ensemble_factory = _factory(Ensemble)
meanrank_factory = _factory(MeanRank)
