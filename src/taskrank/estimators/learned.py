"""A learned ranker: a small ranking model over other estimators' scores (``learned:a+b+...``).

For one target and its candidate sources, the features of a source are

* per member estimator m: ``z:m``, the z-score of m's score among this target's sources, and
  ``r:m``, its percentile rank (0 = worst, 1 = best);
* from a transfer matrix (the pool's TaskShop table: target, source, pair score), never using a
  transfer *into* the target being scored:
  ``prior``: the source's mean standardised transfer to the other tasks of the matrix (each
  pivot's column z-scored over its sources first, so every pivot counts the same), and
  ``knn:m``: the same mean weighted by how similar member m finds each pivot to the target
  (weights exp(z_m(t, p) / tau)), i.e. "the sources that helped tasks like this one";
  both are then z-scored over the target's sources.

Every feature is standardised per target, so a model trained on one benchmark applies to
another. ``same-type`` (:class:`SameType`, 1 if the source has the target's task type) brings a
task fact in as an ordinary member. The model (chosen by measurement, ``benchmarks/learned.py``)
is either linear (a pairwise logistic model: one weight per feature) or a gradient-boosted tree
ensemble (XGBoost ``rank:ndcg`` or LightGBM ``lambdarank``, i.e. LambdaMART); it is stored as
JSON — the weights, or the trees as nested nodes converted from the library's own JSON dump —
and scored here with numpy, so ranking needs neither scikit-learn nor a boosting library;
training does (``pip install taskrank[learn]``).

Shipped models live in ``pools/<pool>/learned/<members>.json``; ``learned:a+b`` finds the one
beside the pool's transfer table (``pools/<pool>/transfer.csv``), or ``model=PATH`` names one.
A member that gives a source no score (a task type it is not defined for) ranks it last, as
``taskrank evaluate`` does (score = the lowest score − 1).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ..errors import ParameterError
from ..models import BaseModel
from ..store import Artefact, ArtefactError
from ..tasks import Task
from .base import Composite, Estimator
from .registry import UnknownEstimator, get_estimator, register, register_composite
from .taskshop import DEFAULT_TRANSFER, read_transfer

__all__ = ["FORMAT", "SameType", "FeatureSpec", "TransferPrior", "target_features", "features_frame", "LinearModel",
           "TreeModel", "load_model", "fit_model", "LearnedRanker", "learned_factory", "shipped_models",
           "members_key"]

FORMAT = "taskrank-learned/1"
POOLS = Path(__file__).resolve().parents[1] / "pools"
KINDS = ("linear", "xgboost", "lightgbm")


def _z(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def _pct(x: np.ndarray) -> np.ndarray:
    r = rankdata(np.asarray(x, dtype=np.float64), method="average")
    return (r - 1.0) / max(len(r) - 1, 1)


def _filled(scores) -> np.ndarray:
    """NaN (a source the member cannot score) becomes the lowest finite score − 1: ranked last."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    bad = ~np.isfinite(s)
    if bad.any():
        s = s.copy()
        s[bad] = (np.min(s[~bad]) - 1.0) if (~bad).any() else 0.0
    return s


def members_key(members: Sequence[str]) -> str:
    """The file stem of a model for these members: names joined by '+' (',' and ':' kept, '/' → '_')."""
    return "+".join(members).replace("/", "_")


# ----------------------------------------------------------------------------- a task fact as a member


@register
class SameType(Estimator):
    """1 if the source has the target's task type (classification, regression, multiple choice,
    generation), else 0. A fact for learned rankers (``learned:roe+same-type``); it shares the
    ``size`` artefacts, whose config records the task type, so every pool that has DataSize has it."""

    name = "same-type"
    family = "size"
    summary = "1 if the source has the target's task type, else 0 (a task fact for learned rankers)"

    def prepare(self, task: Task) -> Artefact:
        return self.artefact(task, {"size": np.array([task.size], dtype=np.int64)})

    def score(self, target: Artefact, sources: list[Artefact]) -> np.ndarray:
        kind = target.config.get("task_type", "classification")
        return np.array([float(s.config.get("task_type", "classification") == kind) for s in sources])


# ----------------------------------------------------------------------------- features


class FeatureSpec(dict):
    """Which features a model uses: {"member": ["z", "rank"], "transitive": ["prior", "knn"], "tau": 1.0}."""

    DEFAULT = {"member": ["z", "rank"], "transitive": ["prior", "knn"], "tau": 1.0}

    def __init__(self, spec: dict | None = None):
        super().__init__({**self.DEFAULT, **(spec or {})})
        for key, allowed in (("member", ("z", "rank")), ("transitive", ("prior", "knn"))):
            bad = [v for v in self[key] if v not in allowed]
            if bad:
                raise ParameterError(f"learned: unknown {key} feature(s) {bad}; choose from {allowed}")

    def names(self, members: Sequence[str]) -> list[str]:
        out = [f"{kind}:{m}" for m in members for kind in ({"z": "z", "rank": "r"}[k] for k in self["member"])]
        if "prior" in self["transitive"]:
            out.append("prior")
        if "knn" in self["transitive"]:
            out += [f"knn:{m}" for m in members]
        return out


class TransferPrior:
    """A transfer matrix standardised per pivot: Z[p, s] = z-score of TW(s→p) over p's sources."""

    def __init__(self, table: pd.DataFrame | None):
        if table is None or table.empty:
            self.Z = pd.DataFrame(dtype=float)
            return
        w = table[["target", "source", "score"]].dropna()
        w = w[w["target"] != w["source"]]
        W = w.pivot_table(index="target", columns="source", values="score", aggfunc="mean")
        mu, sd = W.mean(axis=1), W.std(axis=1, ddof=0)
        self.Z = W.sub(mu, axis=0).div(sd.where(sd > 0), axis=0)

    def without(self, task: str) -> "TransferPrior":
        """The same matrix as if ``task`` had never been measured (no row or column of it)."""
        out = TransferPrior(None)
        out.Z = self.Z.drop(index=task, errors="ignore").drop(columns=task, errors="ignore")
        return out

    @property
    def empty(self) -> bool:
        return self.Z.empty

    def terms(self, target: str, sources: list[str], sims: list[np.ndarray], tau: float):
        """(prior, [knn per similarity]) for ``sources``; pivots are those of the sources the matrix
        knows as targets, never the target itself nor the source being scored."""
        n = len(sources)
        if self.empty:
            return np.zeros(n), [np.zeros(n) for _ in sims]
        pos = [i for i, p in enumerate(sources) if p in self.Z.index and p != target]
        piv = [sources[i] for i in pos]
        Zs = self.Z.reindex(index=piv, columns=sources).to_numpy(dtype=np.float64)  # (P, S)
        ok = np.isfinite(Zs) & (np.array(piv, dtype=object)[:, None] != np.array(sources, dtype=object)[None, :])
        vals = np.where(ok, Zs, 0.0)
        count = ok.sum(axis=0)
        prior = np.where(count > 0, vals.sum(axis=0) / np.maximum(count, 1), 0.0)
        knn = []
        for sim in sims:
            w = np.exp(np.clip(_z(sim)[pos] / tau, -50, 50))[:, None] * ok
            tot = w.sum(axis=0)
            knn.append(np.where(tot > 0, (vals * w).sum(axis=0) / np.where(tot > 0, tot, 1.0), 0.0))
        return prior, knn


def target_features(target: str, sources: list[str], member_scores: Sequence[np.ndarray], members: Sequence[str],
                    prior: TransferPrior | None, spec: FeatureSpec | dict | None = None) -> np.ndarray:
    """Features (len(sources), n_features) of one target's sources, in ``spec.names(members)`` order."""
    spec = FeatureSpec(spec)
    scores = [_filled(s) for s in member_scores]
    cols = []
    for s in scores:
        for kind in spec["member"]:
            cols.append(_z(s) if kind == "z" else _pct(s))
    if spec["transitive"]:
        p, knn = (prior or TransferPrior(None)).terms(target, list(sources), scores, float(spec["tau"]))
        if "prior" in spec["transitive"]:
            cols.append(_z(p))
        if "knn" in spec["transitive"]:
            cols += [_z(k) for k in knn]
    return np.column_stack(cols) if cols else np.zeros((len(sources), 0))


def features_frame(predictions: pd.DataFrame, members: Sequence[str], transfer: pd.DataFrame | TransferPrior | None,
                   spec: FeatureSpec | dict | None = None, targets: Sequence[str] | None = None) -> pd.DataFrame:
    """Features of every (target, source) of a predictions table (method, target, source, score),
    computed target by target exactly as the estimator computes them when ranking.

    ``transfer``: the matrix for the transitive features; a target never uses its own transfers
    (pivots p ≠ t), and for honest held-out evaluation pass the matrix without the held-out target."""
    spec = FeatureSpec(spec)
    prior = transfer if isinstance(transfer, TransferPrior) else TransferPrior(transfer)
    missing = [m for m in members if m not in set(predictions["method"])]
    if missing:
        raise ValueError(f"learned: the predictions have no method(s) {missing}")
    wide = predictions[predictions["method"].isin(list(members))].pivot_table(
        index=["target", "source"], columns="method", values="score", aggfunc="first")
    names = spec.names(members)
    parts = []
    for t, d in wide.groupby(level=0, sort=True):
        if targets is not None and t not in set(targets):
            continue
        d = d.droplevel(0)
        d = d[d.index != t]
        srcs = [str(s) for s in d.index]
        X = target_features(t, srcs, [d[m].to_numpy() for m in members], members, prior, spec)
        parts.append(pd.DataFrame(X, columns=names).assign(target=t, source=srcs))
    out = pd.concat(parts, ignore_index=True)
    return out[["target", "source", *names]]


# ----------------------------------------------------------------------------- models


class LinearModel:
    """score = Σ w_f · x_f (a pairwise logistic model: P(i above j) = σ(w·(x_i − x_j)))."""

    kind = "linear"

    def __init__(self, features: list[str], weights: Sequence[float]):
        self.features, self.weights = list(features), np.asarray(weights, dtype=np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.weights

    def to_json(self) -> dict:
        return {"kind": self.kind, "weights": {f: float(w) for f, w in zip(self.features, self.weights)}}


class TreeModel:
    """A sum of regression trees (gradient boosting), stored as nested JSON nodes:
    ``{"split": feature index, "threshold": t, "yes": node, "no": node}`` or ``{"leaf": value}``.
    ``rule``: ``"<"`` (XGBoost: yes when float32(x) < t) or ``"<="`` (LightGBM: yes when x <= t).
    Built from XGBoost's JSON dump (:meth:`from_xgboost`) or LightGBM's (:meth:`from_lightgbm`)."""

    kind = "trees"

    def __init__(self, features: list[str], trees: list[dict], rule: str = "<", library: str = ""):
        if rule not in ("<", "<="):
            raise ValueError(f"tree rule must be '<' or '<=', got {rule!r}")
        self.features, self.trees, self.rule, self.library = list(features), trees, rule, library

    @classmethod
    def from_xgboost(cls, features: list[str], dump: list[dict]) -> "TreeModel":
        index = {f"f{i}": i for i in range(len(features))} | {f: i for i, f in enumerate(features)}

        def node(n):
            if "leaf" in n:
                return {"leaf": float(n["leaf"])}
            kids = {c["nodeid"]: c for c in n["children"]}
            return {"split": index[n["split"]], "threshold": float(n["split_condition"]),
                    "yes": node(kids[n["yes"]]), "no": node(kids[n["no"]])}

        return cls(features, [node(t) for t in dump], "<", "xgboost")

    @classmethod
    def from_lightgbm(cls, features: list[str], dump: dict) -> "TreeModel":
        def node(n):
            if "leaf_value" in n:
                return {"leaf": float(n["leaf_value"])}
            if n.get("decision_type", "<=") != "<=":
                raise ValueError(f"LightGBM split {n.get('decision_type')!r} is not supported")
            return {"split": int(n["split_feature"]), "threshold": float(n["threshold"]),
                    "yes": node(n["left_child"]), "no": node(n["right_child"])}

        return cls(features, [node(t["tree_structure"]) for t in dump["tree_info"]], "<=", "lightgbm")

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32 if self.rule == "<" else np.float64)
        out = np.zeros(len(X), dtype=np.float64)

        def walk(n, rows):
            if not len(rows):
                return
            if "leaf" in n:
                out[rows] += n["leaf"]
                return
            x = X[rows, n["split"]]
            yes = x < np.float32(n["threshold"]) if self.rule == "<" else x <= n["threshold"]
            walk(n["yes"], rows[yes])
            walk(n["no"], rows[~yes])

        for tree in self.trees:
            walk(tree, np.arange(len(X)))
        return out

    def to_json(self) -> dict:
        return {"kind": self.kind, "library": self.library, "rule": self.rule, "trees": self.trees}


def load_model(path: str | Path) -> tuple[dict, LinearModel | TreeModel]:
    """(the file's metadata, the model) from a model JSON written by :func:`save_model`."""
    path = Path(path)
    if not path.is_file():
        raise ArtefactError(f"learned model {path}: no such file")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtefactError(f"learned model {path}: not JSON ({e})") from None
    if meta.get("format") != FORMAT:
        raise ArtefactError(f"learned model {path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    spec = FeatureSpec(meta.get("spec"))
    names = spec.names(meta["members"])
    model = meta["model"]
    if model["kind"] == "linear":
        w = model["weights"]
        if set(w) != set(names):
            raise ArtefactError(f"learned model {path}: weights for {sorted(w)} but the features are {names}")
        return meta, LinearModel(names, [w[n] for n in names])
    if model["kind"] == "trees":
        return meta, TreeModel(names, model["trees"], model.get("rule", "<"), model.get("library", ""))
    raise ArtefactError(f"learned model {path}: unknown kind {model['kind']!r} (have {KINDS})")


def save_model(path: str | Path, model: LinearModel | TreeModel, members: Sequence[str], spec: dict,
               **provenance) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "members": list(members), "spec": dict(FeatureSpec(spec)), "features": model.features,
            "model": model.to_json(), **provenance}
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def _grades(y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """TaskWeb's relevance: n − 1 − (rank of the source in the gold order) within each target
    (ties by position), so LambdaMART's gain 2^rel − 1 is TaskWeb NDCG's."""
    out = np.zeros(len(y), dtype=int)
    for g in pd.unique(groups):
        idx = np.flatnonzero(groups == g)
        r = rankdata(-y[idx], method="ordinal")
        out[idx] = len(idx) - r
    return out


def _pairs(X: np.ndarray, y: np.ndarray, groups: np.ndarray, max_pairs: int | None = None):
    """Differences x_i − x_j (label 1) and x_j − x_i (label 0) for every pair with y_i > y_j in a target;
    each target weighs the same (its pairs share weight 1)."""
    dx, lab, wt = [], [], []
    for g in pd.unique(groups):
        idx = np.flatnonzero(groups == g)
        yi = y[idx]
        a, b = np.nonzero(yi[:, None] > yi[None, :])
        if not len(a):
            continue
        d = X[idx[a]] - X[idx[b]]
        dx += [d, -d]
        lab += [np.ones(len(a)), np.zeros(len(a))]
        wt += [np.full(2 * len(a), 1.0 / len(a))]
    w = np.concatenate(wt)
    return np.vstack(dx), np.concatenate(lab), w * len(w) / w.sum()


def fit_model(kind: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray, features: list[str], **params):
    """Train a model on gold values ``y`` (higher = better source) grouped by target.

    * ``linear``: scikit-learn LogisticRegression on within-target pair differences, no intercept,
      L2 with ``C`` (default 0.1); every target weighs the same.
    * ``xgboost``: XGBRanker, objective ``rank:ndcg`` on TaskWeb relevance grades (see
      :func:`_grades`); defaults: 100 trees of depth 2, learning rate 0.05, subsample 0.8.
    * ``lightgbm``: LGBMRanker, objective ``lambdarank`` on the same grades (LightGBM's default
      gains 2^rel − 1 are TaskWeb NDCG's); defaults: 100 trees of 4 leaves, learning rate 0.05.
    """
    X, y, groups = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(groups)
    if kind == "linear":
        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("training a linear learned ranker needs scikit-learn (pip install taskrank[learn])") from e
        dx, lab, w = _pairs(X, y, groups)
        m = LogisticRegression(C=float(params.get("C", 0.1)), fit_intercept=False, max_iter=5000)
        m.fit(dx, lab, sample_weight=w)
        return LinearModel(features, m.coef_.ravel())
    if kind == "xgboost":
        try:
            import xgboost as xgb
        except ImportError as e:  # pragma: no cover
            raise ImportError("training a tree learned ranker needs xgboost (pip install taskrank[learn])") from e
        order = np.argsort(pd.factorize(groups)[0], kind="stable")
        qid = pd.factorize(groups[order])[0]
        p = {"objective": "rank:ndcg", "n_estimators": 100, "learning_rate": 0.05, "max_depth": 2, "subsample": 0.8,
             "colsample_bytree": 0.8, "min_child_weight": 1.0, "n_jobs": 1, "random_state": 0,
             "lambdarank_pair_method": "topk", "tree_method": "exact", **params}
        m = xgb.XGBRanker(**p).fit(X[order], _grades(y, groups)[order], qid=qid)
        return TreeModel.from_xgboost(features, [json.loads(t) for t in m.get_booster().get_dump(dump_format="json")])
    if kind == "lightgbm":
        try:
            import lightgbm as lgb
        except ImportError as e:  # pragma: no cover
            raise ImportError("training a LightGBM learned ranker needs lightgbm (pip install taskrank[learn])") from e
        order = np.argsort(pd.factorize(groups)[0], kind="stable")
        _, counts = np.unique(pd.factorize(groups[order])[0], return_counts=True)
        p = {"objective": "lambdarank", "n_estimators": 100, "learning_rate": 0.05, "num_leaves": 4,
             "min_child_samples": 5, "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8, "n_jobs": 1,
             "random_state": 0, "deterministic": True, "force_row_wise": True, "verbose": -1, **params}
        m = lgb.LGBMRanker(**p).fit(X[order], _grades(y, groups)[order], group=counts)
        return TreeModel.from_lightgbm(features, m.booster_.dump_model())
    raise ValueError(f"learned: unknown model kind {kind!r}; choose from {KINDS}")


# ----------------------------------------------------------------------------- the estimator


def shipped_models() -> list[Path]:
    return sorted(POOLS.glob("*/learned/*.json"))


def _find_model(members: Sequence[str], transfer: str | None) -> Path:
    key = members_key(members)
    places = [Path(transfer).parent / "learned"] if transfer else []
    places += [DEFAULT_TRANSFER.parent / "learned"] + sorted(POOLS.glob("*/learned"))
    for place in places:
        if (place / f"{key}.json").is_file():
            return place / f"{key}.json"
    have = sorted({p.stem for p in shipped_models()})
    raise ArtefactError(f"learned:{'+'.join(members)}: no trained model for these members "
                        f"(shipped: {', '.join('learned:' + h for h in have) or 'none'}); train one with "
                        f"'python benchmarks/learned.py --train ...' and pass model=PATH")


class LearnedRanker(Composite):
    """A trained ranking model over member estimators' scores and a transfer matrix's evidence."""

    prefix = "learned"
    summary = ("a small trained ranking model over member scores and transfer-matrix evidence "
               "(shipped: learned:roe+textemb+vocab+size+same-type; benchmarks/learned.py)")

    def __init__(self, model: BaseModel | None = None, members: tuple[str, ...] = (), path: str | None = None,
                 transfer: str | None = None, defaults: dict | None = None):
        super().__init__(model)
        names = [m.strip() for m in members]
        if not names or any(not n for n in names):
            raise UnknownEstimator("learned: name the members joined by '+', e.g. learned:roe+textemb")
        self.members_names = tuple(names)
        self.transfer = transfer or (defaults or {}).get("taskshop", {}).get("transfer")
        self.path = path
        self.members = [get_estimator(n, model=self.model, defaults=defaults) for n in names]
        self.name = f"learned:{'+'.join(names)}" + (f",model={path}" if path else "")
        self._loaded = None

    def get_params(self) -> dict:
        return {"members": list(self.members_names), "model": self.path, "transfer": self.transfer}

    def loaded(self):
        if self._loaded is None:
            path = Path(self.path) if self.path else _find_model(self.members_names, self.transfer)
            meta, model = load_model(path)
            if list(meta["members"]) != list(self.members_names):
                raise ArtefactError(f"{self.name}: model {path} was trained for members {meta['members']}")
            self._loaded = (path, meta, model)
        return self._loaded

    def transfer_table(self) -> pd.DataFrame:
        return read_transfer(self.transfer)

    def combine(self, target: str, sources: list[str], member_scores: list[np.ndarray]) -> np.ndarray:
        path, meta, model = self.loaded()
        spec = FeatureSpec(meta.get("spec"))
        for name, s in zip(self.members_names, member_scores):
            if len(np.ravel(s)) != len(sources):
                raise ValueError(f"{self.name}: member '{name}' gave {len(np.ravel(s))} scores for {len(sources)} sources")
        prior = None
        if spec["transitive"]:
            prior = TransferPrior(self.transfer_table())
            if not (set(prior.Z.index) & set(sources)):
                warnings.warn(f"{self.name}: the transfer table has no pivot among the sources; "
                              "its transitive features are 0", stacklevel=2)
        X = target_features(target, list(sources), member_scores, self.members_names, prior, spec)
        return model.predict(X)


@register_composite("learned", example="roe+textemb+vocab+size+same-type", summary=LearnedRanker.summary)
def learned_factory(argument: str, model: BaseModel | None = None, defaults: dict | None = None, **params):
    """``learned:<member>+<member>...[,model=PATH][,transfer=PATH]``."""
    head, *rest = argument.split(",")
    for piece in rest:
        key, eq, value = piece.partition("=")
        if not eq or key.strip() not in ("model", "transfer"):
            raise UnknownEstimator(f"learned: cannot read parameter {piece!r}; use model=PATH or transfer=PATH")
        params["path" if key.strip() == "model" else "transfer"] = value.strip()
    params.pop("model", None)
    return LearnedRanker(model, members=tuple(head.split("+")), defaults=defaults, **params)

