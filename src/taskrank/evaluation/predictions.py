"""The predictions an evaluation judges: a table ``method, target, source, score`` (higher =
better source), from estimators run on a pool (:func:`pool_predictions`) or from CSV files
(:func:`read_predictions`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..ordering import nan_last
from .gold import EvaluationError, read_csv


def read_predictions(path: str | Path, method: str | None = None) -> pd.DataFrame:
    """A predictions CSV (target, source, score[, method]) as method, target, source, score.

    Without a ``method`` column the method is named ``method`` or the file's stem.
    """
    path = Path(path)
    df = read_csv(path, ["score"])
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
    from ..progress import track
    from ..ranking import score_sources  # ranking reaches pools and models: loaded when scoring
    from ..tasks import load_task

    folder = Path(tasks_folder) if tasks_folder is not None else None
    estimators = [pool.estimator(m, model=model) for m in methods]
    rows, candidates = [], {}
    for target in track(list(targets), description="evaluate: scoring", total=len(targets), line=str):
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
            scores = nan_last(scores)
            rows += [{"method": name, "target": target, "source": t["name"], "score": float(s)}
                     for t, s in zip(keep, scores)]
    return pd.DataFrame(rows, columns=["method", "target", "source", "score"]), candidates
