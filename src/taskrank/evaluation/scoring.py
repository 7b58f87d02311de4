"""Every metric of every method, per target and averaged over targets, with confidence intervals.

For each target the sources judged are the matrix's sources with a gold value, intersected with
the pool's tasks when predictions come from a pool. Every method must score all of them (an error
names what is missing), so all methods and the random row are judged on the same sets.

"random (expected)" is always a row: the exact expectation of every metric under a uniformly
random order (:func:`taskrank.metrics.random_expectation`), not one random draw.

Confidence intervals
  * ``boot``: percentile bootstrap over targets (seeded; the same resampled target sets for every
    method, so differences between methods are paired).
  * ``seed``: where per-seed runs with target-only baselines are known, bootstrap over training
    seeds: seeds are drawn with replacement, the gold (PC, PM, pair score, mean) is recomputed
    from the drawn seeds, and every metric re-evaluated; the interval is over those replicates
    (identical seed multisets are evaluated once). TaskWeb's release has no target-only runs, so
    it has no seed intervals.

Values are fractions internally (as in :mod:`taskrank.metrics`); :meth:`Evaluation.tidy` scales
NDCG and Regret ×100 (the papers' convention) unless asked not to, and says so in a ``unit`` column.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics
from .gold import EvaluationError, Gold, read_csv
from .predictions import read_predictions

RANDOM = "random (expected)"


def metric_order(ks: Sequence[int]) -> list[str]:
    return (["ndcg_taskweb", "ndcg_esm", "ndcg_linear"] + [f"regret_mean@{k}" for k in ks]
            + [f"regret_max@{k}" for k in ks] + ["rho"] + [f"precision@{k}" for k in ks] + ["spearman", "kendall"])


def is_scaled(metric: str) -> bool:
    """NDCG and Regret are printed ×100 by the papers."""
    return metric.startswith(("ndcg", "regret"))


def _unit(metric: str, percent: bool) -> str:
    if is_scaled(metric):
        return "x100" if percent else "fraction"
    return {"rho": "rank"}.get(metric, "correlation" if metric in ("spearman", "kendall") else "fraction")


@dataclass
class Evaluation:
    """Per-target metrics (fractions), averaged summary with intervals, and the predictions judged."""

    per_target: pd.DataFrame
    summary: pd.DataFrame
    predictions: pd.DataFrame
    meta: dict

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(self.per_target["method"]))

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(self.summary["metric"]))

    def tidy(self, percent: bool = True) -> pd.DataFrame:
        """Long table: method, target ("(mean)" for averages), metric, value, n, boot_lo, boot_hi,
        seed_lo, seed_hi, unit. NDCG/Regret ×100 when ``percent``."""
        long = self.per_target.melt(id_vars=["method", "target", "n_sources"], value_vars=self.metrics,
                                    var_name="metric", value_name="value").rename(columns={"n_sources": "n"})
        summ = self.summary.rename(columns={"mean": "value", "n_targets": "n"}).assign(target="(mean)")
        cols = ["method", "target", "metric", "value", "n", "boot_lo", "boot_hi", "seed_lo", "seed_hi"]
        out = pd.concat([summ.reindex(columns=cols), long.reindex(columns=cols)], ignore_index=True)
        scale = out["metric"].map(lambda m: 100.0 if is_scaled(m) and percent else 1.0)
        for c in ("value", "boot_lo", "boot_hi", "seed_lo", "seed_hi"):
            v = out[c].astype(float) * scale
            out[c] = v.mask(v.abs() < 1e-12, 0.0)  # float noise (e.g. -3e-18) is 0
        out["unit"] = out["metric"].map(lambda m: _unit(m, percent))
        out["n"] = out["n"].astype("Int64")
        return out

    def to_dict(self, percent: bool = True) -> dict:
        tidy = self.tidy(percent)
        clean = lambda df: json.loads(df.to_json(orient="records", double_precision=15))  # NaN -> null
        return {"meta": {**self.meta, "percent": percent}, "results": clean(tidy),
                "predictions": clean(self.predictions)}

    def save(self, path: str | Path, percent: bool = True) -> list[Path]:
        """``.json``: everything in one file. ``.csv``: the tidy table, and the predictions beside
        it as ``<stem>.predictions.csv`` (what ``taskrank report`` reads for ranking plots)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(self.to_dict(percent), indent=1))
            return [path]
        self.tidy(percent).to_csv(path, index=False)
        pred = path.with_name(f"{path.stem}.predictions.csv")
        self.predictions.to_csv(pred, index=False)
        return [path, pred]


def _judged_sources(gold: Gold, targets: list[str], candidates: dict[str, list[str]] | None) -> dict[str, list[str]]:
    out = {}
    for t in targets:
        g, _, _ = gold.target(t)
        names = g.index.tolist()
        if candidates is not None and t in candidates:
            names = [s for s in names if s in set(candidates[t])]
        if len(names) >= 2:
            out[t] = sorted(names)
    return out


def _per_target(gold: Gold, predictions: pd.DataFrame, methods: list[str], sources: dict[str, list[str]],
                ks: tuple[int, ...], regret_baseline: bool, pairs: pd.DataFrame | None = None,
                pred_index=None) -> pd.DataFrame:
    rows = []
    if pred_index is None:
        pred_index = {key: d.set_index("source")["score"] for key, d in predictions.groupby(["method", "target"])}
    for t, names in sources.items():
        g, v, base = gold.target(t, pairs)
        keep = [s for s in names if s in g.index]
        if len(keep) < 2:
            continue
        g, v = g.reindex(keep), v.reindex(keep)
        b = base if regret_baseline else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rows.append({"method": RANDOM, "target": t, "n_sources": len(keep),
                         **metrics.random_expectation(g, v, ks, baseline=b)})
            for m in methods:
                p = pred_index[(m, t)].reindex(keep)
                rows.append({"method": m, "target": t, "n_sources": len(keep),
                             **metrics.evaluate(p, g, v, ks, baseline=b)})
    return pd.DataFrame(rows)


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if not len(v):
        return math.nan, math.nan
    a = (1 - level) / 2
    return float(np.quantile(v, a)), float(np.quantile(v, 1 - a))


def target_bootstrap(per_target: pd.DataFrame, names: list[str], boot: int, seed: int, level: float) -> pd.DataFrame:
    targets = sorted(per_target["target"].unique())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(targets), size=(boot, len(targets))) if boot > 0 and targets else None
    rows = []
    for method, d in per_target.groupby("method", sort=False):
        d = d.set_index("target").reindex(targets)
        for m in names:
            x = d[m].to_numpy(dtype=float)
            n = int(np.isfinite(x).sum())
            mean = float(np.nanmean(x)) if n else math.nan
            lo = hi = math.nan
            if idx is not None and n:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    means = np.nanmean(x[idx], axis=1)
                lo, hi = _interval(means, level)
            rows.append({"method": method, "metric": m, "mean": mean, "n_targets": n, "boot_lo": lo, "boot_hi": hi})
    return pd.DataFrame(rows)


def _seed_bootstrap(gold: Gold, predictions, methods, sources, ks, regret_baseline, names, boot, seed, level,
                    pred_index) -> pd.DataFrame | None:
    seeds = gold.seeds
    if gold.runs is None or boot <= 0 or len(seeds) < 2:
        return None
    rng = np.random.default_rng(seed)
    cache: dict[tuple, pd.DataFrame] = {}
    replicates = []
    for _ in range(boot):
        draw = tuple(sorted(rng.choice(seeds, size=len(seeds), replace=True).tolist()))
        if draw not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                pt = _per_target(gold, predictions, methods, sources, ks, regret_baseline,
                                 pairs=gold.resampled(draw), pred_index=pred_index)
                cache[draw] = pt.groupby("method", sort=False)[names].mean()
        replicates.append(cache[draw])
    rows = []
    for method in [RANDOM, *methods]:
        for m in names:
            vals = np.array([r.loc[method, m] if method in r.index else np.nan for r in replicates], dtype=float)
            lo, hi = _interval(vals, level)
            rows.append({"method": method, "metric": m, "seed_lo": lo, "seed_hi": hi})
    return pd.DataFrame(rows)


def evaluate_predictions(
    gold: Gold,
    predictions: pd.DataFrame,
    exclude: Iterable[str] = (),
    targets: Iterable[str] | None = None,
    candidates: dict[str, list[str]] | None = None,
    ks: Sequence[int] = (1, 3, 5),
    regret_baseline: bool = True,
    boot: int = 1000,
    seed_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> Evaluation:
    """Every metric of every method, per target and averaged over targets, with intervals.

    ``targets``: which targets to judge (default: every target of the matrix that has
    predictions), minus ``exclude``. ``candidates``: per target, the sources a pool offers
    (:func:`pool_predictions`); sources without gold are left out, and every method must score
    all remaining ones. ``regret_baseline``: count the no-transfer baseline as a candidate in
    ``regret_max`` (the ESM paper's protocol). ``boot``/``seed_boot``: bootstrap replicates over
    targets / over seeds (0 = none); ``seed`` seeds both.
    """
    ks = tuple(int(k) for k in ks)
    exclude = set(exclude)
    unknown_ex = exclude - set(gold.pairs["target"])
    if unknown_ex:
        warnings.warn(f"--exclude: {sorted(unknown_ex)} not among the matrix's targets", stacklevel=2)
    preds = predictions.copy()
    if preds.empty:
        raise EvaluationError("no predictions to evaluate: give methods or prediction files")
    methods = list(dict.fromkeys(preds["method"]))
    if RANDOM in methods:
        raise EvaluationError(f"method name {RANDOM!r} is reserved for the expected random ranking")
    have = set(gold.targets)
    if targets is None:
        wanted = sorted(have & set(preds["target"]))
    else:
        wanted = sorted(set(targets))
        missing = sorted(set(wanted) - have)
        if missing:
            raise EvaluationError(f"targets {missing} have fewer than two sources with gold in {gold.origin}")
    wanted = [t for t in wanted if t not in exclude]
    if not wanted:
        raise EvaluationError(f"no target to evaluate: the predictions' targets {sorted(set(preds['target']))[:10]} "
                              f"and the matrix's {sorted(have)[:10]} do not meet (after --exclude)")
    sources = _judged_sources(gold, wanted, candidates)
    if not sources:
        raise EvaluationError("no target has two or more judged sources (pool ∩ gold)")
    pred_index = {key: d.set_index("source")["score"] for key, d in preds.groupby(["method", "target"])}
    for m in methods:
        for t, names in sources.items():
            got = pred_index.get((m, t))
            lacking = names if got is None else [s for s in names if s not in got.index]
            if lacking:
                raise EvaluationError(f"method '{m}' has no score for target '{t}' and sources {lacking[:8]}"
                                      f"{' ...' if len(lacking) > 8 else ''}; score them or --exclude {t}")
    per_target = _per_target(gold, preds, methods, sources, ks, regret_baseline, pred_index=pred_index)
    names = [m for m in metric_order(ks) if m in per_target.columns]
    per_target = per_target[["method", "target", "n_sources", *names]]
    summary = target_bootstrap(per_target, names, boot, seed, level)
    seeds = _seed_bootstrap(gold, preds, methods, sources, ks, regret_baseline, names, seed_boot, seed, level, pred_index)
    if seeds is not None:
        summary = summary.merge(seeds, on=["method", "metric"], how="left")
    else:
        summary["seed_lo"] = summary["seed_hi"] = math.nan
    judged = preds[preds["target"].isin(list(sources))]
    meta = {
        "gold": gold.origin, "setting": gold.setting, "gold_by": gold.by, "perf": gold.perf,
        "targets": list(sources), "excluded": sorted(exclude), "methods": [RANDOM, *methods],
        "ks": list(ks), "regret_baseline": regret_baseline, "boot": boot, "seed_boot": seed_boot if seeds is not None else 0,
        "seeds": gold.seeds if seeds is not None else [], "level": level, "seed": seed, "notes": list(gold.notes),
    }
    return Evaluation(per_target.reset_index(drop=True), summary, judged.reset_index(drop=True), meta)


def read_evaluation(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None, dict]:
    """(tidy results, predictions or None, meta) from a file written by :meth:`Evaluation.save`."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{path}: no such evaluation file")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
            tidy = pd.DataFrame(data["results"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise EvaluationError(f"{path}: not an evaluation written by 'taskrank evaluate' ({e})") from None
        preds = pd.DataFrame(data["predictions"]) if data.get("predictions") else None
        meta = data.get("meta", {})
    else:
        tidy = read_csv(path, ["value", "n", "boot_lo", "boot_hi", "seed_lo", "seed_hi"])
        side = path.with_name(f"{path.stem}.predictions.csv")
        preds = read_predictions(side) if side.is_file() else None
        meta = {"percent": bool((tidy.get("unit") == "x100").any()) if "unit" in tidy else True}
    need = {"method", "target", "metric", "value"}
    if not need <= set(tidy.columns):
        raise EvaluationError(f"{path}: lacks columns {sorted(need - set(tidy.columns))}; "
                              "expected the output of 'taskrank evaluate --out'")
    tidy["target"] = tidy["target"].astype(str)
    return tidy, preds, meta
