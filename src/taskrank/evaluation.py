"""Judge source rankings against a transfer matrix: every metric, per target and averaged, with
confidence intervals.

Inputs
  * gold: a transfer matrix — a pair table (``matrix.csv`` of ``taskrank transfer export``), a
    runs table (``runs.csv``: per-seed runs, from which the pair table is computed and which
    also gives seed intervals), or TaskWeb's release (:func:`taskrank.transfer.matrix.import_taskweb`).
    The gold *order* of a target's sources comes from column ``by`` (default ``score``, TaskWeb's
    pair score 0.5·PC + 0.5·(0.2·PM − 0.1)); the target performance after transfer from ``perf``
    (default ``mean``); the no-transfer ``baseline`` joins the candidates of ESM's Regret.
  * predictions: a table ``method, target, source, score`` (higher = better source), from
    estimators run on a pool (:func:`pool_predictions`) or from CSV files (:func:`read_predictions`).

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
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics
from .transfer.matrix import PAIR_COLUMNS, RUN_COLUMNS, import_taskweb, pair_table

__all__ = [
    "RANDOM",
    "EvaluationError",
    "Gold",
    "Evaluation",
    "load_gold",
    "read_predictions",
    "pool_predictions",
    "evaluate_predictions",
    "read_evaluation",
    "metric_order",
    "is_scaled",
]

RANDOM = "random (expected)"
NUMERIC_PAIR = ["n_seeds", "n_paired", "mean", "std", "baseline", "PC", "PM", "score"]


class EvaluationError(ValueError):
    """Inputs that cannot be evaluated together; the message says which file, target or source."""


# ----------------------------------------------------------------------------- gold


def _read_csv(path: Path, numeric: Iterable[str]) -> pd.DataFrame:
    if not path.is_file():
        raise EvaluationError(f"{path}: no such file")
    try:
        return pd.read_csv(path, keep_default_na=False, na_values={c: ["", "nan", "NaN"] for c in numeric})
    except (ValueError, UnicodeDecodeError) as e:
        raise EvaluationError(f"{path}: cannot be read as CSV ({str(e).splitlines()[0]})") from None


def _one_setting(df: pd.DataFrame, setting: str | None, where: str) -> pd.DataFrame:
    if "setting" not in df.columns:
        return df.assign(setting=setting or "")
    settings = sorted(df["setting"].astype(str).unique().tolist())
    if setting is None:
        if len(settings) > 1:
            raise EvaluationError(f"{where}: holds several settings {settings}; pick one with --setting")
        return df
    if setting not in settings:
        raise EvaluationError(f"{where}: no setting {setting!r}; has {settings}")
    return df[df["setting"].astype(str) == setting]


@dataclass
class Gold:
    """The ground truth of one setting: a pair table and, where known, the per-seed runs."""

    pairs: pd.DataFrame
    runs: pd.DataFrame | None = None
    by: str = "score"
    perf: str = "mean"
    origin: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        for col in (self.by, self.perf):
            if col not in self.pairs.columns:
                raise EvaluationError(f"{self.origin}: matrix has no column {col!r}; have {list(self.pairs.columns)}")
        self.pairs = self.pairs[self.pairs["source"].astype(str) != ""].copy()
        self.pairs["source"] = self.pairs["source"].astype(str)
        self.pairs["target"] = self.pairs["target"].astype(str)

    @property
    def setting(self) -> str:
        return str(self.pairs["setting"].iloc[0]) if len(self.pairs) else ""

    @property
    def targets(self) -> list[str]:
        """Targets with at least two sources that have a gold value and a performance."""
        ok = self.pairs.dropna(subset=[self.by, self.perf])
        n = ok.groupby("target")["source"].nunique()
        return sorted(n[n >= 2].index.tolist())

    def target(self, name: str, pairs: pd.DataFrame | None = None):
        """(gold Series, perf Series, baseline or None) of one target, by source."""
        d = (self.pairs if pairs is None else pairs)
        d = d[d["target"] == name].dropna(subset=[self.by, self.perf]).set_index("source").sort_index()
        base = d["baseline"].dropna() if "baseline" in d.columns else pd.Series(dtype=float)
        baseline = float(base.iloc[0]) if len(base) else None
        return d[self.by].astype(float), d[self.perf].astype(float), baseline

    @property
    def seeds(self) -> list[int]:
        if self.runs is None:
            return []
        return sorted(self.runs["seed"].astype(int).unique().tolist())

    def resampled(self, seeds: Sequence[int]) -> pd.DataFrame:
        """The pair table recomputed from the given seeds (repeats allowed: a bootstrap draw)."""
        if self.runs is None:
            raise EvaluationError("no per-seed runs: seed resampling needs a runs table")
        parts = [self.runs[self.runs["seed"] == s].assign(seed=j) for j, s in enumerate(seeds)]
        return pair_table(pd.concat(parts, ignore_index=True))


def _mtime(path: Path) -> float:
    files = [p for p in (path / "transfer_matrix.csv", path / "raw_per_seed_results.csv") if p.exists()]
    return max((p.stat().st_mtime for p in files), default=0.0)


@lru_cache(maxsize=4)
def _taskweb(path: str, mtime: float, model, adaptation) -> pd.DataFrame:
    """TaskWeb's import takes seconds; keep the last few in this process (keyed by file times)."""
    return import_taskweb(path, model, adaptation)


def load_gold(
    matrix: str | Path | None = None,
    taskweb: str | Path | None = None,
    model: str | None = "t5l",
    adaptation: str | None = "finetune",
    runs: str | Path | None = None,
    setting: str | None = None,
    by: str = "score",
    perf: str = "mean",
) -> Gold:
    """Ground truth from a matrix/runs CSV or TaskWeb's release (exactly one of the two)."""
    if (matrix is None) == (taskweb is None):
        raise EvaluationError("give a transfer matrix (--matrix CSV) or TaskWeb's release (--taskweb PATH), not both")
    notes: list[str] = []
    run_table = None
    if taskweb is not None:
        path = Path(taskweb)
        if not path.exists():
            raise EvaluationError(f"{path}: no such TaskWeb release")
        try:
            pairs = _taskweb(str(path.resolve()), _mtime(path), model, adaptation).copy()
        except (FileNotFoundError, ValueError) as e:
            raise EvaluationError(str(e)) from None
        origin = f"TaskWeb release {path}"
        notes.append("TaskWeb's release has no target-only runs per seed: no seed intervals")
    else:
        path = Path(matrix)
        head = _read_csv(path, ["value", *NUMERIC_PAIR])
        origin = str(path)
        if {"seed", "value"} <= set(head.columns):
            missing = [c for c in RUN_COLUMNS if c not in head.columns]
            if missing:
                raise EvaluationError(f"{path}: runs table lacks columns {missing}")
            run_table = _one_setting(head, setting, str(path))
            try:
                pairs = pair_table(run_table)
            except ValueError as e:
                raise EvaluationError(f"{path}: {e}") from None
        else:
            missing = [c for c in ("target", "source", by, perf) if c not in head.columns]
            if missing:
                raise EvaluationError(f"{path}: not a pair table (lacks {missing}; expected {PAIR_COLUMNS})")
            pairs = head
    pairs = _one_setting(pairs, setting, origin)
    if runs is not None:
        if run_table is not None:
            raise EvaluationError("--runs is for a pair-table matrix; the matrix given is already a runs table")
        r = _read_csv(Path(runs), ["value"])
        run_table = _one_setting(r, setting or (str(pairs["setting"].iloc[0]) if len(pairs) else None), str(runs))
    if run_table is not None:
        run_table = run_table[RUN_COLUMNS].copy()
        run_table["source"] = run_table["source"].fillna("").astype(str)
        if not (run_table["source"] == "").any():
            notes.append("the runs have no target-only baselines: no seed intervals")
            run_table = None
    if pairs.empty:
        raise EvaluationError(f"{origin}: the transfer matrix is empty")
    return Gold(pairs.reset_index(drop=True), run_table, by, perf, origin, notes)


# ----------------------------------------------------------------------------- predictions


def read_predictions(path: str | Path, method: str | None = None) -> pd.DataFrame:
    """A predictions CSV (target, source, score[, method]) as method, target, source, score.

    Without a ``method`` column the method is named ``method`` or the file's stem.
    """
    path = Path(path)
    df = _read_csv(path, ["score"])
    missing = [c for c in ("target", "source", "score") if c not in df.columns]
    if missing:
        raise EvaluationError(f"{path}: predictions lack columns {missing}; need target, source, score")
    if df["score"].isna().any():
        row = int(np.flatnonzero(df["score"].isna().to_numpy())[0])
        raise EvaluationError(f"{path}: empty or non-numeric score in row {row + 2}")
    try:
        score = pd.to_numeric(df["score"], errors="raise").astype(float)
    except (ValueError, TypeError):
        bad = pd.to_numeric(df["score"], errors="coerce").isna()
        raise EvaluationError(f"{path}: non-numeric score {df.loc[bad, 'score'].iloc[0]!r}") from None
    out = pd.DataFrame({
        "method": df["method"].astype(str) if "method" in df.columns and method is None else (method or path.stem),
        "target": df["target"].astype(str), "source": df["source"].astype(str), "score": score,
    })
    dup = out.duplicated(["method", "target", "source"], keep=False)
    if dup.any():
        raise EvaluationError(f"{path}: repeated (target, source) rows "
                              f"{out.loc[dup, ['target', 'source']].drop_duplicates().values.tolist()[:5]}")
    return out


def pool_predictions(methods: Sequence[str], pool, tasks_folder: str | Path | None, targets: Sequence[str],
                     model=None, cache=None, load=None) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Score every pool task (except the target) for each target with each method (with the pool's
    ``method_params``); a source a method is not defined for ranks last.

    The target's data comes from ``tasks_folder/<target>`` (the target-side artefact needs it), or
    from ``load(name)`` when given (e.g. :func:`taskrank.taskweb.load_taskweb_task`).
    Returns the predictions and, per target, the pool's candidate sources. All pool tasks are
    scored, as ``taskrank rank`` does, so composites (TaskShop pivots, ensemble z-scores) see the
    same pool as a ranking would; evaluation then keeps the sources that have gold.
    """
    from .progress import track
    from .ranking import score_sources
    from .tasks import load_task

    folder = Path(tasks_folder) if tasks_folder is not None else None
    estimators = [pool.estimator(m, model=model) for m in methods]
    rows, candidates = [], {}
    for target in track(list(targets), description="evaluate: scoring", total=len(targets)):
        if load is not None:
            task = load(target)
        else:
            path = folder / target
            if not path.exists():
                raise EvaluationError(f"target '{target}': no task folder {path} (the target side needs its data; "
                                      "--tasks names the folder of task folders)")
            task = load_task(path)
        keep = [t for t in pool.tasks if t["name"] != target and t["fingerprint"] != task.fingerprint]
        candidates[target] = [t["name"] for t in keep]
        for name, est in zip(methods, estimators):
            scores = score_sources(task, pool, est, keep, cache)
            # a source the method is not defined for (NaN) ranks last, as in `taskrank rank`
            scores = np.where(np.isnan(scores), np.nanmin(scores) - 1.0 if np.isfinite(scores).any() else 0.0, scores)
            rows += [{"method": name, "target": target, "source": t["name"], "score": float(s)}
                     for t, s in zip(keep, scores)]
    return pd.DataFrame(rows, columns=["method", "target", "source", "score"]), candidates


# ----------------------------------------------------------------------------- evaluation


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


def _target_bootstrap(per_target: pd.DataFrame, names: list[str], boot: int, seed: int, level: float) -> pd.DataFrame:
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
    summary = _target_bootstrap(per_target, names, boot, seed, level)
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


# ----------------------------------------------------------------------------- reading back


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
        tidy = _read_csv(path, ["value", "n", "boot_lo", "boot_hi", "seed_lo", "seed_hi"])
        side = path.with_name(f"{path.stem}.predictions.csv")
        preds = read_predictions(side) if side.is_file() else None
        meta = {"percent": bool((tidy.get("unit") == "x100").any()) if "unit" in tidy else True}
    need = {"method", "target", "metric", "value"}
    if not need <= set(tidy.columns):
        raise EvaluationError(f"{path}: lacks columns {sorted(need - set(tidy.columns))}; "
                              "expected the output of 'taskrank evaluate --out'")
    tidy["target"] = tidy["target"].astype(str)
    return tidy, preds, meta
