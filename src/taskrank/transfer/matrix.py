"""The transfer matrix (ground truth): tidy runs -> per-pair statistics -> gold rankings.

A *runs* table has one row per finished training run: ``target``, ``source`` ("" for the
target-only baseline), ``seed`` (int), ``setting`` (str, e.g. "minilm/finetune"), ``metric``
(str) and ``value`` (float; NaN = the metric was undefined for that run, e.g. Pearson of
constant predictions — it propagates rather than being dropped). ``pair_table`` turns it
into one row per (setting, target, source) with TaskWeb's PC, PM and pair score.

How TaskWeb computes PC and PM (checked against its release, not only its prose): the
released PC of a (target, source) pair equals mean over seeds s of (v_s / b_s) − 1, and PM
the share of seeds with v_s > b_s, where v_s is the source→target run and b_s the
target-only run *of the same seed*. Fitting 8 per-seed baselines to the ~21 released PCs of
each target leaves residuals ≤ 1e-10 in all seven settings that carry PC, and the fitted
baselines then reproduce every checkable released PM (tests/test_matrix.py); a single
baseline for all seeds (PC = mean / baseline − 1) misses by up to 6e-2. Hence
``pairing="seed"`` is the default; ``pairing="mean"`` gives mean / mean-baseline − 1 and
"seed beats the mean baseline".
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "RUN_COLUMNS",
    "PAIR_COLUMNS",
    "TASKWEB_METRICS",
    "taskweb_pair_score",
    "pair_table",
    "read_taskweb_runs",
    "import_taskweb",
    "gold_scores",
]

RUN_COLUMNS = ["target", "source", "seed", "setting", "metric", "value"]
PAIR_COLUMNS = [
    "setting", "target", "source", "metric", "n_seeds", "n_paired",
    "mean", "std", "baseline", "PC", "PM", "score",
]

# TaskWeb's target metrics (taskshop/metrics.py, TASK2METRICS): the mean of these eval_*
# values, each divided by 100 when it is > 1 (taskshop/load.py, postprocess_metric).
TASKWEB_METRICS = {
    "cb": ("accuracy", "f1"),
    "mrpc": ("accuracy", "f1"),
    "qqp": ("accuracy", "f1"),
    "squad_v2": ("exact", "f1"),
    "stsb": ("pearson", "spearmanr"),
}  # every other task: ("accuracy",)


def taskweb_pair_score(pc, pm):
    """TaskWeb's pair score 0.5·PC + 0.5·(0.2·PM − 0.1) (taskshop/utils.py, combine_scores)."""
    return 0.5 * pc + 0.5 * (0.2 * pm - 0.1)


# ----------------------------------------------------------------------------- pair table


def _check_runs(runs: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks columns {missing}; needs {RUN_COLUMNS}")
    r = runs[RUN_COLUMNS].copy()
    for c in ("target", "setting", "metric"):
        if r[c].isna().any():
            raise ValueError(f"runs table: empty {c!r} in rows {r.index[r[c].isna()].tolist()[:5]}")
    r["source"] = r["source"].fillna("").astype(str)
    r["value"] = pd.to_numeric(r["value"], errors="raise").astype(float)
    r["seed"] = r["seed"].astype(int)
    dup = r.duplicated(["setting", "target", "source", "seed"], keep=False)
    if dup.any():
        raise ValueError(
            "runs table: more than one run for (setting, target, source, seed): "
            f"{r.loc[dup, ['setting', 'target', 'source', 'seed']].drop_duplicates().head().values.tolist()}"
        )
    n_metrics = r.groupby(["setting", "target"])["metric"].nunique()
    if (n_metrics > 1).any():
        bad = n_metrics[n_metrics > 1].index.tolist()
        raise ValueError(f"runs table: more than one metric for (setting, target) {bad}; filter first")
    return r


def pair_table(runs: pd.DataFrame, pairing: str = "seed") -> pd.DataFrame:
    """One row per (setting, target, source) with PC, PM and TaskWeb's pair score.

    Columns: setting, target, source, metric, n_seeds (source→target runs), n_paired (of those,
    seeds that also have a target-only run), mean, std (sample std over seeds, ddof=1; TaskWeb's
    release prints the population std), baseline (mean of the target's target-only runs),
    PC, PM, score = 0.5·PC + 0.5·(0.2·PM − 0.1).

    pairing
      * ``"seed"`` (TaskWeb, see module doc): PC = mean_s(v_s / b_s) − 1 and PM = share of
        seeds with v_s > b_s, over the n_paired seeds run both ways.
      * ``"mean"``: PC = mean / baseline − 1 and PM = share of seeds with v_s > baseline.

    PC, PM and score are NaN where there is no baseline (or no paired seed), or where a
    baseline used is ≤ 0 (a relative change is meaningless then).
    """
    if pairing not in ("seed", "mean"):
        raise ValueError(f"pairing must be 'seed' or 'mean', got {pairing!r}")
    r = _check_runs(runs)
    keys = ["setting", "target", "source"]
    is_base = r["source"] == ""
    base = r[is_base].set_index(["setting", "target", "seed"])["value"].rename("b")
    base_mean = _strict(base.groupby(level=["setting", "target"]), "mean").rename("bm")
    src = r[~is_base].join(base, on=["setting", "target", "seed"]).join(base_mean, on=["setting", "target"])
    src["ratio"] = src["value"] / src["b"]
    src["beats"] = (src["value"] > src["b"]).astype(float).where(src["value"].notna())
    src["beats_mean"] = (src["value"] > src["bm"]).astype(float).where(src["value"].notna())
    g = src.groupby(keys, sort=True)
    out = pd.DataFrame({
        "metric": g["metric"].first(),
        "n_seeds": g["seed"].size().astype("Int64"),
        "n_paired": g["b"].count().astype("Int64"),
        "mean": _strict(g["value"], "mean"),
        "std": _strict(g["value"], "std"),
        "baseline": g["bm"].first(),
    })
    if pairing == "seed":
        paired = src[src["b"].notna()]
        gp = paired.groupby(keys)
        pc = (_strict(gp["ratio"], "mean") - 1).reindex(out.index)
        pm = _strict(gp["beats"], "mean").reindex(out.index)
        valid = (gp["b"].min() > 0).reindex(out.index, fill_value=False)
    else:
        pc = out["mean"] / out["baseline"] - 1
        pm = _strict(g["beats_mean"], "mean")
        valid = out["baseline"] > 0
    out["PC"] = pc.where(valid)
    out["PM"] = pm.where(valid)
    out["score"] = taskweb_pair_score(out["PC"], out["PM"])
    return out.reset_index()[PAIR_COLUMNS]


def _strict(grouped, how: str) -> pd.Series:
    """Group mean / sample std that is NaN when any value in the group is NaN."""
    res = grouped.mean() if how == "mean" else grouped.std(ddof=1)
    return res.where(grouped.count() == grouped.size())


# ----------------------------------------------------------------------------- TaskWeb import


def _metrics_for(task: str) -> tuple[str, ...]:
    return TASKWEB_METRICS.get(task, ("accuracy",))


def _metric_name(task: str) -> str:
    m = _metrics_for(task)
    return m[0] if len(m) == 1 else f"mean({','.join(m)})"


def _taskweb_value(task: str, evals) -> float:
    """TaskWeb's target value from one run's eval_* numbers (NaN if one is missing)."""
    vals = []
    for m in _metrics_for(task):
        v = evals.get(f"eval_{m}", np.nan)
        if isinstance(v, list):
            v = v[0] if len(v) == 1 else np.nan
        v = float(v) if v is not None else np.nan
        vals.append(v / 100.0 if v > 1.0 else v)
    return float(np.mean(vals))


def _lr_str(lr: float) -> str:
    """TaskWeb's learning-rate spelling in run names: 3e-05 -> "3e5" (taskshop/utils.py lr2str)."""
    s = f"{float(lr):.0e}"
    return f"{s[0]}e{s[-1]}"


def _canonical(configs_dir: Path, model: str, adaptation: str) -> dict[str, tuple[int, str, int]]:
    path = configs_dir / f"{model}_{adaptation}.json"
    if not path.exists():
        raise FileNotFoundError(f"no TaskWeb config for {model}/{adaptation}: {path}")
    cfg = json.loads(path.read_text())
    return {t: (int(c["epochs"]), _lr_str(c["learning_rate"]), int(c["batch_size"])) for t, c in cfg.items()}


def _settings(configs_dir: Path, model, adaptation) -> list[tuple[str, str]]:
    found = sorted(tuple(p.stem.split("_", 1)) for p in configs_dir.glob("*_*.json"))
    if not found:
        raise FileNotFoundError(f"no TaskWeb configs (<model>_<adaptation>.json) in {configs_dir}")
    pick = [(m, a) for m, a in found
            if (model is None or m == model) and (adaptation is None or a == adaptation)]
    if not pick:
        raise ValueError(f"no TaskWeb setting {model}/{adaptation} in {configs_dir}; have {found}")
    return pick


def _layout(path: Path) -> str:
    if (path / "raw_per_seed_results.csv").exists():
        return "csv"
    if (path / "data" / "taskweb" / "results").is_dir() and (path / "configs").is_dir():
        return "clone"
    raise FileNotFoundError(
        f"{path} is neither the converted TaskWeb release (raw_per_seed_results.csv, "
        "transfer_matrix.csv, configs/) nor a clone of danieljkim0118/TaskWeb "
        "(data/taskweb/results/, configs/)"
    )


_RUN_DIR = re.compile(
    r"^(?P<model>[^-]+)(?:-(?P<adaptation>[a-z]+))?-e(?P<epochs>\d+)-lr(?P<lr>[0-9e]+)"
    r"-b(?P<batch_size>\d+)-s(?P<seed>\d+)$"
)


def _clone_rows(results: Path) -> pd.DataFrame:
    """eval_results.json files of a TaskWeb clone: results/<target>/[<source>/]<run>/."""
    rows = []
    for f in sorted(results.glob("*/*/eval_results.json")) + sorted(results.glob("*/*/*/eval_results.json")):
        parts = f.relative_to(results).parts
        target, source = parts[0], (parts[1] if len(parts) == 4 else "")
        m = _RUN_DIR.match(parts[-2])
        if m is None:
            continue
        d = m.groupdict()
        rows.append({
            "target": target, "source": source, "model": d["model"],
            "adaptation": d["adaptation"] or "finetune", "epochs": int(d["epochs"]),
            "lr": d["lr"], "batch_size": int(d["batch_size"]), "seed": int(d["seed"]),
            "value": _taskweb_value(target, json.loads(f.read_text())),
        })
    return pd.DataFrame(rows, columns=["target", "source", "model", "adaptation", "epochs",
                                       "lr", "batch_size", "seed", "value"])


def read_taskweb_runs(path, model: str | None = "t5l", adaptation: str | None = "finetune") -> pd.DataFrame:
    """TaskWeb's per-seed runs as a tidy runs table (setting = "<model>/<adaptation>").

    ``path`` is either the converted release (``raw_per_seed_results.csv`` + ``configs/``) or
    a clone of github.com/danieljkim0118/TaskWeb (``data/taskweb/results/<target>/<source>/
    <model>[-<adaptation>]-e<E>-lr<LR>-b<B>-s<seed>/eval_results.json`` + ``configs/``; a
    target-only run would sit at ``results/<target>/<run>/`` — TaskWeb's loader looks there —
    and is read as source ""). Only the canonical runs of ``configs/<model>_<adaptation>.json``
    are kept (some targets were also run under other hyper-parameters). The value is TaskWeb's
    target metric (``TASKWEB_METRICS``). ``model``/``adaptation`` None = all.
    """
    path = Path(path)
    configs = path / "configs"
    if _layout(path) == "csv":
        raw = pd.read_csv(path / "raw_per_seed_results.csv", dtype={"lr": str})
        raw["value"] = [_taskweb_value(t, row) for t, row in zip(raw["target"], raw.to_dict("records"))]
    else:
        raw = _clone_rows(path / "data" / "taskweb" / "results")
    parts = []
    for m, a in _settings(configs, model, adaptation):
        canon = _canonical(configs, m, a)
        d = raw[(raw["model"] == m) & (raw["adaptation"] == a)]
        keep = [canon.get(t) == (e, lr, b) for t, e, lr, b in
                zip(d["target"], d["epochs"], d["lr"].astype(str), d["batch_size"])]
        d = d[keep]
        parts.append(pd.DataFrame({
            "target": d["target"], "source": d["source"].fillna("").astype(str),
            "seed": d["seed"].astype(int), "setting": f"{m}/{a}",
            "metric": d["target"].map(_metric_name), "value": d["value"].astype(float),
        }))
    return pd.concat(parts, ignore_index=True)[RUN_COLUMNS]


def import_taskweb(path, model: str | None = "t5l", adaptation: str | None = "finetune") -> pd.DataFrame:
    """TaskWeb's transfer results as a pair table (same columns as ``pair_table``).

    ``model``/``adaptation`` pick the setting(s) ("t5l/finetune" is TaskWeb's gold); None = all.

    From the converted release (the layout of ``../shared/data/taskweb``): n_seeds, mean and std are
    computed from ``raw_per_seed_results.csv`` (canonical runs, TaskWeb's metric); PC and PM are
    TaskWeb's released values from ``transfer_matrix.csv`` — they cannot be recomputed because
    the release has no target-only runs — and baseline is its ``implied_baseline_perf``
    (median over sources of mean/(1+PC), a reconstruction); score is recomputed from PC, PM.
    Rows are the pairs of ``transfer_matrix.csv`` (roberta has no cb target there).
    Note: TaskWeb's PC/PM for cb were computed on accuracy alone, while ``mean`` for cb is the
    mean of accuracy and F1 (TaskWeb's metric list); for the other 20 targets they agree.

    From a clone of the TaskWeb repository: ``pair_table`` of ``read_taskweb_runs``; PC/PM need
    target-only runs under ``results/<target>/<run>/``, and are NaN (with a warning) without
    them. The clone's pickled ``taskweb.p`` is deliberately not read (no unpickling of
    downloaded files).
    """
    path = Path(path)
    runs = read_taskweb_runs(path, model, adaptation)
    if _layout(path) == "clone":
        pairs = pair_table(runs)
        if pairs["PC"].isna().all():
            warnings.warn(f"{path}: no target-only runs found, so PC/PM/score are NaN", stacklevel=2)
        return pairs
    stats_ = pair_table(runs)
    tm = pd.read_csv(path / "transfer_matrix.csv")
    tm["setting"] = tm["model"] + "/" + tm["adaptation"]
    tm = tm[tm["setting"].isin(runs["setting"].unique())]
    out = tm[["setting", "target", "source", "PC", "PM", "implied_baseline_perf"]].merge(
        stats_.drop(columns=["baseline", "PC", "PM", "score", "n_paired"]),
        on=["setting", "target", "source"], how="left", validate="one_to_one",
    ).rename(columns={"implied_baseline_perf": "baseline"})
    out["n_paired"] = pd.array([pd.NA] * len(out), dtype="Int64")
    out["score"] = taskweb_pair_score(out["PC"], out["PM"])
    return out[PAIR_COLUMNS].sort_values(["setting", "target", "source"]).reset_index(drop=True)


# ----------------------------------------------------------------------------- gold, figure


def gold_scores(pairs: pd.DataFrame, target: str, by: str = "score", setting: str | None = None) -> pd.Series:
    """Gold value of each source for one target, indexed by source (NaN values dropped).

    ``by`` is any numeric pair-table column ("score" = TaskWeb's gold, "mean", "PC", ...).
    ``setting`` may be omitted when the table holds only one.
    """
    if by not in pairs.columns:
        raise ValueError(f"pair table has no column {by!r}; have {list(pairs.columns)}")
    settings = pairs["setting"].unique().tolist()
    if setting is None:
        if len(settings) > 1:
            raise ValueError(f"pair table holds several settings {settings}; pass setting=")
    elif setting not in settings:
        raise ValueError(f"no setting {setting!r} in pair table; have {settings}")
    d = pairs[(pairs["target"] == target) & ((pairs["setting"] == setting) if setting else True)]
    if d.empty:
        raise ValueError(f"no pairs for target {target!r}; targets: {sorted(pairs['target'].unique())}")
    s = d.set_index("source")[by].astype(float).dropna()
    s.index.name, s.name = "source", by
    return s.sort_index()
