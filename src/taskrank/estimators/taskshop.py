"""TaskShop (TaskWeb, Kim et al. 2023): transitive transfer estimates through pivot tasks.

    score(t, s) = λ · mean_{p ∈ P(t, s)} [ ½·TW(s→p) + ½·sim′(t, p) ] + (1 − λ) · sim″(t, s)

TW(s→p) is a known transfer score (TaskWeb's pair score), sim a direct estimate from any
estimator. The point is to score a target that has *no* transfer results: only the sources'
transfers to other tasks (the pivots) are needed. Reference: TaskWeb ``taskshop/
taskshop_predict.py`` (``predict_transfer_roe`` / ``predict_transfer_llm``, ``process_scores``).
Its extra rescaling 5·score − 0.6 changes no ranking and is left out.

:func:`taskshop` is the pure function over tables. :class:`TaskShop` wraps it as an estimator
(``taskshop:<direct method>``, e.g. ``taskshop:roe``): it scores the pool with the direct method
and takes TW from a transfer table ``target,source,score`` — by default the one shipped with the
package (``pools/default/transfer.csv``, written from taskrank's 17-task grid by
:func:`write_transfer`). Parameters ride in the name after commas:
``taskshop:roe,lam=0.5,normalise=zscore,fallback=zero,transfer=/path/matrix.csv``.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ParameterError
from ..models import BaseModel
from ..ordering import best_first
from ..store import ArtefactError
from .base import Composite
from .registry import UnknownEstimator, get_estimator, register_composite

__all__ = ["taskshop", "NORMALISE", "FALLBACK", "DEFAULT_TRANSFER", "TaskShop", "read_transfer",
           "write_transfer", "taskshop_factory"]

# The transfer table TaskShop uses unless told otherwise: shipped inside the package with the
# default pool (``taskrank pool transfer`` rewrites it from a grid's matrix.csv).
DEFAULT_TRANSFER = Path(__file__).resolve().parents[1] / "pools" / "default" / "transfer.csv"

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
        raise ParameterError(f"taskshop: normalise must be one of {NORMALISE}, got {normalise!r}")
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
        raise ParameterError(f"taskshop: fallback must be one of {FALLBACK}, got {fallback!r}")
    if not 0.0 <= lam <= 1.0:
        raise ParameterError(f"taskshop: lam must be in [0, 1], got {lam}")
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
        score = lam * pivot_term + (1 - lam) * direct_term
        best = best_first(srcs, score)
        rows.append(pd.DataFrame({"target": t, "source": srcs[best], "score": score[best], "n_pivots": n[best]}))
    if not rows:
        return pd.DataFrame(columns=["target", "source", "score", "n_pivots"])
    return pd.concat(rows, ignore_index=True)


# ----------------------------------------------------------------------------- transfer tables


def _transfer_frame(df: pd.DataFrame, where: str, setting: str | None = None, by: str = "score") -> pd.DataFrame:
    """(target, source, score) from a transfer table or a pair table (matrix.csv); one setting."""
    missing = [c for c in ("target", "source", by) if c not in df.columns]
    if missing:
        raise ArtefactError(f"{where}: transfer table lacks columns {missing}; needs target, source, {by} "
                            "(a 'taskrank transfer export --matrix' file or target,source,score)")
    if "setting" in df.columns:
        settings = sorted(df["setting"].dropna().unique().tolist())
        if setting is not None:
            if setting not in settings:
                raise ArtefactError(f"{where}: no setting {setting!r} (has {settings})")
            df = df[df["setting"] == setting]
        elif len(settings) > 1:
            raise ArtefactError(f"{where}: holds several settings {settings}; pick one")
    out = pd.DataFrame({"target": df["target"].astype(str), "source": df["source"].astype(str),
                        "score": pd.to_numeric(df[by], errors="coerce")})
    bad = df[by].notna() & out["score"].isna()
    if bad.any():
        raise ArtefactError(f"{where}: non-numeric {by} {df.loc[bad, by].iloc[0]!r}")
    out = out[(out["source"] != "") & (out["target"] != out["source"])].dropna(subset=["score"])
    dup = out.duplicated(["target", "source"], keep=False)
    if dup.any():
        raise ArtefactError(f"{where}: repeated (target, source) pairs "
                            f"{out.loc[dup, ['target', 'source']].drop_duplicates().values.tolist()[:5]}")
    return out.sort_values(["target", "source"]).reset_index(drop=True)


def read_transfer(path: str | Path | None = None, setting: str | None = None) -> pd.DataFrame:
    """A transfer table (target, source, score) from a CSV; None = the one shipped with taskrank."""
    path = Path(path) if path is not None else DEFAULT_TRANSFER
    return _read_transfer_cached(str(path.expanduser().resolve()), setting)


@lru_cache(maxsize=8)
def _read_transfer_cached(path: str, setting: str | None) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        hint = (" (it ships with the default pool; write it with 'taskrank pool transfer --matrix matrix.csv')"
                if p == DEFAULT_TRANSFER else "")
        raise ArtefactError(f"transfer table {p}: no such file{hint}")
    try:
        df = pd.read_csv(p, keep_default_na=False, na_values={"score": [""], "PC": [""], "PM": [""]})
    except (ValueError, UnicodeDecodeError) as e:
        raise ArtefactError(f"transfer table {p}: cannot be read as CSV ({e})") from None
    return _transfer_frame(df, str(p), setting)


def write_transfer(matrix, out: str | Path = DEFAULT_TRANSFER, setting: str | None = None,
                   by: str = "score") -> Path:
    """Write TaskShop's transfer table (target, source, score) from a pair table.

    ``matrix``: a pair table (DataFrame) or the path of one (``benchmarks/transfer17/matrix.csv``,
    written by ``taskrank transfer export --matrix``). Pairs whose ``by`` value is NaN (no
    baseline yet, or a grid still running) are left out, so a partial grid gives a partial table;
    an empty grid gives a header-only file (TaskShop then reduces to its direct method).
    """
    if isinstance(matrix, (str, Path)):
        if not Path(matrix).is_file():
            raise ArtefactError(f"{matrix}: no such transfer matrix")
        where = str(matrix)
        matrix = pd.read_csv(matrix, keep_default_na=False, na_values={by: [""], "PC": [""], "PM": [""]})
    else:
        where = "transfer matrix"
    table = _transfer_frame(matrix, where, setting, by)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    table.to_csv(tmp, index=False, float_format="%.10g")
    tmp.replace(out)
    _read_transfer_cached.cache_clear()
    return out


# ----------------------------------------------------------------------------- the estimator

_PARAMS = {"lam": float, "normalise": str, "fallback": str, "transfer": str}


class TaskShop(Composite):
    """TaskShop on top of a direct estimator, with TW from a transfer table.

    Scores every source the ranking hands it; the pivots are those of the same sources that the
    transfer table knows (sim(t, p) comes from the direct method's scores of the pool), so a
    target absent from the transfer table — TaskShop's purpose — is scored like any other, and a
    target that is in it never uses its own transfers (p ≠ t).
    """

    summary = "TaskShop: transitive estimate through pivot tasks of a transfer matrix on top of a direct method (TaskWeb)"

    def __init__(self, model: BaseModel | None = None, direct: str = "roe", transfer: str | None = None,
                 lam: float = 0.7, normalise: str = "none", fallback: str = "mean", defaults: dict | None = None):
        super().__init__(model)
        if normalise not in NORMALISE:
            raise ParameterError(f"taskshop: normalise must be one of {NORMALISE}, got {normalise!r}")
        if fallback not in FALLBACK:
            raise ParameterError(f"taskshop: fallback must be one of {FALLBACK}, got {fallback!r}")
        if not 0.0 <= float(lam) <= 1.0:
            raise ParameterError(f"taskshop: lam must be in [0, 1], got {lam}")
        self.direct, self.transfer, self.lam = direct, transfer, float(lam)
        self.normalise, self.fallback = normalise, fallback
        self.members = [get_estimator(direct, model=self.model, defaults=defaults)]
        extra = [f"{k}={v}" for k, v, d in (("lam", self.lam, 0.7), ("normalise", normalise, "none"),
                                              ("fallback", fallback, "mean"), ("transfer", transfer, None))
                 if v != d]
        self.name = ",".join([f"taskshop:{direct}", *extra])
        self._warned = False

    def transfer_table(self) -> pd.DataFrame:
        return read_transfer(self.transfer)

    def combine(self, target: str, sources: list[str], member_scores: list[np.ndarray]) -> np.ndarray:
        direct = pd.DataFrame({"target": target, "source": list(sources),
                               "score": np.asarray(member_scores[0], dtype=np.float64)})
        tw = self.transfer_table()
        known = set(tw["target"]) & set(sources)
        if not known and not self._warned:
            where = self.transfer or DEFAULT_TRANSFER
            warnings.warn(f"{self.name}: the transfer table {where} has no pivot among the {len(sources)} "
                          f"sources, so the ranking is that of '{self.direct}' alone", stacklevel=2)
            self._warned = True
        out = taskshop(direct, tw, lam=self.lam, normalise=self.normalise, fallback=self.fallback)
        return out.set_index("source")["score"].reindex(list(sources)).to_numpy(dtype=np.float64)


def _parse(argument: str) -> tuple[str, dict]:
    """'roe,lam=0.5,transfer=x.csv' -> ('roe', {'lam': 0.5, 'transfer': 'x.csv'})."""
    head, *rest = argument.split(",")
    params = {}
    for piece in rest:
        key, eq, value = piece.partition("=")
        if not eq or key.strip() not in _PARAMS:
            raise UnknownEstimator(f"taskshop: cannot read parameter {piece!r} in 'taskshop:{argument}'; "
                                   f"use key=value with keys {', '.join(_PARAMS)}")
        try:
            params[key.strip()] = _PARAMS[key.strip()](value.strip())
        except ValueError:
            raise UnknownEstimator(f"taskshop: {key.strip()}={value.strip()!r} is not a number") from None
    if not head:
        raise UnknownEstimator("taskshop: name a direct method, e.g. taskshop:roe")
    return head, params


@register_composite("taskshop", example="roe", summary=TaskShop.summary
                    + "; params: ,lam=0.7 ,normalise=none|zscore|minmax ,transfer=CSV")
def taskshop_factory(argument: str, model: BaseModel | None = None, defaults: dict | None = None,
                     **params) -> TaskShop:
    """``taskshop:<direct>[,lam=..][,normalise=..][,fallback=..][,transfer=PATH]``."""
    direct, parsed = _parse(argument)
    try:
        return TaskShop(model, direct=direct, defaults=defaults, **{**params, **parsed})
    except ValueError as e:
        if isinstance(e, UnknownEstimator):
            raise
        raise UnknownEstimator(str(e)) from None

