"""Ranking metrics for source-task selection, every paper's variant by name.

Each paper computes "NDCG" and "Regret@k" differently, so each variant is a named option
and says where it comes from. All functions judge one target at a time and take the
predicted scores and the gold values as pandas Series keyed by source name (a dict works
too); they refuse inputs whose source sets differ, so nothing can be misaligned. Plain
arrays are accepted only when *both* inputs are arrays of the same length (the position is
then the source's name).

Conventions (the same everywhere):

* Higher predicted score = better source. A predicted order sorts by score, descending, and
  breaks ties by source name, ascending (TaskWeb's evaluation does the same: a stable sort of
  the alphabetical task list). Gold orders use the same rule. Only ρ and TROR average over
  ties instead, as their definitions ask.
* ``k`` larger than the pool is clipped to the pool size; ``k < 1`` is an error.
* Values are fractions (NDCG 1.0 is perfect, Regret 0.0 is perfect); the papers print NDCG
  and Regret ×100.
* NaN in the inputs is an error: drop or fill before scoring.
* Training seeds: the functions above judge one set of results. :func:`over_seeds` applies any
  of them to results with several training seeds, either per seed and then averaged (the ESM
  paper, 2407.16245) or once on the seed mean (TaskWeb, taskrank's evaluation).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from .ordering import sorted_best_first

__all__ = [
    "NDCG_VARIANTS",
    "REGRET_VARIANTS",
    "predicted_order",
    "ndcg",
    "regret_at_k",
    "rho",
    "tror",
    "improvement_ratio",
    "top_k_performance",
    "precision_at_k",
    "spearman",
    "kendall",
    "evaluate",
    "random_expectation",
    "AGGREGATIONS",
    "METRICS",
    "per_seed_values",
    "over_seeds",
]

NDCG_VARIANTS = ("taskweb", "esm", "uds", "linear")
REGRET_VARIANTS = ("mean", "max")


# ----------------------------------------------------------------------------- helpers


def _series(x, what: str) -> pd.Series:
    if isinstance(x, pd.Series):
        s = x.astype(float)
    elif isinstance(x, Mapping):
        s = pd.Series(dict(x), dtype=float)
    else:
        s = pd.Series(np.asarray(x, dtype=float).ravel())
    if s.index.has_duplicates:
        dup = s.index[s.index.duplicated()].unique().tolist()
        raise ValueError(f"{what}: duplicate source names {dup}")
    if s.isna().any():
        raise ValueError(f"{what}: NaN for sources {s.index[s.isna()].tolist()}")
    if len(s) == 0:
        raise ValueError(f"{what}: no sources")
    return s


def _align(pred, gold, pred_name="pred", gold_name="gold") -> tuple[pd.Series, pd.Series]:
    """Both as float Series over the same sources (in pred's order), or a clear error."""
    keyed = [isinstance(v, (pd.Series, Mapping)) for v in (pred, gold)]
    if keyed[0] != keyed[1]:
        raise TypeError(
            f"{pred_name} and {gold_name} must both be keyed by source (Series/dict) or both be "
            "plain arrays; mixing them could silently misalign sources"
        )
    p, g = _series(pred, pred_name), _series(gold, gold_name)
    if not keyed[0] and len(p) != len(g):
        raise ValueError(f"{pred_name} has {len(p)} values, {gold_name} has {len(g)}")
    missing, extra = g.index.difference(p.index), p.index.difference(g.index)
    if len(missing) or len(extra):
        raise ValueError(
            f"{pred_name} and {gold_name} cover different sources: "
            f"missing from {pred_name}: {missing.tolist()}; missing from {gold_name}: {extra.tolist()}"
        )
    return p, g.reindex(p.index)


def predicted_order(scores) -> list:
    """Source names best first: score descending, ties by source name ascending."""
    s = _series(scores, "scores")
    return sorted_best_first(s.index, s.to_numpy())


def _clip_k(k: int | None, n: int) -> int:
    if k is None:
        return n
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return min(int(k), n)


def _discounts(n: int) -> np.ndarray:
    return np.log2(np.arange(n) + 2.0)


# ----------------------------------------------------------------------------- NDCG


def _gains(gold: pd.Series, variant: str) -> pd.Series:
    """Gain per source, up to one positive factor shared by all sources (NDCG ignores it).

    Exponential gains 2^x − 1 are computed as 2^(x−M) − 2^(−M) with M = max x, so that large
    pools (TaskWeb relevance up to n) or 100·perf do not overflow.
    """
    if variant == "taskweb":
        order = predicted_order(gold)
        n = len(order)
        x = pd.Series(n - np.arange(n, dtype=float), index=order).reindex(gold.index)
    elif variant == "esm":
        if (gold.abs() > 1).any():
            raise ValueError(
                "ndcg variant 'esm' expects performance in [0, 1] (gain 2^(100·perf) − 1); got "
                f"values up to {gold.abs().max():g}. Percentages? use variant='uds'"
            )
        x = 100.0 * gold
    elif variant == "uds":
        if (gold.abs() <= 1).all() and (gold != 0).any():
            warnings.warn(
                "ndcg variant 'uds' expects scores on a 0–100 scale but all values are within "
                "[-1, 1]; did you mean variant='esm'?",
                stacklevel=3,
            )
        x = gold.copy()
    elif variant == "linear":
        return gold.copy()
    else:
        raise ValueError(f"unknown ndcg variant {variant!r}; choose from {NDCG_VARIANTS}")
    m = max(float(x.max()), 0.0)
    return np.exp2(x - m) - np.exp2(-m)


def _dcg(gains_in_order: np.ndarray, k: int) -> float:
    return float(np.sum(gains_in_order[:k] / _discounts(k)))


def ndcg(pred, gold, variant: str = "taskweb", k: int | None = None) -> float:
    """NDCG of the predicted order against gold values, one paper's variant.

    Discount log2(i + 2) for 0-based position i in every variant; DCG / ideal DCG, where the
    ideal order sorts by gold. ``k`` cuts both at the top k (None = all sources, as all three
    papers do).

    variant
      * ``"taskweb"`` — TaskWeb (Kim et al. 2023), ``taskshop/metrics.py``: relevance
        rel = n − (0-based rank of the source in the gold order), gain 2^rel − 1. Only the gold
        *order* matters (gold ties broken by name).
      * ``"esm"`` — ESM-LogME (Schulte et al. 2024), hf-dataset-selector branch
        ``emnlp-submission``, ``utils/eval_utils.py``: gain 2^(100·perf) − 1 with perf in
        [0, 1] (error if any |perf| > 1: percentages). The caller drops the target's own row.
        The paper prints ×100.
      * ``"uds"`` — 2407.16245 (Lin et al. 2024), uds-lsv ``seq2seq/dev/get_ndcg.py``: gain
        2^score − 1 with score on a 0–100 scale (same number as "esm" on perf = score/100).
      * ``"linear"`` — gain = gold value itself.

    Negative gains: "taskweb" gains are always ≥ 1. "esm"/"uds" gains are 2^x − 1, in (−1, 0)
    for negative x, and "linear" uses negative values as they are; the papers' code does the
    same. The result can then drop below 0; it never exceeds 1 (the ideal order maximises DCG
    for any real gains). If the ideal DCG is ≤ 0 (no positive gain at all) NDCG is undefined
    and NaN is returned — shift gold (e.g. ``gold - gold.min()``) if you need a number.
    """
    p, g = _align(pred, gold)
    n = len(p)
    kk = _clip_k(k, n)
    gains = _gains(g, variant)
    ideal = _dcg(gains.reindex(predicted_order(g)).to_numpy(), kk)
    if not ideal > 0:
        return math.nan
    return _dcg(gains.reindex(predicted_order(p)).to_numpy(), kk) / ideal


# ----------------------------------------------------------------------------- Regret@k


def regret_at_k(
    pred,
    perf,
    k: int = 5,
    variant: str = "mean",
    rank_by=None,
    baseline: float | None = None,
) -> float:
    """Relative loss in target performance from trusting the predicted top-k.

    ``perf``: the target's performance after transfer from each source (e.g. mean over seeds).

    variant
      * ``"mean"`` — TaskWeb, ``taskshop/taskshop_evaluate.py``:
        (mean perf of the gold top-k − mean perf of the predicted top-k) / mean perf of the gold
        top-k. TaskWeb takes the gold top-k from its pair score, not from perf: pass that as
        ``rank_by`` (a Series over the same sources); default ``rank_by = perf``. With a
        ``rank_by`` other than perf the value can be negative.
      * ``"max"`` — ESM paper (``get_regret`` in hf-dataset-selector ``utils/eval_utils.py``)
        and 2407.16245 (``compute_regret_at_k_score``): (best perf overall − best perf among the
        predicted top-k) / best perf overall. ``baseline`` (the no-transfer performance), if
        given, counts as a candidate for "best overall", as in the ESM code where the target's
        own row is in the column; regret is then > 0 when not transferring would have been best.

    Returns NaN when the denominator is ≤ 0 (relative regret has no meaning there).
    """
    p, v = _align(pred, perf, "pred", "perf")
    kk = _clip_k(k, len(p))
    top_pred = predicted_order(p)[:kk]
    if variant == "mean":
        if rank_by is None:
            r = v
        else:
            _, r = _align(p, rank_by, "pred", "rank_by")
        best = float(v[predicted_order(r)[:kk]].mean())
        got = float(v[top_pred].mean())
    elif variant == "max":
        if rank_by is not None:
            raise ValueError("rank_by only applies to variant='mean'")
        best = float(v.max()) if baseline is None else max(float(v.max()), float(baseline))
        got = float(v[top_pred].max())
    else:
        raise ValueError(f"unknown regret variant {variant!r}; choose from {REGRET_VARIANTS}")
    if not best > 0:
        return math.nan
    return (best - got) / best


# ----------------------------------------------------------------------------- others


def _best_source(gold: pd.Series):
    return predicted_order(gold)[0]


def _rank_of(values: pd.Series, name) -> float:
    """1-based rank of ``name`` in ``values`` (descending), ties averaged."""
    v = values[name]
    return float((values > v).sum() + 1 + ((values == v).sum() - 1) / 2)


def rho(pred, perf) -> float:
    """Rank (1-based) of the truly best source in the predicted order; lower is better.

    Vu et al. 2020 ("ρ"), the TuPaTE paper, and ``get_ROBS`` in the ESM code
    (hf-dataset-selector ``utils/eval_utils.py``): the truly best source is the one with the highest
    *target performance* after transfer (``perf``; ties by name), not the one TaskWeb's pair score
    puts first. Ties in the predictions are averaged: rank = #(sources scored strictly higher) + 1 +
    (#tied − 1)/2.
    """
    p, v = _align(pred, perf, "pred", "perf")
    return _rank_of(p, _best_source(v))


def tror(pred, perf) -> float:
    """TROR, the ESM paper's "true rank of the observed (top-ranked) source" (``get_TROR`` in
    hf-dataset-selector ``utils/eval_utils.py``): the rank (1-based, by target performance,
    descending, ties averaged) of the source the prediction puts first (prediction ties by name);
    lower is better, 1 = the predicted top-1 is the best source. ρ with the roles swapped."""
    p, v = _align(pred, perf, "pred", "perf")
    return _rank_of(v, predicted_order(p)[0])


def improvement_ratio(pred, perf, baseline: float) -> float:
    """IR, the ESM paper's improvement ratio (``get_IR`` in hf-dataset-selector
    ``utils/eval_utils.py``): (perf of the predicted top-1 − baseline) / (best perf − baseline), with
    ``baseline`` the target's performance without transfer and "best" the best source (the
    baseline itself not counted). 1 = the best source was chosen, 0 = no better than not
    transferring, negative = worse. NaN when best perf equals the baseline."""
    p, v = _align(pred, perf, "pred", "perf")
    denom = float(v.max()) - float(baseline)
    if denom == 0:
        return math.nan
    return (float(v[predicted_order(p)[0]]) - float(baseline)) / denom


def top_k_performance(pred, perf, k: int = 3) -> float:
    """2407.16245's ``top_k_performance`` (``compute_top_k_score`` in uds-lsv ``seq2seq/dev/get_ndcg.py``):
    the mean target performance of the predicted top-k sources (a raw performance, not relative;
    higher is better). The function's default k is 3; the script's call passes k = 2."""
    p, v = _align(pred, perf, "pred", "perf")
    return float(v[predicted_order(p)[: _clip_k(k, len(p))]].mean())


def precision_at_k(pred, gold, k: int = 5) -> float:
    """Share of the predicted top-k that is in the gold top-k (both by the tie rule above)."""
    p, g = _align(pred, gold)
    kk = _clip_k(k, len(p))
    return len(set(predicted_order(p)[:kk]) & set(predicted_order(g)[:kk])) / kk


def _corr(fn, pred, gold) -> float:
    p, g = _align(pred, gold)
    if len(p) < 2 or p.nunique() < 2 or g.nunique() < 2:
        return math.nan  # undefined for a constant ranking
    return float(fn(p.to_numpy(), g.to_numpy())[0])


def spearman(pred, gold) -> float:
    """Spearman rank correlation (average ranks for ties; scipy.stats.spearmanr)."""
    return _corr(stats.spearmanr, pred, gold)


def kendall(pred, gold) -> float:
    """Kendall's tau-b (accounts for ties; scipy.stats.kendalltau)."""
    return _corr(stats.kendalltau, pred, gold)


# ----------------------------------------------------------------------------- all at once


def _ks(ks) -> tuple[int, ...]:
    return (ks,) if isinstance(ks, int) else tuple(ks)


def _perf_in_unit(v: pd.Series) -> bool:
    return bool((v.abs() <= 1).all())


def evaluate(
    pred,
    gold,
    perf=None,
    ks: int | Iterable[int] = (1, 3, 5),
    baseline: float | None = None,
) -> dict[str, float]:
    """Every metric for one target's prediction, as {name: value}.

    ``gold`` orders the sources (e.g. TaskWeb's pair score); ``perf`` is the target
    performance after transfer (defaults to ``gold``). Which input each metric uses:

    * ``ndcg_taskweb``, ``ndcg_linear``, ``precision@k``, ``spearman``, ``kendall``: gold
    * ``rho``: perf (the rank of the source best by target performance, as Vu et al., TuPaTE and
      the ESM paper's ROBS define it)
    * ``ndcg_esm``: perf (NaN when perf is not within [0, 1]; "uds" is the same number on a
      0–100 scale, so it is not repeated)
    * ``regret_mean@k``: perf, gold top-k chosen by gold (TaskWeb's protocol)
    * ``regret_max@k``: perf, with ``baseline`` as an extra candidate if given (ESM's)
    """
    p, g = _align(pred, gold)
    v = g if perf is None else _align(p, perf, "pred", "perf")[1]
    out = {
        "ndcg_taskweb": ndcg(p, g, "taskweb"),
        "ndcg_linear": ndcg(p, g, "linear"),
        "ndcg_esm": ndcg(p, v, "esm") if _perf_in_unit(v) else math.nan,
        "rho": rho(p, v),
        "spearman": spearman(p, g),
        "kendall": kendall(p, g),
    }
    for k in _ks(ks):
        out[f"regret_mean@{k}"] = regret_at_k(p, v, k, "mean", rank_by=g)
        out[f"regret_max@{k}"] = regret_at_k(p, v, k, "max", baseline=baseline)
        out[f"precision@{k}"] = precision_at_k(p, g, k)
    return out


def _expected_ndcg(gold: pd.Series, variant: str, k: int | None = None) -> float:
    # Under a uniformly random order each position holds a uniformly random source, so
    # E[DCG@k] = mean(gain) · Σ_{i<k} 1/log2(i+2); the ideal DCG is fixed.
    n = len(gold)
    kk = _clip_k(k, n)
    gains = _gains(gold, variant)
    ideal = _dcg(gains.reindex(predicted_order(gold)).to_numpy(), kk)
    if not ideal > 0:
        return math.nan
    return float(gains.mean() * np.sum(1.0 / _discounts(kk)) / ideal)


def _expected_top_k_max(v: pd.Series, k: int) -> float:
    # P(the max of a random k-subset is the i-th smallest of n) = C(i−1, k−1) / C(n, k).
    x = np.sort(v.to_numpy())
    n = len(x)
    w = np.array([math.comb(i - 1, k - 1) for i in range(1, n + 1)], dtype=float) / math.comb(n, k)
    return float(np.dot(w, x))


def random_expectation(
    gold,
    perf=None,
    ks: int | Iterable[int] = (1, 3, 5),
    baseline: float | None = None,
) -> dict[str, float]:
    """Expected value of every ``evaluate`` metric under a uniformly random ranking.

    "Random" as a table row must be this expectation, not one random draw. All values are
    exact closed forms (no sampling), with n sources:

    * NDCG (any variant, any k): mean(gain) · Σ_{i<k} 1/log2(i+2) / ideal DCG@k
    * rho: (n + 1) / 2;  precision@k: k / n (k clipped);  spearman, kendall: 0 (NaN if gold is
      constant)
    * regret_mean@k: (mean perf of gold top-k − mean perf of all) / mean perf of gold top-k
    * regret_max@k: (best − E[max perf of a random k-subset]) / best, the expectation taken
      exactly over the order statistics.

    The tests check these against enumerating every permutation of small pools.
    """
    g = _series(gold, "gold")
    v = g if perf is None else _align(g, perf, "gold", "perf")[1]
    n = len(g)
    const = g.nunique() < 2 or n < 2
    out = {
        "ndcg_taskweb": _expected_ndcg(g, "taskweb"),
        "ndcg_linear": _expected_ndcg(g, "linear"),
        "ndcg_esm": _expected_ndcg(v, "esm") if _perf_in_unit(v) else math.nan,
        "rho": (n + 1) / 2,
        "spearman": math.nan if const else 0.0,
        "kendall": math.nan if const else 0.0,
    }
    for k in _ks(ks):
        kk = _clip_k(k, n)
        top = float(v[predicted_order(g)[:kk]].mean())
        out[f"regret_mean@{k}"] = (top - float(v.mean())) / top if top > 0 else math.nan
        best = float(v.max()) if baseline is None else max(float(v.max()), float(baseline))
        out[f"regret_max@{k}"] = (
            (best - _expected_top_k_max(v, kk)) / best if best > 0 else math.nan
        )
        out[f"precision@{k}"] = kk / n
    return out


# ----------------------------------------------------------------------------- training seeds

AGGREGATIONS = ("seed_mean", "per_seed")
METRICS = {
    "ndcg": ndcg,
    "regret": regret_at_k,
    "rho": rho,
    "tror": tror,
    "ir": improvement_ratio,
    "top_k_performance": top_k_performance,
    "precision": precision_at_k,
    "spearman": spearman,
    "kendall": kendall,
}


def _seed_table(x, what: str) -> dict | None:
    """{seed: values by source} for per-seed input (a DataFrame with one column per seed, or a
    mapping seed -> Series/dict); None for a single set of values (Series, or dict source -> number)."""
    if isinstance(x, pd.DataFrame):
        return {c: x[c] for c in x.columns}
    if isinstance(x, Mapping) and x and all(isinstance(v, (pd.Series, Mapping)) for v in x.values()):
        return dict(x)
    if isinstance(x, Mapping) and not x:
        raise ValueError(f"{what}: no seeds")
    return None


def _metric(metric):
    if callable(metric):
        return metric
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {tuple(METRICS)} or pass a function")
    return METRICS[metric]


def per_seed_values(metric, pred, perf_by_seed, baseline=None, **kwargs) -> pd.Series:
    """The metric once per training seed, as a Series indexed by seed.

    ``perf_by_seed``: the target performance after transfer from each source, per training seed (a
    DataFrame with sources as rows and one column per seed, or a mapping seed -> Series).
    ``pred``: one prediction for every seed (Series/dict by source), or one per seed in the same
    form as ``perf_by_seed`` (the papers pair a method's seed-s prediction with seed-s truth).
    ``baseline``: a number, or a mapping seed -> number (each seed's no-transfer run), passed on to
    metrics that take it (``regret_at_k``, ``improvement_ratio``). ``metric`` is a function of
    ``(pred, perf, **kwargs)`` or a name in ``METRICS``."""
    fn = _metric(metric)
    truth = _seed_table(perf_by_seed, "perf_by_seed")
    if truth is None:
        raise TypeError("perf_by_seed must hold one column (or mapping entry) per training seed")
    preds = _seed_table(pred, "pred")
    if preds is not None and set(preds) != set(truth):
        raise ValueError(f"pred and perf_by_seed have different seeds: {sorted(preds, key=str)} vs "
                         f"{sorted(truth, key=str)}")
    out = {}
    for seed, perf in truth.items():
        extra = dict(kwargs)
        if baseline is not None:
            extra["baseline"] = baseline[seed] if isinstance(baseline, (Mapping, pd.Series)) else baseline
        out[seed] = fn(preds[seed] if preds is not None else pred, perf, **extra)
    return pd.Series(out, dtype=float)


def over_seeds(metric, pred, perf_by_seed, aggregation: str = "per_seed", baseline=None, **kwargs) -> float:
    """One metric over several training seeds of the ground truth, aggregated one of two ways.

    * ``"per_seed"`` — the ESM paper (``evaluate_method`` in hf-dataset-selector
      ``utils/eval_utils.py``, branch ``emnlp-submission``) and 2407.16245 (uds-lsv
      ``seq2seq/dev/get_ndcg.py``): the metric on each seed's results, then the mean over seeds.
    * ``"seed_mean"`` — TaskWeb and taskrank's evaluation: the metric once, on the mean over seeds
      of the performance (and of the predictions and baselines, when given per seed).

    Inputs as in :func:`per_seed_values`. The two differ whenever the metric is not linear in perf
    (all of them except ``top_k_performance``)."""
    if aggregation == "per_seed":
        return float(per_seed_values(metric, pred, perf_by_seed, baseline, **kwargs).mean())
    if aggregation != "seed_mean":
        raise ValueError(f"unknown aggregation {aggregation!r}; choose from {AGGREGATIONS}")
    truth = _seed_table(perf_by_seed, "perf_by_seed")
    if truth is None:
        raise TypeError("perf_by_seed must hold one column (or mapping entry) per training seed")
    perf = pd.concat({k: _series(v, "perf_by_seed") for k, v in truth.items()}, axis=1).mean(axis=1)
    preds = _seed_table(pred, "pred")
    if preds is not None:
        pred = pd.concat({k: _series(v, "pred") for k, v in preds.items()}, axis=1).mean(axis=1)
    if baseline is not None:
        kwargs["baseline"] = (float(np.mean([baseline[k] for k in truth]))
                              if isinstance(baseline, (Mapping, pd.Series)) else baseline)
    return float(_metric(metric)(pred, perf, **kwargs))
