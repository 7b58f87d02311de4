"""Ensembles (mean z-score, mean rank) against hand computations, and through a real pool."""

import json

import numpy as np
import pytest

from taskrank.estimators import get_estimator
from taskrank.estimators.ensemble import Ensemble, MeanRank, ranks, zscore
from taskrank.pool import Pool
from taskrank.ranking import rank, score_sources
from taskrank.tasks import load_task

SOURCES = ["p", "q", "r", "s"]
A = np.array([1.0, 2.0, 3.0, 6.0])      # mean 3, population std sqrt(3.5)
B = np.array([0.9, 0.8, 0.7, 0.6])      # mean .75, population std sqrt(.0125)


def test_zscore_and_ranks_by_hand():
    sd = np.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 4)
    assert zscore(A) == pytest.approx([-2 / sd, -1 / sd, 0, 3 / sd])
    assert zscore([5.0, 5.0]) == pytest.approx([0.0, 0.0])           # constant: no information
    assert ranks([0.3, 0.9, 0.3, 0.1]) == pytest.approx([2.5, 1.0, 2.5, 4.0])  # ties share 2 and 3


def test_mean_zscore_by_hand():
    est = get_estimator("ensemble:size+random")
    assert isinstance(est, Ensemble) and est.name == "ensemble:size+random"
    got = est.combine("t", SOURCES, [A, B])
    sa, sb = np.sqrt(3.5), np.sqrt(0.0125)
    expected = [((1 - 3) / sa + (0.9 - 0.75) / sb) / 2, ((2 - 3) / sa + (0.8 - 0.75) / sb) / 2,
                ((3 - 3) / sa + (0.7 - 0.75) / sb) / 2, ((6 - 3) / sa + (0.6 - 0.75) / sb) / 2]
    assert got == pytest.approx(expected)
    # z-scores make the ensemble blind to each member's scale and offset
    assert est.combine("t", SOURCES, [1000 * A + 7, B / 10]) == pytest.approx(expected)


def test_mean_rank_by_hand():
    est = get_estimator("meanrank:size+random")
    assert isinstance(est, MeanRank)
    # A ranks p..s as 4, 3, 2, 1; B as 1, 2, 3, 4 -> every source 2.5: a four-way tie
    assert est.combine("t", SOURCES, [A, B]) == pytest.approx([-2.5] * 4)
    C = np.array([0.5, 0.9, 0.9, 0.1])  # ranks 3, 1.5, 1.5, 4
    # with A: p (4+3)/2 = 3.5, q (3+1.5)/2 = 2.25, r (2+1.5)/2 = 1.75, s (1+4)/2 = 2.5
    assert est.combine("t", SOURCES, [A, C]) == pytest.approx([-3.5, -2.25, -1.75, -2.5])


def test_bad_members():
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        get_estimator("ensemble:size+nope")
    with pytest.raises(ValueError, match="name the members"):
        get_estimator("meanrank:size+")
    est = get_estimator("ensemble:size+random")
    with pytest.raises(ValueError, match="NaN"):
        est.combine("t", SOURCES, [A, np.array([1.0, np.nan, 0.0, 0.0])])


def _task(root, name, n, seed):
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True)
    rows = [{"text": f"{name} example {i} {rng.integers(1000)}", "label": int(i % 2)} for i in range(n)]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return load_task(folder)


def test_through_a_pool(tmp_path):
    tasks = [_task(tmp_path / "tasks", n, size, i) for i, (n, size) in enumerate(
        [("t1", 10), ("t2", 40), ("t3", 20), ("t4", 80), ("t5", 30)])]
    pool = Pool(tmp_path / "pool")
    pool.build(tasks, [get_estimator("size"), get_estimator("random")])
    target, sources = tasks[0], [t for t in pool.tasks if t["name"] != "t1"]
    size = score_sources(target, pool, get_estimator("size"), sources)
    rand = score_sources(target, pool, get_estimator("random"), sources)
    ens = score_sources(target, pool, get_estimator("ensemble:size+random"), sources)
    assert ens == pytest.approx((zscore(size) + zscore(rand)) / 2)
    ranking = rank(target, pool, get_estimator("meanrank:size+random"))
    expected = -(ranks(size) + ranks(rand)) / 2
    by_name = dict(zip([t["name"] for t in sources], expected))
    assert dict(zip(ranking.table["source"], ranking.table["score"])) == pytest.approx(by_name)
    assert ranking.method == "meanrank:size+random" and ranking.excluded == ["t1"]


def test_a_pool_task_as_target_reuses_the_pool_artefact(tmp_path, monkeypatch):
    """Evaluating on a pool's own tasks prepares nothing again where target = source artefact."""
    tasks = [_task(tmp_path / "tasks", n, size, i) for i, (n, size) in enumerate([("t1", 10), ("t2", 40), ("t3", 20)])]
    pool = Pool(tmp_path / "pool")
    vocab = get_estimator("vocab")
    pool.build(tasks, [vocab])
    sources = [t for t in pool.tasks if t["name"] != "t1"]
    expected = score_sources(tasks[0], pool, vocab, sources)

    def fail(*_):
        raise AssertionError("prepared again")

    monkeypatch.setattr(type(vocab), "prepare", fail)
    assert score_sources(tasks[0], pool, vocab, sources).tolist() == expected.tolist()
    outsider = _task(tmp_path / "tasks", "t9", 12, 9)
    with pytest.raises(AssertionError, match="prepared again"):  # a new target is still prepared
        score_sources(outsider, pool, vocab, sources)
