"""TaskShop (TaskWeb, Kim et al. 2023): transitive transfer estimates through pivot tasks.

    score(t, s) = λ · mean_{p ∈ P(t, s)} [ ½·TW(s→p) + ½·sim′(t, p) ] + (1 − λ) · sim″(t, s)

TW(s→p) is a known transfer score (TaskWeb's pair score), sim a direct estimate from any
estimator. The point is to score a target that has *no* transfer results: only the sources'
transfers to other tasks (the pivots) are needed. Reference: TaskWeb ``taskshop/
taskshop_predict.py`` (``predict_transfer_roe`` / ``predict_transfer_llm``, ``process_scores``).
Its extra rescaling 5·score − 0.6 changes no ranking and is left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["taskshop", "NORMALISE", "FALLBACK"]

NORMALISE = ("none", "zscore", "minmax", "taskweb-llm")
FALLBACK = ("mean", "zero", "nan")


def _table(df: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = [c for c in ("target", "source", "score") if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; needs target, source, score")
    d = df[["target", "source", "score"]].copy()
    d["score"] = pd.to_numeric(d["score"], errors="raise").astype(float)
    d = d[d["target"] != d["source"]]
    dup = d.duplicated(["target", "source"], keep=False)
    if dup.any():
        raise ValueError(f"{name}: repeated (target, source) pairs "
                         f"{d.loc[dup, ['target', 'source']].drop_duplicates().values.tolist()[:5]}")
    return d.dropna(subset=["score"])


def _per_target(d: pd.DataFrame, how: str) -> pd.Series:
    g = d.groupby("target")["score"]
    if how == "zscore":
        sd = g.transform(lambda x: x.std(ddof=0))
        return ((d["score"] - g.transform("mean")) / sd.where(sd > 0)).fillna(0.0)
    lo, hi = g.transform("min"), g.transform("max")
    return ((d["score"] - lo) / (hi - lo).where(hi > lo)).fillna(0.0)


def _direct_terms(direct: pd.DataFrame, normalise: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sim′ used with the pivots, sim″ used as the direct term), each target × task."""
    d = direct.copy()
    if normalise == "none":
        s1 = s2 = d["score"]
    elif normalise in ("zscore", "minmax"):
        s1 = s2 = _per_target(d, normalise)
    elif normalise == "taskweb-llm":
        # Statistics over *all* raw direct scores (global, as TaskWeb computes them), then
        # applied to the symmetrised score ½·(sim(t, x) + sim(x, t)) where both directions exist.
        raw = d["score"]
        mu, sd, lo, hi = raw.mean(), raw.std(ddof=0), raw.min(), raw.max()
        rev = d.set_index(["source", "target"])["score"]
        back = rev.reindex(pd.MultiIndex.from_arrays([d["target"], d["source"]])).to_numpy()
        sym = pd.Series(np.where(np.isnan(back), raw, (raw.to_numpy() + back) / 2), index=d.index)
        s1 = (sym - mu) / sd if sd > 0 else sym * 0.0
        s2 = (sym - lo) / (hi - lo) if hi > lo else sym * 0.0
    else:
        raise ValueError(f"normalise must be one of {NORMALISE}, got {normalise!r}")
    piv = lambda s: d.assign(score=s).pivot(index="target", columns="source", values="score")
    return piv(s1), piv(s2)


def taskshop(
    direct: pd.DataFrame,
    transfer: pd.DataFrame,
    lam: float = 0.7,
    pivots=None,
    normalise: str = "none",
    fallback: str = "mean",
) -> pd.DataFrame:
    """TaskShop scores for every (target, source) row of ``direct``; higher = better source.

    direct: DataFrame (target, source, score) of direct similarity sim(target, source); it must
        also hold sim(t, p) for the pivots p you want used. Rows with target == source are ignored.
    transfer: DataFrame (target, source, score); a row is the known transfer score of
        source → target (TaskWeb: the pair score of ``pair_table``), so TW(s→p) is the row
        (target=p, source=s). The target being scored need not appear here.
    lam: λ, weight of the transitive part (TaskWeb tuned 0.7 on piqa).
    pivots: candidate pivot tasks; None = every task of ``transfer``. For each pair (t, s) the
        pivots used are those candidates p ∉ {s, t} with TW(s→p) and sim(t, p) both known (so a
        source-only task such as TaskWeb's squad_v2 never serves as a pivot, and TW(s→t) itself
        is never used).
    normalise: how direct scores enter
        * "none": raw scores for sim′ and sim″ (TaskWeb's RoE setting);
        * "zscore" / "minmax": per target, over all direct rows of that target
          ((x − mean)/std with the population std; (x − min)/(max − min)); a target whose
          scores are all equal gets 0;
        * "taskweb-llm": TaskWeb's LLM-similarity setting: sim′ = z-score and sim″ = min–max,
          both with statistics over all direct scores of all targets, applied to
          ½·(sim(t, x) + sim(x, t)) where ``direct`` holds both directions.
    fallback: a source with no usable pivot has no transitive evidence. "mean" (default) gives
        it the mean transitive term of the target's other sources, a neutral value, so its place
        among them is set by its direct score alone; if no source of the target has a pivot
        the transitive term is 0 for all. "zero" uses 0 (score = (1 − λ)·sim″, which favours or
        penalises such sources depending on the scale). "nan" leaves the score NaN.

    Returns DataFrame (target, source, score, n_pivots) sorted by target, then score descending
    (ties by source name).
    """
    if fallback not in FALLBACK:
        raise ValueError(f"fallback must be one of {FALLBACK}, got {fallback!r}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    d = _table(direct, "direct")
    w = _table(transfer, "transfer")
    s1, s2 = _direct_terms(d, normalise)

    cand = pd.Index(sorted(set(w["target"]) | set(w["source"])) if pivots is None else list(pivots))
    W = w.pivot(index="target", columns="source", values="score")  # W[p, s] = TW(s→p)
    rows = []
    for t, dt in d.groupby("target", sort=True):
        srcs = dt["source"].to_numpy()
        sim_tp = s1.loc[t].reindex(cand).to_numpy()                      # (P,)
        tw = W.reindex(index=cand, columns=srcs).to_numpy()               # (P, S)
        terms = 0.5 * tw + 0.5 * sim_tp[:, None]
        ok = ~np.isnan(terms)
        ok &= cand.to_numpy()[:, None] != srcs[None, :]                    # p ≠ s
        ok &= (cand.to_numpy() != t)[:, None]                              # p ≠ t
        n = ok.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            pivot_term = np.where(ok, terms, 0.0).sum(axis=0) / n
        if fallback == "mean":
            fill = float(np.mean(pivot_term[n > 0])) if (n > 0).any() else 0.0
        else:
            fill = 0.0 if fallback == "zero" else np.nan
        pivot_term = np.where(n > 0, pivot_term, fill)
        direct_term = s2.loc[t].reindex(srcs).to_numpy()
        rows.append(pd.DataFrame({
            "target": t, "source": srcs,
            "score": lam * pivot_term + (1 - lam) * direct_term, "n_pivots": n,
        }))
    if not rows:
        return pd.DataFrame(columns=["target", "source", "score", "n_pivots"])
    out = pd.concat(rows, ignore_index=True)
    out["_neg"] = -out["score"]
    out = out.sort_values(["target", "_neg", "source"], na_position="last").drop(columns="_neg")
    return out.reset_index(drop=True)
