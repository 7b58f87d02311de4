"""Split-seed reliability ("ceiling") of a ground-truth transfer matrix.

A gold ranking is itself measured with noise: training seeds disagree. Before it judges a method,
the gold is judged against itself: for each target, its sources are ranked by the gold computed from
some training seeds, and that ranking is scored against the gold computed from the *other* seeds,
with the same metric functions the evaluation uses (:func:`taskrank.metrics.evaluate`: TaskWeb NDCG,
Spearman, Regret@k, precision@k, ...). No method can be expected to agree with the gold much better
than the gold agrees with itself across seeds.

Splits (``split``)
  * ``"one"``: every seed in turn against all the others (seed s vs the rest).
  * ``"half"``: ``n_splits`` seeded random halves (⌊n/2⌋ seeds vs the rest; all distinct halves when
    there are no more than ``n_splits``); the same splits serve every target. With 3 seeds a half
    is one seed, so "half" is "one".

Each metric is averaged over a target's splits, then over targets, with a percentile bootstrap over
targets (:func:`taskrank.evaluation.scoring.target_bootstrap`, so it resamples targets exactly as the
evaluation's interval does).

How the gold of a subset of seeds is computed: :func:`taskrank.transfer.matrix.pair_table` on the runs
of those seeds only (``pairing="seed"``), i.e. TaskWeb's pair score 0.5·PC + 0.5·(0.2·PM − 0.1) with
PC = mean over the subset's seeds of v_s / b_s − 1 and PM = share of the subset's seeds with v_s > b_s,
where b_s is the target-only baseline *of the same seed*. Regret and ESM-NDCG use the subset's mean
performance, ESM's Regret the subset's mean baseline. The one-seed ranking of a target is thus its
sources' order by that seed's score (for one seed the score is monotone in v_s).

* taskrank runs (``runs.csv`` of ``taskrank transfer export``): the target-only runs of the same seeds
  are in the table. transfer17 (recipe L, 5 seeds), one seed vs rest: TaskWeb NDCG 78.4, Spearman 0.67
  (its first grid, 3 seeds of a 1-epoch target recipe: 65.7, 0.42).
* TaskWeb's release has no target-only runs (:func:`taskweb_runs` puts baselines in their place):
  ``baseline="seed"`` (default) reconstructs TaskWeb's own per-seed baselines: the 8 b_s that solve
  mean_s(v_s / b_s) − 1 = released PC for all ~21 sources of a target (least squares, residual
  below 1e-10; the resulting 8-seed pair table gives back every released PC and PM; a b_s within
  5e-9 of a run of that seed is that run's value, so PM's strict ">" sees the tie — the rule of
  tests/test_matrix.py). Where the TaskWeb metric does not fit (cb: TaskWeb's PC/PM are on accuracy
  alone, not the mean of accuracy and F1), the target's first metric is used instead, for its runs
  too. Where the runs do not determine 8 baselines (wsc in three settings), the release's
  ``implied_baseline_perf`` (one number per target) stands for every seed; the notes say so.
  ``baseline="implied"`` uses that one number everywhere. t5l/finetune, piqa left out as TaskWeb
  does, one seed vs the other seven: NDCG 83.6 with "seed" (83.5 with "implied"), Spearman 0.72
  (0.74 only if the gold is ordered by PC or by mean performance instead of the pair score).
  Where no PC is released (t5b/lora, t5l/pfeiffer; roberta has no cb pairs) there is no baseline
  and no pair score: rank by ``by="mean"`` there.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics
from .evaluation import Evaluation, EvaluationError, is_scaled, metric_order
from .evaluation.scoring import RANDOM, target_bootstrap
from .transfer.matrix import (RUN_COLUMNS, TASKWEB_METRICS, _canonical, import_taskweb, pair_table,
                              read_taskweb_runs)

__all__ = ["SPLITS", "CEILING", "ReliabilityError", "Reliability", "seed_splits", "taskweb_runs",
           "reliability", "add_ceiling", "with_ceiling", "load_seed_runs"]

SPLITS = ("one", "half")
CEILING = {"one": "gold ceiling (1 seed vs rest)", "half": "gold ceiling (half vs half)"}


class ReliabilityError(EvaluationError):
    """Runs that cannot give a split-seed ceiling; the message names the file, setting or seeds."""


# ----------------------------------------------------------------------------- splits


def seed_splits(seeds: Sequence[int], split: str = "one", n_splits: int = 20, seed: int = 0) -> list[tuple[tuple, tuple]]:
    """(ranking seeds, gold seeds) pairs: every seed vs the rest, or ``n_splits`` seeded random halves."""
    seeds = sorted(int(s) for s in seeds)
    if len(seeds) < 2:
        raise ReliabilityError(f"a split-seed ceiling needs at least 2 training seeds; the runs have {seeds}")
    if split == "one":
        picks = [(s,) for s in seeds]
    elif split == "half":
        halves = list(itertools.combinations(seeds, len(seeds) // 2))
        if len(halves) > n_splits:
            rng = np.random.default_rng(seed)
            halves = [halves[i] for i in sorted(rng.choice(len(halves), size=n_splits, replace=False))]
        picks = halves
    else:
        raise ReliabilityError(f"unknown split {split!r}; choose from {SPLITS}")
    return [(p, tuple(s for s in seeds if s not in p)) for p in picks]


# ----------------------------------------------------------------------------- TaskWeb baselines


def _fit_seed_baselines(v: pd.DataFrame, pc: pd.Series) -> pd.Series | None:
    """Per-seed baselines b with mean_s(v_s / b_s) − 1 = PC for every source (least squares), or None
    when the runs do not determine them (rank, residual > 1e-6, or a baseline ≤ 0)."""
    ok = v.notna().all(axis=1) & pc.reindex(v.index).notna()
    v, y = v[ok], pc.reindex(v.index)[ok].to_numpy() + 1
    a = v.to_numpy() / v.shape[1]
    x, _, rank, _ = np.linalg.lstsq(a, y, rcond=None)
    if rank < v.shape[1] or np.abs(a @ x - y).max() > 1e-6 or (x <= 0).any():
        return None
    b = 1 / x
    for j in range(len(b)):  # the baseline scored exactly what a run scored: keep the tie for PM
        near = np.abs(v.iloc[:, j].to_numpy() - b[j])
        if near.min() < 5e-9:
            b[j] = v.iloc[near.argmin(), j]
    return pd.Series(b, index=v.columns)


def _first_metric_values(raw: pd.DataFrame, configs: Path, setting: str, target: str) -> pd.Series:
    """A target's canonical runs scored on its first TaskWeb metric alone, by (source, seed)."""
    model, adaptation = setting.split("/")
    epochs, lr, batch = _canonical(configs, model, adaptation)[target]
    d = raw[(raw["model"] == model) & (raw["adaptation"] == adaptation) & (raw["target"] == target)
            & (raw["epochs"] == epochs) & (raw["lr"].astype(str) == lr) & (raw["batch_size"] == batch)]
    v = d[f"eval_{TASKWEB_METRICS[target][0]}"].astype(float)
    v = v.where(v <= 1.0, v / 100.0)
    return pd.Series(v.to_numpy(), index=pd.MultiIndex.from_arrays([d["source"].fillna("").astype(str), d["seed"]]))


def taskweb_runs(path, model: str | None = "t5l", adaptation: str | None = "finetune",
                 baseline: str = "seed") -> tuple[pd.DataFrame, list[str]]:
    """TaskWeb's per-seed runs with target-only baselines put in (see the module doc), and notes.

    A clone of TaskWeb's repository that holds its own target-only runs keeps them. ``baseline``:
    "seed" (reconstructed per-seed baselines) or "implied" (``implied_baseline_perf`` for every seed).
    """
    if baseline not in ("seed", "implied"):
        raise ReliabilityError(f"unknown TaskWeb baseline {baseline!r}; choose 'seed' or 'implied'")
    path = Path(path)
    try:
        runs = read_taskweb_runs(path, model, adaptation)
        if (runs["source"] == "").any():
            return runs, []
        pairs = import_taskweb(path, model, adaptation)
    except (FileNotFoundError, ValueError) as e:
        raise ReliabilityError(str(e)) from None
    raw = None
    parts, lacking, implied, refit = [runs], {}, [], []
    for (setting, target), r in runs.groupby(["setting", "target"], sort=True):
        d = pairs[(pairs["setting"] == setting) & (pairs["target"] == target)].set_index("source")
        v = r.pivot(index="source", columns="seed", values="value")
        metric = r["metric"].iloc[0]
        b = _fit_seed_baselines(v, d["PC"]) if baseline == "seed" and d["PC"].notna().any() else None
        if b is None and baseline == "seed" and d["PC"].notna().any() and len(TASKWEB_METRICS.get(target, ())) > 1:
            if raw is None:
                raw = pd.read_csv(path / "raw_per_seed_results.csv", dtype={"lr": str})
            first = _first_metric_values(raw, path / "configs", setting, target)
            alt = r.assign(value=[first.get((s, sd), np.nan) for s, sd in zip(r["source"], r["seed"])])
            b = _fit_seed_baselines(alt.pivot(index="source", columns="seed", values="value"), d["PC"])
            if b is not None:
                parts[0] = parts[0].drop(index=r.index)
                metric = TASKWEB_METRICS[target][0]
                parts.append(alt.assign(metric=metric))
                refit.append(f"{target} ({setting}, on {metric})")
        if b is None:
            base = d["baseline"].dropna()
            if base.empty:
                lacking.setdefault(setting, []).append(target)
                continue
            b = pd.Series(float(base.iloc[0]), index=v.columns)
            if baseline == "seed":
                implied.append(f"{target} ({setting})")
        parts.append(pd.DataFrame({"target": target, "source": "", "seed": b.index.astype(int), "setting": setting,
                                   "metric": metric, "value": b.to_numpy()}))
    n_targets = runs.groupby("setting")["target"].nunique()
    out = [f"TaskWeb {s}: no baseline for {'any target' if len(t) == n_targets[s] else ', '.join(t)} (no released "
           "PC or implied baseline), so no pair score (rank by 'mean')" for s, t in lacking.items()]
    out.append("TaskWeb has no target-only runs: " + (
        "per-seed baselines reconstructed from the released PC" if baseline == "seed"
        else "the release's implied_baseline_perf stands for every seed's baseline"))
    if refit:
        out.append("on their first metric, as TaskWeb's PC/PM: " + ", ".join(refit))
    if implied:
        out.append("runs do not determine per-seed baselines, implied_baseline_perf used: " + ", ".join(implied))
    return pd.concat(parts, ignore_index=True)[RUN_COLUMNS], out


# ----------------------------------------------------------------------------- reliability


@dataclass
class Reliability:
    """Per-target metrics averaged over splits (fractions), the mean over targets with a bootstrap
    interval, and what was computed (``meta``)."""

    per_target: pd.DataFrame
    summary: pd.DataFrame
    meta: dict = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        return list(self.summary["metric"])

    def wide(self, percent: bool = True) -> pd.DataFrame:
        """One row per target, then "(mean)", "(mean) lo" and "(mean) hi" (the bootstrap interval);
        NDCG and Regret ×100 when ``percent``."""
        s = self.summary.set_index("metric")
        extra = pd.DataFrame([{"target": name, "n_sources": np.nan, "n_splits": np.nan,
                               **{m: s.loc[m, col] for m in self.metrics}}
                              for name, col in (("(mean)", "mean"), ("(mean) lo", "boot_lo"), ("(mean) hi", "boot_hi"))])
        out = pd.concat([self.per_target, extra], ignore_index=True)
        for m in self.metrics:
            out[m] = out[m].astype(float) * (100.0 if percent and is_scaled(m) else 1.0)
        for c in ("n_sources", "n_splits"):
            out[c] = out[c].astype("Int64")
        return out.assign(setting=self.meta.get("setting", ""), split=self.meta.get("split", ""))[
            ["setting", "split", "target", "n_sources", "n_splits", *self.metrics]]

    def tidy(self, percent: bool = True) -> pd.DataFrame:
        """Long table as ``Evaluation.tidy``: target ("(mean)" for the average), metric, value, n,
        boot_lo, boot_hi, unit."""
        long = self.per_target.melt(id_vars=["target", "n_sources"], value_vars=self.metrics,
                                    var_name="metric", value_name="value").rename(columns={"n_sources": "n"})
        summ = self.summary.rename(columns={"mean": "value", "n_targets": "n"}).assign(target="(mean)")
        cols = ["target", "metric", "value", "n", "boot_lo", "boot_hi"]
        out = pd.concat([summ[cols], long.reindex(columns=cols)], ignore_index=True)
        scale = out["metric"].map(lambda m: 100.0 if percent and is_scaled(m) else 1.0)
        for c in ("value", "boot_lo", "boot_hi"):
            out[c] = out[c].astype(float) * scale
        out["n"] = out["n"].astype("Int64")
        out["unit"] = out["metric"].map(lambda m: ("x100" if percent else "fraction") if is_scaled(m) else
                                        {"rho": "rank", "spearman": "correlation", "kendall": "correlation"}.get(m, "fraction"))
        return out.assign(setting=self.meta.get("setting", ""), split=self.meta.get("split", ""))[
            ["setting", "split", *out.columns]]


def _target_rows(pred: pd.DataFrame, gold: pd.DataFrame, target: str, keep, by: str, perf: str,
                 ks, regret_baseline: bool) -> dict | None:
    p = pred[pred["target"] == target].set_index("source")[by].dropna()
    g = gold[gold["target"] == target].set_index("source")
    g = g[g[by].notna() & g[perf].notna()]
    names = sorted(set(p.index) & set(g.index) & (set(keep) if keep is not None else set(g.index)))
    if len(names) < 2:
        return None
    base = g["baseline"].dropna() if regret_baseline and "baseline" in g.columns else pd.Series(dtype=float)
    values = metrics.evaluate(p.reindex(names), g[by].reindex(names), g[perf].reindex(names), ks,
                              baseline=float(base.iloc[0]) if len(base) else None)
    return {"n_sources": len(names), **values}


def reliability(
    runs: pd.DataFrame,
    split: str = "one",
    n_splits: int = 20,
    seed: int = 0,
    ks: Iterable[int] = (1, 3, 5),
    by: str = "score",
    perf: str = "mean",
    exclude: Iterable[str] = (),
    targets: Iterable[str] | None = None,
    sources: dict[str, list[str]] | None = None,
    regret_baseline: bool = True,
    boot: int = 1000,
    level: float = 0.95,
) -> Reliability:
    """The split-seed ceiling of one setting's per-seed runs (see the module doc).

    ``targets``/``exclude`` pick targets (default: all); ``sources`` restricts each target's sources
    (e.g. to a pool's). A target needs two sources with gold in a split to count in it.
    """
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise ReliabilityError(f"runs table lacks columns {missing}; needs {RUN_COLUMNS}")
    settings = sorted(runs["setting"].astype(str).unique())
    if len(settings) != 1:
        raise ReliabilityError(f"runs hold settings {settings}; give one (--setting)")
    ks = tuple(int(k) for k in ks)
    splits = seed_splits(runs["seed"].astype(int).unique(), split, n_splits, seed)
    try:
        tables = {chosen: pair_table(runs[runs["seed"].astype(int).isin(chosen)])
                  for chosen in {s for pair in splits for s in pair}}
    except ValueError as e:
        raise ReliabilityError(f"runs table: {e}") from None
    for col in (by, perf):
        if col not in tables[splits[0][1]].columns:
            raise ReliabilityError(f"no pair-table column {col!r}; have {list(tables[splits[0][1]].columns)}")
    wanted = sorted(set(runs["target"].astype(str)) if targets is None else set(targets))
    wanted = [t for t in wanted if t not in set(exclude)]
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for t in wanted:
            got = [_target_rows(tables[a], tables[b], t, (sources or {}).get(t), by, perf, ks, regret_baseline)
                   for a, b in splits]
            got = [g for g in got if g is not None]
            if got:
                mean = pd.DataFrame(got).mean()
                rows.append({"target": t, "n_sources": int(round(mean["n_sources"])), "n_splits": len(got),
                             **mean.drop("n_sources").to_dict()})
    if not rows:
        raise ReliabilityError(f"no target has two sources with a gold {by!r} in every part of a split "
                               "(target-only runs missing? rank by --gold mean)")
    per_target = pd.DataFrame(rows)
    names = [m for m in metric_order(ks) if m in per_target.columns]
    per_target = per_target[["target", "n_sources", "n_splits", *names]]
    summary = target_bootstrap(per_target.assign(method=CEILING[split]), names, boot, seed, level)
    meta = {"setting": settings[0], "split": split, "splits": [[list(a), list(b)] for a, b in splits],
            "seeds": sorted(int(s) for s in runs["seed"].unique()), "by": by, "perf": perf, "ks": list(ks),
            "excluded": sorted(set(exclude)), "boot": boot, "level": level, "seed": seed, "notes": []}
    return Reliability(per_target, summary.drop(columns="method"), meta)


# ----------------------------------------------------------------------------- next to the methods


def add_ceiling(ev: Evaluation, runs: pd.DataFrame, split: str = "one", n_splits: int = 20,
                notes: Sequence[str] = ()) -> Evaluation:
    """The evaluation with the gold's split-seed ceiling as one more method, right after the random
    row: per target on the sources the methods were judged on, and averaged with the same bootstrap
    over targets (same draws, same seed). No seed interval (it is itself a seed split)."""
    m = ev.meta
    judged = {t: sorted(d["source"]) for t, d in ev.predictions.groupby("target")}
    rel = reliability(runs, split, n_splits, m["seed"], m["ks"], m["gold_by"], m["perf"], targets=m["targets"],
                      sources=judged, regret_baseline=m["regret_baseline"], boot=m["boot"], level=m["level"])
    name = CEILING[split]
    pt = rel.per_target.assign(method=name).reindex(columns=ev.per_target.columns)
    summ = rel.summary.assign(method=name, seed_lo=math.nan, seed_hi=math.nan).reindex(columns=ev.summary.columns)
    summ = summ[summ["metric"].isin(ev.metrics)]

    def after_random(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
        is_random = old["method"] == RANDOM
        return pd.concat([old[is_random], new, old[~is_random]], ignore_index=True)

    meta = dict(m)
    meta["methods"] = [x for x in m["methods"] if x == RANDOM] + [name] + [x for x in m["methods"] if x != RANDOM]
    meta["notes"] = [*m.get("notes", []), *notes, f"'{name}': the gold of {'one training seed' if split == 'one' else 'half the seeds'} "
                     f"judged against the gold of the other seeds ({len(rel.meta['splits'])} splits): how well "
                     "this gold agrees with itself"]
    meta["ceiling"] = {"split": split, "splits": rel.meta["splits"]}
    return Evaluation(after_random(ev.per_target, pt), after_random(ev.summary, summ), ev.predictions, meta)


def load_seed_runs(matrix=None, taskweb=None, model: str | None = "t5l", adaptation: str | None = "finetune",
                   setting: str | None = None, baseline: str = "seed") -> tuple[pd.DataFrame, list[str], str]:
    """(per-seed runs of one setting, notes, origin) from a runs CSV or TaskWeb's release."""
    from .evaluation.gold import one_setting, read_csv

    if (matrix is None) == (taskweb is None):
        raise ReliabilityError("give per-seed runs (--matrix runs.csv) or TaskWeb's release (--taskweb PATH), not both")
    if taskweb is not None:
        path = Path(taskweb)
        if not path.exists():
            raise ReliabilityError(f"{path}: no such TaskWeb release")
        runs, notes = taskweb_runs(path, model, adaptation, baseline)
        origin = f"TaskWeb release {path}"
    else:
        path = Path(matrix)
        runs = read_csv(path, ["value"])
        if not {"seed", "value"} <= set(runs.columns):
            raise ReliabilityError(f"{path}: no per-seed data (no 'seed'/'value' columns): the split-seed ceiling "
                                   "needs the runs (runs.csv of 'taskrank transfer export') or --taskweb")
        missing = [c for c in RUN_COLUMNS if c not in runs.columns]
        if missing:
            raise ReliabilityError(f"{path}: runs table lacks columns {missing}")
        runs["source"] = runs["source"].fillna("").astype(str)
        notes = [] if (runs["source"] == "").any() else [f"{path}: no target-only runs, so no pair score"]
        origin = str(path)
    runs = one_setting(runs[RUN_COLUMNS], setting, origin)
    return runs.reset_index(drop=True), notes, origin


def with_ceiling(ev: Evaluation, gold, taskweb=None, model: str | None = "t5l", adaptation: str | None = "finetune",
                 split: str = "one", n_splits: int = 20) -> Evaluation:
    """``add_ceiling`` wherever per-seed runs are known (the gold's runs table, or TaskWeb's per-seed
    release); otherwise the evaluation with a note saying why there is no ceiling."""
    try:
        if gold.runs is not None:
            runs, notes = gold.runs, []
        elif taskweb is not None:
            runs, notes, _ = load_seed_runs(taskweb=taskweb, model=model, adaptation=adaptation,
                                            setting=ev.meta.get("setting") or None)
        else:
            raise ReliabilityError("no per-seed runs with target-only baselines")
        return add_ceiling(ev, runs, split, n_splits, notes=[f"ceiling: {n}" for n in notes])
    except ReliabilityError as e:
        ev.meta.setdefault("notes", []).append(f"no split-seed ceiling of the gold: {e}")
        return ev
