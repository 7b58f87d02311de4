"""The learned ranker: its features, its models (JSON only), and the estimator `learned:...`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from taskrank.estimators import get_estimator
from taskrank.estimators.learned import (
    FORMAT,
    FeatureSpec,
    LearnedRanker,
    LinearModel,
    TransferPrior,
    TreeModel,
    features_frame,
    fit_model,
    load_model,
    save_model,
    shipped_models,
    target_features,
)
from taskrank.store import ArtefactError

SOURCES = ["a", "b", "c", "d"]


def _transfer() -> pd.DataFrame:
    rows = []
    for p, vals in {"a": [None, 1.0, 0.0, 2.0], "b": [3.0, None, 1.0, 2.0], "c": [1.0, 1.0, None, 4.0],
                    "t": [5.0, -5.0, 0.0, 0.0]}.items():
        rows += [{"target": p, "source": s, "score": v} for s, v in zip(SOURCES, vals) if v is not None]
    return pd.DataFrame(rows)


def test_member_features_are_per_target_z_scores_and_percentile_ranks():
    X = target_features("t", SOURCES, [np.array([1.0, 2.0, 3.0, 4.0])], ["m"], None, {"transitive": []})
    assert FeatureSpec({"transitive": []}).names(["m"]) == ["z:m", "r:m"]
    z = (np.arange(1, 5) - 2.5) / np.std(np.arange(1, 5))
    assert np.allclose(X[:, 0], z) and np.allclose(X[:, 1], [0, 1 / 3, 2 / 3, 1])


def test_a_source_a_member_cannot_score_ranks_last():
    X = target_features("t", SOURCES, [np.array([1.0, np.nan, 3.0, 2.0])], ["m"], None, {"transitive": []})
    assert np.argmin(X[:, 0]) == 1 and np.isfinite(X).all()


def test_prior_is_the_mean_standardised_transfer_to_the_other_tasks():
    prior = TransferPrior(_transfer())
    # pivots of target "t" among the sources: a, b, c (never t itself); d's prior = mean of its z in a, b, c
    p, _ = prior.terms("t", SOURCES, [], 1.0)
    Z = prior.Z
    expect_d = np.mean([Z.loc["a", "d"], Z.loc["b", "d"], Z.loc["c", "d"]])
    assert p[3] == pytest.approx(expect_d)
    # a source is never its own pivot: a's prior comes from b and c only
    assert p[0] == pytest.approx(np.mean([Z.loc["b", "a"], Z.loc["c", "a"]]))


def test_features_never_use_the_target_s_own_transfers():
    base = _transfer()
    leak = base.copy()
    leak.loc[leak["target"] == "t", "score"] = [-100.0, 100.0, 7.0, 3.0]
    sims = [np.array([0.1, 0.9, 0.5, 0.3])]
    a = target_features("t", SOURCES, sims, ["m"], TransferPrior(base), None)
    b = target_features("t", SOURCES, sims, ["m"], TransferPrior(leak), None)
    assert np.allclose(a, b)


def test_knn_weights_the_pivots_the_member_finds_similar():
    prior = TransferPrior(_transfer())
    # the member finds pivot b very similar to the target: knn follows b's column (a best, then d)
    sim = np.array([0.0, 10.0, 0.0, 0.0])
    _, (knn,) = prior.terms("t", SOURCES, [sim], 0.1)
    assert knn[0] == pytest.approx(prior.Z.loc["b", "a"], abs=1e-6)


def test_without_drops_a_task_entirely():
    prior = TransferPrior(_transfer()).without("a")
    assert "a" not in prior.Z.index and "a" not in prior.Z.columns


def _toy_predictions(n_targets=6, n_sources=8, seed=0):
    rng = np.random.default_rng(seed)
    rows, gold = [], []
    names = [f"s{i}" for i in range(n_sources)]
    for t in range(n_targets):
        truth = rng.normal(size=n_sources)
        good = truth + 0.1 * rng.normal(size=n_sources)
        bad = rng.normal(size=n_sources)
        for s, g, x, y in zip(names, truth, good, bad):
            rows += [{"method": "good", "target": f"t{t}", "source": s, "score": x},
                     {"method": "noise", "target": f"t{t}", "source": s, "score": y}]
            gold.append({"target": f"t{t}", "source": s, "gold": g})
    return pd.DataFrame(rows), pd.DataFrame(gold)


def test_linear_model_learns_to_trust_the_informative_member_and_round_trips_through_json(tmp_path):
    preds, gold = _toy_predictions()
    spec = {"transitive": []}
    F = features_frame(preds, ["good", "noise"], None, spec).merge(gold, on=["target", "source"])
    cols = FeatureSpec(spec).names(["good", "noise"])
    model = fit_model("linear", F[cols].to_numpy(), F["gold"].to_numpy(), F["target"].to_numpy(), cols, C=1.0)
    w = dict(zip(cols, model.weights))
    assert w["z:good"] + w["r:good"] > 5 * abs(w["z:noise"] + w["r:noise"])
    path = save_model(tmp_path / "m.json", model, ["good", "noise"], spec, trained_on="toy")
    meta, back = load_model(path)
    assert meta["format"] == FORMAT and meta["trained_on"] == "toy" and isinstance(back, LinearModel)
    assert np.allclose(back.predict(F[cols].to_numpy()), model.predict(F[cols].to_numpy()))


def test_tree_model_scores_with_numpy_exactly_as_xgboost_does(tmp_path):
    xgb = pytest.importorskip("xgboost")
    preds, gold = _toy_predictions(n_targets=10)
    spec = {"transitive": []}
    F = features_frame(preds, ["good", "noise"], None, spec).merge(gold, on=["target", "source"])
    cols = FeatureSpec(spec).names(["good", "noise"])
    X, y, g = F[cols].to_numpy(), F["gold"].to_numpy(), F["target"].to_numpy()
    model = fit_model("xgboost", X, y, g, cols, n_estimators=20)
    assert isinstance(model, TreeModel)
    # the same trees through XGBoost itself (margin, without its constant base score)
    order = np.argsort(pd.factorize(g)[0], kind="stable")
    from taskrank.estimators.learned import _grades

    ref = xgb.XGBRanker(objective="rank:ndcg", n_estimators=20, learning_rate=0.05, max_depth=2, subsample=0.8,
                        colsample_bytree=0.8, n_jobs=1, random_state=0, lambdarank_pair_method="topk",
                        tree_method="exact").fit(X[order], _grades(y, g)[order], qid=pd.factorize(g[order])[0])
    margin = ref.predict(X, output_margin=True)
    ours = model.predict(X)
    assert np.allclose(ours - ours.mean(), margin - margin.mean(), atol=1e-5)
    path = save_model(tmp_path / "t.json", model, ["good", "noise"], spec)
    _, back = load_model(path)
    assert np.allclose(back.predict(X), ours)


def test_lightgbm_trees_score_with_numpy_exactly_as_lightgbm_does(tmp_path):
    lgb = pytest.importorskip("lightgbm")
    preds, gold = _toy_predictions(n_targets=10)
    spec = {"transitive": []}
    F = features_frame(preds, ["good", "noise"], None, spec).merge(gold, on=["target", "source"])
    cols = FeatureSpec(spec).names(["good", "noise"])
    X, y, g = F[cols].to_numpy(), F["gold"].to_numpy(), F["target"].to_numpy()
    model = fit_model("lightgbm", X, y, g, cols, n_estimators=20)
    assert isinstance(model, TreeModel) and model.rule == "<=" and len(model.trees) == 20
    from taskrank.estimators.learned import _grades

    order = np.argsort(pd.factorize(g)[0], kind="stable")
    _, counts = np.unique(pd.factorize(g[order])[0], return_counts=True)
    ref = lgb.LGBMRanker(objective="lambdarank", n_estimators=20, learning_rate=0.05, num_leaves=4, min_child_samples=5,
                         subsample=0.8, subsample_freq=1, colsample_bytree=0.8, n_jobs=1, random_state=0,
                         deterministic=True, force_row_wise=True, verbose=-1)
    ref.fit(X[order], _grades(y, g)[order], group=counts)
    assert np.allclose(model.predict(X), ref.predict(X, raw_score=True), atol=1e-9)
    _, back = load_model(save_model(tmp_path / "l.json", model, ["good", "noise"], spec))
    assert np.allclose(back.predict(X), model.predict(X))


def test_the_estimator_combines_member_scores_with_a_model_file(tmp_path):
    preds, gold = _toy_predictions()
    spec = {"transitive": ["prior", "knn"]}
    F = features_frame(preds, ["good", "noise"], None, spec).merge(gold, on=["target", "source"])
    cols = FeatureSpec(spec).names(["good", "noise"])
    model = fit_model("linear", F[cols].to_numpy(), F["gold"].to_numpy(), F["target"].to_numpy(), cols)
    path = save_model(tmp_path / "good+noise.json", model, ["good", "noise"], spec)
    transfer = tmp_path / "transfer.csv"
    _transfer().to_csv(transfer, index=False)
    est = LearnedRanker(members=("size", "vocab"), path=str(path), transfer=str(transfer))
    with pytest.raises(ArtefactError, match="trained for members"):
        est.combine("t", SOURCES, [np.arange(4.0), np.arange(4.0)])
    est.members_names = ("good", "noise")
    s = est.combine("t", SOURCES, [np.array([4.0, 3.0, 2.0, 1.0]), np.array([1.0, 2.0, 2.0, 1.0])])
    assert s.shape == (4,) and np.argmax(s) == 0


def test_names_parameters_and_a_missing_model(tmp_path):
    est = get_estimator("learned:size+vocab,model=/nowhere/m.json")
    assert isinstance(est, LearnedRanker) and est.name == "learned:size+vocab,model=/nowhere/m.json"
    assert [m.name for m in est.members] == ["size", "vocab"]
    with pytest.raises(ArtefactError, match="no such file"):
        est.combine("t", SOURCES, [np.arange(4.0), np.arange(4.0)])
    with pytest.raises(ArtefactError, match="no trained model for these members"):
        get_estimator("learned:size+random").combine("t", SOURCES, [np.arange(4.0), np.arange(4.0)])
    from taskrank.estimators import UnknownEstimator

    with pytest.raises(UnknownEstimator, match="model=PATH"):
        get_estimator("learned:size,lam=2")


def test_a_model_file_of_another_format_is_refused(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ArtefactError, match="format"):
        load_model(bad)


def test_shipped_models_are_json_and_load():
    paths = shipped_models()
    assert paths, "no learned model ships with taskrank"
    for path in paths:
        meta, model = load_model(path)
        assert path.suffix == ".json" and path.stem == "+".join(meta["members"])
        assert len(model.features) == len(FeatureSpec(meta["spec"]).names(meta["members"]))
        assert not list(path.parent.glob("*.pkl")) and not list(path.parent.glob("*.joblib"))


def test_the_shipped_model_is_found_from_either_pool_and_uses_that_pool_s_matrix():
    from taskrank.pool import Pool

    name = "learned:roe+textemb+vocab+size+same-type"
    for pool in ("default", "taskweb"):
        est = Pool.open(pool).estimator(name)
        path, meta, _ = est.loaded()
        assert path.is_file() and meta["members"] == ["roe", "textemb", "vocab", "size", "same-type"]
        table = est.transfer_table()
        assert set(table["target"]) <= {t["name"] for t in Pool.open(pool).tasks}


def test_same_type_reads_the_task_type_from_size_artefacts():
    from taskrank.pool import Pool

    pool = Pool.open("taskweb")
    est = get_estimator("same-type")
    assert est.artefact_id == "size"
    arts = pool.artefacts(est, pool.tasks)
    kinds = [t["type"] for t in pool.tasks]
    i = kinds.index("multiple_choice")
    assert est.score(arts[i], arts).tolist() == [float(k == "multiple_choice") for k in kinds]
