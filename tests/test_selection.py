"""Budgeted selection: the selectors, the simulation on a gold matrix, and `taskrank select` end to end
on tiny synthetic tasks (a few examples, one epoch)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from taskrank.cli import app
from taskrank.evaluation import Gold
from taskrank.selection import GPSelector, StaticSelector, run_value, select, simulate
from taskrank.transfer.matrix import taskweb_pair_score


def test_run_value_is_a_one_run_taskweb_pair_score():
    assert run_value(0.6, 0.5) == pytest.approx(taskweb_pair_score(0.2, 1.0))
    assert run_value(0.4, 0.5) == pytest.approx(taskweb_pair_score(-0.2, 0.0))
    assert run_value(0.5, 0.5) == pytest.approx(taskweb_pair_score(0.0, 0.0))


def test_static_selector_follows_the_ranking_with_name_ties():
    sel = StaticSelector().fit("t", ["b", "a", "c"], np.array([1.0, 1.0, 2.0]), None)
    picked = {}
    for _ in range(3):
        s = sel.next(picked)
        picked[s] = 0.0
    assert list(picked) == ["c", "a", "b"]


def _matrix():
    """Five pivots; sources a and a2 always transfer alike, b and c otherwise."""
    rng = np.random.default_rng(0)
    rows = []
    for p in range(6):
        base = rng.normal(size=3)
        for s, v in (("a", base[0]), ("a2", base[0] + 0.01 * rng.normal()), ("b", base[1]), ("c", base[2])):
            rows.append({"target": f"p{p}", "source": s, "score": float(v)})
    return pd.DataFrame(rows)


def test_gp_first_pick_is_static_top_then_avoids_the_twin_of_a_bad_source():
    sources, static = ["a", "a2", "b", "c"], np.array([3.0, 2.9, 1.0, 0.0])
    gp = GPSelector(rho=0.5, shrink=0.1).fit("t", sources, static, _matrix())
    assert gp.next({}) == "a"
    # a turned out far below expectation: its twin a2 must not come next, although static ranks it second
    assert gp.next({"a": -5.0}) in {"b", "c"}
    # a turned out great: the twin is the natural next try
    assert gp.next({"a": 5.0}) == "a2"
    mean, sd = gp.posterior({"a": -5.0})
    assert mean[1] < mean[2] and sd[0] < sd[2]


def test_gp_without_a_matrix_keeps_the_static_order():
    sources, static = ["a", "b", "c", "d"], np.array([4.0, 3.0, 2.0, 1.0])
    gp = GPSelector().fit("t", sources, static, None)
    observed = {}
    for expected in sources:
        s = gp.next(observed)
        assert s == expected
        observed[s] = -1.0


def test_gp_never_uses_the_target_s_own_transfers():
    m = _matrix()
    leak = pd.DataFrame({"target": "t", "source": ["a", "a2", "b", "c"], "score": [9.0, 9.0, -9.0, -9.0]})
    sources, static = ["a", "a2", "b", "c"], np.array([0.0, 1.0, 2.0, 3.0])
    a = GPSelector().fit("t", sources, static, m)
    b = GPSelector().fit("t", sources, static, pd.concat([m, leak]))
    assert np.allclose(a.cov0, b.cov0) and np.allclose(a.mean0, b.mean0)


def _gold() -> Gold:
    """Three targets over four sources; perf = baseline + gain."""
    rows = []
    for t, gains, base in (("x", [0.10, 0.00, -0.05, 0.02, 0.03], 0.5), ("y", [-0.1, 0.2, 0.0, 0.05, 0.01], 0.6),
                           ("z", [0.05, 0.04, 0.03, 0.02, 0.01], 0.7)):
        for s, g in zip(["a", "b", "c", "d", "e"], gains):
            rows.append({"setting": "s", "target": t, "source": s, "mean": base + g, "baseline": base,
                         "score": g / base})
    return Gold(pd.DataFrame(rows))


def test_simulate_regret_is_zero_once_every_source_is_tried_and_static_matches_metrics():
    from taskrank import metrics

    gold = _gold()
    preds = []
    for t in ("x", "y", "z"):
        preds += [{"method": "m", "target": t, "source": s, "score": v}
                  for s, v in zip("abcde", [5, 4, 3, 2, 1])]
    preds = pd.DataFrame(preds)
    per, summ = simulate(gold, preds, {"static": ("m", "static", {}), "gp": ("m", "gp", {})}, ks=(1, 3, 5), boot=50)
    assert set(summ.columns) == {"method", "k", "regret", "lo", "hi"}
    at5 = summ[summ["k"] == 5].set_index("method")["regret"]
    assert at5["static"] == pytest.approx(0.0) and at5["gp"] == pytest.approx(0.0)
    # static regret after k runs is Regret@k (ESM's variant, baseline a candidate)
    for k in (1, 3):
        expect = np.mean([metrics.regret_at_k(preds[preds.target == t].set_index("source")["score"],
                                              gold.target(t)[1], k, "max", baseline=gold.target(t)[2])
                          for t in ("x", "y", "z")])
        got = summ[(summ.method == "static") & (summ.k == k)]["regret"].iloc[0]
        assert got == pytest.approx(100 * expect)
    assert (per["method"] == "random (expected)").any()
    gp1 = summ[(summ.method == "gp") & (summ.k == 1)]["regret"].iloc[0]
    assert gp1 == pytest.approx(summ[(summ.method == "static") & (summ.k == 1)]["regret"].iloc[0])


def test_select_measures_budget_runs_and_names_the_winner():
    values = {"a": 0.50, "b": 0.70, "c": 0.55}
    seen = []

    def measure(s):
        seen.append(s)
        return values[s]

    out = select("t", ["a", "b", "c"], [3.0, 2.0, 1.0], 2, measure, baseline=0.6, strategy="static")
    assert seen == ["a", "b"] and out.winner["source"] == "b"
    assert out.table["gain"].round(6).tolist() == [-0.1, 0.1]
    with pytest.raises(ValueError, match="budget"):
        select("t", ["a"], [1.0], 0, measure, baseline=0.5)


# ----------------------------------------------------------------------------- the CLI, end to end


def _tiny_task(folder, name: str, words: list[str], n: int = 12, seed: int = 0):
    """A two-class JSONL task whose label is whether a marker word appears."""
    rng = np.random.default_rng(seed)
    (folder / name).mkdir(parents=True)
    for split, m in (("train", n), ("validation", 8)):
        lines = []
        for i in range(m):
            label = i % 2
            text = " ".join(rng.choice(words, size=5)) + (" great" if label else " awful")
            lines.append(json.dumps({"text": text, "label": "pos" if label else "neg"}))
        (folder / name / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("select")
    tasks = root / "tasks"
    _tiny_task(tasks, "movies", ["film", "plot", "actor", "scene"], seed=1)
    _tiny_task(tasks, "books", ["novel", "author", "page", "plot"], seed=2)
    _tiny_task(tasks, "food", ["meal", "taste", "chef", "dish"], seed=3)
    _tiny_task(tasks, "shows", ["episode", "actor", "scene", "season"], seed=4)
    from taskrank.estimators import get_estimator
    from taskrank.pool import Pool
    from taskrank.tasks import load_task

    pool = Pool(root / "pool")
    pool.build([load_task(tasks / n) for n in ("movies", "books", "food")], [get_estimator("vocab")])
    transfer = root / "transfer.csv"
    pd.DataFrame({"target": ["movies", "movies", "books", "books", "food", "food"],
                  "source": ["books", "food", "movies", "food", "movies", "books"],
                  "score": [0.1, -0.1, 0.05, -0.02, 0.0, 0.01]}).to_csv(transfer, index=False)
    return root, tasks, transfer


TINY = ["--source-examples", "12", "--target-examples", "12", "--eval-examples", "8", "--source-epochs", "1",
        "--target-epochs", "1", "--max-length", "16", "--batch-size", "8"]


def test_select_cli_runs_k_transfers_resumes_and_reports_the_winner(tiny, isolated_cache):
    root, tasks, transfer = tiny
    runner = CliRunner()
    args = ["select", "--target", "shows", "--tasks", str(tasks), "--pool", str(root / "pool"), "--method", "vocab",
            "--budget", "2", "--journal", str(root / "j.sqlite"), "--transfer", str(transfer), "--format", "json", *TINY]
    first = runner.invoke(app, args, catch_exceptions=False)
    assert first.exit_code == 0, first.stderr
    rows = json.loads(first.stdout)
    assert [r["step"] for r in rows] == [1, 2] and len({r["source"] for r in rows}) == 2
    assert {r["source"] for r in rows} <= {"movies", "books", "food"}
    assert all(0.0 <= r["value"] <= 1.0 and not math.isnan(r["value"]) for r in rows)
    assert "winner:" in first.stderr or "no source beat" in first.stderr
    # a second call finds every run in the journal: same answer, nothing trained again
    again = runner.invoke(app, args, catch_exceptions=False)
    assert again.exit_code == 0 and json.loads(again.stdout) == rows
    assert again.stderr.count("(from ") == 3  # the baseline and both transfers


def test_select_cli_refuses_a_bad_budget(tiny, isolated_cache):
    root, tasks, _ = tiny
    result = CliRunner().invoke(app, ["select", "--target", "shows", "--tasks", str(tasks), "--pool", str(root / "pool"),
                                      "--method", "vocab", "--budget", "0", "--journal", str(root / "x.sqlite")])
    assert result.exit_code == 2 and "--budget must be at least 1" in result.stderr
