"""Issue #15 (structure): one ordering of sources (score descending, name ascending, NaN last),
used by rankings, metrics, reports, TaskShop, selection and seeds alike."""

import numpy as np
import pandas as pd

from taskrank import metrics
from taskrank.estimators.taskshop import taskshop
from taskrank.ordering import best_first, nan_last, sorted_best_first
from taskrank.selection import StaticSelector


def test_score_descending_ties_by_name_nan_last():
    names = ["d", "b", "a", "e", "c", "f"]
    scores = [1.0, 2.0, 1.0, np.nan, 2.0, np.nan]
    assert sorted_best_first(names, scores) == ["b", "c", "a", "d", "e", "f"]
    assert best_first(names, scores).tolist() == [1, 4, 2, 0, 3, 5]


def test_infinite_scores_still_rank_above_nan():
    assert sorted_best_first(["a", "b", "c"], [np.nan, -np.inf, np.inf]) == ["c", "b", "a"]


def test_nan_last_keeps_the_order_and_removes_nan():
    rng = np.random.default_rng(0)
    names = [f"s{i:02d}" for i in range(30)]
    scores = rng.integers(0, 5, 30).astype(float)
    scores[rng.choice(30, 7, replace=False)] = np.nan
    filled = nan_last(scores)
    assert np.isfinite(filled).all()
    assert best_first(names, filled).tolist() == best_first(names, scores).tolist()


def test_every_user_of_an_order_agrees():
    names = ["b", "a", "d", "c"]
    scores = np.array([0.5, 0.5, 0.9, 0.1])
    expected = ["d", "a", "b", "c"]
    assert sorted_best_first(names, scores) == expected
    assert metrics.predicted_order(pd.Series(scores, index=names)) == expected
    sel = StaticSelector().fit("t", names, scores, None)
    assert [names[i] for i in sel.order] == expected
    direct = pd.DataFrame({"target": "t", "source": names, "score": scores})
    shop = taskshop(direct, pd.DataFrame(columns=["target", "source", "score"]), lam=0.0)
    assert shop["source"].tolist() == expected
