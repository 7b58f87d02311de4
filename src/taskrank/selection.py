"""Selection under a budget: which k source→target transfers to actually run, one after another.

A practitioner can afford k real transfers. Trying the top-k of a static ranking ignores what the
first runs reveal; :class:`GPSelector` updates the ranking after each measured result with a
Gaussian process over the sources whose covariance comes from a transfer matrix (sources that
helped the same tasks are correlated), and picks the next source by expected improvement over the
best result so far. Its prior mean is the static ranking (z-scored); its scale and location come
from the matrix (median per-target mean and spread of the pair score). The first pick is always the
static top-1.

Values are TaskWeb pair scores (``taskrank.transfer.matrix.taskweb_pair_score``), the units of a
pool's transfer table: a measured run with performance v on a target whose no-transfer baseline is
b counts as 0.5·PC + 0.5·(0.2·PM − 0.1) with PC = (v − b)/b and PM = 1 if v > b else 0
(:func:`run_value`).

:func:`simulate` judges selectors on a gold matrix: a "run" reveals the gold value of that pair,
and the regret after k runs is (best performance over all sources and the baseline − best
performance among the k chosen) / that best, as Regret@k of the ESM paper (``regret_max``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm

from .ordering import best_first

__all__ = ["run_value", "StaticSelector", "GPSelector", "SELECTORS", "make_selector", "select", "simulate",
           "Selection"]


def run_value(value: float, baseline: float) -> float:
    """One run's TaskWeb pair score from its target performance and the target's baseline."""
    if not baseline > 0:
        pc = value - baseline
    else:
        pc = (value - baseline) / baseline
    return 0.5 * pc + 0.5 * (0.2 * float(value > baseline) - 0.1)


def _z(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


class StaticSelector:
    """The static ranking's next best untried source."""

    name = "static"

    def __init__(self, **_):
        pass

    def fit(self, target: str, sources: list[str], static: np.ndarray, matrix: pd.DataFrame | None) -> "StaticSelector":
        self.sources = list(sources)
        self.order = [int(i) for i in best_first(self.sources, static)]
        return self

    def next(self, observed: dict[str, float]) -> str:
        return next(self.sources[i] for i in self.order if self.sources[i] not in observed)


class GPSelector(StaticSelector):
    """Gaussian-process update of the static ranking, with covariance from a transfer matrix.

    y(s) = a + σ·(ρ·z(s) + √(1 − ρ²)·f(s)) + noise, f ~ N(0, K), a ~ N(ā, σ_a²), where z is the
    static ranking's z-score, K = (1 − shrink)·C + shrink·I with C the correlation of sources'
    standardised transfers over the matrix's targets (never the target itself), and ā, σ_a, σ the
    median, spread and median within-target std of the matrix's pair scores. ``acquisition``:
    ``ei`` (expected improvement over the best so far) or ``mean`` (posterior mean).

    Defaults (rho 0.7, shrink 0.6, ei): the setting of ``benchmarks/budget.py --grid`` with the
    lowest mean regret over k = 2..5, over both gold matrices and six to eight static rankings
    each, and the one that trusts the static ranking most; but every setting there is within 0.1
    points of regret of static top-k on average, so the update is no measurable gain — it helps
    weak rankings after a few runs and can lose at small k for a strong one (benchmarks/README.md).
    """

    name = "gp"

    def __init__(self, rho: float = 0.7, shrink: float = 0.6, noise: float = 0.1, acquisition: str = "ei", **_):
        if acquisition not in ("ei", "mean"):
            raise ValueError(f"gp: acquisition must be 'ei' or 'mean', got {acquisition!r}")
        self.rho, self.shrink, self.noise, self.acquisition = float(rho), float(shrink), float(noise), acquisition

    def fit(self, target, sources, static, matrix):
        super().fit(target, sources, static, matrix)
        n = len(sources)
        w = pd.DataFrame(columns=["target", "source", "score"]) if matrix is None else matrix
        w = w[(w["target"] != target) & (w["source"] != target) & (w["target"] != w["source"])].dropna(subset=["score"])
        W = w.pivot_table(index="target", columns="source", values="score", aggfunc="mean")
        if len(W) >= 2:
            mu, sd = W.mean(axis=1), W.std(axis=1, ddof=0)
            a_bar, a_sd, sigma = float(mu.median()), float(mu.std(ddof=0)), float(sd.median())
            Z = W.sub(mu, axis=0).div(sd.where(sd > 0), axis=0).reindex(columns=sources)
            C = Z.corr(min_periods=3).reindex(index=sources, columns=sources).to_numpy(dtype=np.float64)
            C = np.nan_to_num(C, nan=0.0)
            np.fill_diagonal(C, 1.0)
        else:  # no matrix: independent sources, unit scale (the static order, up to ties)
            a_bar, a_sd, sigma, C = 0.0, 1.0, 1.0, np.eye(n)
        sigma = sigma if sigma > 0 else 1.0
        K = (1 - self.shrink) * C + self.shrink * np.eye(n)
        vals, vecs = np.linalg.eigh((K + K.T) / 2)
        K = (vecs * np.clip(vals, 1e-6, None)) @ vecs.T
        self.mean0 = a_bar + sigma * self.rho * _z(static)
        self.cov0 = (a_sd ** 2) * np.ones((n, n)) + sigma ** 2 * (1 - self.rho ** 2) * K
        self.noise_var = (self.noise * sigma) ** 2
        self.index = {s: i for i, s in enumerate(sources)}
        return self

    def posterior(self, observed: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        if not observed:
            return self.mean0, np.sqrt(np.diag(self.cov0))
        o = np.array([self.index[s] for s in observed])
        y = np.array(list(observed.values()), dtype=np.float64)
        Koo = self.cov0[np.ix_(o, o)] + self.noise_var * np.eye(len(o))
        Kxo = self.cov0[:, o]
        sol = np.linalg.solve(Koo, np.column_stack([y - self.mean0[o], Kxo.T]))
        mean = self.mean0 + Kxo @ sol[:, 0]
        var = np.diag(self.cov0) - np.einsum("ij,ji->i", Kxo, sol[:, 1:])
        return mean, np.sqrt(np.clip(var, 0.0, None))

    def next(self, observed):
        if not observed:
            return super().next(observed)
        mean, sd = self.posterior(observed)
        if self.acquisition == "mean":
            value = mean
        else:
            best = max(observed.values())
            with np.errstate(divide="ignore", invalid="ignore"):
                u = np.where(sd > 0, (mean - best) / np.where(sd > 0, sd, 1.0), 0.0)
            value = np.where(sd > 0, (mean - best) * norm.cdf(u) + sd * norm.pdf(u), np.maximum(mean - best, 0.0))
        left = [i for i, s in enumerate(self.sources) if s not in observed]
        return self.sources[max(left, key=lambda i: (value[i], mean[i], -self.order.index(i)))]


SELECTORS = {"static": StaticSelector, "gp": GPSelector}


def make_selector(name: str, **params):
    if name not in SELECTORS:
        raise ValueError(f"unknown selection strategy {name!r}; choose from {', '.join(SELECTORS)}")
    return SELECTORS[name](**params)


@dataclass
class Selection:
    """What a budgeted selection tried, in order, and what it measured."""

    target: str
    strategy: str
    steps: list[dict] = field(default_factory=list)  # source, value (performance), score (pair score), static_rank
    baseline: float | None = None

    @property
    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.steps)

    @property
    def winner(self) -> dict | None:
        return max(self.steps, key=lambda r: (r["value"], -r["step"])) if self.steps else None


def select(target: str, sources: Sequence[str], static: Sequence[float], budget: int,
           measure: Callable[[str], float], baseline: float, matrix: pd.DataFrame | None = None,
           strategy: str = "gp", on_step: Callable[[dict], None] | None = None, **params) -> Selection:
    """Run ``budget`` transfers chosen one after another; ``measure(source)`` runs (or reads back)
    one source→target transfer and returns the target's performance."""
    sources = list(sources)
    static = np.asarray(static, dtype=np.float64)
    static = np.where(np.isfinite(static), static, np.nanmin(static[np.isfinite(static)]) - 1
                      if np.isfinite(static).any() else 0.0)
    if budget < 1:
        raise ValueError(f"budget must be at least 1, got {budget}")
    sel = make_selector(strategy, **params).fit(target, sources, static, matrix)
    rank = {sources[i]: r + 1 for r, i in enumerate(sel.order)}
    observed: dict[str, float] = {}
    out = Selection(target, strategy, baseline=baseline)
    for step in range(1, min(budget, len(sources)) + 1):
        source = sel.next(observed)
        value = float(measure(source))
        observed[source] = run_value(value, baseline)
        row = {"step": step, "source": source, "static_rank": rank[source], "value": value,
               "gain": value - baseline, "score": observed[source]}
        out.steps.append(row)
        if on_step is not None:
            on_step(row)
    return out


# ----------------------------------------------------------------------------- simulation


def simulate(gold, predictions: pd.DataFrame, strategies: dict[str, tuple[str, dict]], ks: Sequence[int] = (1, 2, 3, 4, 5),
             targets: Sequence[str] | None = None, boot: int = 1000, seed: int = 0, level: float = 0.95,
             reveal: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Budgeted selection replayed on a gold matrix.

    ``predictions``: (method, target, source, score) static rankings. ``strategies``: row name ->
    (method of ``predictions``, (selector name, params)) — written as {name: (method, selector, params)}.
    A run of (s, t) reveals the gold pair score (``gold.by``) of that pair (or column ``reveal``);
    the matrix the selector learns from is the gold without target t. Returns (per-target regrets,
    summary: method, k, regret, lo, hi — regret ×100, mean over targets, percentile bootstrap).
    """
    ks = sorted(int(k) for k in ks)
    pairs = gold.pairs
    matrix = pairs[["target", "source", gold.by]].rename(columns={gold.by: "score"}).dropna()
    targets = list(targets) if targets is not None else gold.targets
    pred_index = {key: d.set_index("source")["score"] for key, d in predictions.groupby(["method", "target"])}
    rows = []
    for t in targets:
        g, v, base = gold.target(t)
        revealed = g if reveal is None else pairs[pairs["target"] == t].set_index("source")[reveal]
        srcs = sorted(g.index)
        best = max(float(v.max()), float(base)) if base is not None else float(v.max())
        for name, (method, selector, params) in strategies.items():
            s = pred_index[(method, t)].reindex(srcs).to_numpy(dtype=np.float64)
            sel = make_selector(selector, **params).fit(t, srcs, s, matrix)
            observed, chosen = {}, []
            for _ in range(max(ks)):
                src = sel.next(observed)
                observed[src] = float(revealed[src])
                chosen.append(src)
            for k in ks:
                got = float(v[chosen[:k]].max())
                rows.append({"method": name, "target": t, "k": k, "regret": (best - got) / best if best > 0 else math.nan,
                             "chosen": ",".join(chosen[:k])})
        for k in ks:  # the expected regret of k sources drawn at random
            from .metrics import _expected_top_k_max

            rows.append({"method": "random (expected)", "target": t, "k": k,
                         "regret": (best - _expected_top_k_max(v, min(k, len(v)))) / best, "chosen": ""})
    per = pd.DataFrame(rows)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(targets), size=(boot, len(targets))) if boot > 0 else None
    summ = []
    for (name, k), d in per.groupby(["method", "k"], sort=False):
        x = d.set_index("target")["regret"].reindex(targets).to_numpy(dtype=float)
        lo = hi = math.nan
        if idx is not None:
            means = np.nanmean(x[idx], axis=1)
            lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
        summ.append({"method": name, "k": k, "regret": 100 * np.nanmean(x), "lo": 100 * lo, "hi": 100 * hi})
    return per, pd.DataFrame(summ)
