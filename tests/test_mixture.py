"""Multi-task mixtures: file content, label spaces, seeding; the experiment on a tiny grid."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from taskrank.cli import app
from taskrank.estimators import get_estimator
from taskrank.mixture import mixture_frame, mixture_task, read_mixture, write_mixture
from taskrank.pool import Pool
from taskrank.tasks import TaskError, load_task

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _task(root, name, n, labels=("pos", "neg"), pair=False, regression=False):
    folder = root / name
    folder.mkdir(parents=True)
    for split, m in (("train", n), ("validation", 12)):
        rows = []
        for i in range(m):
            r = {"sentence1" if pair else "text": f"{name} {split} text {i}"}
            if pair:
                r["sentence2"] = f"{name} second {i}"
            r["label"] = float(i) / m if regression else labels[i % len(labels)]
            rows.append(r)
        (folder / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return folder


@pytest.fixture()
def grid(tmp_path, isolated_cache):
    root = tmp_path / "tasks"
    sizes = {"alpha": 30, "beta": 60, "gamma": 45, "delta": 20}
    for n, k in sizes.items():
        _task(root, n, k)
    _task(root, "pairs", 25, labels=("yes", "no"), pair=True)
    _task(root, "target", 24)
    tasks = [load_task(p) for p in sorted(root.iterdir())]
    pool = Pool(tmp_path / "pool")
    pool.build([t for t in tasks if t.name != "target"], [get_estimator("size")])
    return root, tmp_path / "pool"


def test_mixture_file(grid, tmp_path):
    root, pool = grid
    out = tmp_path / "mix.jsonl"
    r = invoke("mixture", "--target", "target", "--tasks", root, "--pool", pool, "--method", "size", "--top", 3,
               "--per-source", 10, "--seed", 7, "--out", out)
    assert r.exit_code == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # size ranks beta (60), gamma (45), alpha (30) first
    assert len(rows) == 30
    assert {k for r in rows for k in r} == {"text", "text_pair", "label", "source", "type"}
    assert pd.Series([r["source"] for r in rows]).value_counts().to_dict() == {"beta": 10, "gamma": 10, "alpha": 10}
    # label spaces kept apart by the source prefix, and each row's text is from its own source
    assert {r["label"] for r in rows} == {f"{s}:{c}" for s in ("alpha", "beta", "gamma") for c in ("pos", "neg")}
    assert all(r["text"].startswith(r["source"] + " train") for r in rows)
    assert all(r["text_pair"] is None and r["type"] == "classification" for r in rows)
    # rows are shuffled across sources, not in blocks
    assert len({r["source"] for r in rows[:6]}) > 1
    meta = json.loads((tmp_path / "mix.jsonl.meta.json").read_text())
    assert [s["source"] for s in meta["sources"]] == ["beta", "gamma", "alpha"] and meta["seed"] == 7

    # seeding: the same seed gives the same bytes, another seed other samples and order
    again = tmp_path / "again.jsonl"
    invoke("mixture", "--target", "target", "--tasks", root, "--pool", pool, "--method", "size", "--top", 3,
           "--per-source", 10, "--seed", 7, "--out", again)
    assert again.read_bytes() == out.read_bytes()
    other = tmp_path / "other.jsonl"
    invoke("mixture", "--target", "target", "--tasks", root, "--pool", pool, "--method", "size", "--top", 3,
           "--per-source", 10, "--seed", 8, "--out", other)
    assert other.read_bytes() != out.read_bytes()
    assert sorted(other.read_text().splitlines()) != sorted(out.read_text().splitlines())


def test_mixture_frame_pairs_regression_and_target(tmp_path):
    root = tmp_path / "t"
    tasks = [load_task(_task(root, "pairs", 25, labels=("yes", "no"), pair=True)),
             load_task(_task(root, "single", 25)), load_task(_task(root, "scores", 25, regression=True))]
    frame = mixture_frame(tasks, per_source=8, seed=0)
    assert len(frame) == 24
    pairs = frame[frame["source"] == "pairs"]
    assert pairs["text_pair"].str.startswith("pairs second").all()
    assert frame.loc[frame["source"] == "single", "text_pair"].isna().all()
    # stratified: 4 of each class from a balanced source
    assert pairs["label"].value_counts().to_dict() == {"pairs:yes": 4, "pairs:no": 4}
    scores = frame[frame["source"] == "scores"]
    assert scores["type"].eq("regression").all() and all(isinstance(v, float) for v in scores["label"])
    out = tmp_path / "m.jsonl"
    write_mixture(frame, out)
    back = read_mixture(out)
    assert back["source"].tolist() == frame["source"].tolist()
    # a single-head training task over the classification rows: pairs stay pairs, singles get ""
    task = mixture_task(back)
    assert task.spec.is_pair and set(task.spec.labels) == {"pairs:yes", "pairs:no", "single:pos", "single:neg"}
    assert len(task.split("train")) == 16 and (task.split("train")["text_pair"] == "").sum() == 8
    with pytest.raises(TaskError, match="twice"):
        mixture_frame([tasks[0], tasks[0]], 4)


def test_mixture_errors(grid, tmp_path):
    root, pool = grid
    r = invoke("mixture", "--target", "nowhere", "--tasks", root, "--pool", pool, "--method", "size",
               "--out", tmp_path / "x.jsonl")
    assert r.exit_code == 2 and "neither a path nor a task" in r.stderr
    r = invoke("mixture", "--target", "target", "--tasks", root, "--pool", pool)
    assert r.exit_code == 2 and "needs --target, --tasks and --out" in r.stderr


def test_experiment_tiny(grid, tmp_path, monkeypatch):
    """Every condition trains and scores; CPU-tiny sizes (the real defaults take minutes)."""
    monkeypatch.setenv("TASKRANK_THREADS", "1")  # tiny batches: one thread is fastest, and fair to busy machines
    root, pool = grid
    out = tmp_path / "exp.csv"
    r = invoke("mixture", "experiment", "--target", "target", "--tasks", root, "--pool", pool, "--method", "size",
               "--top", 2, "--per-source", 8, "--target-examples", 8, "--eval-examples", 8, "--max-length", 16,
               "--batch-size", 8, "--target-epochs", 1, "--out", out)
    assert r.exit_code == 0, r.stderr
    res = pd.read_csv(out, keep_default_na=False)
    assert res["condition"].tolist() == ["none", "topk", "random", "all"]
    assert res.set_index("condition")["sources"].to_dict()["topk"] == "beta gamma"
    assert res.set_index("condition")["k"].to_dict() == {"none": 0, "topk": 2, "random": 2, "all": 5}
    assert res.set_index("condition")["mixture_examples"].to_dict() == {"none": 0, "topk": 16, "random": 16, "all": 40}
    assert res["value"].between(0, 1).all() and (res["metric"] == "accuracy").all()
