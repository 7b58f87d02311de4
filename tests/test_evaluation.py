"""`taskrank evaluate` and taskrank.evaluation: TaskWeb's real release, seeds, pools, errors."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from taskrank import metrics
from taskrank.cli import app
from taskrank.estimators import get_estimator
from taskrank.evaluation import (RANDOM, EvaluationError, evaluate_predictions, load_gold, read_evaluation,
                                 read_predictions)
from taskrank.pool import Pool
from taskrank.tasks import load_task
from taskrank.transfer.matrix import gold_scores, import_taskweb, pair_table

TASKWEB = Path(__file__).resolve().parents[2] / "shared" / "data" / "taskweb"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def taskweb_pairs():
    if not (TASKWEB / "transfer_matrix.csv").is_file():
        pytest.skip("../shared/data/taskweb is not beside the repository")
    return import_taskweb(TASKWEB, "t5l", "finetune")


def _summary(result_json, method, metric):
    rows = [r for r in result_json["results"] if r["method"] == method and r["target"] == "(mean)"
            and r["metric"] == metric]
    assert len(rows) == 1
    return rows[0]


def test_taskweb_gold_scores_perfectly_and_random_is_its_expectation(taskweb_pairs, tmp_path):
    gold_csv = tmp_path / "gold.csv"
    taskweb_pairs[["target", "source", "score"]].dropna().to_csv(gold_csv, index=False)
    result = invoke("evaluate", "--taskweb", TASKWEB, "--model", "t5l", "--adaptation", "finetune",
                    "--predictions", gold_csv, "--exclude", "piqa", "--format", "json", "--boot", 200)
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert len(out["meta"]["targets"]) == 20 and "piqa" not in out["meta"]["targets"]
    assert out["meta"]["percent"] is True
    gold_ndcg, gold_regret = _summary(out, "gold", "ndcg_taskweb"), _summary(out, "gold", "regret_mean@5")
    assert gold_ndcg["value"] == pytest.approx(100.0) and gold_ndcg["unit"] == "x100"
    assert gold_regret["value"] == pytest.approx(0.0, abs=1e-9)
    assert (gold_ndcg["boot_lo"], gold_ndcg["boot_hi"]) == pytest.approx((100.0, 100.0))
    # random: the mean over the 20 targets of the exact expectation, computed here independently
    exp_ndcg, exp_regret = [], []
    for t in out["meta"]["targets"]:
        d = taskweb_pairs[taskweb_pairs["target"] == t].dropna(subset=["score"]).set_index("source")
        e = metrics.random_expectation(d["score"], d["mean"], ks=(5,), baseline=float(d["baseline"].iloc[0]))
        exp_ndcg.append(e["ndcg_taskweb"])
        exp_regret.append(e["regret_mean@5"])
    rnd_ndcg, rnd_regret = _summary(out, RANDOM, "ndcg_taskweb"), _summary(out, RANDOM, "regret_mean@5")
    assert rnd_ndcg["value"] == pytest.approx(100 * np.mean(exp_ndcg))
    assert rnd_regret["value"] == pytest.approx(100 * np.mean(exp_regret))
    assert rnd_ndcg["value"] == pytest.approx(44.94, abs=0.01)   # 21 sources: the same for every target
    assert 0 < rnd_regret["value"] < 10
    assert rnd_regret["boot_lo"] < rnd_regret["value"] < rnd_regret["boot_hi"]
    # every metric is there, per target too
    metric_names = {r["metric"] for r in out["results"]}
    assert {"ndcg_taskweb", "ndcg_esm", "ndcg_linear", "regret_mean@1", "regret_mean@5", "regret_max@3", "rho",
            "precision@5", "spearman", "kendall"} <= metric_names
    per_target = [r for r in out["results"] if r["target"] == "rte" and r["method"] == "gold"]
    assert len(per_target) == len(metric_names)

    table = invoke("evaluate", "--taskweb", TASKWEB, "--predictions", gold_csv, "--exclude", "piqa",
                   "--boot", 50, "--no-per-target")
    assert table.exit_code == 0, table.stderr
    assert "ndcg_taskweb (x100)" in table.stdout and "x100 (as the papers print them)" in table.stdout
    assert "random (expected)" in table.stdout and "100.0 [100.0, 100.0]" in table.stdout

    fraction = json.loads(invoke("evaluate", "--taskweb", TASKWEB, "--predictions", gold_csv, "--exclude", "piqa",
                                 "--boot", 0, "--fraction", "--format", "json").stdout)
    assert _summary(fraction, "gold", "ndcg_taskweb")["value"] == pytest.approx(1.0)
    assert _summary(fraction, RANDOM, "ndcg_taskweb")["value"] == pytest.approx(np.mean(exp_ndcg))


def test_errors_are_one_line(taskweb_pairs, tmp_path):
    partial = tmp_path / "partial.csv"
    d = taskweb_pairs[["target", "source", "score"]].dropna()
    d[~((d["target"] == "rte") & (d["source"] == "snli"))].to_csv(partial, index=False)
    r = invoke("evaluate", "--taskweb", TASKWEB, "--predictions", partial, "--boot", 0)
    assert r.exit_code == 2 and "method 'partial' has no score for target 'rte' and sources ['snli']" in r.stderr
    ok = invoke("evaluate", "--taskweb", TASKWEB, "--predictions", partial, "--exclude", "rte,piqa", "--boot", 0,
                "--format", "json")
    assert ok.exit_code == 0 and len(json.loads(ok.stdout)["meta"]["targets"]) == 19
    r = invoke("evaluate", "--predictions", partial)
    assert r.exit_code == 2 and "--matrix" in r.stderr
    r = invoke("evaluate", "--matrix", tmp_path / "nope.csv", "--predictions", partial)
    assert r.exit_code == 2 and "no such file" in r.stderr


# ----------------------------------------------------------------------------- a synthetic grid with seeds

TASKS = ["a", "b", "c", "d", "e"]


def _runs(n_seeds=3):
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(n_seeds):
        for i, t in enumerate(TASKS):
            base = 0.6 + 0.05 * i
            rows.append(dict(target=t, source="", seed=seed, setting="m/full", metric="accuracy",
                             value=base + rng.normal(0, 0.01)))
            for j, s in enumerate(TASKS):
                if s != t:
                    rows.append(dict(target=t, source=s, seed=seed, setting="m/full", metric="accuracy",
                                     value=base + 0.02 * (j - 2) + rng.normal(0, 0.01)))
    return pd.DataFrame(rows)


def _predictions(pairs, name, fn):
    return pairs[["target", "source"]].assign(method=name, score=[fn(t, s) for t, s in zip(pairs.target, pairs.source)])


def test_seed_and_target_intervals(tmp_path):
    runs = _runs(2)   # two seeds: three distinct bootstrap draws {0,0}, {0,1}, {1,1}
    runs.to_csv(tmp_path / "runs.csv", index=False)
    gold = load_gold(tmp_path / "runs.csv")
    assert gold.seeds == [0, 1] and gold.targets == TASKS
    pairs = gold.pairs
    preds = pd.concat([_predictions(pairs, "good", lambda t, s: TASKS.index(s)),
                       _predictions(pairs, "bad", lambda t, s: -TASKS.index(s))])
    ev = evaluate_predictions(gold, preds, boot=300, seed_boot=50, seed=1)
    s = ev.summary.set_index(["method", "metric"])
    # per-target values are metrics.evaluate on the matrix's gold (TaskWeb pair score) and perf (mean)
    g = gold_scores(pair_table(runs), "c")
    perf = gold_scores(pair_table(runs), "c", by="mean")
    pred_c = pd.Series({x: float(TASKS.index(x)) for x in g.index})
    row = ev.per_target[(ev.per_target.method == "good") & (ev.per_target.target == "c")].iloc[0]
    base = float(pair_table(runs).query("target == 'c'")["baseline"].iloc[0])
    expected = metrics.evaluate(pred_c, g, perf, baseline=base)
    assert {k: row[k] for k in expected} == pytest.approx(expected, nan_ok=True)
    # the mean over targets, and intervals that contain it
    assert s.loc[("good", "ndcg_taskweb"), "mean"] == pytest.approx(
        ev.per_target.query("method == 'good'")["ndcg_taskweb"].mean())
    for m in ("good", "bad", RANDOM):
        r = s.loc[(m, "spearman")]
        assert r["boot_lo"] - 1e-12 <= r["mean"] <= r["boot_hi"] + 1e-12
        assert np.isfinite(r["seed_lo"]) and r["seed_lo"] <= r["seed_hi"]
    assert s.loc[("good", "spearman"), "mean"] > 0.5 > -0.5 > s.loc[("bad", "spearman"), "mean"]
    # seeded: the same numbers again
    again = evaluate_predictions(gold, preds, boot=300, seed_boot=50, seed=1)
    pd.testing.assert_frame_equal(ev.summary, again.summary)
    assert ev.meta["seeds"] == [0, 1] and ev.meta["seed_boot"] == 50
    # the seed interval of a perfect-order metric is spread by seed noise in the gold, below its best
    assert s.loc[("good", "spearman"), "seed_lo"] < s.loc[("good", "spearman"), "seed_hi"] <= 1.0
    # a pair table alone has no seed intervals; with --runs it has
    pair_table(runs).to_csv(tmp_path / "matrix.csv", index=False)
    no_seeds = evaluate_predictions(load_gold(tmp_path / "matrix.csv"), preds, boot=0, seed_boot=50)
    assert no_seeds.summary["seed_lo"].isna().all() and no_seeds.summary["boot_lo"].isna().all()
    with_runs = evaluate_predictions(load_gold(tmp_path / "matrix.csv", runs=tmp_path / "runs.csv"), preds,
                                     boot=0, seed_boot=50, seed=1)
    np.testing.assert_allclose(with_runs.summary["seed_lo"], ev.summary["seed_lo"])


def test_save_and_read_back(tmp_path):
    runs = _runs(2)
    runs.to_csv(tmp_path / "runs.csv", index=False)
    gold = load_gold(tmp_path / "runs.csv")
    preds = _predictions(gold.pairs, "good", lambda t, s: TASKS.index(s))
    ev = evaluate_predictions(gold, preds, boot=20, seed_boot=5)
    for name in ("ev.csv", "ev.json"):
        ev.save(tmp_path / name)
        tidy, p, meta = read_evaluation(tmp_path / name)
        pd.testing.assert_frame_equal(tidy.reset_index(drop=True)[["method", "target", "metric"]],
                                      ev.tidy()[["method", "target", "metric"]].reset_index(drop=True))
        np.testing.assert_allclose(tidy["value"].to_numpy(float), ev.tidy()["value"].to_numpy(float), atol=1e-12)
        assert len(p) == len(preds)
    assert (tmp_path / "ev.predictions.csv").is_file()
    with pytest.raises(EvaluationError, match="reserved"):
        evaluate_predictions(gold, preds.assign(method=RANDOM))
    with pytest.raises(EvaluationError, match="repeated"):
        pd.concat([preds, preds]).drop(columns="method").to_csv(tmp_path / "dup.csv", index=False)
        read_predictions(tmp_path / "dup.csv")


def _task(root, name, n):
    folder = root / name
    folder.mkdir(parents=True)
    rows = [{"text": f"{name} says {i}", "label": i % 2} for i in range(n)]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return load_task(folder)


def test_methods_on_a_pool(tmp_path, isolated_cache):
    """--method on a pool: targets are the matrix's tasks in the pool, sources the pool's others with gold."""
    sizes = {"a": 30, "b": 50, "c": 20, "d": 40, "f": 60}   # f: in the pool, not in the matrix
    tasks = [_task(tmp_path / "tasks", n, k) for n, k in sizes.items()]
    pool = Pool(tmp_path / "pool")
    pool.build(tasks, [get_estimator("size")])
    _runs().to_csv(tmp_path / "runs.csv", index=False)      # e: in the matrix, not in the pool
    r = invoke("evaluate", "--matrix", tmp_path / "runs.csv", "--method", "size", "--method", "ensemble:size+random",
               "--pool", tmp_path / "pool", "--tasks", tmp_path / "tasks", "--format", "json", "--boot", 10,
               "--seed-boot", 5)
    assert r.exit_code == 2 and "no 'random' artefact" in r.stderr     # the pool lacks random: a clear error
    pool.build(tasks, [get_estimator("random")])
    r = invoke("evaluate", "--matrix", tmp_path / "runs.csv", "--method", "size", "--method", "ensemble:size+random",
               "--pool", tmp_path / "pool", "--tasks", tmp_path / "tasks", "--format", "json", "--boot", 10,
               "--seed-boot", 5)
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["meta"]["targets"] == ["a", "b", "c", "d"]
    assert out["meta"]["methods"] == [RANDOM, "gold ceiling (1 seed vs rest)", "size", "ensemble:size+random"]
    n = {(x["target"], x["method"]): x["n"] for x in out["results"] if x["metric"] == "rho"}
    assert n[("a", "size")] == 3      # b, c, d: e has no data in the pool, f no gold
    # size's per-target numbers are metrics.evaluate of log sizes against the matrix's gold
    pairs = pair_table(_runs())
    g, perf = gold_scores(pairs, "a").reindex(["b", "c", "d"]), gold_scores(pairs, "a", by="mean").reindex(["b", "c", "d"])
    base = float(pairs.query("target == 'a'")["baseline"].iloc[0])
    expected = metrics.evaluate(pd.Series(np.log([50.0, 20.0, 40.0]), index=["b", "c", "d"]), g, perf, baseline=base)
    got = {x["metric"]: x["value"] for x in out["results"] if x["target"] == "a" and x["method"] == "size"}
    assert got["spearman"] == pytest.approx(expected["spearman"])
    assert got["ndcg_taskweb"] == pytest.approx(100 * expected["ndcg_taskweb"])
    assert {p["source"] for p in out["predictions"] if p["target"] == "a"} == {"b", "c", "d", "f"}
