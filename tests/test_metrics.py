"""Ranking metrics on hand-computed examples (every number below is worked out in the comment)."""

import itertools
import math
from math import log2

import numpy as np
import pandas as pd
import pytest

from taskrank import metrics as M

# Four sources. perf = target performance after transfer from each source.
PERF = pd.Series({"a": 0.8, "b": 0.6, "c": 0.5, "d": 0.4})
# Predicted scores: order b, c, d, a.
PRED = pd.Series({"a": 0.1, "b": 0.4, "c": 0.3, "d": 0.2})
L3, L5 = log2(3), log2(5)


# ----------------------------------------------------------------------------- order / API


def test_predicted_order_breaks_ties_by_name():
    assert M.predicted_order(pd.Series({"b": 1.0, "a": 1.0, "c": 2.0})) == ["c", "a", "b"]
    assert M.predicted_order([1.0, 3.0, 3.0]) == [1, 2, 0]  # arrays: position is the name


def test_alignment_is_by_name_not_position():
    shuffled = PRED[["d", "a", "c", "b"]]
    assert M.ndcg(shuffled, PERF) == M.ndcg(PRED, PERF)
    assert M.ndcg(PRED.to_dict(), PERF.to_dict()) == M.ndcg(PRED, PERF)


def test_misaligned_inputs_are_refused():
    with pytest.raises(ValueError, match="different sources"):
        M.ndcg(PRED.drop("a"), PERF)
    with pytest.raises(TypeError, match="misalign"):
        M.ndcg(PRED.to_numpy(), PERF)
    with pytest.raises(ValueError, match="NaN"):
        M.rho(PRED.where(PRED > 0.1), PERF)
    with pytest.raises(ValueError, match="k must be"):
        M.precision_at_k(PRED, PERF, 0)


# ----------------------------------------------------------------------------- NDCG


def test_ndcg_taskweb():
    # gold order a,b,c,d -> rel 4,3,2,1 -> gains 15,7,3,1; predicted b,c,d,a
    ideal = 15 + 7 / L3 + 3 / 2 + 1 / L5
    got = 7 + 3 / L3 + 1 / 2 + 15 / L5
    assert M.ndcg(PRED, PERF, "taskweb") == pytest.approx(got / ideal)
    assert M.ndcg(PERF, PERF, "taskweb") == pytest.approx(1.0)


def test_ndcg_taskweb_depends_only_on_gold_order():
    assert M.ndcg(PRED, PERF**3, "taskweb") == pytest.approx(M.ndcg(PRED, PERF, "taskweb"))


def test_ndcg_esm_and_uds():
    perf = pd.Series({"a": 0.03, "b": 0.02, "c": 0.01, "d": 0.0})  # 100·perf = 3,2,1,0
    # gains 7,3,1,0; predicted b,c,d,a
    ideal = 7 + 3 / L3 + 1 / 2 + 0
    got = 3 + 1 / L3 + 0 / 2 + 7 / L5
    assert M.ndcg(PRED, perf, "esm") == pytest.approx(got / ideal)
    assert M.ndcg(PRED, 100 * perf, "uds") == pytest.approx(got / ideal)


def test_ndcg_esm_refuses_percentages_and_uds_warns_on_fractions():
    with pytest.raises(ValueError, match="uds"):
        M.ndcg(PRED, 100 * PERF, "esm")
    with pytest.warns(UserWarning, match="esm"):
        M.ndcg(PRED, PERF, "uds")


def test_ndcg_linear():
    ideal = 0.8 + 0.6 / L3 + 0.5 / 2 + 0.4 / L5
    got = 0.6 + 0.5 / L3 + 0.4 / 2 + 0.8 / L5
    assert M.ndcg(PRED, PERF, "linear") == pytest.approx(got / ideal)


def test_ndcg_ties_in_prediction_use_name_order():
    # a and b tie on top -> a first -> same as the perfect order a,b,c,d
    tied = pd.Series({"a": 1.0, "b": 1.0, "c": 0.0, "d": 0.0})
    assert M.ndcg(tied, PERF, "taskweb") == pytest.approx(1.0)
    # b, c, d tie on top and a is last: order b,c,d,a
    tied2 = pd.Series({"a": 0.0, "b": 1.0, "c": 1.0, "d": 1.0})
    assert M.ndcg(tied2, PERF, "taskweb") == pytest.approx(M.ndcg(PRED, PERF, "taskweb"))


def test_ndcg_negative_gains():
    gold = pd.Series({"a": 0.5, "b": -0.1, "c": -0.3})
    pred = pd.Series({"a": 0.0, "b": 1.0, "c": 2.0})  # order c, b, a (the worst)
    ideal = 0.5 - 0.1 / L3 - 0.3 / 2
    got = -0.3 - 0.1 / L3 + 0.5 / 2
    assert M.ndcg(pred, gold, "linear") == pytest.approx(got / ideal)  # -0.394: below 0
    assert got / ideal < 0
    # esm with negative perf: gains 2^1 - 1 = 1 and 2^-1 - 1 = -0.5; order b, a
    g2 = pd.Series({"a": 0.01, "b": -0.01})
    p2 = pd.Series({"a": 0.0, "b": 1.0})
    assert M.ndcg(p2, g2, "esm") == pytest.approx((-0.5 + 1 / L3) / (1 - 0.5 / L3))
    # no positive gain at all: undefined
    assert math.isnan(M.ndcg(pred, -gold.abs(), "linear"))


def test_ndcg_k_cut_and_k_beyond_pool():
    # k = 2: ideal 15 + 7/log2 3; predicted b, c
    assert M.ndcg(PRED, PERF, "taskweb", k=2) == pytest.approx((7 + 3 / L3) / (15 + 7 / L3))
    assert M.ndcg(PRED, PERF, "taskweb", k=10) == M.ndcg(PRED, PERF, "taskweb")


def test_ndcg_large_pool_does_not_overflow():
    n = 2000
    gold = pd.Series(np.arange(n, dtype=float), index=[f"s{i:04d}" for i in range(n)])
    assert M.ndcg(gold, gold, "taskweb") == pytest.approx(1.0)
    assert 0 < M.ndcg(-gold, gold, "taskweb") < 1


# ----------------------------------------------------------------------------- Regret@k


def test_regret_mean_taskweb():
    # gold top-2 a,b mean 0.7; predicted top-2 b,c mean 0.55
    assert M.regret_at_k(PRED, PERF, 2, "mean") == pytest.approx((0.7 - 0.55) / 0.7)
    # gold top-k taken from another score (TaskWeb: pair score): top-2 d, c mean 0.45 -> negative
    rank_by = pd.Series({"a": 0.0, "b": 1.0, "c": 2.0, "d": 3.0})
    assert M.regret_at_k(PRED, PERF, 2, "mean", rank_by=rank_by) == pytest.approx((0.45 - 0.55) / 0.45)
    assert M.regret_at_k(PRED, PERF, 10, "mean") == 0.0  # k clipped to 4: both sets are everything


def test_regret_max_esm():
    # best 0.8; predicted top-1 b 0.6, top-2 {b, c} max 0.6
    assert M.regret_at_k(PRED, PERF, 1, "max") == pytest.approx(0.25)
    assert M.regret_at_k(PRED, PERF, 2, "max") == pytest.approx(0.25)
    assert M.regret_at_k(PRED, PERF, 4, "max") == 0.0
    assert M.regret_at_k(PRED, PERF, 9, "max") == 0.0
    # the no-transfer baseline counts as a candidate for "best overall"
    assert M.regret_at_k(PRED, PERF, 4, "max", baseline=1.0) == pytest.approx(0.2)
    assert M.regret_at_k(PRED, PERF, 1, "max", baseline=0.5) == pytest.approx(0.25)


def test_regret_max_top3_reaches_a_only_at_k4():
    # predicted top-3 = b, c, d: max 0.6
    assert M.regret_at_k(PRED, PERF, 3, "max") == pytest.approx(0.25)


def test_regret_ties_and_bad_denominator():
    tied = pd.Series({"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0})  # order a,b,c,d by name
    assert M.regret_at_k(tied, PERF, 1, "max") == 0.0
    assert math.isnan(M.regret_at_k(PRED, -PERF, 1, "max"))
    with pytest.raises(ValueError, match="variant"):
        M.regret_at_k(PRED, PERF, 1, "median")


# ----------------------------------------------------------------------------- ρ, P@k, correlations


def test_rho():
    # best source a is predicted last
    assert M.rho(PRED, PERF) == 4.0
    assert M.rho(PERF, PERF) == 1.0
    # ties averaged: d above; a, b, c tie -> 1 + 1 + (3 - 1)/2 = 3
    tied = pd.Series({"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.9})
    assert M.rho(tied, PERF) == 3.0


def test_rho_is_judged_by_performance_in_evaluate():
    # TaskWeb's pair score puts d first, but a has the best target performance: ρ = rank of a = 4
    pair_score = pd.Series({"a": 0.0, "b": 0.1, "c": 0.2, "d": 0.3})
    assert M.evaluate(PRED, pair_score, PERF, ks=1)["rho"] == 4.0
    assert M.rho(PRED, pair_score) == 3.0  # what judging by the pair score would give


def test_tror_by_hand():
    # predicted top-1 b has the 2nd best performance
    assert M.tror(PRED, PERF) == 2.0
    assert M.tror(PERF, PERF) == 1.0
    # b ties c in performance behind a: 1 + 1 + (2 - 1)/2
    assert M.tror(PRED, pd.Series({"a": 0.8, "b": 0.6, "c": 0.6, "d": 0.4})) == 2.5
    # prediction ties broken by name: a and b tie on top -> a, the best
    assert M.tror(pd.Series({"a": 1.0, "b": 1.0, "c": 0.0, "d": 0.0}), PERF) == 1.0


def test_improvement_ratio_by_hand():
    # predicted top-1 b: 0.6; best source a: 0.8
    assert M.improvement_ratio(PRED, PERF, baseline=0.5) == pytest.approx((0.6 - 0.5) / (0.8 - 0.5))
    assert M.improvement_ratio(PRED, PERF, baseline=0.7) == pytest.approx(-1.0)  # worse than no transfer
    assert M.improvement_ratio(PERF, PERF, baseline=0.5) == 1.0
    assert math.isnan(M.improvement_ratio(PRED, PERF, baseline=0.8))


def test_top_k_performance_by_hand():
    # predicted order b, c, d, a
    assert M.top_k_performance(PRED, PERF, 1) == pytest.approx(0.6)
    assert M.top_k_performance(PRED, PERF, 2) == pytest.approx(0.55)
    assert M.top_k_performance(PRED, PERF) == pytest.approx(0.5)  # k = 3: (0.6 + 0.5 + 0.4) / 3
    assert M.top_k_performance(PRED, PERF, 9) == pytest.approx(0.575)


# two training seeds of the same four transfers
SEEDS = pd.DataFrame({"s1": PERF, "s2": pd.Series({"a": 0.5, "b": 0.7, "c": 0.6, "d": 0.4})})


def test_per_seed_and_seed_mean_aggregation_by_hand():
    # ρ per seed: s1 best a -> 4; s2 best b -> 1; mean 2.5. Seed mean perf: a .65, b .65, c .55, d .4
    # -> best a (name breaks the tie) -> 4
    np.testing.assert_allclose(M.per_seed_values("rho", PRED, SEEDS).to_numpy(), [4.0, 1.0])
    assert M.over_seeds("rho", PRED, SEEDS) == 2.5
    assert M.over_seeds(M.rho, PRED, SEEDS, "seed_mean") == 4.0
    # Regret@1 (max) with each seed's no-transfer baseline: s1 best max(.8, .9) = .9, got b .6 -> 1/3;
    # s2 best .7 = got b -> 0; per seed 1/6. Seed mean: best max(.65, .7), got .65 -> .05 / .7
    base = {"s1": 0.9, "s2": 0.5}
    kw = dict(k=1, variant="max", baseline=base)
    assert M.over_seeds("regret", PRED, SEEDS, **kw) == pytest.approx(1 / 6)
    assert M.over_seeds("regret", PRED, SEEDS, "seed_mean", **kw) == pytest.approx(0.05 / 0.7)
    # top-k performance is linear in perf: both aggregations agree ((.6+.5)/2 and (.7+.6)/2 -> .6)
    for how in M.AGGREGATIONS:
        assert M.over_seeds("top_k_performance", PRED, SEEDS, how, k=2) == pytest.approx(0.6)


def test_per_seed_predictions_are_paired_with_their_seed():
    # ESM pairs the method's seed-s prediction with seed-s truth: perfect each time -> ρ 1 and TROR 1
    preds = {"s1": PERF, "s2": SEEDS["s2"]}
    assert M.over_seeds("rho", preds, SEEDS) == 1.0
    assert M.over_seeds("tror", SEEDS, SEEDS) == 1.0  # a DataFrame of predictions works too
    # the mean of the two predictions: a .65, b .65 -> a first; seed-mean truth best a -> 1
    assert M.over_seeds("rho", preds, SEEDS, "seed_mean") == 1.0
    assert M.over_seeds("ir", PRED, SEEDS, baseline=0.5) == pytest.approx(((0.6 - 0.5) / 0.3 + 1.0) / 2)
    with pytest.raises(ValueError, match="different seeds"):
        M.over_seeds("rho", {"s1": PERF}, SEEDS)
    with pytest.raises(ValueError, match="aggregation"):
        M.over_seeds("rho", PRED, SEEDS, "median")
    with pytest.raises(ValueError, match="unknown metric"):
        M.over_seeds("mrr", PRED, SEEDS)
    with pytest.raises(TypeError, match="per training seed"):
        M.over_seeds("rho", PRED, PERF)


def test_precision_at_k():
    assert M.precision_at_k(PRED, PERF, 2) == 0.5  # {b, c} vs {a, b}
    assert M.precision_at_k(PRED, PERF, 1) == 0.0
    assert M.precision_at_k(PRED, PERF, 10) == 1.0  # clipped to 4


def test_spearman_kendall():
    # ranks pred a1 b4 c3 d2, gold a4 b3 c2 d1: sum d^2 = 12 -> 1 - 72/60
    assert M.spearman(PRED, PERF) == pytest.approx(-0.2)
    # concordant bc bd cd, discordant ab ac ad
    assert M.kendall(PRED, PERF) == pytest.approx(0.0)
    assert math.isnan(M.spearman(PRED * 0, PERF))


# ----------------------------------------------------------------------------- all at once, random


def test_evaluate_keys_and_values():
    out = M.evaluate(PRED, PERF, ks=(1, 2))
    assert out["rho"] == 4.0
    assert out["regret_mean@2"] == pytest.approx(0.15 / 0.7)
    assert out["regret_max@1"] == pytest.approx(0.25)
    assert out["precision@2"] == 0.5
    assert out["ndcg_esm"] == pytest.approx(M.ndcg(PRED, PERF, "esm"))
    assert set(out) == {"ndcg_taskweb", "ndcg_linear", "ndcg_esm", "rho", "spearman", "kendall",
                        "regret_mean@1", "regret_max@1", "precision@1",
                        "regret_mean@2", "regret_max@2", "precision@2"}
    assert math.isnan(M.evaluate(PRED, 100 * PERF)["ndcg_esm"])


def test_random_expectation_by_hand():
    e = M.random_expectation(PERF, ks=(1, 2))
    assert e["rho"] == 2.5
    assert e["precision@2"] == 0.5
    assert e["spearman"] == 0.0 and e["kendall"] == 0.0
    # mean of all 0.575; gold top-2 mean 0.7
    assert e["regret_mean@2"] == pytest.approx((0.7 - 0.575) / 0.7)
    # E[max of one] = 0.575; E[max of a pair] = (.8+.8+.8+.6+.6+.5)/6 = 4.1/6
    assert e["regret_max@1"] == pytest.approx((0.8 - 0.575) / 0.8)
    assert e["regret_max@2"] == pytest.approx((0.8 - 4.1 / 6) / 0.8)
    # NDCG: every position holds the mean gain (15+7+3+1)/4
    ideal = 15 + 7 / L3 + 3 / 2 + 1 / L5
    assert e["ndcg_taskweb"] == pytest.approx(6.5 * (1 + 1 / L3 + 1 / 2 + 1 / L5) / ideal)


@pytest.mark.parametrize("baseline", [None, 0.9])
def test_random_expectation_matches_enumeration(baseline):
    # ties in gold, a negative value, k beyond the pool: the closed forms must still be exact
    gold = pd.Series({"a": 0.5, "b": 0.3, "c": 0.3, "d": 0.1, "e": -0.05})
    perf = pd.Series({"a": 0.7, "b": 0.65, "c": 0.6, "d": 0.62, "e": 0.5})
    ks = (1, 2, 3, 7)
    names = list(gold.index)
    rows = [M.evaluate(pd.Series(np.arange(5.0), index=list(p)), gold, perf, ks, baseline)
            for p in itertools.permutations(names)]
    mean = pd.DataFrame(rows).mean()
    exp = M.random_expectation(gold, perf, ks, baseline)
    for key, v in exp.items():
        assert mean[key] == pytest.approx(v, abs=1e-12), key
