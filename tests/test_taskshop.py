"""TaskShop on a hand-made 4-task web; every expected number is worked out in the comments."""

import math

import pandas as pd
import pytest

from taskrank.estimators.taskshop import taskshop

# Known transfers TW(s→p), keyed (p, s): rows of the transfer table are (target=p, source=s).
TW = {
    ("A", "B"): 0.1, ("A", "C"): 0.2, ("A", "D"): -0.1,
    ("B", "A"): 0.3, ("B", "C"): 0.0, ("B", "D"): 0.2,
    ("C", "A"): -0.2, ("C", "B"): 0.4, ("C", "D"): 0.1,
    ("D", "A"): 0.05, ("D", "B"): 0.15, ("D", "C"): 0.25,
}
SIM_A = {"B": 0.8, "C": 0.6, "D": 0.4}                 # sim(A, x)
SIM_E = {"A": 0.5, "B": 0.2, "C": 0.9, "D": 0.1}       # E is unseen: not in the transfer table


def _transfer(tw=TW):
    return pd.DataFrame([{"target": p, "source": s, "score": v} for (p, s), v in tw.items()])


def _direct(**sims):
    return pd.DataFrame([{"target": t, "source": s, "score": v}
                         for t, row in sims.items() for s, v in row.items()])


def _scores(out):
    return {(t, s): v for t, s, v in zip(out.target, out.source, out.score)}


def test_hand_computed_4_task_web():
    out = taskshop(_direct(A=SIM_A), _transfer(), lam=0.7)
    got = _scores(out)
    # (A, B): pivots C, D.  C: ½·TW(B→C) + ½·sim(A,C) = .2 + .3 = .5;  D: ½·.15 + ½·.4 = .275
    assert got[("A", "B")] == pytest.approx(0.7 * (0.5 + 0.275) / 2 + 0.3 * 0.8)      # 0.51125
    # (A, C): pivots B, D.  B: ½·0 + ½·.8 = .4;  D: ½·.25 + ½·.4 = .325
    assert got[("A", "C")] == pytest.approx(0.7 * (0.4 + 0.325) / 2 + 0.3 * 0.6)      # 0.43375
    # (A, D): pivots B, C.  B: ½·.2 + .4 = .5;  C: ½·.1 + .3 = .35
    assert got[("A", "D")] == pytest.approx(0.7 * (0.5 + 0.35) / 2 + 0.3 * 0.4)       # 0.4175
    assert list(out.source) == ["B", "C", "D"] and set(out.n_pivots) == {2}
    assert list(out.columns) == ["target", "source", "score", "n_pivots"]


def test_transfer_into_the_target_itself_is_never_used():
    changed = {**TW, ("A", "B"): 9.0, ("A", "C"): -9.0, ("A", "D"): 5.0}
    a = taskshop(_direct(A=SIM_A), _transfer())
    b = taskshop(_direct(A=SIM_A), _transfer(changed))
    pd.testing.assert_frame_equal(a, b)


def test_unseen_target():
    out = taskshop(_direct(E=SIM_E), _transfer(), lam=0.7)
    got = _scores(out)
    # (E, A): pivots B, C, D with TW(A→·) = .3, -.2, .05
    #   B: .15 + .1 = .25;  C: -.1 + .45 = .35;  D: .025 + .05 = .075  -> mean .225
    assert got[("E", "A")] == pytest.approx(0.7 * 0.225 + 0.3 * 0.5)                   # 0.3075
    # (E, C): pivots A, B, D with TW(C→·) = .2, 0, .25
    #   A: .1 + .25 = .35;  B: 0 + .1 = .1;  D: .125 + .05 = .175  -> mean .625/3
    assert got[("E", "C")] == pytest.approx(0.7 * 0.625 / 3 + 0.3 * 0.9)               # 0.41583
    assert set(out.n_pivots) == {3}
    assert list(out.source) == ["C", "B", "A", "D"]  # 0.4158, 0.3108, 0.3075, 0.24


def test_pivot_list_and_exclusion_of_the_pair():
    out = taskshop(_direct(A=SIM_A), _transfer(), pivots=["C"])
    got, n = _scores(out), dict(zip(out.source, out.n_pivots))
    assert got[("A", "B")] == pytest.approx(0.7 * 0.5 + 0.3 * 0.8)                       # C only
    assert got[("A", "D")] == pytest.approx(0.7 * 0.35 + 0.3 * 0.4)
    # (A, C): the only pivot is C itself -> excluded -> no pivot; "mean" fallback takes the
    # mean transitive term of B and D (.5 and .35)
    assert n == {"B": 1, "C": 0, "D": 1}
    assert got[("A", "C")] == pytest.approx(0.7 * (0.5 + 0.35) / 2 + 0.3 * 0.6)          # 0.4775


def test_fallbacks_for_a_source_without_pivots():
    zero = _scores(taskshop(_direct(A=SIM_A), _transfer(), pivots=["C"], fallback="zero"))
    assert zero[("A", "C")] == pytest.approx(0.3 * 0.6)
    nan = _scores(taskshop(_direct(A=SIM_A), _transfer(), pivots=["C"], fallback="nan"))
    assert math.isnan(nan[("A", "C")])
    # no transfer knowledge at all: every source falls back; the direct ranking survives
    empty = taskshop(_direct(A=SIM_A), _transfer().iloc[:0])
    assert _scores(empty) == pytest.approx({("A", "B"): 0.24, ("A", "C"): 0.18, ("A", "D"): 0.12})


def test_source_only_task_is_never_a_pivot():
    # S has outgoing transfers (like TaskWeb's squad_v2) but nobody transfers into it
    tw = {**TW, ("A", "S"): 0.3, ("B", "S"): 0.3, ("C", "S"): 0.3, ("D", "S"): 0.3}
    out = taskshop(_direct(A=dict(SIM_A, S=0.99)), _transfer(tw))
    got, n = _scores(out), dict(zip(out.source, out.n_pivots))
    assert got[("A", "B")] == pytest.approx(0.51125)  # unchanged: S is not a pivot for B
    assert n["S"] == 3  # S as a *source* uses pivots B, C, D
    # (A, S): B: .15 + .4 = .55;  C: .15 + .3 = .45;  D: .15 + .2 = .35
    assert got[("A", "S")] == pytest.approx(0.7 * 0.45 + 0.3 * 0.99)


def test_zscore_and_minmax_per_target():
    # sim(A, ·) = .8, .6, .4: mean .6, population std sqrt(.08/3) -> z = +c, 0, -c
    c = 0.2 / (0.08 / 3) ** 0.5
    z = _scores(taskshop(_direct(A=SIM_A), _transfer(), normalise="zscore"))
    # (A, B): C: ½·.4 + ½·0 = .2;  D: ½·.15 + ½·(-c)
    assert z[("A", "B")] == pytest.approx(0.7 * (0.2 + 0.075 - c / 2) / 2 + 0.3 * c)
    m = _scores(taskshop(_direct(A=SIM_A), _transfer(), normalise="minmax"))
    # min-max: B 1, C .5, D 0.  (A, B): C: .2 + .25;  D: .075 + 0
    assert m[("A", "B")] == pytest.approx(0.7 * (0.45 + 0.075) / 2 + 0.3 * 1.0)


def test_taskweb_llm_normalisation():
    # Three tasks, both directions. Raw scores .2 .4 .6 .6 1 0: mean 7/15, population std s,
    # min 0, max 1. Symmetrised: sim(A,B) = .3, sim(A,C) = .6.
    direct = pd.DataFrame([
        ("A", "B", 0.2), ("B", "A", 0.4), ("A", "C", 0.6),
        ("C", "A", 0.6), ("B", "C", 1.0), ("C", "B", 0.0),
    ], columns=["target", "source", "score"])
    transfer = pd.DataFrame([("C", "B", 0.1), ("B", "C", 0.2)], columns=["target", "source", "score"])
    raw = pd.Series([0.2, 0.4, 0.6, 0.6, 1.0, 0.0])
    mu, s = raw.mean(), raw.std(ddof=0)
    got = _scores(taskshop(direct, transfer, normalise="taskweb-llm"))
    # (A, B): pivot C only: ½·TW(B→C) + ½·z(sim(A,C));  direct term min-max(.3) = .3
    assert got[("A", "B")] == pytest.approx(0.7 * (0.05 + 0.5 * (0.6 - mu) / s) + 0.3 * 0.3)


def test_bad_input():
    with pytest.raises(ValueError, match="lacks columns"):
        taskshop(_direct(A=SIM_A).drop(columns="score"), _transfer())
    with pytest.raises(ValueError, match="repeated"):
        taskshop(pd.concat([_direct(A=SIM_A)] * 2), _transfer())
    with pytest.raises(ValueError, match="normalise"):
        taskshop(_direct(A=SIM_A), _transfer(), normalise="rank")
