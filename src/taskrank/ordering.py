"""The one ordering of sources used everywhere: score descending, ties by name ascending, a NaN
score (a method undefined for that source) last. Deterministic, so two runs never disagree on a
tie, and the same in rankings, metrics, reports, TaskShop and selection."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _name_ranks(names) -> np.ndarray:
    names = np.asarray(list(names), dtype=object)
    try:
        by_name = np.argsort(names, kind="stable")
    except TypeError:  # mixed name types (e.g. ints and strings): compare their string forms
        by_name = np.argsort(names.astype(str), kind="stable")
    ranks = np.empty(len(names), dtype=np.int64)
    ranks[by_name] = np.arange(len(names))
    return ranks


def best_first(names: Sequence, scores) -> np.ndarray:
    """Indices of ``names`` best first: score descending, ties by name ascending, NaN last."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(s) != len(names):
        raise ValueError(f"{len(names)} names but {len(s)} scores")
    nan = np.isnan(s)
    return np.lexsort((_name_ranks(names), np.where(nan, 0.0, -s), nan))


def sorted_best_first(names: Sequence, scores) -> list:
    """The names themselves, best first (see :func:`best_first`)."""
    names = list(names)
    return [names[i] for i in best_first(names, scores)]


def nan_last(scores) -> np.ndarray:
    """The scores with every NaN replaced by a number below all others, so a consumer that needs
    finite scores (the metrics) orders them exactly as :func:`best_first` does."""
    s = np.asarray(scores, dtype=np.float64)
    finite = s[np.isfinite(s)]
    return np.where(np.isnan(s), finite.min() - 1.0 if len(finite) else 0.0, s)
